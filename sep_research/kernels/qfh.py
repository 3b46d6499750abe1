"""QFH scalar bodies: the spec's math, written once in plain Python.

Every function here is plain scalar Python (``math`` only, loops and indexing, no numpy
calls, no allocation), so the same source runs three ways:

- as ordinary Python (this module: the live runner's path, no numba needed);
- compiled for the CPU by :mod:`sep_research.kernels.nb` (``*_nb``, numba);
- compiled as CUDA device functions by :mod:`sep_research.kernels.cu` (``*_cu``).

The compiled modules re-bind the functions listed in :data:`SCALAR_FUNCTIONS` with their
globals pointing at the compiled twins, so a call from one body to another stays compiled.
Floating-point sums are sequential loops in a fixed order, so all three paths give the same
bits on the same machine (the GPU's ``exp``/``log2``/``sin`` differ by an ulp or two).

Conventions (see ``docs/qfh-spec.md`` for the math):

- ``bits[k] = 1 if close[k+1] > close[k] else 0``; a window is ``bits[start:start+length]``.
- Seed-rule parameters travel as one float64 vector ``prm`` indexed by the ``P_*`` constants
  (:func:`sep_research.signals.seed.SeedParams.to_vector` builds it).
- Per-candle features travel as one float64 array ``out[F_*, i, col]`` (rows are time,
  columns are series x window length); candles without features hold NaN.
"""

from __future__ import annotations

import math

# ---- parameter vector of the seed rule (index constants) -------------------------------------
P_WINDOW = 0  # bits per window (11)
P_WS = 1  # weight of stability (0.40)
P_WC = 2  # weight of coherence (0.10)
P_WE = 3  # weight of entropy/phase (0.50)
P_BUY = 4  # buy threshold (0.50, times vm)
P_SELL = 5  # sell threshold (0.52, times vm)
P_CONF = 6  # high-confidence: confidence >= this (0.65)
P_COH = 7  # high-confidence: coherence >= this (0.30)
P_COLLAPSE = 8  # collapse flag: rupture >= this (0.3)
P_MIN_MOVE = 9  # a move counts when beyond this many pips (0.5)
P_PIP = 10  # price units to pips (1e4)
P_COH_SCALE = 11  # coherence_i = scale * coh + offset (0.7)
P_COH_OFFSET = 12  # (0.15)
P_VOL_WINDOW = 13  # candles in the range mean of vol_i (20)
P_VOL_DEFAULT = 14  # vol_i before that many candles (0.5)
P_STAB_VOL_W = 15  # stability = min(1, (1-r) + w * vol / s): w (0.2)
P_STAB_VOL_S = 16  # s (20)
P_VF_ON = 17  # volume factor on (1) / off (0)
P_VF_BASE = 18  # clip(base + slope * volume / ref, lo, hi): 0.85
P_VF_SLOPE = 19  # 0.3
P_VF_REF = 20  # 150
P_VF_LO = 21  # 0.7
P_VF_HI = 22  # 1.4
P_TF_ON = 23  # temporal factor on / off
P_TF_SHORT = 24  # 5
P_TF_LONG = 25  # 15 (also the number of earlier feature candles needed)
P_TF_TIGHT = 26  # 0.1
P_TF_LOOSE = 27  # 0.2
P_TF_HIGH = 28  # 1.15
P_TF_MID = 29  # 1.08
P_VM_ON = 30  # volatility multiplier on / off
P_VM_WINDOW = 31  # 100
P_VM_CENTER = 32  # 10
P_VM_SLOPE = 33  # 0.02
P_VM_LO = 34  # 0.8
P_VM_HI = 35  # 1.5
N_PARAMS = 36

# ---- per-candle feature rows of the batch output out[F_*, i, col] ----------------------------
F_HAS = 0  # 1.0 where the candle has features, else 0.0 (all others NaN there)
F_N_NULL = 1
F_N_FLIP = 2
F_N_RUPTURE = 3
F_NULL = 4  # null ratio z
F_FLIP = 5  # flip ratio f
F_RUPTURE = 6  # rupture ratio r
F_ENTROPY = 7  # H
F_COH0 = 8  # base coherence
F_TEMPLATE = 9  # template match T (NaN when L <= 10)
F_DAMPING = 10  # trajectory end value V (NaN when L <= 10)
F_QFH_COH = 11  # QFH coherence of the window (coh)
F_COLLAPSE = 12  # 1.0 when r >= collapse threshold
F_COHERENCE = 13  # seed coherence_i = 0.7 coh + 0.15
F_STABILITY = 14
F_PHASE = 15
F_VOL = 16  # vol_i, mean range in pips of the previous candles
F_VM = 17  # volatility multiplier
F_VF = 18  # volume factor
F_TF = 19  # temporal factor
N_FEATURES = 20

