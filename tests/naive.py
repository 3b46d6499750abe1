"""Slow, obviously correct reference of the QFH spec (docs/qfh-spec.md), for tests only.

Written straight from the spec with Python lists and loops, sharing no code with
``sep_research.kernels``: every fast version (plain-Python scalar path, numba CPU,
numba-cuda) is checked against it. Floating-point sums are plain left-to-right loops
(never ``sum()``, which compensates on Python 3.12+), in the order the spec writes them.
"""

from __future__ import annotations

import itertools
import math

SEED = {
    "window": 11, "w_s": 0.40, "w_c": 0.10, "w_e": 0.50, "buy_threshold": 0.50,
    "sell_threshold": 0.52,
    "conf_threshold": 0.65, "coh_threshold": 0.30, "collapse_threshold": 0.3, "min_move": 0.5,
}


def bits_of(close):
    return [1 if close[k + 1] > close[k] else 0 for k in range(len(close) - 1)]


def _entropy(w):
    n = len(w) - 1
    n_null = n_flip = n_rup = 0
    for a, b in itertools.pairwise(w):
        if a == 0 and b == 0:
            n_null += 1
        elif a == 1 and b == 1:
            n_rup += 1
        else:
            n_flip += 1
    z, f, r = n_null / n, n_flip / n, n_rup / n
    t = 0.0
    for p in (z, f, r):
        t = t + (p * math.log2(p) if p > 0 else 0.0)
    h = -t / 1.585
    return min(max(h, 0.05), 1.0), z, f, r, n_null, n_flip, n_rup


def _cos(a, b):
    dot = 0.0
    na = 0.0
    nb = 0.0
    for x, y in zip(a, b, strict=False):
        dot = dot + x * y
        na = na + x * x
        nb = nb + y * y
    if na == 0.0 or nb == 0.0:
        return 0.0
    return dot / (math.sqrt(na) * math.sqrt(nb))


def window_metrics(w, collapse_threshold=0.3):
    """All metrics of one bit window (a list of 0/1 of length >= 2), as a dict."""
    L = len(w)
    assert L >= 2
    h, z, f, r, n_null, n_flip, n_rup = _entropy(w)
    raw = 0.6 * (1.0 - h) + 0.33 * (1.0 - r) + 0.21 * (1.0 - f)
    coh0 = min(max(1.1 * (raw * raw), 0.0), 1.0)
    out = {"n_null": n_null, "n_flip": n_flip, "n_rupture": n_rup, "null": z, "flip": f,
           "rupture": r, "entropy": h, "coh0": coh0, "collapse": r >= collapse_threshold,
               "template": math.nan, "damping": math.nan, "coherence": coh0}
    if L > 10:
        h2 = _entropy(w[: min(20, L)])[0]
        lam = min(max(0.3 * h2 + 0.2 * h2, 0.01), 1.0)
        p = [float(w[0])]
        s = 0.0
        for k in range(1, L):
            s = s + (w[k] - w[0]) * math.exp(-lam * k)
            p.append(s)
        v = p[L - 1]
        m = L
        p0, pl = p[0], p[m - 1]
        dec = [p0 * math.exp(-0.1 * i) for i in range(m)]
        line = [p0 + (pl - p0) * i / (m - 1) for i in range(m)]
        wave = [(pl + p0) / 2.0 + (pl - p0) / 2.0 * math.sin(2.0 * math.pi * i / m)
                for i in range(m)]
        t = max(0.0, _cos(p, dec), _cos(p, line), _cos(p, wave))
        t = min(max(t, 0.0), 1.0)
        coh = 0.7 * coh0 + 0.3 * t
        if abs(v) < 2.0:
            coh = coh / (1.0 + 0.1 * abs(v))
        out.update(template=t, damping=v, coherence=min(max(coh, 0.0), 1.0))
    return out


def window_range(i, n, window, alignment):
    """Inclusive bit range [lo, hi] of candle i's window, or None when < 2 bits."""
    if alignment == "causal":
        lo, hi = max(0, i - window), i - 1
    else:
        lo, hi = max(0, i - window + 1), min(n - 2, i)
    return (lo, hi) if hi - lo + 1 >= 2 else None


def _mean(xs):
    s = 0.0
    for x in xs:
        s = s + x
    return s / len(xs)


