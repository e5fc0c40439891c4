/* The real type and the math of one precision, for felif_step.h.

   FELIF_F32: float with branch-free polynomial exp2/log2 (gcc vectorizes them with AVX2/FMA):
   2^x by range reduction to [-0.5, 0.5] and a degree-7 Taylor polynomial of e^y (relative
   error < 1e-8 before float32 rounding); log2 via m in [sqrt(.5), sqrt(2)) and a degree-8
   least-squares polynomial in u = m - 1 (absolute error < 2e-8 before rounding), no division.
   Otherwise: double with libm pow/exp/expm1 and no FMA contraction (-ffp-contract=off), the
   same operations as the torch reference. */
#ifndef FELIF_MATH_H
#define FELIF_MATH_H
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef FELIF_F32
typedef float real;
static inline float exp2_fast(float x) {
    x = fminf(fmaxf(x, -126.0f), 126.0f);
    float r = rintf(x);
    float y = (x - r) * 0.69314718055994531f;
    float q = 1.0f + y * (1.0f + y * (0.5f + y * (0.16666666666666667f
              + y * (0.041666666666666667f + y * (0.0083333333333333333f
              + y * (0.0013888888888888889f + y * 0.00019841269841269841f))))));
    int32_t e = ((int32_t)r + 127) << 23;
    float s;
    memcpy(&s, &e, 4);
    return q * s;
}
static inline float log2_fast(float x) {  /* x > 0, normal */
    int32_t b;
    memcpy(&b, &x, 4);
    int32_t bi = b - 0x3f3504f3;             /* bits of sqrt(0.5) */
    int32_t e = bi >> 23;
    int32_t mb = (bi & 0x7fffff) + 0x3f3504f3;
    float m;
    memcpy(&m, &mb, 4);                       /* m in [sqrt(.5), sqrt(2)) */
    float u = m - 1.0f;                       /* degree-8 fit of log2(1+u)/u, |err| < 2e-8 */
    float q = 0.12614846591478454f;
    q = q * u - 0.2074210349121309f;
    q = q * u + 0.2156698590088408f;
    q = q * u - 0.2389203398389687f;
    q = q * u + 0.2879183244742678f;
    q = q * u - 0.360704828095771f;
    q = q * u + 0.48091060994503143f;
    q = q * u - 0.7213473333599011f;
    q = q * u + 1.442695003764732f;
    return (float)e + u * q;
}
#define LOG2E 1.4426950408889634f
static inline float r_exp(float x) { return exp2_fast(x * LOG2E); }
static inline float r_expm1(float x) { return exp2_fast(x * LOG2E) - 1.0f; }
static inline float r_min(float a, float b) { return fminf(a, b); }
static inline float r_max(float a, float b) { return fmaxf(a, b); }
static inline float r_abs(float a) { return fabsf(a); }
#else
typedef double real;
static inline double r_exp(double x) { return exp(x); }
static inline double r_expm1(double x) { return expm1(x); }
static inline double r_min(double a, double b) { return fmin(a, b); }
static inline double r_max(double a, double b) { return fmax(a, b); }
static inline double r_abs(double a) { return fabs(a); }
#endif

#endif
