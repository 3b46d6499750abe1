"""Loop drivers over the scalar bodies of :mod:`~sep_research.kernels.qfh`,
:mod:`~sep_research.kernels.fixed` and :mod:`~sep_research.kernels.thresholds` (CPU paths):
features, one configuration's signals, the fused brute-force sweep (float sums: the
reference; or exact fixed-point sums), and the threshold-space sweep.

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

from sep_research.kernels.fixed import (
    SCALE_SQ,
    SCALE_SUM,
    exact_step,
    fixed_limbs,
    limbs_to_sums,
)
from sep_research.kernels.qfh import (
    F_TF,
    G_BUY,
    G_COH,
    G_CONF,
    G_MIN_MOVE,
    G_SELL,
    G_SPREAD,
    G_WC,
    G_WE,
    G_WINDOW_INDEX,
    G_WS,
    candle_features,
    first_feature_candle,
    seed_scores,
    signal_at,
    sweep_step,
    temporal_factor_at,
    unpack_counts,
)
from sep_research.kernels.thresholds import (
    A_HB,
    A_HS,
    A_WB,
    A_WS,
    TG_E_N,
    TG_E_OFF,
    candle_bins,
    cum_axis,
    flat_index,
    gather_row,
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


def scores_into(sc, g, k, lo, hi, fw, cv):
    """Scratch rows for candles lo .. hi-1 of row k's window and weights: sc[0] buy, sc[1]
    sell, sc[2] coherence, sc[3] vm, sc[4] move, sc[5] spread. A candle without features
    or label gets NaN scores (so no signal) and zero move and spread, which makes every
    one of its count and sum increments an exact zero, as the scalar body's skip does."""
    w = int(g[k, G_WINDOW_INDEX])
    ws = g[k, G_WS]
    wc = g[k, G_WC]
    we = g[k, G_WE]
    for i in range(lo, hi):
        j = i - lo
        mv = cv[2, i]
        if fw[0, w, i] == 0.0 or math.isnan(mv):
            sc[0, j] = math.nan
            sc[1, j] = math.nan
            sc[2, j] = 0.0
            sc[3, j] = 1.0
            sc[4, j] = 0.0
            sc[5, j] = 0.0
            continue
        buy, sell = seed_scores(fw[1, w, i], fw[2, w, i], fw[3, w, i], cv[0, i], fw[4, w, i],
                                ws, wc, we)
        sc[0, j] = buy
        sc[1, j] = sell
        sc[2, j] = fw[2, w, i]
        sc[3, j] = cv[1, i]
        sc[4, j] = mv
        sc[5, j] = cv[3, i]


def sweep_partial_scored(g, k, lo, hi, sc):
    """:func:`qfh.sweep_partial` of row k from the scratch rows of :func:`scores_into`
    (written for a row with the same window and weights): the same arithmetic in the same
    order, so the same results bit for bit; no branch in the loop."""
    bt = g[k, G_BUY]
    st = g[k, G_SELL]
    ct = g[k, G_CONF]
    cht = g[k, G_COH]
    mm = g[k, G_MIN_MOVE]
    extra = g[k, G_SPREAD]
    pa = 0
    pb = 0
    s1 = 0.0
    s2 = 0.0
    h1 = 0.0
    h2 = 0.0
    for j in range(hi - lo):
        da, db, d1, d2, d3, d4 = sweep_step(sc[0, j], sc[1, j], sc[2, j], sc[4, j], sc[3, j],
                                            sc[5, j], bt, st, ct, cht, mm, extra)
        pa += da
        pb += db
        s1 = s1 + d1
        s2 = s2 + d2
        h1 = h1 + d3
        h2 = h2 + d4
    c = unpack_counts(pa, pb)
    return c[0], c[1], c[2], c[3], c[4], c[5], c[6], s1, s2, h1, h2


def _same_scores(g, a, b):
    return (g[a, G_WINDOW_INDEX] == g[b, G_WINDOW_INDEX] and g[a, G_WS] == g[b, G_WS]
            and g[a, G_WC] == g[b, G_WC] and g[a, G_WE] == g[b, G_WE])


def sweep_into(counts, sums, g, fw, cv, score_start, score_end, chunk):
    """Fused sweep: counts[7, K] and sums[4, K] (zeroed by the caller) for every grid row.

    The scored range is cut into chunks of ``chunk`` candles from ``score_start``; each
    chunk's partial sums are added to the total in chunk order, exactly as the CUDA
    version reduces them, so both give the same floating-point result. Rows are taken in
    blocks of 16 per chunk, so that a chunk's candle data stay in cache; within a block,
    rows with the same window and weights (sort the grid by them) share the chunk's
    buy/sell scores and labels, computed once into a scratch buffer of 6 x chunk values
    (no per-configuration signal array is ever stored).
    """
    nk = g.shape[0]
    kb = 16
    nblocks = (nk + kb - 1) // kb
    for b in prange(nblocks):
        k0 = b * kb
        k1 = min(k0 + kb, nk)
        sc = np.empty((6, max(1, min(chunk, score_end - score_start))))
        lo = score_start
        while lo < score_end:
            hi = min(lo + chunk, score_end)
            for k in range(k0, k1):
                if k == k0 or not _same_scores(g, k, k - 1):
                    scores_into(sc, g, k, lo, hi, fw, cv)
                r = sweep_partial_scored(g, k, lo, hi, sc)
                _add_partial(counts, sums, k, r[0], r[1], r[2], r[3], r[4], r[5], r[6],
                             r[7], r[8], r[9], r[10])
            lo = hi


