"""From a walk-forward result to the model artifact's payload and the out-of-sample table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sep_research.training.walkforward import WalkForwardResult
from sep_research.versions import git_state, package_versions


def code_version(root: str | Path | None = None) -> dict[str, Any]:
    """The artifact's ``"code"`` entry: the package version, and the git SHA of HEAD and whether
    the tree has changes (:func:`sep_research.versions.git_state`; None when unknown)."""
    from sep_research import __version__

    state = git_state(root)
    out: dict[str, Any] = {"version": __version__, "git_sha": state["sha"],
                           "dirty": state["dirty"]}
    if "note" in state:
        out["note"] = state["note"]
    return out


def jsonable(obj: Any) -> Any:
    """Plain JSON types from numpy scalars, arrays and tuples (NaN is left for the writer to
    refuse, so that it is reported with its path)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def build_payload(result: WalkForwardResult, frame: pd.DataFrame) -> dict[str, Any]:
    """The artifact payload (see :mod:`sep_research.training.artifact` for the layout).

    Raises ``ValueError`` when no configuration could be chosen on the latest data: there is
    then no model to write.
    """
    from sep_research.data.candles import get_provenance, isoformat, utc_now

    if result.final.get("params") is None or result.spec is None:
        raise ValueError("no model to write: " + result.final.get("note", "no configuration"))
    prov = get_provenance(frame).to_dict()
    ev = result.evaluation
    folds = [f.to_dict() for f in result.folds]
    for f in folds:
        f.pop("dsr", None)  # kept under overfitting
    spec = result.spec
    return jsonable({
        "created_at": isoformat(utc_now()),
        **spec.to_dict(),  # rule, signal_params, instrument, granularity, alignment,
        # policy, costs: what the runner trades, and what the metrics below evaluated
        "objective": {"name": result.settings["objective"], "min_hc": result.settings["min_hc"],
                      "ties": "lowest grid row",
                      "sweep_scores": "one-candle trades of the signals the policy trades, "
                                      "close-to-close move less the full spread at the next "
                                      "open (see selection_gap)",
                      "trades": spec.policy.describe(),
                      "financing_in_selection": False,
                      "financing": ("not in the selection: the sweep's one-candle trades are "
                                    "scored without financing; the out-of-sample backtests, "
                                    "the baselines and the selection gap's backtests charge "
                                    "it (the gap shows its effect on the choice)"
                                    if spec.costs.financing is not None else "off")},
        "selection_gap": result.selection_gap,
        "data": {"provenance": prov, "sha256": prov["sha256"],
                 "price_source": result.settings["price_source"]},
        "windows": {"scheme": result.settings["scheme"], "purge": result.settings["purge"],
                    "warmup": result.settings["warmup"], "folds": folds,
                    "final_train": result.final["train"], "final_note": result.final["note"],
                    "out_of_sample": [folds[0]["test_times"][0], folds[-1]["test_times"][1]]},
        "metrics": {name: {k: ev[name][k] for k in ("signals", "trading", "tests")}
                    for name in ("tuned", "seed")},
        "baselines": {name: ev[name]["baselines"] for name in ("tuned", "seed")},
        "overfitting": result.overfitting,
        "stability": result.stability,
        "settings": result.settings,
        "verdict": {name: _verdict(ev[name]) for name in ("tuned", "seed")},
        "code": code_version(),
        "packages": package_versions(),
    })


def _verdict(e: dict[str, Any]) -> str:
    from sep_research.evaluation.metrics import verdict

    return verdict(e)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _ci(ci: list[float] | None, pct: bool = False, fmt: str = ".1f") -> str:
    if ci is None:
        return "[n/a]"
    if pct:
        return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return f"[{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def _num(x: float | None, fmt: str = ".1f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:{fmt}}"


def oos_table(result: WalkForwardResult) -> str:
    """The out-of-sample table: tuned and seed rules beside the baselines, with intervals,
    under the policy the evaluation traded, and the sweep-vs-backtest selection gap."""
    return _oos_table(result.evaluation, result.overfitting, result.stability,
                      policy=result.policy.describe(), costs=result.costs.describe(),
                      gap=result.selection_gap)


def artifact_oos_table(art: dict[str, Any]) -> str:
    """The same table from a model artifact (what :func:`build_payload` stored)."""
    from sep_research.strategy import StrategySpec

    spec = StrategySpec.from_artifact(art)
    ev = {name: {**art["metrics"][name], "baselines": art["baselines"][name]}
          for name in ("tuned", "seed")}
    return _oos_table(ev, art["overfitting"], art["stability"], policy=spec.policy.describe(),
                      costs=spec.costs.describe(), gap=art.get("selection_gap"))


