"""numba-cuda twins: the scalar bodies as device functions (``*_cu``) and the kernels.

Importing this module imports numba.cuda. The device functions come from the very same
source as the CPU and plain-Python versions (:mod:`sep_research.kernels.qfh`). Kernels:

- ``features_kernel`` / ``temporal_kernel``: one thread per (column, candle);
  ``gather_table_kernel``: the features the sweep reads, in its layout, so only they are
  copied to the host;
- ``sweep_kernel``: one thread per (configuration, chunk of candles); threads of a warp
  hold neighbouring configurations and read the same candle, so candle data is broadcast;
- ``reduce_kernel``: one thread per configuration adds the chunk partials in chunk order,
  exactly as the CPU driver does, so sums agree bit for bit when the inputs do;
- ``sweep_exact_kernel`` / ``reduce_exact_kernel``: the same with exact fixed-point sums
  (:mod:`~sep_research.kernels.fixed`): integer partials, any order, the same bits;
- ``tscatter_kernel``: the threshold-space sweep (:mod:`~sep_research.kernels.thresholds`),
  one thread per (group, candle) adding the candle to its group's histograms with integer
  atomics (exact, so their order does not matter); ``tcum_kernel``: one thread per line of
  one cumulative-sum pass; ``tgather_kernel``: one thread per configuration.

:func:`sweep_planned_cu` runs a :class:`sep_research.kernels.plan.SweepPlan` (every method)
with the candle arrays copied to the device once.

Kernels are cached on disk like the CPU drivers (:func:`sep_research.kernels.cache.attach`
with ``target="cuda"``, keyed to the bytes of every kernel source and this file), so a second
process launches them without compiling.

Kernels are compiled without floating-point contraction (libNVVM ``-fma=0``) so that the
GPU rounds every product and sum like the CPU; only ``exp``, ``log2`` and ``sin``
(libdevice) may differ from the CPU's libm by an ulp or two.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from numba import cuda

from sep_research.kernels import cache, fixed, qfh, thresholds
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
sweep_partial_exact_cu = _NS["sweep_partial_exact"]
limbs_to_sums_cu = _NS["limbs_to_sums"]
store_partial_cu = _NS["store_partial"]
fixed_limbs_cu = _NS["fixed_limbs"]
candle_bins_cu = _NS["candle_bins"]
flat_index_cu = _NS["flat_index"]
n_lines_cu = _NS["n_lines"]
cum_line_cu = _NS["cum_line"]
gather_row_cu = _NS["gather_row"]

F_TF = qfh.F_TF
FEATURE_BLOCK = 128
A_HB = thresholds.A_HB
A_HS = thresholds.A_HS
A_WB = thresholds.A_WB
A_WS = thresholds.A_WS
TG_E_OFF = thresholds.TG_E_OFF
TG_E_N = thresholds.TG_E_N
SCALE_SUM = fixed.SCALE_SUM
SCALE_SQ = fixed.SCALE_SQ
N_LIMBS = fixed.N_LIMBS


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


@cuda.jit
def sweep_exact_kernel(pc, pl, g, fw, cv, score_start, score_end, chunk):
    k = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    c = cuda.blockIdx.y
    if k >= g.shape[0]:
        return
    lo = score_start + c * chunk
    hi = min(lo + chunk, score_end)
    store_partial_cu(pc, pl, c, k, sweep_partial_exact_cu(g, k, lo, hi, fw, cv))


@cuda.jit
def reduce_exact_kernel(counts, sums, limbs, pc, pl):
    k = cuda.grid(1)
    if k >= counts.shape[1]:
        return
    nchunks = pc.shape[1]
    for q in range(counts.shape[0]):
        t = 0
        for c in range(nchunks):
            t += pc[q, c, k]
        counts[q, k] = t
    for q in range(limbs.shape[0]):
        t = 0
        for c in range(nchunks):
            t += pl[q, c, k]
        limbs[q, k] = t
    limbs_to_sums_cu(sums, limbs, k)


@cuda.jit
def zero_kernel(a):
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] = 0


@cuda.jit
def tscatter_kernel(h, tg, tw, tv, td, fw, cv, lo, n, qfast):
    idx = cuda.grid(1)
    nq = tg.shape[0]
    if idx >= nq * n:
        return
    if qfast:  # neighbouring threads: the same candle, different groups
        i = idx // nq
        q = idx - i * nq
        i += lo
    else:  # neighbouring threads: the same group, neighbouring candles
        q = idx // n
        i = lo + idx - q * n
    ok, nb, ns, cb, cs, hh, mp, mn, xb, xs = candle_bins_cu(q, i, tg, tw, tv, fw, cv)
    if ok == 0:
        return
    cuda.atomic.add(h, flat_index_cu(td, q, A_HB, nb, cb, hh, mp, 0, 0), 1)
    cuda.atomic.add(h, flat_index_cu(td, q, A_HS, nb, ns, cs, hh, mn, 0), 1)
    eoff = tg[q, TG_E_OFF]
    for e in range(tg[q, TG_E_N]):
        ex = tv[eoff + e]
        t = xb - ex
        a1, b1 = fixed_limbs_cu(t, SCALE_SUM)
        a2, b2 = fixed_limbs_cu(t * t, SCALE_SQ)
        j = flat_index_cu(td, q, A_WB, e, nb, cb, hh, 0, 0)
        cuda.atomic.add(h, j, a1)
        cuda.atomic.add(h, j + 1, b1)
        cuda.atomic.add(h, j + 2, a2)
        cuda.atomic.add(h, j + 3, b2)
        t = xs - ex
        a1, b1 = fixed_limbs_cu(t, SCALE_SUM)
        a2, b2 = fixed_limbs_cu(t * t, SCALE_SQ)
        j = flat_index_cu(td, q, A_WS, e, nb, ns, cs, hh, 0)
        cuda.atomic.add(h, j, a1)
        cuda.atomic.add(h, j + 1, b1)
        cuda.atomic.add(h, j + 2, a2)
        cuda.atomic.add(h, j + 3, b2)


@cuda.jit
def tcum_kernel(h, td, a, axis, suffix, max_lines):
    idx = cuda.grid(1)
    q = idx // max_lines
    if q >= td.shape[0]:
        return
    line = idx - q * max_lines
    if line >= n_lines_cu(td, q, a, axis):
        return
    cum_line_cu(h, td, q, a, axis, suffix, line)


@cuda.jit
def tgather_kernel(counts, sums, rows, td, h):
    r = cuda.grid(1)
    if r < rows.shape[1]:
        gather_row_cu(counts, sums, r, rows, td, h)


#: device -> host copies of at least this many bytes go through a pinned staging buffer.
#: Measured on one H200 VM (512 MiB, bench/results/sweep-methods-*-h200.md): device -> host
#: 3.6-4.1 GB/s staged against 3.3-3.6 pageable; host -> device 6.3 staged against 8.2
#: pageable, so copies to the device stay pageable.
STAGED_COPY_MIN_BYTES = 16 << 20
STAGE_BYTES = 32 << 20
_STAGES: dict = {}


@cuda.jit
def gather_table_kernel(tab, feat, rows):
    """tab[j, col, i] = feat[rows[j], i, col]: one thread per output element (writes
    coalesced along i)."""
    t = cuda.grid(1)
    nj, ncol, n = tab.shape
    if t < nj * ncol * n:
        i = t % n
        r = t // n
        col = r % ncol
        j = r // ncol
        tab[j, col, i] = feat[rows[j], i, col]


#: the files this module's kernels are compiled from (they key the kernels' disk cache)
SOURCES = (*cache.SOURCE_FILES, Path(__file__).resolve())
KERNELS = (features_kernel, temporal_kernel, sweep_kernel, reduce_kernel, sweep_exact_kernel,
           reduce_exact_kernel, zero_kernel, tscatter_kernel, tcum_kernel, tgather_kernel,
           gather_table_kernel)
for _k in KERNELS:
    cache.attach(_k, SOURCES, target="cuda")


def _stage(n: int, dtype):
    """A pinned host buffer of at least n elements of dtype (kept for the next copy)."""
    key = np.dtype(dtype).str
    buf = _STAGES.get(key)
    if buf is None or buf.size < n:
        buf = cuda.pinned_array(n, dtype=dtype)
        _STAGES[key] = buf
    return buf


def _canonical(a: np.ndarray) -> bool:
    """C-contiguous with the strides numpy gives a new array (a length-1 axis of stride 0,
    as from a[None, :], is C-contiguous but not canonical)."""
    step = a.itemsize
    for n, st in zip(reversed(a.shape), reversed(a.strides), strict=True):
        if st != step:
            return False
        step *= n
    return True


def _to_device(a):
    # copied only when its strides are not canonical: a length-1 axis with stride 0 (from
    # a[None, :]) sends numba-cuda down a slow element-wise copy (seen: 2.5 s for 8 MB); a
    # needless host copy cost 512 MiB at 2.4 GB/s against 8.9 GB/s sent as is (one H200)
    a = np.asarray(a)
    return cuda.to_device(a if _canonical(a) else np.array(a, order="C"))


def _to_host(d) -> np.ndarray:
    """Device array -> new host array, large ones through the pinned staging buffer."""
    if d.nbytes < STAGED_COPY_MIN_BYTES:
        return d.copy_to_host()
    out = np.empty(d.shape, dtype=d.dtype)
    dst = out.reshape(d.size)
    flat = d.reshape(d.size)
    step = max(1, STAGE_BYTES // d.dtype.itemsize)
    buf = _stage(step, d.dtype)
    for i in range(0, d.size, step):
        j = min(i + step, d.size)
        flat[i:j].copy_to_host(buf[: j - i])
        dst[i:j] = buf[: j - i]
    return out


def _blocks(total: int, block: int) -> int:
    return max(1, (total + block - 1) // block)


def _features_device(bits, high, low, volume, windows, legacy, legacy_range, prm, block):
    """The features kernel's output on the device, d_out[F_*, i, col]."""
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
    return d_out