FEATURE_NAMES = (
    "has", "n_null", "n_flip", "n_rupture", "null", "flip", "rupture", "entropy", "coh0",
    "template", "damping", "qfh_coherence", "collapse", "coherence", "stability", "phase",
    "vol", "vm", "vf", "tf",
)

# ---- sweep grid columns g[k, G_*] and per-candle inputs ---------------------------------------
G_WS = 0
G_WC = 1
G_WE = 2
G_BUY = 3
G_SELL = 4
G_CONF = 5
G_COH = 6
G_MIN_MOVE = 7
G_SPREAD = 8  # extra spread in pips, added to the per-candle spread
G_WINDOW_INDEX = 9  # row of the per-window feature table
N_GRID = 10

# sweep outputs, in this order
SWEEP_COUNTS = ("n_non_hold", "n_correct", "n_buy", "n_sell", "n_hc", "n_hc_correct", "n_hc_buy")
SWEEP_SUMS = ("sum_pips_net", "sum_pips_net_sq", "hc_sum_pips_net", "hc_sum_pips_net_sq")

ENTROPY_NORM = 1.585  # the spec's literal, not log2(3)


def transition_counts(bits, start, length):
    """(n_null, n_flip, n_rupture) over the adjacent pairs of bits[start:start+length]."""
    n_null = 0
    n_flip = 0
    n_rup = 0
    prev = bits[start]
    for k in range(start + 1, start + length):
        b = bits[k]
        if prev == 0 and b == 0:
            n_null += 1
        elif prev == 1 and b == 1:
            n_rup += 1
        else:
            n_flip += 1
        prev = b
    return n_null, n_flip, n_rup


def entropy_of_counts(n_null, n_flip, n_rup):
    """Entropy H of the pair classes, divided by 1.585 and clipped to [0.05, 1]."""
    npairs = n_null + n_flip + n_rup
    z = n_null / npairs
    f = n_flip / npairs
    r = n_rup / npairs
    t = 0.0
    t = t + (z * math.log2(z) if z > 0.0 else 0.0)
    t = t + (f * math.log2(f) if f > 0.0 else 0.0)
    t = t + (r * math.log2(r) if r > 0.0 else 0.0)
    h = -t / ENTROPY_NORM
    return min(max(h, 0.05), 1.0)


def base_coherence(h, r, f):
    """coh0 = clip(1.1 raw^2, 0, 1), raw = 0.6 (1-H) + 0.33 (1-r) + 0.21 (1-f)."""
    raw = 0.6 * (1.0 - h) + 0.33 * (1.0 - r) + 0.21 * (1.0 - f)
    return min(max(1.1 * (raw * raw), 0.0), 1.0)


def _path_value(bits, start, k, w0, lam):
    # one step of the damped path: (w[k] - w[0]) * exp(-lambda k); w0 is a float
    return (bits[start + k] - w0) * math.exp(-lam * k)


def _cosine(dot, pp, tt):
    if pp == 0.0 or tt == 0.0:
        return 0.0
    return dot / (math.sqrt(pp) * math.sqrt(tt))


