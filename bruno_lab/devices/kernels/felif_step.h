/* The FeLIF Euler micro-step, written once for every C kernel: a line-by-line transcription of
   bruno_lab.devices.felif_core.felif_euler_step (the constants come precomputed by
   felif_core.kernel_constants from the fecap functions, in the row order below).
   Include felif_math.h first (it defines `real` and r_pow, r_exp, r_expm1, r_min, r_max). */
#ifndef FELIF_STEP_H
#define FELIF_STEP_H
#include "felif_math.h"

#define FELIF_X_MAX 80.0        /* fecap.X_MAX */
#define FELIF_LEAK_EXP_MAX 40.0 /* fecap.LEAK_EXP_MAX */
#define FELIF_V_CLIP 5.0        /* felif_core.V_CLIP_V */

/* rows of the constant block [FELIF_N_CONST, np] (felif_core.kernel_constant_rows) */
enum { K_KC, K_KD, K_EA, K_SOFT_E, K_ALPHA, K_TAU0, K_PS, K_AREA, K_I0A, K_VT, K_IDSC, K_CTOT,
       K_VTHR, K_VRESET, FELIF_N_CONST };

/* One neuron's constants (read once per window from its column of the block). `felif_prepare`
   turns them into the operands of the precision's arithmetic: in double nothing changes (the
   step divides, as the reference does); in float the divisions by a neuron's constants become
   products with reciprocals computed once, and (E_a/d)^alpha = 2^(alpha*(log2 E_a - log2 d)) with
   log2 E_a computed once, so the vectorized step has no division. */
typedef struct {
    real kc, kd, ea, so, al, tau0, ps, ar, i0a, vt, idsc, ct, thr, vreset;
} felif_consts;

static inline felif_consts felif_load_consts(const real *c, int64_t np, int64_t q) {
    felif_consts k;
    k.kc = c[K_KC * np + q];   k.kd = c[K_KD * np + q];     k.ea = c[K_EA * np + q];
    k.so = c[K_SOFT_E * np + q]; k.al = c[K_ALPHA * np + q]; k.tau0 = c[K_TAU0 * np + q];
    k.ps = c[K_PS * np + q];   k.ar = c[K_AREA * np + q];   k.i0a = c[K_I0A * np + q];
    k.vt = c[K_VT * np + q];   k.idsc = c[K_IDSC * np + q]; k.ct = c[K_CTOT * np + q];
    k.thr = c[K_VTHR * np + q]; k.vreset = c[K_VRESET * np + q];
    return k;
}

#ifdef FELIF_F32
static inline void felif_prepare(felif_consts *k) {
    k->ea = log2f(k->ea);
    k->tau0 = 1.0f / k->tau0;
    k->vt = 1.0f / k->vt;
    k->ct = 1.0f / k->ct;
}
#define K_DIV(x, k, field) ((x) * (k)->field)                       /* x / field */
#define K_SWITCH_X(k, d) exp2_fast((k)->al * ((k)->ea - log2_fast(d))) /* (E_a/d)^alpha */
#else
static inline void felif_prepare(felif_consts *k) { (void)k; }
#define K_DIV(x, k, field) ((x) / (k)->field)
#define K_SWITCH_X(k, d) pow((k)->ea / (d), (k)->al)
#endif

/* (v, p) -> one explicit Euler step of dt under input current I (A); clips kept. `k` prepared
   by felif_prepare. */
static inline void felif_euler(real I, real dt, real *v, real *p, const felif_consts *k) {
    real v0 = *v, p0 = *p;
    real E = v0 * k->kc - p0 * k->kd;                              /* field in the HZO */
    real x = r_min(K_SWITCH_X(k, r_abs(E) + k->so), (real)FELIF_X_MAX);
    real rate = K_DIV(r_exp(-x), k, tau0);                          /* 1/tau(E) */
    real tgt = E > (real)0 ? k->ps : (E < (real)0 ? -k->ps : (real)0);
    real pn = p0 + dt * ((tgt - p0) * rate);
    pn = r_min(r_max(pn, -k->ps), k->ps);
    real arg = r_min(K_DIV(v0, k, vt), (real)FELIF_LEAK_EXP_MAX);
    real sg = v0 > (real)0 ? (real)1 : (v0 < (real)0 ? (real)-1 : (real)0);
    real leak = (k->i0a * r_expm1(arg) + k->idsc) * sg;
    real ip = k->ar * (pn - p0) / dt;                               /* clipped increment */
    real vn = v0 + K_DIV(dt * (I - leak - ip), k, ct);
    vn = r_min(r_max(vn, (real)-FELIF_V_CLIP), (real)FELIF_V_CLIP);
    *v = vn;
    *p = pn;
}
#endif