def features_cu(bits, high, low, volume, windows, legacy, legacy_range, prm,
                block: int = FEATURE_BLOCK) -> np.ndarray:
    """GPU twin of ``loops.features_into``; returns the host array out[F_*, i, col]."""
    d_out = _features_device(bits, high, low, volume, windows, legacy, legacy_range, prm,
                             block)
    cuda.synchronize()
    return _to_host(d_out)


def feature_table_cu(bits, high, low, volume, windows, legacy, legacy_range, prm, rows,
                     block: int = FEATURE_BLOCK) -> np.ndarray:
    """The features ``rows`` in the sweep's layout, out[j, col, i] (host array): gathered on
    the device, so that only they come back."""
    d_feat = _features_device(bits, high, low, volume, windows, legacy, legacy_range, prm,
                              block)
    _, n, ncol = d_feat.shape
    d_tab = cuda.device_array((rows.shape[0], ncol, n), dtype=np.float64)
    total = rows.shape[0] * ncol * n
    gather_table_kernel[_blocks(total, block), block](d_tab, d_feat, _to_device(rows))
    cuda.synchronize()
    return _to_host(d_tab)


def sweep_device(d_g, d_fw, d_cv, score_start: int, score_end: int, chunk: int,
                 block: int = 128, exact: bool = False):
    """The brute-force sweep on device arrays; returns device arrays (counts (7, K), sums
    (4, K)). ``exact``: fixed-point sums (:mod:`~sep_research.kernels.fixed`)."""
    k = d_g.shape[0]
    nchunks = max(0, (score_end - score_start + chunk - 1) // chunk)
    if nchunks == 0:
        return (cuda.to_device(np.zeros((len(qfh.SWEEP_COUNTS), k), dtype=np.int64)),
                cuda.to_device(np.zeros((len(qfh.SWEEP_SUMS), k), dtype=np.float64)))
    d_counts = cuda.device_array((len(qfh.SWEEP_COUNTS), k), dtype=np.int64)
    d_sums = cuda.device_array((len(qfh.SWEEP_SUMS), k), dtype=np.float64)
    d_pc = cuda.device_array((len(qfh.SWEEP_COUNTS), nchunks, k), dtype=np.int64)
    if exact:
        d_pl = cuda.device_array((N_LIMBS, nchunks, k), dtype=np.int64)
        d_limbs = cuda.device_array((N_LIMBS, k), dtype=np.int64)
        with no_fma():
            grid = (_blocks(k, block), nchunks)
            sweep_exact_kernel[grid, block](d_pc, d_pl, d_g, d_fw, d_cv, score_start,
                                            score_end, chunk)
            reduce_exact_kernel[_blocks(k, block), block](d_counts, d_sums, d_limbs, d_pc,
                                                          d_pl)
        return d_counts, d_sums
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


#: thread mapping of tscatter_kernel: True = neighbouring threads take different groups of
#: one candle (fewer atomics on one address per warp), False = neighbouring candles of one
#: group (coalesced candle reads). Measured on one H200 (bench/results/sweep-*-h200.md):
#: True is 2.7x faster on 1e6 configurations x 1e6 candles (7.2 against 19.5 ms) and 9x on
#: the training grid (19 against 177 ms): neighbouring candles fall in the same cells, and
#: atomics on one address serialise.
SCATTER_GROUP_FASTEST = True


def tsweep_device(batch, d_fw, d_cv, lo: int, hi: int, d_counts, d_sums, block: int = 128,
                  qfast: bool | None = None) -> None:
    """Threshold-space sweep of one plan batch into the device arrays d_counts (7, K) and
    d_sums (4, K) (only the batch's rows are written)."""
    qfast = SCATTER_GROUP_FASTEST if qfast is None else bool(qfast)
    n = max(0, hi - lo)
    nq = batch.tg.shape[0]
    d_h = cuda.device_array(max(1, batch.cells), dtype=np.int64)
    d_tg, d_tw, d_tv, d_td, d_rows = (_to_device(a) for a in (batch.tg, batch.tw, batch.tv,
                                                              batch.td, batch.rows))
    dims = batch.td[:, :, 1:]
    with no_fma():
        zero_kernel[_blocks(d_h.shape[0], 256), 256](d_h)
        if n > 0:
            tscatter_kernel[_blocks(nq * n, block), block](d_h, d_tg, d_tw, d_tv, d_td, d_fw,
                                                           d_cv, lo, n, qfast)
        for a, axis, suffix in batch.tp:
            lines = int((dims[:, a, :].prod(axis=1) // dims[:, a, axis]).max())
            tcum_kernel[_blocks(nq * lines, 128), 128](d_h, d_td, int(a), int(axis),
                                                       int(suffix), lines)
        tgather_kernel[_blocks(batch.rows.shape[1], block), block](d_counts, d_sums, d_rows,
                                                                    d_td, d_h)


def sweep_planned_cu(p, g, fw, cv, lo: int, hi: int, chunk: int, block: int = 128,
                     qfast: bool | None = None):
    """Run a :class:`~sep_research.kernels.plan.SweepPlan` on the GPU: host arrays in,
    (counts (7, K), sums (4, K)) host arrays out."""
    k = g.shape[0]
    counts = np.zeros((len(qfh.SWEEP_COUNTS), k), dtype=np.int64)
    sums = np.zeros((len(qfh.SWEEP_SUMS), k), dtype=np.float64)
    d_fw, d_cv = _to_device(fw), _to_device(cv)
    for rows, exact in ((p.brute, False), (p.exact, True)):
        if rows.size == 0:
            continue
        dc, ds = sweep_device(_to_device(g[rows]), d_fw, d_cv, lo, hi, chunk, block, exact)
        counts[:, rows] = dc.copy_to_host()
        sums[:, rows] = ds.copy_to_host()
    if p.batches:
        if p.brute.size or p.exact.size:  # the gather writes the threshold rows only
            d_counts, d_sums = _to_device(counts), _to_device(sums)
        else:  # all rows are threshold rows: nothing to send
            d_counts = cuda.device_array(counts.shape, dtype=counts.dtype)
            d_sums = cuda.device_array(sums.shape, dtype=sums.dtype)
        for b in p.batches:
            tsweep_device(b, d_fw, d_cv, lo, hi, d_counts, d_sums, block, qfast)
        cuda.synchronize()
        counts, sums = _to_host(d_counts), _to_host(d_sums)
    return counts, sums