def damping_and_template(bits, start, length):
    """(T, V) of the trajectory damping of bits[start:start+length] (length >= 3).

    lambda = clip(0.5 H', 0.01, 1) from the first min(20, L) bits; p[0] = w[0],
    p[k] = sum_{j=1..k} (w[j]-w[0]) exp(-lambda j); V = p[L-1]; T = best cosine match of
    p with the decay, line and wave templates (at least 0, at most 1).
    """
    n0, n1, n2 = transition_counts(bits, start, min(20, length))
    h2 = entropy_of_counts(n0, n1, n2)
    lam = min(max(0.3 * h2 + 0.2 * h2, 0.01), 1.0)
    w0 = 1.0 * bits[start]
    m = length
    # pass 1: the end value V = p[m-1]
    s = 0.0
    for k in range(1, m):
        s = s + _path_value(bits, start, k, w0, lam)
    p0 = w0
    pl = s
    # pass 2: the same path again (same order, same bits), dot products with the templates
    pp = p0 * p0
    d_dec = p0 * p0
    n_dec = p0 * p0
    d_lin = p0 * p0
    n_lin = p0 * p0
    wave0 = (pl + p0) / 2.0 + (pl - p0) / 2.0 * math.sin(0.0)
    d_wav = p0 * wave0
    n_wav = wave0 * wave0
    s = 0.0
    for i in range(1, m):
        s = s + _path_value(bits, start, i, w0, lam)
        e = p0 * math.exp(-0.1 * i)
        ln = p0 + (pl - p0) * i / (m - 1)
        o = (pl + p0) / 2.0 + (pl - p0) / 2.0 * math.sin(2.0 * math.pi * i / m)
        pp = pp + s * s
        d_dec = d_dec + s * e
        n_dec = n_dec + e * e
        d_lin = d_lin + s * ln
        n_lin = n_lin + ln * ln
        d_wav = d_wav + s * o
        n_wav = n_wav + o * o
    t = 0.0
    t = max(t, _cosine(d_dec, pp, n_dec))
    t = max(t, _cosine(d_lin, pp, n_lin))
    t = max(t, _cosine(d_wav, pp, n_wav))
    t = min(max(t, 0.0), 1.0)
    return t, pl


def window_metrics(bits, start, length, collapse_threshold):
    """All QFH metrics of the window bits[start:start+length] (length >= 2).

    Returns (n_null, n_flip, n_rupture, H, coh0, T, V, coh, collapsed); T and V are NaN
    when length <= 10 (no trajectory damping), and then coh = coh0.
    """
    n0, n1, n2 = transition_counts(bits, start, length)
    npairs = n0 + n1 + n2
    r = n2 / npairs
    f = n1 / npairs
    h = entropy_of_counts(n0, n1, n2)
    coh0 = base_coherence(h, r, f)
    t = math.nan
    v = math.nan
    coh = coh0
    if length > 10:
        t, v = damping_and_template(bits, start, length)
        coh = 0.7 * coh0 + 0.3 * t
        if abs(v) < 2.0:
            coh = coh / (1.0 + 0.1 * abs(v))
        coh = min(max(coh, 0.0), 1.0)
    return n0, n1, n2, h, coh0, t, v, coh, r >= collapse_threshold


def window_span(i, n, window, legacy):
    """(start, length) of candle i's bit window among n candles; length < 2: no features.

    causal: bits[max(0, i-W) .. i-1]; legacy: bits[max(0, i-W+1) .. min(n-2, i)].
    """
    if legacy:
        lo = max(0, i - window + 1)
        hi = min(n - 2, i)
    else:
        lo = max(0, i - window)
        hi = i - 1
    return lo, hi - lo + 1


def first_feature_candle(legacy):
    """Index of the first candle that can have features (1 legacy, 2 causal)."""
    return 1 if legacy else 2


def range_mean(high, low, lo, hi, pip):
    """Mean of (high - low) * pip over candles lo .. hi-1, summed in order."""
    s = 0.0
    for j in range(lo, hi):
        s = s + (high[j] - low[j]) * pip
    return s / (hi - lo)


def volume_factor(volume, prm):
    if prm[P_VF_ON] == 0.0:
        return 1.0
    x = prm[P_VF_BASE] + prm[P_VF_SLOPE] * volume / prm[P_VF_REF]
    return min(max(x, prm[P_VF_LO]), prm[P_VF_HI])


def vol_multiplier(range_pips, prm):
    if prm[P_VM_ON] == 0.0:
        return 1.0
    x = 1.0 + (range_pips - prm[P_VM_CENTER]) * prm[P_VM_SLOPE]
    return min(max(x, prm[P_VM_LO]), prm[P_VM_HI])