def period_net_into(out, g, fw, cv, edges, hc_only):
    """Per-period traded net pips of every grid row in one pass: ``out[p, k]`` is the sum, in
    candle order from zero, of row k's ``sum_pips_net`` increments (``hc_only``: its
    ``hc_sum_pips_net`` increments) over candles ``edges[p] <= i < edges[p + 1]``; the
    increments of :func:`qfh.sweep_step`, so each period's figure is what a float sweep of
    that period gives. A row's figures depend on that row and the candles alone. What the
    overfitting statistics read (PBO blocks, SPA periods), hundreds of short ranges at once.
    """
    nk = g.shape[0]
    n_per = edges.shape[0] - 1
    lo = edges[0]
    hi = edges[n_per]
    kb = 16
    nblocks = (nk + kb - 1) // kb
    for b in prange(nblocks):
        k0 = b * kb
        k1 = min(k0 + kb, nk)
        sc = np.empty((6, max(1, hi - lo)))
        for k in range(k0, k1):
            if k == k0 or not _same_scores(g, k, k - 1):
                scores_into(sc, g, k, lo, hi, fw, cv)
            bt = g[k, G_BUY]
            st = g[k, G_SELL]
            ct = g[k, G_CONF]
            cht = g[k, G_COH]
            mm = g[k, G_MIN_MOVE]
            extra = g[k, G_SPREAD]
            for p in range(n_per):
                s = 0.0
                for i in range(edges[p], edges[p + 1]):
                    j = i - lo
                    r = sweep_step(sc[0, j], sc[1, j], sc[2, j], sc[4, j], sc[3, j],
                                   sc[5, j], bt, st, ct, cht, mm, extra)
                    s = s + (r[4] if hc_only else r[2])
                out[p, k] = s


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


# ---- exact fixed-point sums (sep_research.kernels.fixed) --------------------------------------

def sweep_partial_scored_exact(g, k, lo, hi, sc):
    """:func:`fixed.sweep_partial_exact` of row k from the scratch rows of :func:`scores_into`:
    7 counts and 8 limbs, the same integers (a skipped candle adds exact zeros)."""
    bt = g[k, G_BUY]
    st = g[k, G_SELL]
    ct = g[k, G_CONF]
    cht = g[k, G_COH]
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
    for j in range(hi - lo):
        da, db, a1, b1, a2, b2, hc = exact_step(sc[0, j], sc[1, j], sc[2, j], sc[4, j],
                                                sc[3, j], sc[5, j], bt, st, ct, cht, mm, extra)
        pa += da
        pb += db
        s1h += a1
        s1l += b1
        s2h += a2
        s2l += b2
        h1h += hc * a1
        h1l += hc * b1
        h2h += hc * a2
        h2l += hc * b2
    c = unpack_counts(pa, pb)
    return (c[0], c[1], c[2], c[3], c[4], c[5], c[6], s1h, s1l, s2h, s2l, h1h, h1l, h2h, h2l)


def sweep_exact_into(counts, sums, limbs, g, fw, cv, score_start, score_end, chunk):
    """:func:`sweep_into` with exact fixed-point sums: ``limbs`` (8, K) int64 zeroed by the
    caller; ``sums`` (4, K) is written from them at the end. Chunks and blocks as there; the
    integers do not depend on either."""
    nk = g.shape[0]
    kb = 16
    nblocks = (nk + kb - 1) // kb
    for b in prange(nblocks):
        k0 = b * kb
        k1 = min(k0 + kb, nk)
        sc = np.empty((6, max(1, min(chunk, score_end - score_start))))
        lo = score_start
        while lo < score_end:
            hi = min(lo + chunk, score_end)
            for k in range(k0, k1):
                if k == k0 or not _same_scores(g, k, k - 1):
                    scores_into(sc, g, k, lo, hi, fw, cv)
                r = sweep_partial_scored_exact(g, k, lo, hi, sc)
                for q in range(7):
                    counts[q, k] += r[q]
                limbs[0, k] += r[7]
                limbs[1, k] += r[8]
                limbs[2, k] += r[9]
                limbs[3, k] += r[10]
                limbs[4, k] += r[11]
                limbs[5, k] += r[12]
                limbs[6, k] += r[13]
                limbs[7, k] += r[14]
            lo = hi
        for k in range(k0, k1):
            limbs_to_sums(sums, limbs, k)


# ---- threshold-space sweep (sep_research.kernels.thresholds) ----------------------------------

