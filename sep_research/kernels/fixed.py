"""Exact fixed-point pip sums of the sweep, and the brute force that accumulates them.

Scalar bodies in the style of :mod:`sep_research.kernels.qfh` (plain Python, ``math`` only),
compiled for the CPU by :mod:`~sep_research.kernels.nb` and for the GPU by
:mod:`~sep_research.kernels.cu` through :func:`sep_research.kernels.loops.rebind`.

**Why.** The fused brute force (:func:`qfh.sweep_partial`) adds its float64 pip terms in
candle order, so its sums depend on the order of the additions. The threshold-space sweep
(:mod:`~sep_research.kernels.thresholds`) adds the same terms in another order (through a
histogram and cumulative sums whose shape depends on the threshold values present), and GPU
atomics have no order at all. To give every path the same bits, the engine's default
(``method="auto"``) accumulates every sum exactly, in integers:

- each per-candle term ``t`` (``pips * fn``, ``pips**2 * fn``, ... exactly as the brute force
  rounds it in float64) is quantised to ``q = round(t * 2**Q) / 2**Q`` (:func:`fixed_limbs`;
  ``|q - t| <= 2**-Q``, the rounding is ``floor(f + 0.5)`` of the exact fraction ``f``),
  held as two int64 limbs ``hi * 2**32 + lo`` with ``0 <= lo <= 2**32``;
- limbs are added as integers (associative and exact: any order, any split of the candles or
  of the grid, CPU or GPU, atomics included, gives the same integers);
- the total is turned into one float64 once, correctly rounded (:func:`fixed_value`).

``Q = Q_SUM = 44`` for the pip sums (quantum 5.7e-14 pip) and ``Q = Q_SQ = 36`` for the sums
of squares (quantum 1.5e-11 pip^2).

**Rounding bound.** For a configuration over a range of ``m`` scored candles, let ``t_i`` be
the brute force's float64 terms of the ``n <= m`` candles that contribute to a sum, and
``A = sum |t_i|``. The exact result ``s_x`` and the brute force's ``s_b`` satisfy

    |s_x - sum t_i| <= u * (A + n * 2**-Q) + n * 2**-Q
    |s_b - sum t_i| <= gamma(m + 1) * A          (chunked in-order float64 summation)
    |s_x - s_b|     <= (gamma(m + 1) + u) * A + (1 + u) * n * 2**-Q

with ``u = 2**-53`` and ``gamma(k) = k u / (1 - k u)``; :func:`sum_bound` evaluates the last
line and the tests assert it on real data.

**Range.** Exact while every partial sum of ``hi`` limbs stays below 2**52 in magnitude (so
that it converts to float64 exactly) and the ``lo`` limbs below 2**63:
``m * (t_max * 2**(Q - 32) + 1) < 2**52`` and ``m < 2**30``, with ``t_max`` the largest
``|t|`` (:func:`exact_range_ok`). For pip sums that is ``m * t_max < 2**40``; for squares
``m * t_max**2 < 2**48`` (one million candles: moves and spreads under 16 000 pips). The
engine checks this before it chooses an exact path, and otherwise falls back to the float
brute force for the configurations concerned.
"""

from __future__ import annotations

import math

from sep_research.kernels.qfh import (
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
    seed_scores,
    sweep_step,
    unpack_counts,
)

Q_SUM = 44
Q_SQ = 36
SCALE_SUM = 2.0**Q_SUM
SCALE_SQ = 2.0**Q_SQ
INV_SUM = 2.0**-Q_SUM
INV_SQ = 2.0**-Q_SQ
LIMB = 4294967296.0  # 2**32
LIMB_INV = 2.0**-32
LIMB_MASK = 4294967295
#: limbs per sweep output: (hi, lo) of sum_pips_net, sum_pips_net_sq, hc_sum_pips_net,
#: hc_sum_pips_net_sq, in the order of qfh.SWEEP_SUMS
N_LIMBS = 8
U = 2.0**-53


def fixed_limbs(t, scale):
    """(hi, lo) int limbs of round(t * scale): hi * 2**32 + lo, 0 <= lo <= 2**32.

    ``t * scale`` is exact (a power of two); ``hi`` is its floor over 2**32 and the fraction
    ``f = v - hi * 2**32`` (in [0, 2**32)) is exact too, so only ``floor(f + 0.5)`` rounds.
    """
    v = t * scale
    # int(): the same integer type whether floor returns an int (CPU) or a float
    hi = int(math.floor(v * LIMB_INV))  # noqa: RUF046
    f = v - hi * LIMB
    lo = int(math.floor(f + 0.5))  # noqa: RUF046
    return hi, lo


def fixed_value(hi, lo, inv_scale):
    """The float64 nearest to (hi * 2**32 + lo) * inv_scale (lo >= 0; |hi| small enough)."""
    carry = lo >> 32
    h = hi + carry
    low = lo - (carry << 32)
    return (float(h) * LIMB + float(low)) * inv_scale


