"""Kernels compiled per signal rule: its bits, its signals, and its brute-force fused sweep.

A signal rule (:mod:`sep_research.signals.rules`) writes its scalar bodies once, in plain
Python (``math`` only, as :mod:`~sep_research.kernels.qfh`), in its own module, and names two
of them by role:

- ``rule_bit(close, j, bp, s) -> 0 | 1``: the bit of the move ``close[j] -> close[j+1]`` under
  the bit parameters ``bp[s, :]`` (a *bits rule*: its bits replace the spec's
  ``close[j+1] > close[j]``; everything after them is the seed rule's);
- ``rule_decide(g, k, i, fw, cv) -> (valid, action, confidence, hc)``: the signal of candle
  ``i`` under configuration ``g[k, :]`` from the rule's per-candle tables ``fw[q, col, i]`` and
  ``cv[q, i]`` (a *decision rule*); ``valid = 0`` where the candle has no features.

:func:`compile_rule` re-binds the rule's bodies together with the QFH bodies and the generic
drivers below (:func:`sep_research.kernels.loops.rebind`) and compiles them for one target:
``"python"`` (as written), ``"cpu"`` (numba, ``parallel=True`` drivers, cached on disk keyed
to every source file involved) or ``"cuda"`` (device functions and kernels). The drivers:

- :func:`rule_bits_into`: every series' bits (CPU or plain Python: cheap);
- :func:`rule_signals_into`: one configuration's signals (CPU or plain Python);
- :func:`rule_sweep_into` / ``rule_sweep_kernel``: the fused brute-force sweep of a decision
  rule. Counts as :func:`qfh.sweep_partial` defines them; the four pip sums are exact
  fixed-point sums (:mod:`~sep_research.kernels.fixed`), so CPU, GPU and plain Python give the
  same bits in any order or split of the candles and rows (candles per chunk change nothing).

A decision rule's sweep is the brute force (rows x candles): the threshold-space sweep of
:mod:`~sep_research.kernels.thresholds` needs the seed's decision (scores against thresholds
times vm, and the HC filter), which a rule with another decision does not have. A rule whose
decision *is* the seed's (a bits rule) is swept by :func:`sep_research.kernels.engine.
run_sweep` on its own feature columns, threshold-space included.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sep_research.kernels.fixed import (
    SCALE_SQ,
    SCALE_SUM,
    fixed_limbs,
    limbs_to_sums,
    store_partial,
)
from sep_research.kernels.qfh import G_MIN_MOVE, G_SPREAD, unpack_counts

prange = range
cuda = None  # numba.cuda in the namespace of the CUDA target


def rule_bit(close, j, bp, s):  # pragma: no cover - replaced by the rule's body
    raise NotImplementedError("rule_bit is bound to a rule's body by compile_rule")


def rule_decide(g, k, i, fw, cv):  # pragma: no cover - replaced by the rule's body
    raise NotImplementedError("rule_decide is bound to a rule's body by compile_rule")


# ---- scalar bodies ---------------------------------------------------------------------------

def action_step(act, hc, mv, sp, mm, extra):
    """:func:`qfh.sweep_step` for a decided signal (action +1/-1/0, hc 0/1): the packed count
    increments and the pips and pips**2 terms, rounded as there (a HOLD gives exact zeros)."""
    ib = 1 if act == 1 else 0
    isl = 1 if act == -1 else 0
    nh = ib + isl
    ok = ib * (1 if mv > mm else 0) + isl * (1 if mv < -mm else 0)
    h = nh * hc
    pips = (ib - isl) * mv - sp - extra
    pp = pips * pips
    fn = 1.0 * nh
    return (ok + (ib << 21) + (isl << 42), h + ((h * ok) << 21) + ((h * ib) << 42),
            pips * fn, pp * fn)


def decide_partial_exact(g, k, lo, hi, fw, cv):
    """Counts and exact limbs of row k over candles lo .. hi-1 (``hi - lo`` below 2**21):
    the 7 counts, then the 8 limbs of :func:`fixed.sweep_partial_exact`."""
    mm = g[k, G_MIN_MOVE]
    extra = g[k, G_SPREAD]
    pa = 0
    pb = 0
    s1h = 0
    s1l = 0
    s2h = 0
    s2l = 0
    h1h = 0
    h1l = 0
    h2h = 0
    h2l = 0
    for i in range(lo, hi):
        mv = cv[2, i]
        if math.isnan(mv):
            continue
        valid, act, _conf, hc = rule_decide(g, k, i, fw, cv)
        if valid == 0:
            continue
        da, db, d1, d2 = action_step(act, hc, mv, cv[3, i], mm, extra)
        a1, b1 = fixed_limbs(d1, SCALE_SUM)
        a2, b2 = fixed_limbs(d2, SCALE_SQ)
        hh = db & 1
        pa += da
        pb += db
        s1h += a1
        s1l += b1
        s2h += a2
        s2l += b2
        h1h += hh * a1
        h1l += hh * b1
        h2h += hh * a2
        h2l += hh * b2
    c = unpack_counts(pa, pb)
    return (c[0], c[1], c[2], c[3], c[4], c[5], c[6], s1h, s1l, s2h, s2l, h1h, h1l, h2h, h2l)


SCALAR_FUNCTIONS = ("action_step", "decide_partial_exact")


# ---- CPU drivers -----------------------------------------------------------------------------

def rule_bits_into(bits, close, bp):
    """bits[s, j] = rule_bit(close, j, bp, s) for every series s and move j."""
    ns = bits.shape[0]
    m = bits.shape[1]
    for idx in prange(ns * m):
        s = idx // m
        j = idx - s * m
        bits[s, j] = rule_bit(close, j, bp, s)


def rule_signals_into(action, confidence, hc, g, fw, cv):
    """Per-candle action (int8), confidence and hc (bool) of configuration g[0, :]."""
    n = action.shape[0]
    for i in prange(n):
        valid, a, c, h = rule_decide(g, 0, i, fw, cv)
        action[i] = a if valid == 1 else 0
        confidence[i] = c if valid == 1 else math.nan
        hc[i] = valid == 1 and h == 1


def rule_sweep_into(counts, sums, limbs, g, fw, cv, lo, hi, chunk):
    """The brute-force sweep: counts (7, K), sums (4, K) and limbs (8, K) (zeroed by the
    caller) of every row, chunk after chunk (integers: the chunking changes nothing)."""
    nk = g.shape[0]
    for k in prange(nk):
        a = lo
        while a < hi:
            b = min(a + chunk, hi)
            r = decide_partial_exact(g, k, a, b, fw, cv)
            for q in range(7):
                counts[q, k] += r[q]
            for q in range(8):
                limbs[q, k] += r[7 + q]
            a = b
        limbs_to_sums(sums, limbs, k)


DRIVERS = ("rule_bits_into", "rule_signals_into", "rule_sweep_into")


# ---- CUDA kernels (compiled per rule by compile_rule) ----------------------------------------

def rule_sweep_kernel(pc, pl, g, fw, cv, score_start, score_end, chunk):
    k = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    c = cuda.blockIdx.y
    if k >= g.shape[0]:
        return
    lo = score_start + c * chunk
    hi = min(lo + chunk, score_end)
    store_partial(pc, pl, c, k, decide_partial_exact(g, k, lo, hi, fw, cv))


KERNELS = ("rule_sweep_kernel",)

_HERE = Path(__file__).resolve().parent
_COMPILED: dict = {}
TARGETS = ("python", "cpu", "cuda")


def compile_rule(modules: tuple[str, ...], aliases: dict[str, str], target: str,
                 sources: tuple = ()) -> dict:
    """The namespace of a rule's bodies and the generic drivers compiled for ``target``.

    ``modules``: the rule's body modules (full names, each with ``SCALAR_FUNCTIONS``);
    ``aliases``: role -> body name (``{"rule_decide": "mtf_decide"}``); ``sources``: the files
    the rule's compiled code comes from (they key the disk caches, CPU and CUDA, with the
    kernels').
    Compiled once per process and target."""
    if target not in TARGETS:
        raise ValueError(f"target={target!r}: expected one of {', '.join(TARGETS)}")
    key = (tuple(modules), tuple(sorted(aliases.items())), target)
    if key in _COMPILED:
        return _COMPILED[key]
    from sep_research.kernels import loops

    this = globals()
    if target == "python":
        ns = loops.rebind(lambda name, f: f, drivers=False, modules=(*modules, __name__),
                          extra=tuple((n, this[n]) for n in DRIVERS))
    elif target == "cpu":
        import numba

        from sep_research.kernels import cache

        files = (*cache.SOURCE_FILES, _HERE / "rules.py",
                 *(Path(p).resolve() for p in sources))

        def decorate(name, f):
            disp = numba.njit(parallel=name in DRIVERS, cache=False, nogil=True)(f)
            return cache.attach(disp, files)

        ns = loops.rebind(decorate, numba.prange, drivers=False, modules=(*modules, __name__),
                          extra=tuple((n, this[n]) for n in DRIVERS))
    else:
        from numba import cuda as _cuda

        from sep_research.kernels import cache, cu

        files = (*cu.SOURCES, _HERE / "rules.py", *(Path(p).resolve() for p in sources))

        def decorate(name, f):
            if name in KERNELS:
                return cache.attach(_cuda.jit(f), files, target="cuda")
            return _cuda.jit(device=True)(f)

        ns = loops.rebind(decorate, drivers=False, modules=(*modules, __name__),
                          extra=tuple((n, this[n]) for n in KERNELS))
        ns["cuda"] = _cuda
    for role, name in aliases.items():
        if role not in ("rule_bit", "rule_decide"):
            raise ValueError(f"alias {role!r}: expected 'rule_bit' or 'rule_decide'")
        ns[role] = ns[name]
    _COMPILED[key] = ns
    return ns


def _blocks(total: int, block: int) -> int:
    return max(1, (total + block - 1) // block)


def bits(ns: dict, close: np.ndarray, bp: np.ndarray, target: str) -> np.ndarray:
    """Bits ``(n_series, n - 1)`` int8 of ``close`` under each row of ``bp`` (on the CPU or in
    plain Python: they are cheap, and the same on either)."""
    if target not in ("python", "cpu"):
        raise ValueError(f"target={target!r}: bits are computed on 'cpu' or 'python'")
    close = np.ascontiguousarray(close, dtype=np.float64)
    bp = np.ascontiguousarray(np.atleast_2d(bp), dtype=np.float64)
    out = np.zeros((bp.shape[0], max(0, close.shape[0] - 1)), dtype=np.int8)
    if out.size:
        ns["rule_bits_into"](out, close, bp)
    return out


def signals(ns: dict, g: np.ndarray, fw: np.ndarray, cv: np.ndarray,
            target: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(action int8, confidence float64, hc bool) per candle of configuration ``g[0]`` (on
    the CPU or in plain Python: one configuration)."""
    if target not in ("python", "cpu"):
        raise ValueError(f"target={target!r}: one configuration's signals run on 'cpu' or "
                         "'python'")
    g = np.ascontiguousarray(np.atleast_2d(g)[:1], dtype=np.float64)
    fw = np.ascontiguousarray(fw, dtype=np.float64)
    cv = np.ascontiguousarray(cv, dtype=np.float64)
    n = cv.shape[1]
    action = np.zeros(n, dtype=np.int8)
    conf = np.empty(n, dtype=np.float64)
    hc = np.zeros(n, dtype=np.bool_)
    ns["rule_signals_into"](action, conf, hc, g, fw, cv)
    return action, conf, hc


