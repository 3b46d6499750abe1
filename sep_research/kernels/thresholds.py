"""Threshold-space sweep: scalar bodies (plain Python, ``math`` only; compiled like qfh).

Configurations that share (window, w_s, w_c, w_e) -- a *group* -- share every per-candle
score: buy, sell, coherence, vm, the label move and the spread. They differ only in
thresholds: buy ``B``, sell ``S``, confidence ``C``, coherence ``H``, minimum move ``M`` and
extra spread ``E``. Over the sorted distinct values of each, a candle's decisions are
prefixes:

- BUY for buy-threshold index ``b < nb``, ``nb`` = how many ``B[j]`` have
  ``buy > B[j] * vm`` (:func:`count_gt_scaled`, a binary search that evaluates exactly the
  brute force's expression; ``B[j] * vm`` is non-decreasing in ``j`` for ``vm >= 0``);
- SELL for ``b >= nb`` and ``s < ns``, ``ns`` from ``sell > S[j] * vm``;
- confidence ``c < cb`` (BUY: ``buy >= C[j]``) or ``c < cs`` (SELL: ``sell >= C[j]``);
  coherence ``h < hh`` (``coh >= H[j]``); correct ``m < mp`` (BUY: ``mv > M[j]``) or
  ``m < mn`` (SELL: ``mv < -M[j]``).

So one pass over the candles adds each candle at one cell of a few small histograms indexed
by (nb, cb, hh, mp) for BUY and (nb, ns, cs, hh, mn) for SELL (counts), and (e, nb, cb, hh) /
(e, nb, ns, cs, hh) for the pip sums. Every valid candle is added to both (no branch): a
candle with ``nb = 0`` lands in the BUY histograms' slot 0 of that axis, which the suffix sums
read at ``b + 1 >= 1`` never include; ``nb = nB`` or ``ns = 0`` land in SELL slots that the
prefix sum read at ``b <= nB - 1`` and the suffix sums read at ``s + 1 >= 1`` never include
(fixed-point limbs of :mod:`~sep_research.kernels.fixed`, the terms ``(+-mv - sp) - E[e]`` rounded
exactly as the brute force rounds them). Cumulative sums over the histograms (suffix sums, prefix
over nb for SELL) then hold, at cell (b + 1, c + 1, h + 1, m + 1) or (b, s + 1, ...), every
configuration's counts and sums; index 0 of a suffix-summed axis means "any". Work per group:
O(candles x |E| + cells + rows) instead of O(candles x rows); all integer, so any order (GPU
atomics included) gives the same bits.

Tables (built by :mod:`~sep_research.kernels.plan`, int64 unless said):

- ``tg[q, TG_*]``: group q's window index, and offset and count of each threshold field's
  sorted distinct values in ``tv`` (float64);
- ``tw[q, 0:3]`` (float64): the group's w_s, w_c, w_e;
- ``td[q, a, 0]``: offset of histogram ``a`` (``A_*``) in the workspace ``h``;
  ``td[q, a, 1:7]``: its six dimensions (row-major, padded with 1);
- ``tp[p] = (a, axis, suffix)``: the cumulative-sum passes, the same for every group;
- ``rows[:, r] = (k, q, b, s, c, h, m, e)``: output column and threshold indices of row r
  (one row of ``rows`` per field, so that neighbouring GPU threads read neighbouring words).
"""

from __future__ import annotations

import math

from sep_research.kernels.fixed import INV_SQ, INV_SUM, fixed_value
from sep_research.kernels.qfh import seed_scores

TG_WINDOW = 0
TG_B_OFF = 1
TG_B_N = 2
TG_S_OFF = 3
TG_S_N = 4
TG_C_OFF = 5
TG_C_N = 6
TG_H_OFF = 7
TG_H_N = 8
TG_M_OFF = 9
TG_M_N = 10
TG_E_OFF = 11
TG_E_N = 12
N_TG = 13

A_HB = 0  # BUY counts   (nB + 1, nC + 1, nH + 1, nM + 1)
A_HS = 1  # SELL counts  (nB + 1, nS + 1, nC + 1, nH + 1, nM + 1)
A_WB = 2  # BUY limbs    (nE, nB + 1, nC + 1, nH + 1, 4)
A_WS = 3  # SELL limbs   (nE, nB + 1, nS + 1, nC + 1, nH + 1, 4)
N_ARRAYS = 4
N_DIMS = 6

