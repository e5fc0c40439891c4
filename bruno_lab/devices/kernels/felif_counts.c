/* A network step as the device runs it: n_steps Euler micro-steps with the input held, and
   after every micro-step whose end V >= V_thr a spike is counted and the neuron reset at once
   (V -> V_reset, P -> -P_s), exactly the felif_core.felif_euler_step + felif_reset loop of the
   simulated lab's bench (felif_sequence.c, without its spike times). Blocks of FELIF_BLOCK
   neurons advance together, every lane computing every step branch-free so gcc vectorizes the
   block (the Euler step is felif_step.h, the one C transcription). */
#include "felif_step.h"

#define FELIF_BLOCK 128

/* Neurons [0, n) of a slice starting at global index g0 of the flattened state; neuron g reads
   its constants from column (g0 + g) % np of c [FELIF_N_CONST, np]. count_out: spikes in the
   window. */
void felif_counts(int64_t n, int64_t g0, int64_t np, const real *cur, real *v, real *p,
                  const real *c, int64_t n_steps, double dt_d, int32_t *count_out) {
    const real dt = (real)dt_d;
    for (int64_t b0 = 0; b0 < n; b0 += FELIF_BLOCK) {
        int m = (int)((n - b0) < FELIF_BLOCK ? (n - b0) : FELIF_BLOCK);
        real V[FELIF_BLOCK], P[FELIF_BLOCK], I[FELIF_BLOCK];
        felif_consts K[FELIF_BLOCK];
        int32_t N[FELIF_BLOCK];
        for (int i = 0; i < FELIF_BLOCK; i++) {
            int j = i < m ? i : 0;                /* pad a short block with copies of lane 0 */
            int64_t g = b0 + j, q = (g0 + g) % np;
            K[i] = felif_load_consts(c, np, q);
            felif_prepare(&K[i]);
            V[i] = v[g]; P[i] = p[g]; I[i] = cur[g]; N[i] = 0;
        }
        for (int64_t s = 0; s < n_steps; s++) {
            for (int i = 0; i < FELIF_BLOCK; i++) {
                real vn = V[i], pn = P[i];
                felif_euler(I[i], dt, &vn, &pn, &K[i]);
                int hit = vn >= K[i].thr;
                V[i] = hit ? K[i].vreset : vn;
                P[i] = hit ? -K[i].ps : pn;
                N[i] += hit;
            }
        }
        for (int i = 0; i < m; i++) { v[b0+i] = V[i]; p[b0+i] = P[i]; count_out[b0+i] = N[i]; }
    }
}