def sweep(ns: dict, g: np.ndarray, fw: np.ndarray, cv: np.ndarray, lo: int, hi: int,
          target: str, chunk: int = 8192, block: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """The brute-force sweep of a decision rule: (counts int64 (7, K), sums float64 (4, K))
    in the order of ``qfh.SWEEP_COUNTS`` and ``qfh.SWEEP_SUMS`` (exact sums)."""
    from sep_research.kernels import fixed, plan, qfh

    if not 1 <= int(chunk) < 2**21:
        raise ValueError(f"chunk={chunk}: must be in 1 .. 2**21 - 1 (the packed counters)")
    if not 1 <= int(block) <= 1024:
        raise ValueError(f"block={block}: CUDA block size must be in 1 .. 1024")
    g = np.ascontiguousarray(g, dtype=np.float64)
    fw = np.ascontiguousarray(fw, dtype=np.float64)
    cv = np.ascontiguousarray(cv, dtype=np.float64)
    lo, hi, chunk = int(lo), int(hi), int(chunk)
    k = g.shape[0]
    xmax, _ = plan.candle_limits(cv, lo, hi)
    tmax = xmax + np.abs(g[:, qfh.G_SPREAD])
    if not np.all(plan._range_ok(max(0, hi - lo), tmax)):
        raise ValueError("the sweep's pip sums could leave the exact fixed-point range "
                         "(moves, spreads or the extra spread are too large; see "
                         "sep_research.kernels.fixed)")
    counts = np.zeros((len(qfh.SWEEP_COUNTS), k), dtype=np.int64)
    sums = np.zeros((len(qfh.SWEEP_SUMS), k), dtype=np.float64)
    if k == 0 or hi <= lo:
        return counts, sums
    if target == "cuda":
        from sep_research.kernels import cu

        nchunks = (hi - lo + chunk - 1) // chunk
        d_pc = cu.cuda.device_array((len(qfh.SWEEP_COUNTS), nchunks, k), dtype=np.int64)
        d_pl = cu.cuda.device_array((fixed.N_LIMBS, nchunks, k), dtype=np.int64)
        d_counts = cu.cuda.device_array(counts.shape, dtype=np.int64)
        d_sums = cu.cuda.device_array(sums.shape, dtype=np.float64)
        d_limbs = cu.cuda.device_array((fixed.N_LIMBS, k), dtype=np.int64)
        with cu.no_fma():
            ns["rule_sweep_kernel"][(_blocks(k, block), nchunks), block](
                d_pc, d_pl, cu._to_device(g), cu._to_device(fw), cu._to_device(cv), lo, hi,
                chunk)
            cu.reduce_exact_kernel[_blocks(k, block), block](d_counts, d_sums, d_limbs, d_pc,
                                                             d_pl)
        cu.cuda.synchronize()
        return d_counts.copy_to_host(), d_sums.copy_to_host()
    limbs = np.zeros((fixed.N_LIMBS, k), dtype=np.int64)
    ns["rule_sweep_into"](counts, sums, limbs, g, fw, cv, lo, hi, chunk)
    return counts, sums
