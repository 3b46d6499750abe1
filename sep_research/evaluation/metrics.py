"""Out-of-sample evaluation of per-candle signals: hit rates, trading figures and baselines.

:func:`score_signals` is **the** scorer (the seed's reproduction, the walk-forward and the
reports all use it; results are fractions, percent only when printed). It follows the spec's
scoring (qfh-spec section 5): the signal of candle ``i`` is correct when it is BUY and its
label move (:func:`sep_research.signals.seed.label_moves`, the one label function: causal
``(close[i+1] - close[i]) / pip``; legacy: the original's look-ahead scoring) is above
``+threshold_pips`` (0.5), or SELL and the move is below ``-threshold_pips``. Moves within the
threshold count as wrong. Candles without a label (the last one, causally) or without
features are not scored.

Trading figures come from :func:`sep_research.backtest.backtest_arrays` (fills at bid/ask, so
net of the spread) under the strategy's **trading policy** (:class:`sep_research.strategy.Policy`:
which signals trade, what a HOLD means, stop-loss and take-profit), turned into per-candle
targets by :func:`policy_targets`. The default policy trades high-confidence (HC) signals
only, one candle each (``hold="flat"``), with no stop. Baselines are computed on exactly the
same candles under the same policy (its stop and take-profit included):

* ``always_long`` / ``always_short``: a target of +1 / -1 on every evaluated candle (held
  throughout; after a stop or take-profit the backtest stays flat until the target changes,
  which for these baselines is never);
* ``random``: random signals with exactly the same rate and BUY/SELL mix, made from the
  strategy's own (action, HC) sequence over the evaluated candles. ``random="rotate"`` (the
  default) shifts that sequence circularly by a random offset, which also keeps its runs and
  so its turnover and spread costs; ``random="shuffle"`` permutes it (runs are broken, so
  the random signals trade, and pay the spread, more often than the strategy). p-values for
  the strategy against this null are ``(1 + #{null >= observed}) / (1 + B)``.

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
from sep_research.strategy import Policy, data_instrument


def _rate(k: int, n: int, name: str) -> dict[str, Any]:
    if n == 0:
        return {name: None, f"{name}_ci95": None, f"{name}_note": "no signals: undefined"}
    lo, hi = wilson_interval(k, n)
    return {name: k / n, f"{name}_ci95": [lo, hi]}


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
    """Hit rates (overall and HC, each with a Wilson 95 % interval), signal rate, base rates.

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
    }
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
) -> dict[str, Any]:
    """Net pips (with a 95 % interval from the per-trade spread), Sharpe (annualised, with an
    interval), maximum drawdown, turnover and costs, over candles ``span[0]:span[1]``."""
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
) -> dict[str, Any]:
    """Score signals out of sample and set them beside the baselines (see module docstring).

    ``policy``: the trading policy the backtests use (default :class:`Policy()`: HC signals
    only, one-candle trades, no stop). ``half_spread_pips``: mid +/- this half-spread instead
    of the frame's bid/ask (required without bid/ask).

    Returns ``{"signals": score_signals(...), "trading": trading_metrics(...),
    "baselines": {"always_long", "always_short", "random"}, "tests": {p-values},
    "policy": policy.to_dict()}``.
    """
    from sep_research.backtest.engine import backtest_arrays, check_target, quote_arrays
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

    def backtest(target: np.ndarray) -> Any:
        return backtest_arrays(target, bid, ask, pip=pip,
                               stop_loss_pips=policy.stop_loss_pips,
                               take_profit_pips=policy.take_profit_pips)

    def run(target: np.ndarray) -> dict[str, Any]:
        bt = backtest(target)
        out = trading_metrics(bt.equity_pips, bt.position, bt.trade_pips, bt.costs_pips,
                              span=span, granularity=granularity)
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
    baselines: dict[str, Any] = {}
    for name, d in (("always_long", 1), ("always_short", -1)):
        tgt = np.where(m, d, 0).astype(np.int8)
        hits = int((m & ((move > threshold_pips) if d > 0 else (move < -threshold_pips))).sum())
        entry = {"trading": run(tgt)}
        entry.update(_rate(hits, n_eval, "hit_rate"))
        baselines[name] = entry

    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(m)
    null_pips = np.empty(n_random)
    null_hc_hits = np.empty(n_random)
    null_hc_rate = np.empty(n_random)
    up = move > threshold_pips
    down = move < -threshold_pips
    for b in range(n_random):
        if random == "rotate" and idx.size > 1:
            perm = np.roll(idx, int(rng.integers(1, idx.size)))
        else:
            perm = rng.permutation(idx)
        ra = a.copy()
        rh = h.copy()
        ra[idx] = a[perm]
        rh[idx] = h[perm]
        null_pips[b] = backtest(policy_targets(ra, rh, policy, m)).trade_pips.sum()
        hcs = m & rh & (ra != 0)
        hits = int((hcs & (((ra == 1) & up) | ((ra == -1) & down))).sum())
        null_hc_hits[b] = hits
        null_hc_rate[b] = hits / hcs.sum() if hcs.any() else np.nan
    finite_rate = null_hc_rate[np.isfinite(null_hc_rate)]
    baselines["random"] = {
        "n_permutations": n_random,
        "method": random,
        "seed": seed,
        "net_pips_mean": float(null_pips.mean()),
        "net_pips_95": [float(np.quantile(null_pips, 0.025)),
                        float(np.quantile(null_pips, 0.975))],
        "hc_hit_rate_mean": float(finite_rate.mean()) if finite_rate.size else None,
        "hc_hit_rate_95": ([float(np.quantile(finite_rate, 0.025)),
                            float(np.quantile(finite_rate, 0.975))]
                           if finite_rate.size else None),
    }
    tests: dict[str, Any] = {
        "pvalue_net_pips_vs_random": permutation_pvalue(trading["net_pips"], null_pips),
    }
    if sig["n_hc"]:
        tests["pvalue_hc_hits_vs_random"] = permutation_pvalue(sig["hc_hits"], null_hc_hits)
    else:
        tests["pvalue_hc_hits_vs_random"] = None
        tests["pvalue_hc_hits_vs_random_note"] = "no HC signals"
    return {"signals": sig, "trading": trading, "baselines": baselines, "tests": tests,
            "policy": policy.to_dict()}


def verdict(result: dict[str, Any], *, alpha: float = 0.05) -> str:
    """A one-line plain-language verdict; "no edge" unless the strategy beats the random
    baseline on net pips at ``alpha`` AND makes money net of the spread AND beats both
    always-long and always-short."""
    tr = result["trading"]
    p = result["tests"]["pvalue_net_pips_vs_random"]
    bl = result["baselines"]
    better = all(tr["net_pips"] > bl[k]["trading"]["net_pips"]
                 for k in ("always_long", "always_short"))
    if p < alpha and tr["net_pips"] > 0 and better:
        return (f"edge: net {tr['net_pips']:.1f} pips after spread, beats the random baseline "
                f"(p = {p:.3f}) and always long/short")
    return (f"no edge: net {tr['net_pips']:.1f} pips after spread, p = {p:.3f} against random "
            "signals with the same rate and mix")
