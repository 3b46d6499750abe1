"""From a walk-forward result to the model artifact's payload and the out-of-sample table."""

from __future__ import annotations

import importlib.metadata
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sep_research.training.walkforward import WalkForwardResult

PACKAGES = ("numpy", "pandas", "numba", "numba-cuda", "scipy", "arch", "pyarrow")


def code_version(root: str | Path | None = None) -> dict[str, Any]:
    """Git SHA of HEAD and whether the tree has uncommitted changes (None when unknown)."""
    from sep_research import __version__

    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    out: dict[str, Any] = {"version": __version__, "git_sha": None, "dirty": None}
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                 "--untracked-files=no"], check=True, capture_output=True,
                                text=True, timeout=10).stdout
        out["git_sha"] = sha
        out["dirty"] = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        out["note"] = "not a git checkout (or git is missing): code version unknown"
    return out


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
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
                      "trades": spec.policy.describe()},
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
        ("selection gap (the sweep scores one-candle trades without stops; the backtest trades "
         "the policy):"),
        (f"  chosen configurations, training folds: sweep {gap['train_sweep_net_pips']:+.1f} "
         f"net pips, backtest {gap['train_backtest_net_pips']:+.1f} (gap "
         f"{gap['train_gap_pips']:+.1f})"),
        (f"  chosen configurations, test folds:     sweep {gap['test_sweep_net_pips']:+.1f} "
         f"net pips, backtest {gap['test_backtest_net_pips']:+.1f} (gap "
         f"{gap['test_gap_pips']:+.1f})"),
    ]


def _oos_table(ev: dict[str, Any], of: dict[str, Any], st: dict[str, Any], *,
               policy: str, costs: str, gap: dict[str, Any] | None) -> str:
    lines = [f"policy traded: {policy}; costs: {costs}"]
    head = (f"{'rule (out of sample)':<28} {'HC':>5} {'HC hit rate [95% CI]':>24} {'chance':>7} "
            f"{'net pips [95% CI]':>28} {'Sharpe/yr [95% CI]':>24} {'maxDD':>7} {'trades':>6} "
            f"{'p(rand)':>7}")
    lines.append(head)
    lines.append("-" * len(head))
    for name, label in (("tuned", "tuned (walk-forward)"), ("seed", "seed preset (untuned)")):
        e = ev[name]
        s, t = e["signals"], e["trading"]
        lines.append(
            f"{label:<28} {s['n_hc']:>5} "
            f"{_pct(s['hc_hit_rate']) + ' ' + _ci(s['hc_hit_rate_ci95'], pct=True):>24} "
            f"{_pct(s['hc_chance_rate']):>7} "
            f"{_num(t['net_pips']) + ' ' + _ci(t['net_pips_ci95']):>28} "
            f"{_num(t['sharpe_annualised'], '.2f') + ' ' + _ci(t['sharpe_ci95'], fmt='.2f'):>24} "
            f"{_num(t['max_drawdown_pips']):>7} {t['n_trades']:>6} "
            f"{_num(e['tests']['pvalue_net_pips_vs_random'], '.3f'):>7}")
    bl = ev["tuned"]["baselines"]
    for name, label in (("always_long", "always long"), ("always_short", "always short")):
        b = bl[name]
        t = b["trading"]
        lines.append(
            f"{label:<28} {'-':>5} "
            f"{_pct(b['hit_rate']) + ' ' + _ci(b['hit_rate_ci95'], pct=True):>24} {'':>7} "
            f"{_num(t['net_pips']) + ' ' + _ci(t['net_pips_ci95']):>28} "
            f"{_num(t['sharpe_annualised'], '.2f') + ' ' + _ci(t['sharpe_ci95'], fmt='.2f'):>24} "
            f"{_num(t['max_drawdown_pips']):>7} {t['n_trades']:>6} {'':>7}")
    r = bl["random"]
    lines.append(
        f"{'random, same rate & mix':<28} {'':>5} "
        f"{_pct(r['hc_hit_rate_mean']) + ' ' + _ci(r['hc_hit_rate_95'], pct=True):>24} {'':>7} "
        f"{_num(r['net_pips_mean']) + ' ' + _ci(r['net_pips_95']):>28} "
        f"{'(' + str(r['n_permutations']) + ' ' + r['method'] + ')':>24}")
    s = ev["tuned"]["signals"]
    lines.append("")
    lines.append(
        f"candles judged out of sample: {s['n_candles']}; base rates: next move > +0.5 pip "
        f"{_pct(s['base_rate_up'])}, < -0.5 pip {_pct(s['base_rate_down'])}; "
        f"'chance' = hit rate of random timing with the same BUY/SELL mix; "
        f"random row: mean [2.5%, 97.5%]; p(rand): net pips vs random signals")
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
