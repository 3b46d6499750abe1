"""Out-of-sample evaluation of per-candle signals: hit rates, trading figures and baselines.

:func:`score_signals` is **the** scorer (the seed's reproduction, the walk-forward and the
reports all use it; results are fractions, percent only when printed). It follows the spec's
scoring (qfh-spec section 5): the signal of candle ``i`` is correct when it is BUY and its
label move (:func:`sep_research.signals.seed.label_moves`, the one label function: causal
``(close[i+1] - close[i]) / pip``; legacy: the original's look-ahead scoring) is above
``+threshold_pips`` (0.5), or SELL and the move is below ``-threshold_pips``. Moves within the
threshold count as wrong. Candles without a label (the last one, causally) or without
features are not scored.

**That metric rewards firing on volatile candles**: a signal on a candle whose next move stays
within the threshold is wrong whatever its direction, so a rule that only picks candles with
large next moves beats "random timing with the same BUY/SELL mix" (``hc_chance_rate``) without
knowing any direction. So the figures lead with **direction-only scoring**: among the signals
whose next move exceeds the threshold in either direction (*direction decided*), the share whose
direction was right (``hc_direction_rate``, ``direction_rate``, each with a Wilson interval),
against the **same candles, random direction** baseline (:func:`random_direction_baseline`): the
rule's own timing (exactly the candles it signalled on), its directions redrawn at random with
exactly the same BUY/SELL mix (a random permutation of its directions over those candles, many
seeded draws), with the 2.5-97.5 % range of the draws and the p-value
``(1 + #{draws with as many right directions}) / (1 + B)``. A rule that only picks volatile
candles scores chance there; a rule with a directional edge does not
(``tests/test_evaluation_metrics.py`` pins both on constructed data). The seed's metric stays,
labelled as what it is.

Trading figures come from :func:`sep_research.backtest.backtest_arrays` (fills at bid/ask, so
net of the spread) under the strategy's **trading policy** (:class:`sep_research.strategy.Policy`:
which signals trade, what a HOLD means, stop-loss and take-profit), turned into per-candle
targets by :func:`policy_targets`. The default policy trades high-confidence (HC) signals
only, one candle each (``hold="flat"``), with no stop. Baselines are computed on exactly the
same candles under the same policy (its stop and take-profit included):

* ``always_long`` / ``always_short``: a target of +1 / -1 on every evaluated candle (held
  throughout; after a stop or take-profit the backtest stays flat until the target changes,
  which for these baselines is never);
* ``random_direction``: the same candles, random direction (see above), for the HC signals
  (``hc``) and for every BUY/SELL signal (``all``);
* ``random``: random signals with exactly the same rate and BUY/SELL mix, made from the
  strategy's own (action, HC) sequence over the evaluated candles. ``random="rotate"`` (the
  default) shifts that sequence circularly by a random offset, which also keeps its runs and
  so its turnover and spread costs; ``random="shuffle"`` permutes it (runs are broken, so
  the random signals trade, and pay the spread, more often than the strategy). p-values for
  the strategy against this null are ``(1 + #{null >= observed}) / (1 + B)``.

Trading figures include **financing** when the cost model charges it
(``financing=`` of :func:`evaluate_signals`, a
:class:`sep_research.financing.FinancingRates`): net pips and P&L count it, and
``financing_pips`` / ``financing_ccy`` show it as its own line (signed: negative is a charge).

Every figure that can be undefined (no signals, zero variance) is ``None`` with a ``*_note``
beside it, never NaN, so results go straight into the model artifact.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sep_research.backtest.fills import EXIT_STOP, EXIT_TAKE
from sep_research.evaluation.stats import (
    max_drawdown,
    periods_per_year,
    permutation_pvalue,
    sharpe_interval,
    sharpe_ratio,
    wilson_interval,
)
from sep_research.financing import FinancingRates
from sep_research.strategy import Policy, data_instrument


def _rate(k: int, n: int, name: str, note: str = "no signals: undefined") -> dict[str, Any]:
    if n == 0:
        return {name: None, f"{name}_ci95": None, f"{name}_note": note}
    lo, hi = wilson_interval(k, n)
    return {name: k / n, f"{name}_ci95": [lo, hi]}


_NOT_DECIDED = "no signal on a candle whose next move exceeded the threshold: undefined"

#: how :func:`random_direction_baseline` draws, in words (stored with its figures)
RANDOM_DIRECTION_METHOD = (
    "same candles, random direction: the rule's own signal candles, its BUY/SELL directions "
    "permuted at random over them (exactly the same mix; drawn exactly as the multivariate "
    "hypergeometric counts of BUYs on up, down and undecided candles)")


def random_direction_baseline(
    actions: Any,
    selected: Any,
    move: Any,
    *,
    threshold_pips: float = 0.5,
    n_draws: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The **same candles, random direction** baseline of a rule's signals.

    ``actions`` (+1/-1/0), ``selected`` (bool: which signals count, e.g. the HC ones inside the
    evaluation mask) and ``move`` (the label move in pips, NaN where there is none) are one per
    candle. The rule's signal candles (selected, non-HOLD, with a label) keep their timing; its
    directions are permuted at random over them, so every draw has exactly the rule's BUY/SELL
    mix and fires on exactly its candles. A direction is right on a candle whose move exceeds
    ``+threshold_pips`` (BUY) or ``-threshold_pips`` (SELL); candles whose move stays within the
    threshold are *undecided* and count for no direction.

    Returns the observed right directions (``hits``) and, over ``n_draws`` seeded draws, the
    mean and the 2.5-97.5 % range of the direction rate (right / decided) and of the seed's
    metric on the same candles (right / signals), the exact expectation of the direction rate,
    and ``pvalue`` = ``(1 + #{draws >= hits}) / (1 + n_draws)``. Undefined figures are None
    with a ``*_note``.
    """
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    a = np.asarray(actions)
    mv = np.asarray(move, dtype=np.float64)
    sel = np.asarray(selected, dtype=bool)
    if a.shape != mv.shape or sel.shape != mv.shape or a.ndim != 1:
        raise ValueError("actions, selected and move need one value per candle")
    sel = sel & (a != 0) & np.isfinite(mv)
    k = int(sel.sum())
    d = a[sel]
    m = mv[sel]
    up = m > threshold_pips
    down = m < -threshold_pips
    n_up, n_down = int(up.sum()), int(down.sum())
    n_buy = int((d == 1).sum())
    hits = int(((d == 1) & up).sum() + ((d == -1) & down).sum())
    decided = n_up + n_down
    out: dict[str, Any] = {
        "method": RANDOM_DIRECTION_METHOD, "n_draws": int(n_draws), "seed": int(seed),
        "threshold_pips": float(threshold_pips), "n_signals": k, "n_buy": n_buy,
        "n_sell": k - n_buy, "n_decided": decided, "hits": hits,
    }
    if k == 0 or decided == 0:
        note = "no signals: undefined" if k == 0 else _NOT_DECIDED
        for key in ("direction_rate_mean", "direction_rate_95", "direction_rate_expected",
                    "hit_rate_mean", "hit_rate_95", "pvalue"):
            out[key] = None
        out["note"] = note
        return out
    rng = np.random.default_rng(seed)
    # BUYs landing on up / down / undecided candles when n_buy of the k candles are BUY
    x = rng.multivariate_hypergeometric([n_up, n_down, k - decided], n_buy, size=n_draws)
    null = (x[:, 0] + (n_down - x[:, 1])).astype(np.float64)
    p_buy = n_buy / k
    out.update({
        "direction_rate_mean": float(null.mean() / decided),
        "direction_rate_95": [float(np.quantile(null, 0.025) / decided),
                              float(np.quantile(null, 0.975) / decided)],
        "direction_rate_expected": (p_buy * n_up + (1.0 - p_buy) * n_down) / decided,
        "hit_rate_mean": float(null.mean() / k),
        "hit_rate_95": [float(np.quantile(null, 0.025) / k), float(np.quantile(null, 0.975) / k)],
        "pvalue": permutation_pvalue(hits, null),
    })
    return out


