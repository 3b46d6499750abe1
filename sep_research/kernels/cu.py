"""numba-cuda twins: the scalar bodies as device functions (``*_cu``) and the kernels.

Importing this module imports numba.cuda. The device functions come from the very same
source as the CPU and plain-Python versions (:mod:`sep_research.kernels.qfh`). Kernels:

- ``features_kernel`` / ``temporal_kernel``: one thread per (column, candle);
- ``sweep_kernel``: one thread per (configuration, chunk of candles); threads of a warp
  hold neighbouring configurations and read the same candle, so candle data is broadcast;
- ``reduce_kernel``: one thread per configuration adds the chunk partials in chunk order,
  exactly as the CPU driver does, so sums agree bit for bit when the inputs do.

Kernels are compiled without floating-point contraction (libNVVM ``-fma=0``) so that the
GPU rounds every product and sum like the CPU; only ``exp``, ``log2`` and ``sin``
(libdevice) may differ from the CPU's libm by an ulp or two.
"""

from __future__ import annotations

import contextlib

import numpy as np
from numba import cuda

from sep_research.kernels import qfh
from sep_research.kernels.loops import rebind

_NS = rebind(lambda name, f: cuda.jit(device=True)(f), drivers=False)

transition_counts_cu = _NS["transition_counts"]
entropy_of_counts_cu = _NS["entropy_of_counts"]
base_coherence_cu = _NS["base_coherence"]
damping_and_template_cu = _NS["damping_and_template"]
window_metrics_cu = _NS["window_metrics"]
candle_features_cu = _NS["candle_features"]
temporal_factor_at_cu = _NS["temporal_factor_at"]
signal_at_cu = _NS["signal_at"]
sweep_partial_cu = _NS["sweep_partial"]

F_TF = qfh.F_TF
FEATURE_BLOCK = 128


@contextlib.contextmanager
def no_fma():
    """Compile kernels inside this block with libNVVM's FMA contraction off."""
    try:
        from numba.cuda.cudadrv import nvvm
    except ImportError:  # the simulator has no NVVM
        nvvm = None
    if nvvm is None or not hasattr(nvvm, "compile_ir"):
        yield
        return
    orig = nvvm.compile_ir

    def compile_ir(llvmir, **options):
        if not options.get("fastmath"):
            options.setdefault("fma", False)
        return orig(llvmir, **options)

    nvvm.compile_ir = compile_ir
    try:
        yield
    finally:
        nvvm.compile_ir = orig


@cuda.jit
def features_kernel(out, bits, high, low, volume, windows, legacy, legacy_range, prm):
    ns = high.shape[0]
    n = high.shape[1]
    nw = windows.shape[0]
    idx = cuda.grid(1)
    if idx >= ns * nw * n:
        return
    col = idx // n
    i = idx - col * n
    s = col // nw
    w = col - s * nw
    candle_features_cu(out, col, i, bits[s], high[s], low[s], volume[s], n, windows[w],
                       legacy, legacy_range[s], prm)


@cuda.jit
def temporal_kernel(out, n, ncol, first, prm):
    idx = cuda.grid(1)
    if idx >= ncol * n:
        return
    col = idx // n
    i = idx - col * n
    out[F_TF, i, col] = temporal_factor_at_cu(out, col, i, first, prm)


@cuda.jit
def sweep_kernel(pc, ps, g, fw, cv, score_start, score_end, chunk):
    k = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    c = cuda.blockIdx.y
    if k >= g.shape[0]:
        return
    lo = score_start + c * chunk
    hi = min(lo + chunk, score_end)
    r = sweep_partial_cu(g, k, lo, hi, fw, cv)
    pc[0, c, k] = r[0]
    pc[1, c, k] = r[1]
    pc[2, c, k] = r[2]
    pc[3, c, k] = r[3]
    pc[4, c, k] = r[4]
    pc[5, c, k] = r[5]
    pc[6, c, k] = r[6]
    ps[0, c, k] = r[7]
    ps[1, c, k] = r[8]
    ps[2, c, k] = r[9]
    ps[3, c, k] = r[10]


