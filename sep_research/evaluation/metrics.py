"""Out-of-sample evaluation of per-candle signals: hit rates, trading figures and baselines.

Scoring follows the spec's **causal** scoring (qfh-spec section 5): the signal of candle ``i`` is
correct when it is BUY and the next move ``(close[i+1] - close[i]) / pip`` is above
``+threshold_pips`` (0.5), or SELL and the move is below ``-threshold_pips``. Moves within the
threshold count as wrong. The last candle has no next move and is never scored.

Trading figures come from :func:`sep_research.backtest.run_backtest` (fills at bid/ask, so
net of the spread). By default only high-confidence (HC) signals trade, one candle each
(``hold="flat"``). Baselines are computed on exactly the same candles:

* ``always_long`` / ``always_short``: a target of +1 / -1 on every evaluated candle;
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

from sep_research.evaluation.stats import (
    max_drawdown,
    periods_per_year,
    permutation_pvalue,
    sharpe_interval,
    sharpe_ratio,
    wilson_interval,
)


def _rate(k: int, n: int, name: str) -> dict[str, Any]:
    if n == 0:
        return {name: None, f"{name}_ci95": None, f"{name}_note": "no signals: undefined"}
    lo, hi = wilson_interval(k, n)
    return {name: k / n, f"{name}_ci95": [lo, hi]}


def next_move_pips(frame: pd.DataFrame, pip: float) -> np.ndarray:
    """``(close[i+1] - close[i]) / pip`` for each candle; NaN for the last one."""
    c = frame["close"].to_numpy(dtype=np.float64)
    out = np.full(c.shape, np.nan)
    out[:-1] = (c[1:] - c[:-1]) / pip
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
    frame: pd.DataFrame,
    actions: Any,
    hc: Any,
    *,
    pip: float,
    mask: Any = None,
    threshold_pips: float = 0.5,
) -> dict[str, Any]:
    """Hit rates (overall and HC, each with a Wilson 95 % interval), signal rate, base rates."""
    n = len(frame)
    a = np.asarray(actions)
    h = np.asarray(hc, dtype=bool)
    if a.shape != (n,) or h.shape != (n,):
        raise ValueError("actions and hc need one value per candle")
    m = _check_mask(mask, n)
    move = next_move_pips(frame, pip)
    up = move > threshold_pips
    down = move < -threshold_pips
    correct = ((a == 1) & up) | ((a == -1) & down)
    sig = m & (a != 0)
    hcs = sig & h
    n_sig, n_hc = int(sig.sum()), int(hcs.sum())
    n_candles = int(m.sum())
    up_rate = float(up[m].mean())
    down_rate = float(down[m].mean())
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
    mask: Any = None,
    trade_on: str = "hc",
    half_spread_pips: float | None = None,
    stop_loss_pips: float | None = None,
    take_profit_pips: float | None = None,
    n_random: int = 1000,
    random: str = "rotate",
    seed: int = 0,
    threshold_pips: float = 0.5,
) -> dict[str, Any]:
    """Score signals out of sample and set them beside the baselines (see module docstring).

    Returns ``{"signals": score_signals(...), "trading": trading_metrics(...),
    "baselines": {"always_long", "always_short", "random"}, "tests": {p-values}}``.
    """
    from sep_research.backtest.engine import check_target, quote_arrays
    from sep_research.backtest.nb import SIZING_FIXED, backtest_nb
    from sep_research.data.candles import pip_size

    n = len(frame)
    pip = pip_size(instrument)
    a = check_target(actions, n)
    h = np.asarray(hc, dtype=bool)
    if h.shape != (n,):
        raise ValueError("hc needs one value per candle")
    m = _check_mask(mask, n)
    if trade_on not in ("hc", "all"):
        raise ValueError(f"trade_on must be 'hc' or 'all', got {trade_on!r}")
    if n_random < 1:
        raise ValueError("n_random must be >= 1")
    if random not in ("rotate", "shuffle"):
        raise ValueError(f"random must be 'rotate' or 'shuffle', got {random!r}")
    bid, ask, source = quote_arrays(frame, half_spread_pips=half_spread_pips, pip=pip)
    units = np.ones(n)
    sl = float(stop_loss_pips or 0.0)
    tp = float(take_profit_pips or 0.0)
    span = _span(m, n)

    def target_of(act: np.ndarray, hcm: np.ndarray) -> np.ndarray:
        t = np.where(m, act, 0)
        if trade_on == "hc":
            t = np.where(hcm, t, 0)
        return t.astype(np.int8)

    def run(target: np.ndarray) -> dict[str, Any]:
        _ti, tf, nt, pos, eq, _eqc, costs = backtest_nb(
            target, units, bid, ask, pip, sl, tp, SIZING_FIXED, 0.01, 0.0, 1.0)
        return trading_metrics(eq, pos, tf[:nt, 3], costs[0], span=span,
                               granularity=granularity)

    sig = score_signals(frame, a, h, pip=pip, mask=m, threshold_pips=threshold_pips)
    trading = run(target_of(a, h))
    trading["price_source"] = source
    trading["trade_on"] = trade_on

    move = next_move_pips(frame, pip)
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
        tgt = target_of(ra, rh)
        _ti, tf, nt, _pos, _eq, _eqc, _costs = backtest_nb(
            tgt, units, bid, ask, pip, sl, tp, SIZING_FIXED, 0.01, 0.0, 1.0)
        null_pips[b] = tf[:nt, 3].sum()
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
    return {"signals": sig, "trading": trading, "baselines": baselines, "tests": tests}


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
