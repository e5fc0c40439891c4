/* BRUNO's fine window: n_steps Euler micro-steps with the input held; a neuron's V and P are
   frozen from the micro-step at which V >= V_thr (felif.felif_reference_window). Compiled once
   per precision (-DFELIF_F32 for float). Neurons advance in blocks of FELIF_BLOCK through the
   micro-steps (the time loop inside, the state in L1); in float every lane of a block computes
   every step branch-free so gcc vectorizes the block, in double a frozen lane is skipped. A
   block stops as soon as all its neurons have spiked. */
#include "felif_step.h"

#define FELIF_BLOCK 128

/* Neurons [0, n) of a slice that starts at global index g0 of the flattened state; neuron g
   reads its constants from column (g0 + g) % np of c [FELIF_N_CONST, np]. step_out: the
   0-based micro-step whose end V crossed V_thr (0 if already there at entry), or -1. */
void felif_window(int64_t n, int64_t g0, int64_t np, const real *cur, real *v, real *p,
                  const real *c, int64_t n_steps, double dt_d, int32_t *step_out) {
    const real dt = (real)dt_d;
    for (int64_t b0 = 0; b0 < n; b0 += FELIF_BLOCK) {
        int m = (int)((n - b0) < FELIF_BLOCK ? (n - b0) : FELIF_BLOCK);
        real V[FELIF_BLOCK], P[FELIF_BLOCK], I[FELIF_BLOCK];
        real KC[FELIF_BLOCK], KD[FELIF_BLOCK], EA[FELIF_BLOCK], SO[FELIF_BLOCK],
             AL[FELIF_BLOCK], T0[FELIF_BLOCK], PS[FELIF_BLOCK], AR[FELIF_BLOCK],
             I0[FELIF_BLOCK], VT[FELIF_BLOCK], ID[FELIF_BLOCK], CT[FELIF_BLOCK],
             TH[FELIF_BLOCK];
        int32_t ST[FELIF_BLOCK], DN[FELIF_BLOCK];
        for (int i = 0; i < FELIF_BLOCK; i++) {
            int j = i < m ? i : 0;                /* pad a short block with copies of lane 0 */
            int64_t g = b0 + j, q = (g0 + g) % np;
            felif_consts k = felif_load_consts(c, np, q);
            felif_prepare(&k);
            V[i] = v[g]; P[i] = p[g]; I[i] = cur[g];
            KC[i] = k.kc; KD[i] = k.kd; EA[i] = k.ea; SO[i] = k.so; AL[i] = k.al;
            T0[i] = k.tau0; PS[i] = k.ps; AR[i] = k.ar; I0[i] = k.i0a; VT[i] = k.vt;
            ID[i] = k.idsc; CT[i] = k.ct; TH[i] = k.thr;
            DN[i] = (V[i] >= TH[i]) ? -1 : 0;   /* frozen: all bits set */
            ST[i] = (V[i] >= TH[i]) ? 0 : -1;
        }
        for (int64_t s = 0; s < n_steps; s++) {
            int32_t live = 0, ks = (int32_t)s;
            for (int i = 0; i < FELIF_BLOCK; i++) {
#ifndef FELIF_F32
                if (DN[i]) continue;
#endif
                felif_consts k = {KC[i], KD[i], EA[i], SO[i], AL[i], T0[i], PS[i], AR[i],
                                  I0[i], VT[i], ID[i], CT[i], TH[i], 0};
                real vn = V[i], pn = P[i];
                felif_euler(I[i], dt, &vn, &pn, &k);
                int32_t done = DN[i];             /* 0 or -1 (all bits) */
                V[i] = done ? V[i] : vn;
                P[i] = done ? P[i] : pn;
                int32_t now = (~done) & -(int32_t)(vn >= TH[i]);
                ST[i] = now ? ks : ST[i];
                DN[i] = done | now;
                live |= ~DN[i];
            }
            if (live == 0) break;
        }
        for (int i = 0; i < m; i++) { v[b0+i] = V[i]; p[b0+i] = P[i]; step_out[b0+i] = ST[i]; }
    }
}