def seed_signals(o, h, l, c, v, alignment="causal", prm=None):
    """Per-candle seed features and signals (spec sections 3 and 4); lists of length n.

    Candles without features have action 0, confidence/coherence NaN and hc False.
    """
    prm = dict(SEED, **(prm or {}))
    n = len(c)
    bits = bits_of(c)
    rng = [(h[j] - l[j]) * 1e4 for j in range(n)]
    res = {k: [math.nan] * n for k in
           ("coherence", "stability", "phase", "rupture", "entropy", "buy", "sell",
            "confidence", "vm", "tf", "vf")}
    res["has"] = [False] * n
    res["action"] = [0] * n
    res["hc"] = [False] * n
    cohs = []  # coherence of the candles with features, in order
    legacy_range = _mean(rng[max(0, n - 100):])
    for i in range(n):
        wr = window_range(i, n, prm["window"], alignment)
        if wr is None:
            continue
        met = window_metrics(bits[wr[0]: wr[1] + 1], prm["collapse_threshold"])
        coherence = 0.7 * met["coherence"] + 0.15
        vol = 0.5 if i < 20 else _mean(rng[i - 20: i])
        stability = min(1.0, (1.0 - met["rupture"]) + 0.2 * vol / 20.0)
        phase = met["entropy"] / 2.0
        buy = prm["w_s"] * (1.0 - stability) + prm["w_c"] * coherence + prm["w_e"] * (1.0 - phase)
        sell = prm["w_s"] * stability + prm["w_c"] * (1.0 - coherence) + prm["w_e"] * phase
        vf = min(max(0.85 + 0.3 * v[i] / 150.0, 0.7), 1.4)
        p = len(cohs)
        tf = 1.0
        if p >= 15:
            m5 = _mean(cohs[p - 5:])
            m15 = _mean(cohs[p - 15:])
            if abs(coherence - m5) < 0.1 and abs(m5 - m15) < 0.1:
                tf = 1.15
            elif abs(coherence - m5) < 0.2:
                tf = 1.08
        cohs.append(coherence)
        buy = buy * vf * tf
        sell = sell * vf * tf
        rp = legacy_range if alignment == "legacy" else _mean(rng[max(0, i - 99): i + 1])
        vm = min(max(1.0 + (rp - 10.0) * 0.02, 0.8), 1.5)
        if buy > prm["buy_threshold"] * vm:
            act, conf = 1, buy
        elif sell > prm["sell_threshold"] * vm:
            act, conf = -1, sell
        else:
            act, conf = 0, max(buy, sell)
        res["has"][i] = True
        for k, val in (("coherence", coherence), ("stability", stability), ("phase", phase),
                       ("rupture", met["rupture"]), ("entropy", met["entropy"]), ("buy", buy),
                       ("sell", sell), ("confidence", conf), ("vm", vm), ("tf", tf), ("vf", vf)):
            res[k][i] = val
        res["action"][i] = act
        res["hc"][i] = (act != 0 and conf >= prm["conf_threshold"]
                        and coherence >= prm["coh_threshold"])
    return res


def score(c, res, alignment="causal", min_move=0.5):
    """The spec's scoring (section 5): legacy or causal. Returns counts as a dict."""
    n = len(c)
    feats = [i for i in range(n) if res["has"][i]]
    pairs = []  # (candle of the signal, index t of the move c[t] -> c[t+1])
    if alignment == "legacy":
        for p, i in enumerate(feats):
            if p > n - 2:
                break
            pairs.append((i, p))
    else:
        pairs = [(i, i) for i in feats if i <= n - 2]
    out = {"non_hold": 0, "correct": 0, "hc": 0, "hc_buy": 0, "hc_correct": 0,
           "scored": len(pairs), "up": 0}
    for i, t in pairs:
        mv = (c[t + 1] - c[t]) * 1e4
        out["up"] += mv > min_move
        act = res["action"][i]
        if act == 0:
            continue
        ok = (act == 1 and mv > min_move) or (act == -1 and mv < -min_move)
        out["non_hold"] += 1
        out["correct"] += ok
        if res["hc"][i]:
            out["hc"] += 1
            out["hc_buy"] += act == 1
            out["hc_correct"] += ok
    return out


def sweep(o, h, l, c, v, grid, score_start, score_end, spread, alignment="causal"):
    """Per-configuration counts and sums by brute force: one full signal run per row.

    ``grid``: list of dicts of seed parameters (plus optional 'spread' extra pips);
    ``spread``: list of per-candle spread in pips. Sums are plain loops in candle order.
    """
    out = []
    n = len(c)
    for row in grid:
        prm = dict(row)
        extra = prm.pop("spread", 0.0)
        res = seed_signals(o, h, l, c, v, alignment, prm)
        mm = prm.get("min_move", SEED["min_move"])
        acc = {"n_non_hold": 0, "n_correct": 0, "n_buy": 0, "n_sell": 0, "n_hc": 0,
               "n_hc_correct": 0, "n_hc_buy": 0, "sum_pips_net": 0.0, "sum_pips_net_sq": 0.0,
               "hc_sum_pips_net": 0.0, "hc_sum_pips_net_sq": 0.0}
        for i in range(score_start, score_end):
            act = res["action"][i]
            if act == 0 or not res["has"][i]:
                continue
            t = i if alignment == "causal" else i - 1  # legacy: p-th signal, p = i - 1
            if t + 1 >= n:
                continue
            mv = (c[t + 1] - c[t]) * 1e4
            ok = (act == 1 and mv > mm) or (act == -1 and mv < -mm)
            pips = act * mv - spread[t] - extra
            acc["n_non_hold"] += 1
            acc["n_correct"] += ok
            acc["n_buy"] += act == 1
            acc["n_sell"] += act == -1
            acc["sum_pips_net"] += pips
            acc["sum_pips_net_sq"] += pips * pips
            if res["hc"][i]:
                acc["n_hc"] += 1
                acc["n_hc_correct"] += ok
                acc["n_hc_buy"] += act == 1
                acc["hc_sum_pips_net"] += pips
                acc["hc_sum_pips_net_sq"] += pips * pips
        out.append(acc)
    return out