def candle_features(out, col, i, bits, high, low, volume, n, window, legacy, legacy_range, prm):
    """Write every per-candle feature of candle i except the temporal factor into out[:, i, col].

    ``legacy_range`` is the legacy alignment's mean range of the last 100 candles of the
    whole data set (ignored in causal alignment).
    """
    start, length = window_span(i, n, window, legacy)
    if length < 2:
        out[F_HAS, i, col] = 0.0
        for q in range(1, N_FEATURES):
            out[q, i, col] = math.nan
        return
    n0, n1, n2, h, coh0, t, v, coh, collapsed = window_metrics(
        bits, start, length, prm[P_COLLAPSE])
    npairs = n0 + n1 + n2
    r = n2 / npairs
    pip = prm[P_PIP]
    out[F_HAS, i, col] = 1.0
    out[F_N_NULL, i, col] = n0
    out[F_N_FLIP, i, col] = n1
    out[F_N_RUPTURE, i, col] = n2
    out[F_NULL, i, col] = n0 / npairs
    out[F_FLIP, i, col] = n1 / npairs
    out[F_RUPTURE, i, col] = r
    out[F_ENTROPY, i, col] = h
    out[F_COH0, i, col] = coh0
    out[F_TEMPLATE, i, col] = t
    out[F_DAMPING, i, col] = v
    out[F_QFH_COH, i, col] = coh
    out[F_COLLAPSE, i, col] = 1.0 if collapsed else 0.0
    out[F_COHERENCE, i, col] = prm[P_COH_SCALE] * coh + prm[P_COH_OFFSET]
    vw = int(prm[P_VOL_WINDOW])
    if i < vw:
        vol = prm[P_VOL_DEFAULT]
    else:
        vol = range_mean(high, low, i - vw, i, pip)
    out[F_VOL, i, col] = vol
    out[F_STABILITY, i, col] = min(1.0, (1.0 - r) + prm[P_STAB_VOL_W] * vol / prm[P_STAB_VOL_S])
    out[F_PHASE, i, col] = h / 2.0
    if legacy:
        rp = legacy_range
    else:
        rp = range_mean(high, low, max(0, i - int(prm[P_VM_WINDOW]) + 1), i + 1, pip)
    out[F_VM, i, col] = vol_multiplier(rp, prm)
    out[F_VF, i, col] = volume_factor(volume[i], prm)
    out[F_TF, i, col] = math.nan


def temporal_factor_at(out, col, i, first, prm):
    """Temporal factor of candle i from the coherence of the previous feature candles.

    Feature candles are contiguous from ``first``; the p-th (p = i - first) gets a factor
    once p >= long (15): 1.15 if |coh - m5| < 0.1 and |m5 - m15| < 0.1, else 1.08 if
    |coh - m5| < 0.2, else 1 (m5, m15: mean coherence of the previous 5 and 15).
    """
    if out[F_HAS, i, col] == 0.0:
        return math.nan
    if prm[P_TF_ON] == 0.0:
        return 1.0
    p = i - first
    n_long = int(prm[P_TF_LONG])
    n_short = int(prm[P_TF_SHORT])
    if p < n_long:
        return 1.0
    s5 = 0.0
    for j in range(i - n_short, i):
        s5 = s5 + out[F_COHERENCE, j, col]
    s15 = 0.0
    for j in range(i - n_long, i):
        s15 = s15 + out[F_COHERENCE, j, col]
    m5 = s5 / n_short
    m15 = s15 / n_long
    c = out[F_COHERENCE, i, col]
    if abs(c - m5) < prm[P_TF_TIGHT] and abs(m5 - m15) < prm[P_TF_TIGHT]:
        return prm[P_TF_HIGH]
    if abs(c - m5) < prm[P_TF_LOOSE]:
        return prm[P_TF_MID]
    return 1.0


def seed_scores(stability, coherence, phase, vf, tf, ws, wc, we):
    """(buy, sell) scores of the seed rule, each times the volume and temporal factors."""
    buy = ws * (1.0 - stability) + wc * coherence + we * (1.0 - phase)
    sell = ws * stability + wc * (1.0 - coherence) + we * phase
    return buy * vf * tf, sell * vf * tf


def seed_decide(buy, sell, vm, buy_threshold, sell_threshold):
    """(action, confidence): BUY=1 if buy > bt vm, else SELL=-1 if sell > st vm, else HOLD=0.

    Confidence is the winning score; for HOLD it is max(buy, sell).
    """
    if buy > buy_threshold * vm:
        return 1, buy
    if sell > sell_threshold * vm:
        return -1, sell
    return 0, max(buy, sell)


def is_high_confidence(action, confidence, coherence, conf_threshold, coh_threshold):
    return action != 0 and confidence >= conf_threshold and coherence >= coh_threshold