R_K = 0
R_GROUP = 1
R_B = 2
R_S = 3
R_C = 4
R_H = 5
R_M = 6
R_E = 7
N_R = 8

#: up to this many values, a count is a branch-free scan (every comparison evaluated);
#: beyond, a binary search. Either counts exactly the j whose comparison holds.
LINEAR_MAX = 16


def count_gt_scaled(x, tv, off, n, vm):
    """How many j in 0..n-1 have ``x > tv[off + j] * vm`` (a prefix of j: binary search)."""
    if n <= LINEAR_MAX:
        c = 0
        for j in range(n):
            c += 1 if x > tv[off + j] * vm else 0
        return c
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) // 2
        if x > tv[off + mid] * vm:
            lo = mid + 1
        else:
            hi = mid
    return lo


def count_ge(x, tv, off, n):
    """How many j have ``x >= tv[off + j]`` (a prefix of the sorted values)."""
    if n <= LINEAR_MAX:
        c = 0
        for j in range(n):
            c += 1 if x >= tv[off + j] else 0
        return c
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) // 2
        if x >= tv[off + mid]:
            lo = mid + 1
        else:
            hi = mid
    return lo


def count_gt(x, tv, off, n):
    """How many j have ``x > tv[off + j]``."""
    if n <= LINEAR_MAX:
        c = 0
        for j in range(n):
            c += 1 if x > tv[off + j] else 0
        return c
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) // 2
        if x > tv[off + mid]:
            lo = mid + 1
        else:
            hi = mid
    return lo


def count_lt_neg(x, tv, off, n):
    """How many j have ``x < -tv[off + j]`` (a prefix: -tv decreases)."""
    if n <= LINEAR_MAX:
        c = 0
        for j in range(n):
            c += 1 if x < -tv[off + j] else 0
        return c
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) // 2
        if x < -tv[off + mid]:
            lo = mid + 1
        else:
            hi = mid
    return lo


def candle_bins(q, i, tg, tw, tv, fw, cv):
    """Where candle i falls among group q's thresholds.

    Returns (valid, nb, ns, cb, cs, hh, mp, mn, xb, xs); valid = 0 for a candle without
    features or label (the brute force skips it). ``xb = mv - sp`` and ``xs = -mv - sp`` are
    the pips of a BUY and a SELL before the extra spread, rounded as the brute force's
    ``(ib - isl) * mv - sp``.
    """
    w = tg[q, TG_WINDOW]
    mv = cv[2, i]
    if fw[0, w, i] == 0.0 or math.isnan(mv):
        return 0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0
    coh = fw[2, w, i]
    buy, sell = seed_scores(fw[1, w, i], coh, fw[3, w, i], cv[0, i], fw[4, w, i],
                            tw[q, 0], tw[q, 1], tw[q, 2])
    vm = cv[1, i]
    nb = count_gt_scaled(buy, tv, tg[q, TG_B_OFF], tg[q, TG_B_N], vm)
    ns = count_gt_scaled(sell, tv, tg[q, TG_S_OFF], tg[q, TG_S_N], vm)
    cb = count_ge(buy, tv, tg[q, TG_C_OFF], tg[q, TG_C_N])
    cs = count_ge(sell, tv, tg[q, TG_C_OFF], tg[q, TG_C_N])
    hh = count_ge(coh, tv, tg[q, TG_H_OFF], tg[q, TG_H_N])
    mp = count_gt(mv, tv, tg[q, TG_M_OFF], tg[q, TG_M_N])
    mn = count_lt_neg(mv, tv, tg[q, TG_M_OFF], tg[q, TG_M_N])
    sp = cv[3, i]
    return 1, nb, ns, cb, cs, hh, mp, mn, mv - sp, -mv - sp


def flat_index(td, q, a, i0, i1, i2, i3, i4, i5):
    """Workspace index of cell (i0, .., i5) of histogram a of group q (row-major)."""
    j = i0
    j = j * td[q, a, 2] + i1
    j = j * td[q, a, 3] + i2
    j = j * td[q, a, 4] + i3
    j = j * td[q, a, 5] + i4
    j = j * td[q, a, 6] + i5
    return td[q, a, 0] + j


def n_lines(td, q, a, axis):
    """Number of lines along ``axis`` of histogram a of group q."""
    total = 1
    for d in range(N_DIMS):
        total *= td[q, a, 1 + d]
    return total // td[q, a, 1 + axis]