def _check_mask(mask: Any, n: int) -> np.ndarray:
    if mask is None:
        m = np.ones(n, dtype=bool)
    else:
        m = np.asarray(mask, dtype=bool)
        if m.shape != (n,):
            raise ValueError(f"mask must have one value per candle ({n}), got {m.shape}")
        m = m.copy()
    m[-1] = False  # the last candle has no next move
    if not m.any():
        raise ValueError("no candle to evaluate (empty mask)")
    return m


def score_signals(
    data: Any,
    actions: Any,
    hc: Any,
    *,
    instrument: str | None = None,
    mask: Any = None,
    has: Any = None,
    alignment: str = "causal",
    threshold_pips: float = 0.5,
) -> dict[str, Any]:
    """Hit rates (overall and HC, each with a Wilson 95 % interval), signal rate, base rates,
    and the direction-only figures.

    ``hit_rate`` / ``hc_hit_rate`` are **the seed's metric** (right when the next move exceeds
    the threshold in the signal's direction; it rewards firing on volatile candles), with
    ``hc_chance_rate`` = what random timing with the same BUY/SELL mix gets. The
    **direction-only** figures count only *decided* signals (next move beyond the threshold
    either way): ``direction_rate`` / ``hc_direction_rate`` = right / decided (Wilson
    interval), ``n_decided`` / ``n_hc_decided``, ``hc_decided_share`` (decided / HC signals,
    against ``decided_rate`` over all scored candles: how much the rule leans on volatile
    candles) and ``hc_direction_chance``, the expected direction rate of the same candles with
    random directions at the same mix (its draws and p-value:
    :func:`random_direction_baseline`).

    ``data``: candles with a ``close`` column (a frame or a mapping of arrays) of
    ``instrument`` (else the frame's provenance names it; it sets the pip). ``actions``
    (+1/-1/0) and ``hc`` (bool): one per candle. Scored candles: those in ``mask`` (default
    all) that have features (``has``, default all) and a label. Every rate is a fraction in
    [0, 1]; an undefined one is None with a ``*_note``.
    """
    from sep_research.fx import pip_size
    from sep_research.signals.seed import label_moves

    pip = pip_size(data_instrument(data, instrument))
    close = np.asarray(data["close"], dtype=np.float64)
    n = close.shape[0]
    a = np.asarray(actions)
    h = np.asarray(hc, dtype=bool)
    if a.shape != (n,) or h.shape != (n,):
        raise ValueError("actions and hc need one value per candle")
    move = label_moves(close, pip=pip, alignment=alignment)
    scored = np.isfinite(move)
    if mask is not None:
        mk = np.asarray(mask, dtype=bool)
        if mk.shape != (n,):
            raise ValueError(f"mask must have one value per candle ({n}), got {mk.shape}")
        scored &= mk
    if has is not None:
        scored &= np.asarray(has, dtype=bool)
    n_candles = int(scored.sum())
    if n_candles == 0:
        raise ValueError("no candle to score (mask, features and labels leave none)")
    mv = np.where(scored, move, 0.0)
    up = scored & (mv > threshold_pips)
    down = scored & (mv < -threshold_pips)
    correct = ((a == 1) & up) | ((a == -1) & down)
    sig = scored & (a != 0)
    hcs = sig & h
    n_sig, n_hc = int(sig.sum()), int(hcs.sum())
    up_rate = int(up.sum()) / n_candles
    down_rate = int(down.sum()) / n_candles
    hc_buy = int((hcs & (a == 1)).sum())
    hc_sell = n_hc - hc_buy
    decided = up | down
    n_decided = int((sig & decided).sum())
    n_hc_decided = int((hcs & decided).sum())
    out: dict[str, Any] = {
        "n_candles": n_candles,
        "n_signals": n_sig,
        "n_buy": int((sig & (a == 1)).sum()),
        "n_sell": int((sig & (a == -1)).sum()),
        "n_hc": n_hc,
        "n_hc_buy": hc_buy,
        "n_hc_sell": hc_sell,
        "hits": int((correct & sig).sum()),
        "hc_hits": int((correct & hcs).sum()),
        "threshold_pips": threshold_pips,
        "alignment": alignment,
        "base_rate_up": up_rate,
        "base_rate_down": down_rate,
        "hc_per_candle": n_hc / n_candles,
        # direction-only scoring: a hit is a right direction on a decided candle
        "n_decided": n_decided,
        "n_hc_decided": n_hc_decided,
        "decided_rate": up_rate + down_rate,
    }
    out.update(_rate(out["hits"], n_decided, "direction_rate",
                     "no signals: undefined" if n_sig == 0 else _NOT_DECIDED))
    out.update(_rate(out["hc_hits"], n_hc_decided, "hc_direction_rate",
                     "no HC signals: undefined" if n_hc == 0 else _NOT_DECIDED))
    if n_hc_decided:
        # what the same HC candles with directions drawn at the same BUY/SELL mix would get
        hc_up = int((hcs & up).sum())
        out["hc_direction_chance"] = (hc_buy * hc_up + hc_sell * (n_hc_decided - hc_up)) / (
            n_hc * n_hc_decided)
    else:
        out["hc_direction_chance"] = None
        out["hc_direction_chance_note"] = out["hc_direction_rate_note"]
    out["hc_decided_share"] = n_hc_decided / n_hc if n_hc else None
    out.update(_rate(out["hits"], n_sig, "hit_rate"))
    out.update(_rate(out["hc_hits"], n_hc, "hc_hit_rate"))
    if n_sig:
        out["signal_rate"] = n_hc / n_sig
    else:
        out["signal_rate"] = None
        out["signal_rate_note"] = "no signals: undefined"
    if n_hc:
        # the hit rate that random timing with the same BUY/SELL mix would get on these candles
        out["hc_chance_rate"] = (hc_buy * up_rate + hc_sell * down_rate) / n_hc
    else:
        out["hc_chance_rate"] = None
        out["hc_chance_rate_note"] = "no HC signals"
    return out