def signal_at(i, col, feat, ws, wc, we, bt, st, ct, cht):
    """(action, confidence, hc) of candle i from the feature table feat[F_*, i, col]."""
    if feat[F_HAS, i, col] == 0.0:
        return 0, math.nan, False
    coh = feat[F_COHERENCE, i, col]
    buy, sell = seed_scores(feat[F_STABILITY, i, col], coh, feat[F_PHASE, i, col],
                            feat[F_VF, i, col], feat[F_TF, i, col], ws, wc, we)
    act, conf = seed_decide(buy, sell, feat[F_VM, i, col], bt, st)
    return act, conf, is_high_confidence(act, conf, coh, ct, cht)


def sweep_step(buy, sell, coh, mv, vm, sp, bt, st, ct, cht, mm, extra):
    """One configuration at one scored candle, branch-free (the decisions of seed_decide and
    is_high_confidence). Returns (count increments packed as in sweep_partial, and the four
    sum increments); a HOLD gives exact zeros."""
    ib = 1 if buy > bt * vm else 0
    isl = (1 - ib) * (1 if sell > st * vm else 0)
    nh = ib + isl
    conf = buy if ib == 1 else sell
    ok = ib * (1 if mv > mm else 0) + isl * (1 if mv < -mm else 0)
    hc = nh * (1 if conf >= ct else 0) * (1 if coh >= cht else 0)
    pips = (ib - isl) * mv - sp - extra
    pp = pips * pips
    fn = 1.0 * nh
    fh = 1.0 * hc
    return (ok + (ib << 21) + (isl << 42), hc + ((hc * ok) << 21) + ((hc * ib) << 42),
            pips * fn, pp * fn, pips * fh, pp * fh)


def unpack_counts(pa, pb):
    """(n_non_hold, n_correct, n_buy, n_sell, n_hc, n_hc_correct, n_hc_buy) from the packed
    counters (21 bits apiece: exact for chunks shorter than 2**21 candles)."""
    mask = (1 << 21) - 1
    n_buy = (pa >> 21) & mask
    n_sell = (pa >> 42) & mask
    return (n_buy + n_sell, pa & mask, n_buy, n_sell, pb & mask, (pb >> 21) & mask,
            (pb >> 42) & mask)


def sweep_partial(g, k, lo, hi, fw, cv):
    """Counts and sums of grid row k over candles lo .. hi-1 (the fused sweep body).

    ``g[k, G_*]``: the configuration. ``fw[q, w, i]``: per-window features, q = 0 has,
    1 stability, 2 coherence, 3 phase, 4 temporal factor. ``cv[q, i]``: per-candle inputs,
    q = 0 volume factor, 1 vm, 2 label move in pips (NaN: not scored), 3 spread in pips.
    Returns (n_non_hold, n_correct, n_buy, n_sell, n_hc, n_hc_correct, n_hc_buy,
    sum_pips, sum_pips_sq, hc_sum_pips, hc_sum_pips_sq); pips = action * move - spread.
    Sums run in candle order from zero. ``hi - lo`` must be below 2**21.
    """
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
    pa = 0  # n_ok | n_buy << 21 | n_sell << 42
    pb = 0  # n_hc | n_hc_ok << 21 | n_hc_buy << 42
    s1 = 0.0
    s2 = 0.0
    h1 = 0.0
    h2 = 0.0
    for i in range(lo, hi):
        if fw[0, w, i] == 0.0:
            continue
        mv = cv[2, i]
        if math.isnan(mv):
            continue
        coh = fw[2, w, i]
        buy, sell = seed_scores(fw[1, w, i], coh, fw[3, w, i], cv[0, i], fw[4, w, i],
                                ws, wc, we)
        da, db, d1, d2, d3, d4 = sweep_step(buy, sell, coh, mv, cv[1, i], cv[3, i], bt, st,
                                            ct, cht, mm, extra)
        pa += da
        pb += db
        s1 = s1 + d1
        s2 = s2 + d2
        h1 = h1 + d3
        h2 = h2 + d4
    c = unpack_counts(pa, pb)
    return c[0], c[1], c[2], c[3], c[4], c[5], c[6], s1, s2, h1, h2


#: The scalar bodies, in dependency order (callees first); the compiled modules re-bind these.
SCALAR_FUNCTIONS = (
    "transition_counts", "entropy_of_counts", "base_coherence", "_path_value", "_cosine",
    "damping_and_template", "window_metrics", "window_span", "first_feature_candle",
    "range_mean", "volume_factor", "vol_multiplier", "candle_features", "temporal_factor_at",
    "seed_scores", "seed_decide", "is_high_confidence", "signal_at", "sweep_step",
    "unpack_counts", "sweep_partial",
)