def cum_line(h, td, q, a, axis, suffix, line):
    """In-place cumulative sum of one line along ``axis`` (suffix sum if ``suffix`` else
    prefix) of histogram a of group q; ``line`` in 0 .. n_lines - 1."""
    n = td[q, a, 1 + axis]
    inner = 1
    for d in range(axis + 1, N_DIMS):
        inner *= td[q, a, 1 + d]
    o = line // inner
    base = td[q, a, 0] + o * n * inner + (line - o * inner)
    s = 0
    if suffix == 1:
        for j in range(n - 1, -1, -1):
            idx = base + j * inner
            s += h[idx]
            h[idx] = s
    else:
        for j in range(n):
            idx = base + j * inner
            s += h[idx]
            h[idx] = s


def cum_axis(h, td, q, a, axis, suffix):
    """:func:`cum_line` over every line of ``axis`` at once (the same integers): rows of the
    axis are added to their neighbour a whole inner block at a time (the CPU's loop order)."""
    n = td[q, a, 1 + axis]
    inner = 1
    for d in range(axis + 1, N_DIMS):
        inner *= td[q, a, 1 + d]
    outer = 1
    for d in range(axis):
        outer *= td[q, a, 1 + d]
    base0 = td[q, a, 0]
    for o in range(outer):
        base = base0 + o * n * inner
        if suffix == 1:
            for j in range(n - 2, -1, -1):
                row = base + j * inner
                for r in range(row, row + inner):
                    h[r] += h[r + inner]
        else:
            for j in range(1, n):
                row = base + j * inner
                for r in range(row, row + inner):
                    h[r] += h[r - inner]


def gather_row(counts, sums, r, rows, td, h):
    """Counts and sums of threshold row r from the summed histograms, into column
    rows[R_K, r] of counts (7, K) and sums (4, K)."""
    k = rows[R_K, r]
    q = rows[R_GROUP, r]
    b = rows[R_B, r]
    s = rows[R_S, r]
    c = rows[R_C, r] + 1
    hh = rows[R_H, r] + 1
    m = rows[R_M, r] + 1
    e = rows[R_E, r]
    n_buy = h[flat_index(td, q, A_HB, b + 1, 0, 0, 0, 0, 0)]
    buy_ok = h[flat_index(td, q, A_HB, b + 1, 0, 0, m, 0, 0)]
    hc_buy = h[flat_index(td, q, A_HB, b + 1, c, hh, 0, 0, 0)]
    hc_buy_ok = h[flat_index(td, q, A_HB, b + 1, c, hh, m, 0, 0)]
    n_sell = h[flat_index(td, q, A_HS, b, s + 1, 0, 0, 0, 0)]
    sell_ok = h[flat_index(td, q, A_HS, b, s + 1, 0, 0, m, 0)]
    hc_sell = h[flat_index(td, q, A_HS, b, s + 1, c, hh, 0, 0)]
    hc_sell_ok = h[flat_index(td, q, A_HS, b, s + 1, c, hh, m, 0)]
    counts[0, k] = n_buy + n_sell
    counts[1, k] = buy_ok + sell_ok
    counts[2, k] = n_buy
    counts[3, k] = n_sell
    counts[4, k] = hc_buy + hc_sell
    counts[5, k] = hc_buy_ok + hc_sell_ok
    counts[6, k] = hc_buy
    ja = flat_index(td, q, A_WB, e, b + 1, 0, 0, 0, 0)
    jb = flat_index(td, q, A_WS, e, b, s + 1, 0, 0, 0)
    sums[0, k] = fixed_value(h[ja] + h[jb], h[ja + 1] + h[jb + 1], INV_SUM)
    sums[1, k] = fixed_value(h[ja + 2] + h[jb + 2], h[ja + 3] + h[jb + 3], INV_SQ)
    ja = flat_index(td, q, A_WB, e, b + 1, c, hh, 0, 0)
    jb = flat_index(td, q, A_WS, e, b, s + 1, c, hh, 0)
    sums[2, k] = fixed_value(h[ja] + h[jb], h[ja + 1] + h[jb + 1], INV_SUM)
    sums[3, k] = fixed_value(h[ja + 2] + h[jb + 2], h[ja + 3] + h[jb + 3], INV_SQ)


#: The scalar bodies, callees first; loops.rebind compiles these with the others.
SCALAR_FUNCTIONS = ("count_gt_scaled", "count_ge", "count_gt", "count_lt_neg", "candle_bins",
                    "flat_index", "n_lines", "cum_line", "cum_axis", "gather_row")
