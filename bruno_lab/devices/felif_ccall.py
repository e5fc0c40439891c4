"""Build (once, cached) and call the C fine-window kernel of the FeLIF neuron through ctypes.

The C source below is a line-by-line transcription of ``felif.felif_euler_step`` (with the
per-neuron constants precomputed by ``felif_fast.kernel_constants`` from the ``fecap`` functions).
It is compiled with gcc at first use into ``$BRUNO_LAB_CACHE`` (default ``~/.cache/bruno_lab``),
keyed by a hash of the source, the flags and the CPU's flags; later processes load the cached
``.so`` (the one-time build takes about a second). ``run`` returns ``None`` when no kernel can be
built, and the caller falls back to the torch loop (logged once).
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import logging
import os
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>
#define BLK 128
/* constants order: k_c k_d e_a soft_e alpha tau0 ps area i0a v_t i_dsc ctot v_thr */

/* float32 fast math: 2^x by range reduction to [-0.5, 0.5] and a degree-7 Taylor polynomial
   of e^y (rel. error < 1e-8 before rounding); log2 via m in [sqrt(.5), sqrt(2)) and a degree-8
   least-squares polynomial in u = m - 1 (abs. error < 2e-8 before rounding), no division. Both
   branch-free so gcc vectorizes them. */
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

void felif_window_f32(int64_t n, int64_t g0, int64_t np, const float *cur, float *v, float *p,
                      const float *c,
                      int64_t n_steps, double dt_d, int32_t *step_out) {
    const float dt = (float)dt_d, L2E = 1.4426950408889634f, VC = 5.0f;
    const float XMAX = 80.0f, LEAKMAX = 40.0f;
    for (int64_t b0 = 0; b0 < n; b0 += BLK) {
        int m = (int)((n - b0) < BLK ? (n - b0) : BLK);
        float V[BLK], P[BLK], I[BLK], KC[BLK], KD[BLK], LEA[BLK], SO[BLK], AL[BLK], IT[BLK],
              PS[BLK], AR[BLK], I0[BLK], IVT[BLK], ID[BLK], ICT[BLK], TH[BLK];
        int32_t ST[BLK], DN[BLK];
        for (int i = 0; i < BLK; i++) {
            int j = i < m ? i : 0;
            int64_t g = b0 + j, q = (g0 + g) % np;   /* q: this neuron's constants */
            V[i] = v[g]; P[i] = p[g]; I[i] = cur[g];
            KC[i] = c[0*np+q]; KD[i] = c[1*np+q]; LEA[i] = log2f(c[2*np+q]); SO[i] = c[3*np+q];
            AL[i] = c[4*np+q]; IT[i] = 1.0f / c[5*np+q]; PS[i] = c[6*np+q]; AR[i] = c[7*np+q];
            I0[i] = c[8*np+q]; IVT[i] = 1.0f / c[9*np+q]; ID[i] = c[10*np+q];
            ICT[i] = 1.0f / c[11*np+q]; TH[i] = c[12*np+q];
            DN[i] = (V[i] >= TH[i]) ? -1 : 0;   /* frozen: all bits set */
            ST[i] = (V[i] >= TH[i]) ? 0 : -1;   /* spike micro-step, -1 for none yet */
        }
        for (int64_t k = 0; k < n_steps; k++) {
            int32_t live = 0, kk = (int32_t)k;
            for (int i = 0; i < BLK; i++) {
                float v0 = V[i], p0 = P[i];
                float E = v0 * KC[i] - p0 * KD[i];
                float x = exp2_fast(AL[i] * (LEA[i] - log2_fast(fabsf(E) + SO[i])));
                x = fminf(x, XMAX);
                float rate = exp2_fast(-x * L2E) * IT[i];
                float sg_e = (float)(E > 0.0f) - (float)(E < 0.0f);
                float pn = p0 + dt * ((sg_e * PS[i] - p0) * rate);
                pn = fminf(fmaxf(pn, -PS[i]), PS[i]);
                float arg = fminf(v0 * IVT[i], LEAKMAX);
                float sg_v = (float)(v0 > 0.0f) - (float)(v0 < 0.0f);
                float leak = (I0[i] * (exp2_fast(arg * L2E) - 1.0f) + ID[i]) * sg_v;
                /* = v0 + dt*(I - leak - AR*(pn - p0)/dt)/Ctot, without the division */
                float vn = v0 + (dt * (I[i] - leak) - AR[i] * (pn - p0)) * ICT[i];
                vn = fminf(fmaxf(vn, -VC), VC);
                int32_t done = DN[i];                  /* 0 or -1 (all bits) */
                V[i] = done ? v0 : vn;
                P[i] = done ? p0 : pn;
                int32_t now = (~done) & -(int32_t)(vn >= TH[i]);
                ST[i] = now ? kk : ST[i];
                DN[i] = done | now;
                live |= ~DN[i];
            }
            if (live == 0) break;
        }
        for (int i = 0; i < m; i++) { v[b0+i] = V[i]; p[b0+i] = P[i]; step_out[b0+i] = ST[i]; }
    }
}
"""

