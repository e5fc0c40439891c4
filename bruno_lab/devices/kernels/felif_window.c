/* BRUNO's fine windows: for each neuron, T consecutive windows of n_steps Euler micro-steps
   with the window's input held; within a window V and P are frozen from the micro-step at which
   V >= V_thr (felif.felif_reference_window), and a neuron that spiked in window t is reset
   (V -> V_reset, P -> -P_s) at the start of window t + 1 (felif.felif_simulate). T = 1 is one
   window (felif.felif_fine_window). Compiled once per precision (-DFELIF_F32 for float).

   Scheduling: FELIF_LANES lanes advance together, one Euler micro-step per lane per iteration,
   so gcc vectorizes the step across lanes (AVX2/FMA in float). Every lane follows its own
   neuron through its own windows: a lane whose neuron spikes (frozen for the rest of the window)
   or ends a window moves on to that neuron's next window at once, and a lane whose neuron has
   done all T windows takes the next neuron of the slice. No lane ever steps a frozen neuron, so
   the work is the sum over neurons and windows of the micro-steps up to the spike (or the
   window's end), whatever the mix of firing and silent neurons. */
#include "felif_step.h"

#define FELIF_LANES 128

typedef struct {
    /* per lane: state, input, constants (prepared), window index, steps done, neuron */
    real V[FELIF_LANES], P[FELIF_LANES], I[FELIF_LANES];
    real KC[FELIF_LANES], KD[FELIF_LANES], EA[FELIF_LANES], SO[FELIF_LANES], AL[FELIF_LANES],
         T0[FELIF_LANES], PS[FELIF_LANES], AR[FELIF_LANES], I0[FELIF_LANES], VT[FELIF_LANES],
         ID[FELIF_LANES], CT[FELIF_LANES], TH[FELIF_LANES], VR[FELIF_LANES];
    int32_t K[FELIF_LANES], EV[FELIF_LANES], SP[FELIF_LANES]; /* SP: spiked in the last window */
    int64_t T[FELIF_LANES], G[FELIF_LANES];
} lanes_t;

typedef struct {
    int64_t n, g0, np, n_win, stride, n_steps;
    const real *cur, *c;
    real *v, *p, *v_out, *p_out;
    int32_t *step_out;
} job_t;

static const real NEVER = (real)1e30; /* threshold of an idle lane: no event */

/* Record the end of lane i's current window (spike micro-step `st` or -1). */
static inline void finish_window(lanes_t *L, int i, int32_t st, const job_t *J) {
    int64_t at = L->T[i] * J->stride + L->G[i];
    J->step_out[at] = st;
    if (J->v_out) { J->v_out[at] = L->V[i]; J->p_out[at] = L->P[i]; }
    L->T[i] += 1;
    L->SP[i] = st >= 0;
}

/* Give lane i work: the next window of its neuron, else the next neuron (from *next), else
   idle. Windows that need no micro-step (already at threshold, or n_steps = 0) end here. */
static void load_lane(lanes_t *L, int i, int64_t *next, const job_t *J) {
    for (;;) {
        if (L->G[i] >= 0 && L->T[i] >= J->n_win) {  /* neuron done: write its final state */
            J->v[L->G[i]] = L->V[i];
            J->p[L->G[i]] = L->P[i];
            L->G[i] = -1;
        }
        if (L->G[i] < 0) {
            if (*next >= J->n) { L->TH[i] = NEVER; L->K[i] = INT32_MIN / 2; return; }
            int64_t g = (*next)++;
            felif_consts k = felif_load_consts(J->c, J->np, (J->g0 + g) % J->np);
            felif_prepare(&k);
            L->KC[i] = k.kc; L->KD[i] = k.kd; L->EA[i] = k.ea; L->SO[i] = k.so;
            L->AL[i] = k.al; L->T0[i] = k.tau0; L->PS[i] = k.ps; L->AR[i] = k.ar;
            L->I0[i] = k.i0a; L->VT[i] = k.vt; L->ID[i] = k.idsc; L->CT[i] = k.ct;
            L->TH[i] = k.thr; L->VR[i] = k.vreset;
            L->G[i] = g; L->T[i] = 0; L->V[i] = J->v[g]; L->P[i] = J->p[g]; L->SP[i] = 0;
            if (J->n_win == 0) continue;
        }
        if (L->SP[i]) { L->V[i] = L->VR[i]; L->P[i] = -L->PS[i]; L->SP[i] = 0; } /* reset */
        if (L->V[i] >= L->TH[i]) { finish_window(L, i, 0, J); continue; }
        if (J->n_steps <= 0) { finish_window(L, i, -1, J); continue; }
        L->I[i] = J->cur[L->T[i] * J->stride + L->G[i]];
        L->K[i] = 0;
        return;
    }
}

