"""Tables and figures of a walk-forward training run (notebook 03-training-run).

Input: a :class:`sep_research.training.walkforward.WalkForwardResult` and its candles.

- :func:`direction_table` (first): out-of-sample direction-only hit rates (right / decided
  among HC signals whose next move exceeds the threshold either way) with 95 % intervals,
  beside the **same candles, random direction** baseline (2.5-97.5 % of its draws and the
  p-value) and the baselines; feeds :func:`sep_research.reporting.figures.accuracy_figure`
  (``value="direction_rate"``, the baseline's range drawn on each bar).
- :func:`accuracy_table`: **the seed's metric** (HC hit rate: next move beyond the threshold in
  the signal's direction, which rewards firing on volatile candles) with 95 % intervals, its
  random-timing chance and the same candles with random directions, beside the baselines.
- :func:`trading_table`: net pips (95 % interval), the financing inside them, the spread,
  annualised Sharpe (interval), drawdown, trades, p-value against the random signals (what the
  verdict rests on).
- :func:`fold_table`, :func:`overfitting_table`: per fold choices; PBO, SPA, DSR, stability.
- :func:`selection_gap_table`: the sweep's net pips of each fold's choice beside the backtest
  of the same configuration under the trading policy (the sweep cannot model a stop).
- :func:`equity_curves`: out-of-sample equity (pips) of each rule from the backtest (fills at
  bid/ask, or mid +/- the half-spread); feeds ``figures.equity_figure``.
- :func:`oos_actions`: the stitched out-of-sample target of the tuned rule (for the
  signals-on-price figure).
- :func:`grid_oos_table`: every configuration of the grid scored on the out-of-sample
  candles, for parameter heatmaps. These are for inspection only: choosing from them would
  be selection on the test data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

RULES = (("tuned", "tuned rule (walk-forward)"), ("seed", "seed preset (untuned)"))


def _nan2(x: list[float] | None) -> list[float]:
    return list(x) if x else [np.nan, np.nan]


def direction_table(result: Any) -> pd.DataFrame:
    """Direction right / decided (HC signals on candles whose next move exceeds the threshold
    either way), 95 % Wilson interval, ``n`` decided signals, and the same candles with random
    directions at the same BUY/SELL mix (mean, 2.5-97.5 %, p-value), per rule and baseline."""
    ev = result.evaluation
    rows = []
    for key, label in RULES:
        s = ev[key]["signals"]
        rd = ev[key]["baselines"]["random_direction"]["hc"]
        ci, null = _nan2(s.get("hc_direction_rate_ci95")), _nan2(rd.get("direction_rate_95"))
        rows.append({"rule": label, "direction_rate": s.get("hc_direction_rate"),
                     "ci_low": ci[0], "ci_high": ci[1], "n": s["n_hc_decided"],
                     "null_mean": rd.get("direction_rate_mean"), "null_low": null[0],
                     "null_high": null[1], "p_direction": rd.get("pvalue")})
    bl = ev["tuned"]["baselines"]
    for key, label in (("always_long", "always long"), ("always_short", "always short")):
        ci = _nan2(bl[key].get("direction_rate_ci95"))
        rows.append({"rule": label, "direction_rate": bl[key].get("direction_rate"),
                     "ci_low": ci[0], "ci_high": ci[1], "n": bl[key].get("n_decided")})
    r = bl["random"]
    ci = _nan2(r.get("hc_direction_rate_95"))
    rows.append({"rule": f"random signals, same rate and mix ({r['n_permutations']}x, "
                 "2.5-97.5%)", "direction_rate": r.get("hc_direction_rate_mean"),
                 "ci_low": ci[0], "ci_high": ci[1], "n": np.nan})
    out = pd.DataFrame(rows).set_index("rule")
    return out.astype(float)


def accuracy_table(result: Any) -> pd.DataFrame:
    """The seed's metric: HC hit rate (next move beyond the threshold in the signal's
    direction; it rewards firing on volatile candles), its 95 % interval, ``chance`` (random
    timing with the same BUY/SELL mix) and ``same_candles_random_direction`` (the rule's own
    candles with random directions: what timing alone earns on this metric)."""
    ev = result.evaluation
    rows = []
    for key, label in RULES:
        s = ev[key]["signals"]
        ci = s.get("hc_hit_rate_ci95") or [np.nan, np.nan]
        rd = ev[key]["baselines"]["random_direction"]["hc"]
        rows.append({"rule": label, "hit_rate": s.get("hc_hit_rate"), "ci_low": ci[0],
                     "ci_high": ci[1], "n": s["n_hc"], "chance": s.get("hc_chance_rate"),
                     "same_candles_random_direction": rd.get("hit_rate_mean")})
    bl = ev["tuned"]["baselines"]
    n_eval = ev["tuned"]["signals"]["n_candles"]
    for key, label in (("always_long", "always long"), ("always_short", "always short")):
        ci = bl[key].get("hit_rate_ci95") or [np.nan, np.nan]
        rows.append({"rule": label, "hit_rate": bl[key].get("hit_rate"), "ci_low": ci[0],
                     "ci_high": ci[1], "n": n_eval, "chance": np.nan})
    r = bl["random"]
    ci = r.get("hc_hit_rate_95") or [np.nan, np.nan]
    rows.append({"rule": f"random signals, same rate and mix ({r['n_permutations']}x, "
                 "2.5-97.5%)", "hit_rate": r.get("hc_hit_rate_mean"), "ci_low": ci[0],
                 "ci_high": ci[1], "n": ev["tuned"]["signals"]["n_hc"], "chance": np.nan})
    out = pd.DataFrame(rows).set_index("rule")
    return out.astype(dict.fromkeys(("hit_rate", "ci_low", "ci_high", "chance",
                                     "same_candles_random_direction"), float))


def trading_table(result: Any) -> pd.DataFrame:
    ev = result.evaluation
    rows = []

    def add(label: str, t: dict[str, Any], p: float | None) -> None:
        ci = t.get("net_pips_ci95") or [np.nan, np.nan]
        sci = t.get("sharpe_ci95") or [np.nan, np.nan]
        rows.append({"rule": label, "net_pips": t["net_pips"], "net_pips_low": ci[0],
                     "net_pips_high": ci[1], "sharpe_annualised": t.get("sharpe_annualised"),
                     "sharpe_low": sci[0], "sharpe_high": sci[1],
                     "max_drawdown_pips": t["max_drawdown_pips"], "trades": t["n_trades"],
                     "costs_pips": t["costs_pips"], "financing_pips": t.get("financing_pips"),
                     "p_vs_random": p})

    for key, label in RULES:
        add(label, ev[key]["trading"], ev[key]["tests"]["pvalue_net_pips_vs_random"])
    bl = ev["tuned"]["baselines"]
    add("always long", bl["always_long"]["trading"], None)
    add("always short", bl["always_short"]["trading"], None)
    r = bl["random"]
    rows.append({"rule": "random signals (mean, 2.5-97.5%)", "net_pips": r["net_pips_mean"],
                 "net_pips_low": r["net_pips_95"][0], "net_pips_high": r["net_pips_95"][1],
                 "financing_pips": r.get("financing_pips_mean")})
    return pd.DataFrame(rows).set_index("rule").astype(float)


def fold_table(result: Any) -> pd.DataFrame:
    rows = []
    for f in result.folds:
        d = f.to_dict()
        rows.append({"fold": d["index"], "train": " .. ".join(d["train_times"]),
                     "test": " .. ".join(d["test_times"]),
                     "chosen": d["chosen"], "train_objective": d["train_objective"],
                     "train_n_hc": d["train_n_hc"], "test_n_hc": d["test_n_hc"],
                     "test_hc_accuracy": d["test_hc_accuracy"],
                     "test_hc_net_pips": d["test_hc_net_pips"],
                     "test_rank_pct": d["test_rank_pct"], "note": d["note"],
                     **({f"p_{k}": v for k, v in (d["params"] or {}).items()
                         if k in ("window", "w_s", "w_c", "w_e", "buy_threshold",
                                  "sell_threshold", "conf_threshold")})})
    return pd.DataFrame(rows).set_index("fold")


def overfitting_table(result: Any) -> pd.DataFrame:
    of, st = result.overfitting, result.stability
    pbo, spa = of.get("pbo"), of.get("spa")
    rows = [
        ("configurations in the grid", of.get("n_configurations")),
        ("PBO (CSCV): probability the in-sample best is below median out of sample",
         pbo.get("pbo") if pbo else f"n/a ({of.get('pbo_note', '')})"),
        ("SPA p-value, best configuration vs staying flat",
         spa.get("pvalue_consistent") if spa else f"n/a ({of.get('spa_note', '')})"),
        ("deflated Sharpe ratio of the in-sample choice (median over folds)",
         of.get("dsr_median")),
        ("out-of-sample rank of the chosen configuration (mean; 0.5 = median)",
         of.get("oos_rank_of_choice_mean")),
        ("folds that chose a configuration", f"{st.get('folds_with_choice', 0)}/{st['folds']}"),
        ("distinct configurations chosen", st.get("distinct_configurations")),
        ("share of the modal choice", st.get("modal_share")),
    ]
    return pd.DataFrame(rows, columns=["statistic", "value"]).set_index("statistic")


def selection_gap_table(result: Any) -> pd.DataFrame:
    """Per fold: the sweep's net pips of the chosen configuration (one-candle trades, no stop)
    beside the backtest of the same configuration under the policy, on training and test."""
    gap = result.selection_gap
    rows = [{"fold": r["fold"], "train_sweep": r["train_sweep_net_pips"],
             "train_backtest": r["train_backtest_net_pips"],
             "train_gap": r["train_backtest_net_pips"] - r["train_sweep_net_pips"],
             "test_sweep": r["test_sweep_net_pips"], "test_backtest": r["test_backtest_net_pips"],
             "test_gap": r["test_backtest_net_pips"] - r["test_sweep_net_pips"]}
            for r in gap.get("per_fold", [])]
    cols = ["fold", "train_sweep", "train_backtest", "train_gap", "test_sweep",
            "test_backtest", "test_gap"]
    return pd.DataFrame(rows, columns=cols).set_index("fold")


def oos_actions(result: Any, *, rule: str = "tuned") -> np.ndarray:
    """Target per candle of a rule out of sample under the result's trading policy (e.g. its
    HC signals inside the test folds)."""
    from sep_research.evaluation.metrics import policy_targets

    if rule == "tuned":
        a, h = result.oos_action, result.oos_hc
    elif rule == "seed":
        a, h = result.seed_action, result.seed_hc
    else:
        raise ValueError(f"rule must be 'tuned' or 'seed', got {rule!r}")
    return policy_targets(a, h, result.policy, result.oos_mask)


def equity_curves(frame: pd.DataFrame, result: Any, *,
                  half_spread_pips: float | None) -> dict[str, pd.Series]:
    """Out-of-sample equity in pips (backtest fills at bid/ask, the result's policy: its stop
    and take-profit; the financing of its cost model) over the test folds."""
    from sep_research.backtest import run_backtest

    m = np.asarray(result.oos_mask, bool)
    idx = np.flatnonzero(m)
    lo, hi = int(idx[0]), int(min(idx[-1] + 3, len(frame)))
    targets = {label: oos_actions(result, rule=key) for key, label in RULES}
    targets["always long"] = np.where(m, 1, 0).astype(np.int8)
    targets["always short"] = np.where(m, -1, 0).astype(np.int8)
    out = {}
    for name, tgt in targets.items():
        bt = run_backtest(frame, tgt, instrument=result.instrument,
                          half_spread_pips=half_spread_pips,
                          stop_loss_pips=result.policy.stop_loss_pips,
                          take_profit_pips=result.policy.take_profit_pips,
                          financing=result.costs.financing, granularity=result.granularity)
        eq = bt.equity_pips.iloc[lo:hi]
        out[name] = eq - (bt.equity_pips.iloc[lo - 1] if lo > 0 else 0.0)
    return out


def fold_starts(frame: pd.DataFrame, result: Any) -> list[pd.Timestamp]:
    return [frame.index[f.test[0]] for f in result.folds]


def grid_oos_table(frame: pd.DataFrame, grid: Any, result: Any, *,
                   half_spread_pips: float | None, engine: str = "auto") -> pd.DataFrame:
    """Each configuration scored on the out-of-sample candles with the sweep kernel (HC
    count, HC accuracy, net pips after the spread): for heatmaps, not for choosing."""
    from sep_research.training.walkforward import prepare_sweep, sweep

    si = prepare_sweep(frame, grid, instrument=result.instrument,
                       half_spread_pips=half_spread_pips, engine=engine)
    idx = np.flatnonzero(result.oos_mask)
    sw = sweep(si, int(idx[0]), int(idx[-1]) + 1, engine=engine)
    table = pd.DataFrame(grid.table, columns=list(grid.fields))
    n = sw["n_hc"].astype(float)
    table["oos_n_hc"] = sw["n_hc"]
    with np.errstate(invalid="ignore", divide="ignore"):
        table["oos_hc_accuracy"] = np.where(n > 0, sw["n_hc_correct"] / np.where(n > 0, n, 1),
                                            np.nan)
    table["oos_net_pips"] = sw["hc_sum_pips_net"]
    table["window"] = table["window"].astype(int)
    return table


def training_metrics(result: Any) -> dict[str, Any]:
    """Headline numbers for ``metrics.json`` and the index."""
    ev = result.evaluation
    t, s = ev["tuned"]["trading"], ev["tuned"]["signals"]
    of = result.overfitting
    rd = ev["tuned"]["baselines"]["random_direction"]["hc"]
    return {
        "oos_candles": s["n_candles"],
        "oos_hc_signals": s["n_hc"],
        "oos_hc_direction_rate": s.get("hc_direction_rate"),
        "oos_hc_direction_random": rd.get("direction_rate_mean"),
        "p_direction_vs_random_direction": rd.get("pvalue"),
        "oos_net_pips": t["net_pips"],
        "oos_financing_pips": t.get("financing_pips"),
        "p_vs_random": ev["tuned"]["tests"]["pvalue_net_pips_vs_random"],
        "oos_hc_hit_rate_seed_metric": s.get("hc_hit_rate"),
        "oos_hc_chance_rate_seed_metric": s.get("hc_chance_rate"),
        "oos_sharpe_annualised": t.get("sharpe_annualised"),
        "oos_max_drawdown_pips": t["max_drawdown_pips"],
        "seed_oos_net_pips": ev["seed"]["trading"]["net_pips"],
        "pbo": (of.get("pbo") or {}).get("pbo"),
        "spa_p": (of.get("spa") or {}).get("pvalue_consistent"),
        "dsr_median": of.get("dsr_median"),
        "policy": result.policy.describe(),
        "selection_gap_test_pips": result.selection_gap.get("test_gap_pips"),
    }


def write_model(frame: pd.DataFrame, result: Any, path: Any) -> dict[str, Any] | None:
    """Write the model artifact (``sep_research.training``'s payload, checksummed) to
    ``path``; None, with the reason printed, when no configuration could be chosen."""
    from sep_research.training.artifact import write_artifact
    from sep_research.training.summary import build_payload

    try:
        payload = build_payload(result, frame)
    except ValueError as exc:
        print(f"no model artifact: {exc}")
        return None
    return write_artifact(path, payload)