def tscatter_group(h, q, lo, hi, tg, tw, tv, td, fw, cv):
    """Add candles lo .. hi-1 to group q's histograms (one thread per group: no races).
    Every valid candle goes to the BUY and the SELL histograms (see thresholds)."""
    eoff = tg[q, TG_E_OFF]
    ne = tg[q, TG_E_N]
    for i in range(lo, hi):
        ok, nb, ns, cb, cs, hh, mp, mn, xb, xs = candle_bins(q, i, tg, tw, tv, fw, cv)
        if ok == 0:
            continue
        h[flat_index(td, q, A_HB, nb, cb, hh, mp, 0, 0)] += 1
        h[flat_index(td, q, A_HS, nb, ns, cs, hh, mn, 0)] += 1
        for e in range(ne):
            ex = tv[eoff + e]
            t = xb - ex
            a1, b1 = fixed_limbs(t, SCALE_SUM)
            a2, b2 = fixed_limbs(t * t, SCALE_SQ)
            j = flat_index(td, q, A_WB, e, nb, cb, hh, 0, 0)
            h[j] += a1
            h[j + 1] += b1
            h[j + 2] += a2
            h[j + 3] += b2
            t = xs - ex
            a1, b1 = fixed_limbs(t, SCALE_SUM)
            a2, b2 = fixed_limbs(t * t, SCALE_SQ)
            j = flat_index(td, q, A_WS, e, nb, ns, cs, hh, 0)
            h[j] += a1
            h[j + 1] += b1
            h[j + 2] += a2
            h[j + 3] += b2


def tsweep_into(counts, sums, h, tg, tw, tv, td, tp, rows, fw, cv, lo, hi):
    """Threshold-space sweep of the groups in ``tg`` over candles lo .. hi-1 (see
    :mod:`~sep_research.kernels.thresholds`): ``h`` is the zeroed int64 workspace; writes
    counts[:, k] and sums[:, k] for every k in rows[0]."""
    ng = tg.shape[0]
    for q in prange(ng):
        tscatter_group(h, q, lo, hi, tg, tw, tv, td, fw, cv)
        for p in range(tp.shape[0]):
            cum_axis(h, td, q, tp[p, 0], tp[p, 1], tp[p, 2])
    for r in prange(rows.shape[1]):
        gather_row(counts, sums, r, rows, td, h)


DRIVERS = ("features_into", "signals_into", "scores_into", "sweep_partial_scored",
           "_same_scores", "_add_partial", "sweep_into", "sweep_partial_scored_exact",
           "sweep_exact_into", "tscatter_group", "tsweep_into", "period_net_into")
#: the drivers that numba compiles with parallel=True
PARALLEL_DRIVERS = ("features_into", "signals_into", "sweep_into", "sweep_exact_into",
                    "tsweep_into", "period_net_into")
#: the modules of scalar bodies, in dependency order; each lists its SCALAR_FUNCTIONS
BODY_MODULES = ("qfh", "fixed", "thresholds")


def rebind(decorate, prange_impl=range, drivers: bool = True, *, modules: tuple = (),
           extra: tuple = ()) -> dict:
    """Copies of the scalar bodies (and drivers) whose globals point at decorated twins.

    ``decorate(name, func)`` returns the compiled function (``numba.njit(func)``,
    ``cuda.jit(device=True)(func)``, ...). Returns the shared namespace: name -> compiled.
    The bodies of every module in :data:`BODY_MODULES` share one namespace (their globals
    merged), so a call from one body to another, across modules too, stays compiled.
    ``modules``: further modules of scalar bodies (full names, each listing its
    ``SCALAR_FUNCTIONS``; a signal rule's), merged into the same namespace after these, so
    that their bodies call the QFH bodies compiled. ``extra``: further ``(name, function)``
    pairs decorated last (drivers compiled per rule, :mod:`sep_research.kernels.rules`).
    """
    import importlib
    import types

    ns: dict = {}
    names: list = []
    sources: dict = {}
    full = tuple(f"sep_research.kernels.{m}" for m in BODY_MODULES) + tuple(modules)
    for modname in full:
        mod = importlib.import_module(modname)
        ns.update({k: v for k, v in vars(mod).items() if not k.startswith("__")})
        for name in mod.SCALAR_FUNCTIONS:
            if name in sources:
                raise ValueError(f"scalar body {name!r} is defined twice")
            names.append(name)
            sources[name] = getattr(mod, name)
    ns["np"] = np
    ns["math"] = math
    ns["prange"] = prange_impl
    later = []
    if drivers:
        this = globals()
        later += [(name, this[name]) for name in DRIVERS]
    later += list(extra)
    for name, f in later:
        if name in sources:
            raise ValueError(f"driver {name!r} is defined twice")
        names.append(name)
        sources[name] = f
    for name in names:
        f = sources[name]
        g = types.FunctionType(f.__code__, ns, f.__name__, f.__defaults__, f.__closure__)
        g.__qualname__ = f.__qualname__
        g.__module__ = f.__module__
        g.__doc__ = f.__doc__
        ns[name] = decorate(name, g)
    return ns