/* Neurons [0, n) of a slice starting at global index g0 of the flattened state; neuron g reads
   its constants from column (g0 + g) % np of c [FELIF_N_CONST, np] and window t's current from
   cur[t*stride + g]. v, p: the state at entry, overwritten by the state after the last window.
   step_out [t*stride + g]: the 0-based micro-step of window t whose end V crossed V_thr (0 if
   already there at the window's start), or -1; v_out, p_out (optional): the state at the end
   of every window (frozen at the crossing). */
void felif_windows(int64_t n, int64_t g0, int64_t np, int64_t n_win, int64_t stride,
                   const real *cur, real *v, real *p, const real *c, int64_t n_steps,
                   double dt_d, int32_t *step_out, real *v_out, real *p_out) {
    const real dt = (real)dt_d;
    const int32_t n_k = (int32_t)n_steps;
    job_t J = {n, g0, np, n_win, stride, n_steps, cur, c, v, p, v_out, p_out, step_out};
    lanes_t L;
    int64_t next = 0;
    for (int i = 0; i < FELIF_LANES; i++) {
        L.G[i] = -1; L.T[i] = 0; L.V[i] = 0; L.P[i] = 0; L.I[i] = 0;
        L.KC[i] = L.KD[i] = 0; L.EA[i] = L.SO[i] = L.AL[i] = L.T0[i] = 1;
        L.PS[i] = L.AR[i] = L.I0[i] = L.ID[i] = 0; L.VT[i] = L.CT[i] = 1; L.VR[i] = 0;
        L.SP[i] = 0;
        load_lane(&L, i, &next, &J);
    }
    int32_t live = 0;
    for (int i = 0; i < FELIF_LANES; i++) live |= L.G[i] >= 0;
    while (live) {
        int32_t any = 0;
        for (int i = 0; i < FELIF_LANES; i++) {  /* one micro-step of every lane: vectorized */
            felif_consts k = {L.KC[i], L.KD[i], L.EA[i], L.SO[i], L.AL[i], L.T0[i], L.PS[i],
                              L.AR[i], L.I0[i], L.VT[i], L.ID[i], L.CT[i], L.TH[i], 0};
            real vn = L.V[i], pn = L.P[i];
            felif_euler(L.I[i], dt, &vn, &pn, &k);
            L.V[i] = vn;
            L.P[i] = pn;
            int32_t kn = L.K[i] + 1;
            L.K[i] = kn;
            int32_t ev = -(int32_t)(vn >= L.TH[i]) | -(int32_t)(kn >= n_k);
            L.EV[i] = ev;
            any |= ev;
        }
        if (!any) continue;
        live = 0;
        for (int i = 0; i < FELIF_LANES; i++) {  /* window ends: rare, scalar */
            if (L.EV[i]) {
                finish_window(&L, i, L.V[i] >= L.TH[i] ? L.K[i] - 1 : -1, &J);
                load_lane(&L, i, &next, &J);
            }
            live |= L.G[i] >= 0;
        }
    }
}