_SOURCE_F64 = r"""
#include <math.h>
#include <stdint.h>
#define X_MAX 80.0
#define LEAK_EXP_MAX 40.0
#define V_CLIP 5.0
/* float64: libm functions, no fast-math, no FMA contraction: the reference's operations. */
void felif_window_f64(int64_t n, int64_t g0, int64_t np, const double *cur, double *v,
                      double *p, const double *c,
                      int64_t n_steps, double dt, int32_t *step_out) {
    for (int64_t g = 0; g < n; g++) {
        int64_t q = (g0 + g) % np;
        double kc = c[0*np+q], kd = c[1*np+q], ea = c[2*np+q], so = c[3*np+q], al = c[4*np+q];
        double tau0 = c[5*np+q], ps = c[6*np+q], ar = c[7*np+q], i0a = c[8*np+q], vt = c[9*np+q];
        double idsc = c[10*np+q], ct = c[11*np+q], th = c[12*np+q], I = cur[g];
        double V = v[g], P = p[g];
        int32_t st = V >= th ? 0 : -1;
        if (st < 0) for (int64_t k = 0; k < n_steps; k++) {
            double E = V * kc - P * kd;
            double x = pow(ea / (fabs(E) + so), al);
            x = x > X_MAX ? X_MAX : x;
            double rate = exp(-x) / tau0;
            double tgt = E > 0.0 ? ps : (E < 0.0 ? -ps : 0.0);
            double pn = P + dt * ((tgt - P) * rate);
            pn = fmin(fmax(pn, -ps), ps);
            double arg = V / vt; arg = arg > LEAK_EXP_MAX ? LEAK_EXP_MAX : arg;
            double sg = V > 0.0 ? 1.0 : (V < 0.0 ? -1.0 : 0.0);
            double leak = (i0a * expm1(arg) + idsc) * sg;
            double ip = ar * (pn - P) / dt;
            double vn = V + dt * (I - leak - ip) / ct;
            vn = vn > V_CLIP ? V_CLIP : (vn < -V_CLIP ? -V_CLIP : vn);
            V = vn; P = pn;
            if (V >= th) { st = (int32_t)k; break; }
        }
        v[g] = V; p[g] = P; step_out[g] = st;
    }
}
"""

_FLAGS = {
    "f32": ["-O3", "-march=native", "-ffast-math", "-mrecip", "-fPIC", "-shared"],
    "f64": ["-O2", "-march=native", "-ffp-contract=off", "-fPIC", "-shared"],
}
_lock = threading.Lock()
_libs: dict[str, ctypes.CDLL | None] = {}
_warned = False
_pool: ThreadPoolExecutor | None = None


def _cache_dir() -> Path:
    root = os.environ.get("BRUNO_LAB_CACHE") or Path.home() / ".cache" / "bruno_lab"
    path = Path(root) / "felif_kernel"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return os.uname().machine