def exact_step(buy, sell, coh, mv, vm, sp, bt, st, ct, cht, mm, extra):
    """:func:`qfh.sweep_step` with the sum increments as fixed-point limbs.

    Returns (packed counts a, packed counts b, hi, lo of pips * fn, hi, lo of pips**2 * fn,
    hc): the HC sums' increments are these limbs times ``hc`` (0 or 1; hc implies non-HOLD).
    """
    da, db, d1, d2, _d3, _d4 = sweep_step(buy, sell, coh, mv, vm, sp, bt, st, ct, cht, mm, extra)
    a1, b1 = fixed_limbs(d1, SCALE_SUM)
    a2, b2 = fixed_limbs(d2, SCALE_SQ)
    return da, db, a1, b1, a2, b2, db & 1


def sweep_partial_exact(g, k, lo, hi, fw, cv):
    """:func:`qfh.sweep_partial` with exact fixed-point sums: the 7 counts, then the 8 limbs
    (hi, lo of each sum in the order of ``qfh.SWEEP_SUMS``). ``hi - lo`` below 2**21."""
    ws = g[k, G_WS]
    wc = g[k, G_WC]
    we = g[k, G_WE]
    bt = g[k, G_BUY]
    st = g[k, G_SELL]
    ct = g[k, G_CONF]
    cht = g[k, G_COH]
    mm = g[k, G_MIN_MOVE]
    extra = g[k, G_SPREAD]
    w = int(g[k, G_WINDOW_INDEX])
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
        if fw[0, w, i] == 0.0:
            continue
        mv = cv[2, i]
        if math.isnan(mv):
            continue
        coh = fw[2, w, i]
        buy, sell = seed_scores(fw[1, w, i], coh, fw[3, w, i], cv[0, i], fw[4, w, i],
                                ws, wc, we)
        da, db, a1, b1, a2, b2, hc = exact_step(buy, sell, coh, mv, cv[1, i], cv[3, i], bt, st,
                                                ct, cht, mm, extra)
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


def store_partial(pc, pl, c, k, r):
    """Chunk c's partial of row k, the 7 counts and 8 limbs ``r`` of
    :func:`sweep_partial_exact`, into pc[:, c, k] and pl[:, c, k] (the GPU's partials)."""
    pc[0, c, k] = r[0]
    pc[1, c, k] = r[1]
    pc[2, c, k] = r[2]
    pc[3, c, k] = r[3]
    pc[4, c, k] = r[4]
    pc[5, c, k] = r[5]
    pc[6, c, k] = r[6]
    pl[0, c, k] = r[7]
    pl[1, c, k] = r[8]
    pl[2, c, k] = r[9]
    pl[3, c, k] = r[10]
    pl[4, c, k] = r[11]
    pl[5, c, k] = r[12]
    pl[6, c, k] = r[13]
    pl[7, c, k] = r[14]


def limbs_to_sums(sums, limbs, k):
    """sums[q, k] from the exact limbs[2q, k] (hi) and limbs[2q + 1, k] (lo), q = 0..3."""
    sums[0, k] = fixed_value(limbs[0, k], limbs[1, k], INV_SUM)
    sums[1, k] = fixed_value(limbs[2, k], limbs[3, k], INV_SQ)
    sums[2, k] = fixed_value(limbs[4, k], limbs[5, k], INV_SUM)
    sums[3, k] = fixed_value(limbs[6, k], limbs[7, k], INV_SQ)


#: The scalar bodies, callees first; loops.rebind compiles these with the others.
SCALAR_FUNCTIONS = ("fixed_limbs", "fixed_value", "exact_step", "sweep_partial_exact",
                    "store_partial", "limbs_to_sums")


# ---- host-side helpers (plain Python, not compiled) -------------------------------------------

def exact_range_ok(n_candles: int, t_max: float) -> bool:
    """True when sums of ``n_candles`` terms of magnitude at most ``t_max`` (pips) stay exact
    in the fixed-point limbs, for the pip sums and for the sums of squares (see the module
    docstring)."""
    if not (math.isfinite(t_max) and n_candles < 2**30):
        return False
    m = max(1, int(n_candles))
    lim = 2.0**52
    return (m * (t_max * 2.0**(Q_SUM - 32) + 1.0) < lim
            and m * (t_max * t_max * 2.0**(Q_SQ - 32) + 1.0) < lim)


def gamma(k: int) -> float:
    """gamma(k) = k u / (1 - k u), the classic bound of k roundings."""
    return k * U / (1.0 - k * U)


def sum_bound(abs_sum: float, n_terms: int, n_range: int, square: bool) -> float:
    """Largest possible |exact - brute force| of one sum (module docstring, last line):
    ``abs_sum`` = sum of |t_i| (or an upper bound), ``n_terms`` = candles contributing (or an
    upper bound), ``n_range`` = candles in the scored range."""
    quantum = 2.0**-(Q_SQ if square else Q_SUM)
    return (gamma(n_range + 1) + U) * abs_sum + (1.0 + U) * n_terms * quantum