def policy_targets(actions: Any, hc: Any, policy: Policy, mask: Any = None) -> np.ndarray:
    """Per-candle target directions (int8) of signals under ``policy``, 0 outside ``mask``.

    The array form of :meth:`sep_research.strategy.Policy.target` (what the live runner
    applies candle by candle; a test checks the two agree): signals that do not trade
    (non-HC ones when ``trade_on="hc"``) count as HOLD; with ``hold="keep"`` a HOLD keeps the
    previous target (reset to flat outside the mask).
    """
    a = np.asarray(actions)
    n = a.shape[0]
    m = np.ones(n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    t = np.where(m, a, 0)
    if policy.trade_on == "hc":
        t = np.where(np.asarray(hc, dtype=bool), t, 0)
    if policy.hold == "keep":
        pos = np.where((t != 0) | ~m, np.arange(n), -1)
        pos = np.maximum.accumulate(pos)
        t = np.where(pos >= 0, t[np.maximum(pos, 0)], 0)
    return t.astype(np.int8)


def _span(m: np.ndarray, n: int) -> tuple[int, int]:
    idx = np.flatnonzero(m)
    # a decision at the last evaluated candle fills at the next open and closes one later
    return int(idx[0]), int(min(idx[-1] + 3, n))


def trading_metrics(
    equity_pips: np.ndarray,
    position: np.ndarray,
    trade_pips: np.ndarray,
    costs_pips: float,
    *,
    span: tuple[int, int],
    granularity: str,
    financing_pips: float | None = None,
) -> dict[str, Any]:
    """Net pips (with a 95 % interval from the per-trade spread), Sharpe (annualised, with an
    interval), maximum drawdown, turnover and costs, over candles ``span[0]:span[1]``.
    ``financing_pips``: the financing inside the net pips (None: financing off)."""
    s, e = span
    eq = np.asarray(equity_pips, dtype=np.float64)
    base = eq[s - 1] if s > 0 else 0.0
    seg = eq[s:e] - base
    pnl = np.diff(np.r_[0.0, seg])
    ppy = periods_per_year(granularity)
    tp = np.asarray(trade_pips, dtype=np.float64)
    out: dict[str, Any] = {
        "net_pips": float(tp.sum()),
        "n_trades": int(tp.size),
        "costs_pips": float(costs_pips),
        "financing_pips": None if financing_pips is None else float(financing_pips),
        "max_drawdown_pips": max_drawdown(seg),
        "periods_per_year": ppy,
        "n_periods": int(seg.size),
    }
    if tp.size >= 2:
        from scipy import stats as st

        sd = float(np.std(tp, ddof=1))
        q = float(st.t.ppf(0.975, tp.size - 1))
        half = q * sd * np.sqrt(tp.size)
        out["net_pips_ci95"] = [float(tp.sum() - half), float(tp.sum() + half)]
        out["mean_pips_per_trade"] = float(tp.mean())
    else:
        out["net_pips_ci95"] = None
        out["net_pips_ci95_note"] = "fewer than 2 trades"
        out["mean_pips_per_trade"] = float(tp.mean()) if tp.size else None
    sr = sharpe_ratio(pnl, periods=ppy)
    out["sharpe_annualised"] = sr
    if sr is None:
        out["sharpe_note"] = "undefined: no variation in P&L (no trades?)"
        out["sharpe_ci95"] = None
    else:
        ci = sharpe_interval(pnl, periods=ppy)
        out["sharpe_ci95"] = list(ci) if ci is not None else None
    d = np.sign(np.asarray(position, dtype=np.float64)[s:e])
    out["turnover_per_candle"] = float(np.abs(np.diff(np.r_[0.0, d])).sum() / max(1, d.size))
    if financing_pips is None:
        out["financing_note"] = "financing off"
    return out


def evaluate_signals(
    frame: pd.DataFrame,
    actions: Any,
    hc: Any,
    *,
    instrument: str,
    granularity: str,
    policy: Policy | None = None,
    mask: Any = None,
    half_spread_pips: float | None = None,
    n_random: int = 1000,
    random: str = "rotate",
    seed: int = 0,
    threshold_pips: float = 0.5,
    financing: FinancingRates | None = None,
) -> dict[str, Any]:
    """Score signals out of sample and set them beside the baselines (see module docstring).

    ``policy``: the trading policy the backtests use (default :class:`Policy()`: HC signals
    only, one-candle trades, no stop). ``half_spread_pips``: mid +/- this half-spread instead
    of the frame's bid/ask (required without bid/ask). ``financing``: overnight financing
    rates charged by every backtest here, the baselines' too (None: off).

    Returns ``{"signals": score_signals(...), "trading": trading_metrics(...),
    "baselines": {"always_long", "always_short", "random", "random_direction"},
    "tests": {p-values}, "policy": policy.to_dict(), "financing": rates or None}``.
    """
    from sep_research.backtest.simulation import (
        backtest_arrays,
        candle_financing_days,
        check_target,
        quote_arrays,
    )
    from sep_research.fx import pip_size
    from sep_research.signals.seed import label_moves

    policy = Policy() if policy is None else policy
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be a sep_research.strategy.Policy, got {policy!r}")
    n = len(frame)
    inst = data_instrument(frame, instrument)
    pip = pip_size(inst)
    a = check_target(actions, n)
    h = np.asarray(hc, dtype=bool)
    if h.shape != (n,):
        raise ValueError("hc needs one value per candle")
    m = _check_mask(mask, n)
    if n_random < 1:
        raise ValueError("n_random must be >= 1")
    if random not in ("rotate", "shuffle"):
        raise ValueError(f"random must be 'rotate' or 'shuffle', got {random!r}")
    bid, ask, source = quote_arrays(frame, half_spread_pips=half_spread_pips, pip=pip)
    span = _span(m, n)
    days = (candle_financing_days(frame.index, financing, granularity=granularity)
            if financing is not None else None)

    def backtest(target: np.ndarray) -> Any:
        return backtest_arrays(target, bid, ask, pip=pip,
                               stop_loss_pips=policy.stop_loss_pips,
                               take_profit_pips=policy.take_profit_pips,
                               financing=financing, financing_days=days)

    def run(target: np.ndarray) -> dict[str, Any]:
        bt = backtest(target)
        out = trading_metrics(bt.equity_pips, bt.position, bt.trade_pips, bt.costs_pips,
                              span=span, granularity=granularity,
                              financing_pips=None if financing is None else bt.financing_pips)
        reasons = bt.trades_i[:, 3]
        out["n_stop_loss"] = int((reasons == EXIT_STOP).sum())
        out["n_take_profit"] = int((reasons == EXIT_TAKE).sum())
        return out

    sig = score_signals(frame, a, h, instrument=inst, mask=m, threshold_pips=threshold_pips)
    trading = run(policy_targets(a, h, policy, m))
    trading["price_source"] = source
    trading["trade_on"] = policy.trade_on
    trading["policy"] = policy.describe()

    move = label_moves(frame["close"].to_numpy(dtype=np.float64), pip=pip)
    n_eval = int(m.sum())
    up = move > threshold_pips
    down = move < -threshold_pips
    n_decided = int((m & (up | down)).sum())
    baselines: dict[str, Any] = {}
    for name, d in (("always_long", 1), ("always_short", -1)):
        tgt = np.where(m, d, 0).astype(np.int8)
        hits = int((m & (up if d > 0 else down)).sum())
        entry = {"trading": run(tgt), "n_decided": n_decided}
        entry.update(_rate(hits, n_eval, "hit_rate"))
        # direction-only: right on the decided candles (its random-direction twin is itself:
        # one direction only)
        entry.update(_rate(hits, n_decided, "direction_rate", _NOT_DECIDED))
        baselines[name] = entry

    sel_hc = m & h & (a != 0)
    baselines["random_direction"] = {
        "hc": random_direction_baseline(a, sel_hc, move, threshold_pips=threshold_pips,
                                        n_draws=n_random, seed=seed),
        "all": random_direction_baseline(a, m & (a != 0), move, threshold_pips=threshold_pips,
                                         n_draws=n_random, seed=seed + 1),
    }

    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(m)
    null_pips = np.empty(n_random)
    null_fin = np.zeros(n_random)
    null_hc_hits = np.empty(n_random)
    null_hc_rate = np.empty(n_random)
    null_hc_dir = np.empty(n_random)
    for b in range(n_random):
        if random == "rotate" and idx.size > 1:
            perm = np.roll(idx, int(rng.integers(1, idx.size)))
        else:
            perm = rng.permutation(idx)
        ra = a.copy()
        rh = h.copy()
        ra[idx] = a[perm]
        rh[idx] = h[perm]
        bt = backtest(policy_targets(ra, rh, policy, m))
        null_pips[b] = bt.trade_pips.sum()
        null_fin[b] = bt.financing_pips
        hcs = m & rh & (ra != 0)
        hits = int((hcs & (((ra == 1) & up) | ((ra == -1) & down))).sum())
        n_dec = int((hcs & (up | down)).sum())
        null_hc_hits[b] = hits
        null_hc_rate[b] = hits / hcs.sum() if hcs.any() else np.nan
        null_hc_dir[b] = hits / n_dec if n_dec else np.nan

    def summary(x: np.ndarray) -> tuple[float | None, list[float] | None]:
        x = x[np.isfinite(x)]
        if not x.size:
            return None, None
        return float(x.mean()), [float(np.quantile(x, 0.025)), float(np.quantile(x, 0.975))]

    hc_mean, hc_95 = summary(null_hc_rate)
    dir_mean, dir_95 = summary(null_hc_dir)
    baselines["random"] = {
        "n_permutations": n_random,
        "method": random,
        "seed": seed,
        "net_pips_mean": float(null_pips.mean()),
        "net_pips_95": [float(np.quantile(null_pips, 0.025)),
                        float(np.quantile(null_pips, 0.975))],
        "financing_pips_mean": float(null_fin.mean()) if financing is not None else None,
        "hc_hit_rate_mean": hc_mean,
        "hc_hit_rate_95": hc_95,
        "hc_direction_rate_mean": dir_mean,
        "hc_direction_rate_95": dir_95,
    }
    rd = baselines["random_direction"]
    tests: dict[str, Any] = {
        "pvalue_net_pips_vs_random": permutation_pvalue(trading["net_pips"], null_pips),
        "pvalue_hc_direction_vs_random_direction": rd["hc"]["pvalue"],
        "pvalue_direction_vs_random_direction": rd["all"]["pvalue"],
    }
    if sig["n_hc"]:
        tests["pvalue_hc_hits_vs_random"] = permutation_pvalue(sig["hc_hits"], null_hc_hits)
    else:
        tests["pvalue_hc_hits_vs_random"] = None
        tests["pvalue_hc_hits_vs_random_note"] = "no HC signals"
    for key in ("hc", "all"):
        if rd[key]["pvalue"] is None:
            tests[f"pvalue_{'hc_' if key == 'hc' else ''}direction_vs_random_direction_note"] = \
                rd[key]["note"]
    return {"signals": sig, "trading": trading, "baselines": baselines, "tests": tests,
            "policy": policy.to_dict(),
            "financing": None if financing is None else financing.to_dict()}


def direction_clause(result: dict[str, Any]) -> str:
    """The direction-only figure of an :func:`evaluate_signals` result in words: right /
    decided for the signals the policy trades, against the same candles with random
    directions."""
    key = "all" if (result.get("policy") or {}).get("trade_on") == "all" else "hc"
    sig = result["signals"]
    rate = sig.get("direction_rate" if key == "all" else "hc_direction_rate")
    n_dec = sig.get("n_decided" if key == "all" else "n_hc_decided")
    rd = ((result.get("baselines") or {}).get("random_direction") or {}).get(key)
    what = "signals" if key == "all" else "HC signals"
    if rate is None or n_dec is None:
        return f"direction: undefined ({what}: none on a decided candle)"
    text = f"direction right on {100 * rate:.1f} % of {n_dec} decided {what}"
    if rd and rd.get("direction_rate_mean") is not None:
        lo, hi = rd["direction_rate_95"]
        text += (f" against {100 * rd['direction_rate_mean']:.1f} % [{100 * lo:.1f}, "
                 f"{100 * hi:.1f}] for the same candles with random directions (p = "
                 f"{rd['pvalue']:.3f})")
    return text


def verdict(result: dict[str, Any], *, alpha: float = 0.05) -> str:
    """A one-line plain-language verdict that states the figures it rests on.

    The decision rests on the **trading figures**: "no edge" unless the strategy beats the
    random baseline (random signals with the same rate and BUY/SELL mix) on net pips at
    ``alpha`` AND makes money net of the spread (and of financing, when charged) AND beats both
    always-long and always-short. The direction-only figure (:func:`direction_clause`: right /
    decided against the same candles with random directions) is stated beside it, as the
    explanation; the seed's hit rate is not used."""
    tr = result["trading"]
    p = result["tests"]["pvalue_net_pips_vs_random"]
    bl = result["baselines"]
    better = all(tr["net_pips"] > bl[k]["trading"]["net_pips"]
                 for k in ("always_long", "always_short"))
    costs = ("the spread and financing" if tr.get("financing_pips") is not None
             else "the spread")
    rule = (f"(the verdict rests on these trading figures: an edge needs p < {alpha:g}, net > 0 "
            "and beating always long and always short)")
    if p < alpha and tr["net_pips"] > 0 and better:
        head = (f"edge: net {tr['net_pips']:.1f} pips after {costs}, beats the random baseline "
                f"(p = {p:.3f}) and always long/short {rule}")
    else:
        head = (f"no edge: net {tr['net_pips']:.1f} pips after {costs}, p = {p:.3f} against "
                f"random signals with the same rate and mix {rule}")
    return f"{head}; {direction_clause(result)}"
