"""Loop drivers over the scalar bodies of :mod:`sep_research.kernels.qfh` (CPU paths).

Plain Python with ``prange = range``; :mod:`sep_research.kernels.nb` re-binds ``prange`` to
``numba.prange`` and compiles these with ``parallel=True``. The CUDA twins live in
:mod:`sep_research.kernels.cu` (one thread per element instead of a loop).

Array layouts (all C-contiguous):

- ``bits`` (n_series, n-1) int8; ``high``, ``low``, ``volume`` (n_series, n) float64;
- ``windows`` (n_windows,) int64; ``legacy_range`` (n_series,) float64; ``prm`` (N_PARAMS,);
- ``out`` (N_FEATURES, n, n_series * n_windows) float64, column = series * n_windows + window.
"""

from __future__ import annotations

import math

import numpy as np

from sep_research.kernels.qfh import (
    F_TF,
    candle_features,
    first_feature_candle,
    signal_at,
    sweep_partial,
    temporal_factor_at,
)

prange = range


def features_into(out, bits, high, low, volume, windows, legacy, legacy_range, prm):
    """Fill out[F_*, i, col] for every candle, series and window length."""
    ns = high.shape[0]
    n = high.shape[1]
    nw = windows.shape[0]
    total = ns * nw * n
    for idx in prange(total):
        col = idx // n
        i = idx - col * n
        s = col // nw
        w = col - s * nw
        candle_features(out, col, i, bits[s], high[s], low[s], volume[s], n, windows[w],
                        legacy, legacy_range[s], prm)
    first = first_feature_candle(legacy)
    for idx in prange(total):
        col = idx // n
        i = idx - col * n
        out[F_TF, i, col] = temporal_factor_at(out, col, i, first, prm)


def signals_into(action, confidence, hc, feat, col, ws, wc, we, bt, st, ct, cht):
    """Per-candle action (int8), confidence and hc flag of one configuration."""
    n = action.shape[0]
    for i in prange(n):
        a, c, h = signal_at(i, col, feat, ws, wc, we, bt, st, ct, cht)
        action[i] = a
        confidence[i] = c
        hc[i] = h


def sweep_into(counts, sums, g, fw, cv, score_start, score_end, chunk):
    """Fused sweep: counts[7, K] and sums[4, K] (zeroed by the caller) for every grid row.

    The scored range is cut into chunks of ``chunk`` candles from ``score_start``; each
    chunk's partial sums are added to the total in chunk order, exactly as the CUDA
    version reduces them, so both give the same floating-point result. Rows are taken in
    blocks of 16 per chunk, so that a chunk's candle data stay in cache.
    """
    nk = g.shape[0]
    kb = 16
    nblocks = (nk + kb - 1) // kb
    for b in prange(nblocks):
        k0 = b * kb
        k1 = min(k0 + kb, nk)
        lo = score_start
        while lo < score_end:
            hi = min(lo + chunk, score_end)
            for k in range(k0, k1):
                r = sweep_partial(g, k, lo, hi, fw, cv)
                _add_partial(counts, sums, k, r[0], r[1], r[2], r[3], r[4], r[5], r[6],
                             r[7], r[8], r[9], r[10])
            lo = hi


def _add_partial(counts, sums, k, c0, c1, c2, c3, c4, c5, c6, f0, f1, f2, f3):
    counts[0, k] += c0
    counts[1, k] += c1
    counts[2, k] += c2
    counts[3, k] += c3
    counts[4, k] += c4
    counts[5, k] += c5
    counts[6, k] += c6
    sums[0, k] = sums[0, k] + f0
    sums[1, k] = sums[1, k] + f1
    sums[2, k] = sums[2, k] + f2
    sums[3, k] = sums[3, k] + f3


DRIVERS = ("features_into", "signals_into", "_add_partial", "sweep_into")


def rebind(decorate, prange_impl=range, drivers: bool = True) -> dict:
    """Copies of the scalar bodies (and drivers) whose globals point at decorated twins.

    ``decorate(name, func)`` returns the compiled function (``numba.njit(func)``,
    ``cuda.jit(device=True)(func)``, ...). Returns the shared namespace: name -> compiled.
    """
    import types

    from sep_research.kernels import qfh

    ns: dict = dict(vars(qfh))
    ns["np"] = np
    ns["math"] = math
    ns["prange"] = prange_impl
    names = list(qfh.SCALAR_FUNCTIONS)
    sources = {name: getattr(qfh, name) for name in names}
    if drivers:
        this = globals()
        for name in DRIVERS:
            names.append(name)
            sources[name] = this[name]
    for name in names:
        f = sources[name]
        g = types.FunctionType(f.__code__, ns, f.__name__, f.__defaults__, f.__closure__)
        g.__qualname__ = f.__qualname__
        g.__module__ = f.__module__
        g.__doc__ = f.__doc__
        ns[name] = decorate(name, g)
    return ns
