/* FeLIF neurons under a piecewise-constant input with threshold and reset after every
   micro-step (felif_sequence.run_sequence; double only). The step is felif_step.h's. */
#include "felif_step.h"

/* Neuron g (of n) reads its constants from column g % np of c [FELIF_N_CONST, np] and its
   current from cur[s*n + g]. Segment s: n_steps[s] micro-steps of dt[s], starting at time
   t_seg[s] and at global micro-step index k_seg[s]. */
void felif_sequence(int64_t n, int64_t np, const double *c, int64_t n_seg,
                    const double *cur, const double *dt, const int64_t *n_steps,
                    const double *t_seg, const int64_t *k_seg,
                    double *v, double *p, int32_t reset_at_crossing, double hold_fraction,
                    double *trace_v, double *trace_p,
                    int64_t max_spikes, double *spike_t, int64_t *spike_k,
                    int64_t *n_spikes, const int64_t *stop_after,
                    const int64_t *start_step) {
    for (int64_t g = 0; g < n; g++) {
        felif_consts k = felif_load_consts(c, np, g % np);
        felif_prepare(&k);
        double th = k.thr, vr = k.vreset, ps = k.ps;
        double V = v[g], P = p[g];
        int64_t ns = 0, stop = stop_after ? stop_after[g] : 0;
        int64_t k0 = start_step ? start_step[g] : 0;  /* held (no evolution) before it */
        double debt = 0.0;  /* time still held in the reset state after a spike */
        int64_t s = 0;
        for (; s < n_seg; s++) {
            double I = cur[s * n + g], h = dt[s];
            int64_t m = n_steps[s];
            int64_t j0 = k0 > k_seg[s] ? k0 - k_seg[s] : 0;
            if (h > 0.0) for (int64_t j = j0; j < m; j++) {
                double hh = h;  /* the part of this micro-step the neuron evolves */
                if (debt > 0.0) {
                    if (debt >= h) { debt -= h; continue; }
                    hh = h - debt; debt = 0.0;
                }
                double vb = V;
                felif_euler(I, hh, &V, &P, &k);
                if (V >= th) {
                    double f = (V > vb) ? (th - vb) / (V - vb) : 1.0;
                    f = f < 0.0 ? 0.0 : (f > 1.0 ? 1.0 : f);
                    if (ns < max_spikes) {
                        spike_t[g * max_spikes + ns] = t_seg[s] + (double)j * h + (h - hh) + f * hh;
                        spike_k[g * max_spikes + ns] = k_seg[s] + j;
                    }
                    ns++;
                    V = vr; P = -ps;
                    if (reset_at_crossing) {
                        double rest = (1.0 - f) * hh, hold = hold_fraction * h;
                        if (rest > hold) {
                            felif_euler(I, rest - hold, &V, &P, &k);
                            if (V >= th) { V = vr; P = -ps; }  /* pathological: reset again */
                        } else {
                            debt = hold - rest;
                        }
                    }
                    if (stop > 0 && ns >= stop) break;
                }
            }
            if (trace_v) { trace_v[s * n + g] = V; trace_p[s * n + g] = P; }
            if (stop > 0 && ns >= stop) { s++; break; }
        }
        if (trace_v) for (; s < n_seg; s++) { trace_v[s * n + g] = NAN; trace_p[s * n + g] = NAN; }
        v[g] = V; p[g] = P; n_spikes[g] = ns;
    }
}