def _build(kind: str) -> ctypes.CDLL:
    source = _SOURCE if kind == "f32" else _SOURCE_F64
    flags = _FLAGS[kind]
    key = hashlib.sha256(
        (source + " ".join(flags) + "split-link" + _cpu_flags()).encode()
    ).hexdigest()[:16]
    so_path = _cache_dir() / f"felif_{kind}_{key}.so"
    if not so_path.exists():
        with tempfile.TemporaryDirectory(dir=_cache_dir()) as tmp:
            c_path = Path(tmp) / "k.c"
            c_path.write_text(source)
            tmp_so = Path(tmp) / "k.so"
            o_path = Path(tmp) / "k.o"
            # Compile and link apart: gcc 12 links crtfastmath.o into a -ffast-math shared
            # library, and loading it would set flush-to-zero for the whole process.
            compile_flags = [f for f in flags if f != "-shared"]
            cmd = ["gcc", *compile_flags, "-c", str(c_path), "-o", str(o_path)]
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
            cmd = ["gcc", "-shared", str(o_path), "-o", str(tmp_so), "-lm"]
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
            os.replace(tmp_so, so_path)  # atomic: concurrent builders never see half a file
        log.info("built FeLIF %s kernel %s", kind, so_path)
    lib = ctypes.CDLL(str(so_path))
    fn = getattr(lib, f"felif_window_{kind}")
    ptr = ctypes.c_void_p
    i64 = ctypes.c_int64
    fn.argtypes = [i64, i64, i64, ptr, ptr, ptr, ptr, i64, ctypes.c_double, ptr]
    fn.restype = None
    return lib


def kernel(kind: str) -> ctypes.CDLL | None:
    """The loaded kernel library for ``"f32"`` or ``"f64"``, building it on first use."""
    global _warned
    with _lock:
        if kind not in _libs:
            try:
                _libs[kind] = _build(kind)
            except (OSError, subprocess.SubprocessError) as exc:
                detail = getattr(exc, "stderr", "") or str(exc)
                if not _warned:
                    log.warning("FeLIF C kernel unavailable (%s); using the torch loop", detail)
                    _warned = True
                _libs[kind] = None
        return _libs[kind]


def run(
    cur: Tensor, v: Tensor, pol: Tensor, params: object, n_steps: int, dt_s: float, shape
) -> tuple[Tensor, Tensor, Tensor] | None:
    """Run the kernel in place on contiguous copies; None if no kernel is available."""
    from bruno_lab.devices.felif_fast import kernel_constant_rows

    kind = "f32" if v.dtype == torch.float32 else "f64"
    lib = kernel(kind)
    if lib is None:
        return None
    fn = getattr(lib, f"felif_window_{kind}")
    n = v.numel()
    c, n_par = kernel_constant_rows(params, shape, v.dtype)
    cur_c = cur.reshape(-1).contiguous()
    v_c = v.reshape(-1).contiguous()
    p_c = pol.reshape(-1).contiguous()
    step = torch.empty(n, dtype=torch.int32)
    n_threads = max(1, min(torch.get_num_threads(), n // 256))
    if n_threads == 1 or n == 0:
        _call(fn, 0, n, n_par, cur_c, v_c, p_c, c, n_steps, dt_s, step)
    else:
        # a few chunks per thread, so a thread the OS descheduled does not hold up the window
        n_chunks = max(n_threads, min(4 * n_threads, n // 2048))
        bounds = [(i * n // n_chunks) // 128 * 128 for i in range(n_chunks)] + [n]
        pairs = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
        pool = _executor(n_threads)
        futures = [
            pool.submit(_call, fn, a, b, n_par, cur_c, v_c, p_c, c, n_steps, dt_s, step)
            for a, b in pairs
        ]
        for f in futures:
            f.result()
    return v_c.reshape(shape), p_c.reshape(shape), step.to(torch.int64).reshape(shape)


def _executor(n_threads: int) -> ThreadPoolExecutor:
    """One pool of worker threads per process (idle threads cost nothing; they end with it)."""
    global _pool
    with _lock:
        if _pool is None or _pool._max_workers < n_threads:
            _pool = ThreadPoolExecutor(n_threads, thread_name_prefix="felif-kernel")
        return _pool


def _call(fn, a, b, n_par, cur, v, p, c, n_steps, dt_s, step) -> None:
    """Neurons [a, b) of the flattened state (pointers offset; constants indexed globally)."""
    if b <= a:
        return
    isz = cur.element_size()
    fn(
        b - a,
        a,
        n_par,
        cur.data_ptr() + a * isz,
        v.data_ptr() + a * isz,
        p.data_ptr() + a * isz,
        c.data_ptr(),
        n_steps,
        float(dt_s),
        step.data_ptr() + a * 4,
    )