@cuda.jit
def reduce_kernel(counts, sums, pc, ps):
    k = cuda.grid(1)
    if k >= counts.shape[1]:
        return
    nchunks = pc.shape[1]
    for q in range(counts.shape[0]):
        t = 0
        for c in range(nchunks):
            t += pc[q, c, k]
        counts[q, k] = t
    for q in range(sums.shape[0]):
        s = 0.0
        for c in range(nchunks):
            s = s + ps[q, c, k]
        sums[q, k] = s


def _to_device(a):
    # a C-ordered copy with canonical strides: a length-1 axis with stride 0 (from
    # a[None, :]) sends numba-cuda down a slow element-wise copy (seen: 2.5 s for 8 MB)
    return cuda.to_device(np.array(a, order="C"))


def _blocks(total: int, block: int) -> int:
    return max(1, (total + block - 1) // block)


def features_cu(bits, high, low, volume, windows, legacy, legacy_range, prm,
                block: int = FEATURE_BLOCK) -> np.ndarray:
    """GPU twin of ``loops.features_into``; returns the host array out[F_*, i, col]."""
    ns, n = high.shape
    nw = windows.shape[0]
    ncol = ns * nw
    d_out = cuda.device_array((qfh.N_FEATURES, n, ncol), dtype=np.float64)
    d_in = [_to_device(a) for a in (bits, high, low, volume, windows, legacy_range, prm)]
    total = ncol * n
    first = qfh.first_feature_candle(legacy)
    with no_fma():
        features_kernel[_blocks(total, block), block](
            d_out, d_in[0], d_in[1], d_in[2], d_in[3], d_in[4], legacy, d_in[5], d_in[6])
        temporal_kernel[_blocks(total, block), block](d_out, n, ncol, first, d_in[6])
    cuda.synchronize()
    return d_out.copy_to_host()


def sweep_device(d_g, d_fw, d_cv, score_start: int, score_end: int, chunk: int,
                 block: int = 128):
    """The sweep on device arrays; returns device arrays (counts (7, K), sums (4, K))."""
    k = d_g.shape[0]
    nchunks = max(0, (score_end - score_start + chunk - 1) // chunk)
    if nchunks == 0:
        return (cuda.to_device(np.zeros((len(qfh.SWEEP_COUNTS), k), dtype=np.int64)),
                cuda.to_device(np.zeros((len(qfh.SWEEP_SUMS), k), dtype=np.float64)))
    d_counts = cuda.device_array((len(qfh.SWEEP_COUNTS), k), dtype=np.int64)
    d_sums = cuda.device_array((len(qfh.SWEEP_SUMS), k), dtype=np.float64)
    d_pc = cuda.device_array((len(qfh.SWEEP_COUNTS), nchunks, k), dtype=np.int64)
    d_ps = cuda.device_array((len(qfh.SWEEP_SUMS), nchunks, k), dtype=np.float64)
    with no_fma():
        grid = (_blocks(k, block), nchunks)
        sweep_kernel[grid, block](d_pc, d_ps, d_g, d_fw, d_cv, score_start, score_end, chunk)
        reduce_kernel[_blocks(k, block), block](d_counts, d_sums, d_pc, d_ps)
    return d_counts, d_sums


def sweep_cu(g, fw, cv, score_start: int, score_end: int, chunk: int, block: int = 128):
    """GPU twin of ``loops.sweep_into``: host arrays in, (counts, sums) host arrays out."""
    d_counts, d_sums = sweep_device(_to_device(g), _to_device(fw), _to_device(cv),
                                    score_start, score_end, chunk, block)
    cuda.synchronize()
    return d_counts.copy_to_host(), d_sums.copy_to_host()