def gap_lines(gap: dict[str, Any] | None) -> list[str]:
    """The selection gap in words: what the sweep scored against the backtest of the choice."""
    if not gap or not gap.get("per_fold"):
        return ["selection gap: n/a (no fold chose a configuration)"]
    return [
        ("selection gap (the sweep that chooses scores one-candle trades without stops or "
         "financing; the backtest trades the policy"
         + (", financing charged" if gap.get("backtest_financing") else "") + "):"),
        (f"  chosen configurations, training folds: sweep {gap['train_sweep_net_pips']:+.1f} "
         f"net pips, backtest {gap['train_backtest_net_pips']:+.1f} (gap "
         f"{gap['train_gap_pips']:+.1f})"),
        (f"  chosen configurations, test folds:     sweep {gap['test_sweep_net_pips']:+.1f} "
         f"net pips, backtest {gap['test_backtest_net_pips']:+.1f} (gap "
         f"{gap['test_gap_pips']:+.1f})"),
    ]


def _dir_cell(rate: float | None, ci: list[float] | None) -> str:
    return "n/a" if rate is None else f"{_pct(rate)} {_ci(ci, pct=True)}"


def _oos_table(ev: dict[str, Any], of: dict[str, Any], st: dict[str, Any], *,
               policy: str, costs: str, gap: dict[str, Any] | None) -> str:
    rules = (("tuned", "tuned (walk-forward)"), ("seed", "seed preset (untuned)"))
    bl = ev["tuned"]["baselines"]
    s0 = ev["tuned"]["signals"]
    thr = s0.get("threshold_pips", 0.5)
    lines = [f"policy traded: {policy}; costs: {costs}", ""]

    # 1. direction only: what the rule knows about the direction of the next move
    lines.append(f"direction (out of sample): right / decided, among HC signals whose next move "
                 f"exceeds {thr:g} pip either way, against the same candles with random "
                 "directions at the rule's BUY/SELL mix")
    head = (f"{'rule':<28} {'HC':>5} {'decided':>7} {'direction right [95% CI]':>26} "
            f"{'same candles, random dir. [2.5, 97.5%]':>40} {'p(dir)':>7}")
    lines += [head, "-" * len(head)]
    for name, label in rules:
        e = ev[name]
        s = e["signals"]
        rd = (e["baselines"].get("random_direction") or {}).get("hc") or {}
        null = (_dir_cell(rd.get("direction_rate_mean"), rd.get("direction_rate_95"))
                if rd else "n/a")
        lines.append(
            f"{label:<28} {s['n_hc']:>5} {s.get('n_hc_decided', 0):>7} "
            f"{_dir_cell(s.get('hc_direction_rate'), s.get('hc_direction_rate_ci95')):>26} "
            f"{null:>40} {_num(rd.get('pvalue'), '.3f'):>7}")
    for name, label in (("always_long", "always long"), ("always_short", "always short")):
        b = bl[name]
        lines.append(
            f"{label:<28} {'-':>5} {b.get('n_decided', 0):>7} "
            f"{_dir_cell(b.get('direction_rate'), b.get('direction_rate_ci95')):>26} "
            f"{'(one direction: it is its own)':>40} {'':>7}")
    r = bl["random"]
    lines.append(
        f"{'random, same rate & mix':<28} {'':>5} {'':>7} "
        f"{_dir_cell(r.get('hc_direction_rate_mean'), r.get('hc_direction_rate_95')):>26} "
        f"{'(' + str(r['n_permutations']) + ' ' + r['method'] + ', 2.5-97.5%)':>40}")

    # 2. the seed's metric, labelled as what it is
    lines.append("")
    lines.append(f"the seed's metric (HC hit rate: next move > {thr:g} pip in the signal's "
                 "direction; a signal on a quiet candle is wrong whatever its direction, so it "
                 "rewards firing on volatile candles):")
    head = (f"{'rule':<28} {'HC hit rate [95% CI]':>24} {'random timing, same mix':>24} "
            f"{'same candles, random dir.':>26} {'decided share':>13}")
    lines += [head, "-" * len(head)]
    for name, label in rules:
        s = ev[name]["signals"]
        rd = (ev[name]["baselines"].get("random_direction") or {}).get("hc") or {}
        lines.append(
            f"{label:<28} "
            f"{_dir_cell(s.get('hc_hit_rate'), s.get('hc_hit_rate_ci95')):>24} "
            f"{_pct(s.get('hc_chance_rate')):>24} "
            f"{_dir_cell(rd.get('hit_rate_mean'), rd.get('hit_rate_95')):>26} "
            f"{_pct(s.get('hc_decided_share')):>13}")
    for name, label in (("always_long", "always long"), ("always_short", "always short")):
        b = bl[name]
        lines.append(f"{label:<28} {_dir_cell(b.get('hit_rate'), b.get('hit_rate_ci95')):>24}")
    lines.append(f"{'random, same rate & mix':<28} "
                 f"{_dir_cell(r.get('hc_hit_rate_mean'), r.get('hc_hit_rate_95')):>24}")
    lines.append(
        f"  base rates over the {s0['n_candles']} candles judged: next move > +{thr:g} pip "
        f"{_pct(s0['base_rate_up'])}, < -{thr:g} pip {_pct(s0['base_rate_down'])} (decided: "
        f"{_pct(s0.get('decided_rate'))}); 'decided share': HC signals on decided candles")

    # 3. trading: what the verdict rests on
    fin_on = ev["tuned"]["trading"].get("financing_pips") is not None
    lines.append("")
    lines.append("trading (the verdict rests on these): the policy's backtest, fills at bid/ask, "
                 "net of the spread" + (" and of financing (its own column)" if fin_on
                                        else "; financing off"))
    head = (f"{'rule':<28} {'net pips [95% CI]':>28} {'financing':>9} {'spread':>8} "
            f"{'Sharpe/yr [95% CI]':>24} {'maxDD':>7} {'trades':>6} {'stops':>5} "
            f"{'p(rand)':>7}")
    lines += [head, "-" * len(head)]

    def trow(label: str, t: dict[str, Any], p: Any) -> str:
        sharpe = _num(t['sharpe_annualised'], '.2f') + ' ' + _ci(t['sharpe_ci95'], fmt='.2f')
        return (f"{label:<28} {_num(t['net_pips']) + ' ' + _ci(t['net_pips_ci95']):>28} "
                f"{_num(t.get('financing_pips')):>9} {_num(t.get('costs_pips')):>8} "
                f"{sharpe:>24}"
                f" {_num(t['max_drawdown_pips']):>7} {t['n_trades']:>6} "
                f"{t.get('n_stop_loss', ''):>5} {p:>7}")

    for name, label in rules:
        e = ev[name]
        lines.append(trow(label, e["trading"],
                          _num(e["tests"]["pvalue_net_pips_vs_random"], ".3f")))
    for name, label in (("always_long", "always long"), ("always_short", "always short")):
        lines.append(trow(label, bl[name]["trading"], ""))
    lines.append(
        f"{'random, same rate & mix':<28} "
        f"{_num(r['net_pips_mean']) + ' ' + _ci(r['net_pips_95']):>28} "
        f"{_num(r.get('financing_pips_mean')):>9} "
        f"{'(' + str(r['n_permutations']) + ' ' + r['method'] + ')':>33}")
    lines.append("  random rows: mean [2.5%, 97.5%] of the draws; p(rand): net pips against "
                 "random signals with the same rate and mix; p(dir): right directions against "
                 "the same candles with random directions")
    lines.append("")
    pbo = of.get("pbo")
    spa = of.get("spa")
    lines.append(
        f"overfitting over {of['n_configurations']} configurations: "
        f"PBO {_num(pbo['pbo'], '.2f') if pbo else 'n/a (' + of.get('pbo_note', '') + ')'}; "
        f"SPA p {_num(spa['pvalue_consistent'], '.3f') if spa else 'n/a'} "
        f"(vs flat); DSR of the in-sample choice (median over folds) "
        f"{_num(of.get('dsr_median'), '.3f')}; chosen configuration's OOS rank "
        f"{_pct(of.get('oos_rank_of_choice_mean'))} (50% = median)")
    if pbo and pbo["pbo"] < 0.5 and ev["tuned"]["trading"]["net_pips"] <= 0:
        lines.append("  note: a low PBO here ranks configurations against each other only; the "
                     "chosen ones still lose money out of sample (see net pips and SPA)")
    lines.append(
        f"stability: {st.get('folds_with_choice', 0)}/{st['folds']} folds chose, "
        f"{st.get('distinct_configurations', 0)} distinct configurations, modal share "
        f"{_pct(st.get('modal_share'))}")
    lines.extend(gap_lines(gap))
    lines.append(f"verdict (tuned): {_verdict(ev['tuned'])}")
    lines.append(f"verdict (seed):  {_verdict(ev['seed'])}")
    return "\n".join(lines)
