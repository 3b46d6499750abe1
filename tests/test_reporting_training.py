"""reporting.training on a real walk-forward (part of the packaged sample, small grid): the
tables agree with the evaluation they come from, the equity curves with the trading figures,
and the model artifact verifies."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sep_research.data import load_sample
from sep_research.reporting import figures
from sep_research.reporting import training as report

HALF = 0.5


@pytest.fixture(scope="module")
def run():
    from sep_research.training.grid import small_grid
    from sep_research.training.walkforward import walk_forward

    frame = load_sample()
    part = frame.iloc[:3000].copy()
    part.attrs = frame.attrs
    grid = small_grid()
    result = walk_forward(part, instrument="EUR_USD", granularity="H1", grid=grid, n_folds=3,
                          half_spread_pips=HALF, engine="cpu", n_random=50, spa_reps=50,
                          progress=False)
    return part, grid, result


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    return buf.getvalue()


@pytest.mark.slow
def test_tables_agree_with_the_evaluation(run) -> None:
    _frame, grid, result = run
    ev = result.evaluation
    acc = report.accuracy_table(result)
    assert len(acc) == 5
    tuned = acc.iloc[0]
    assert tuned["hit_rate"] == pytest.approx(ev["tuned"]["signals"]["hc_hit_rate"])
    assert tuned["n"] == ev["tuned"]["signals"]["n_hc"]
    assert (acc["ci_low"] <= acc["hit_rate"]).all() and (acc["hit_rate"] <= acc["ci_high"]).all()
    trading = report.trading_table(result)
    assert trading.iloc[0]["net_pips"] == pytest.approx(ev["tuned"]["trading"]["net_pips"])
    assert trading.loc["always long", "trades"] >= 1
    folds = report.fold_table(result)
    assert len(folds) == len(result.folds) == 3
    over = report.overfitting_table(result)
    assert over.loc["configurations in the grid", "value"] == len(grid.table)
    m = report.training_metrics(result)
    assert m["oos_net_pips"] == ev["tuned"]["trading"]["net_pips"]
    assert m["oos_financing_pips"] == ev["tuned"]["trading"]["financing_pips"]
    assert m["oos_hc_direction_rate"] == ev["tuned"]["signals"]["hc_direction_rate"]
    assert _png(figures.accuracy_figure(acc)).startswith(b"\x89PNG")
    # direction only, first: right / decided beside the same candles with random directions
    d = report.direction_table(result)
    assert list(d.index) == list(acc.index)
    tuned = d.iloc[0]
    rd = ev["tuned"]["baselines"]["random_direction"]["hc"]
    assert tuned["direction_rate"] == pytest.approx(ev["tuned"]["signals"]["hc_direction_rate"])
    assert tuned["n"] == ev["tuned"]["signals"]["n_hc_decided"] == rd["n_decided"]
    assert tuned["null_low"] <= tuned["null_mean"] <= tuned["null_high"]
    assert tuned["p_direction"] == rd["pvalue"]
    assert acc.iloc[0]["same_candles_random_direction"] == pytest.approx(rd["hit_rate_mean"])
    # its own column: 2017 default rates, longs pay (-2.5 %/yr) and shorts earn (+0.5 %/yr)
    assert trading.loc["always long", "financing_pips"] < 0 < trading.loc["always short",
                                                                          "financing_pips"]
    fig = figures.accuracy_figure(d, value="direction_rate", xlabel="direction")
    assert fig.axes[0].get_legend() is not None
    assert _png(fig).startswith(b"\x89PNG")


@pytest.mark.slow
def test_equity_curves_end_at_the_backtest_net_pips(run) -> None:
    frame, _grid, result = run
    curves = report.equity_curves(frame, result, half_spread_pips=HALF)
    ev = result.evaluation
    tuned = curves["tuned rule (walk-forward)"]
    assert tuned.index[0] >= frame.index[np.flatnonzero(result.oos_mask)[0]]
    assert tuned.iloc[-1] == pytest.approx(ev["tuned"]["trading"]["net_pips"], abs=1e-6)
    assert curves["always long"].iloc[-1] == pytest.approx(
        ev["tuned"]["baselines"]["always_long"]["trading"]["net_pips"], abs=1e-6)
    fig = figures.equity_figure(curves, folds=report.fold_starts(frame, result))
    assert _png(fig).startswith(b"\x89PNG")
    actions = report.oos_actions(result)
    assert not actions[~result.oos_mask].any()
    assert _png(figures.signals_on_price_figure(frame, actions)).startswith(b"\x89PNG")


@pytest.mark.slow
def test_grid_oos_table_and_heatmap(run) -> None:
    frame, grid, result = run
    table = report.grid_oos_table(frame, grid, result, half_spread_pips=HALF, engine="cpu")
    assert len(table) == len(grid.table)
    assert (table["oos_n_hc"] >= 0).all()
    ok = table["oos_n_hc"] > 0
    assert table.loc[ok, "oos_hc_accuracy"].between(0, 1).all()
    fig = figures.heatmap_figure(table, x="window", y="buy_threshold", value="oos_net_pips")
    assert "mean over the other parameters" in fig.axes[0].get_title()
    assert _png(fig).startswith(b"\x89PNG")


@pytest.mark.slow
def test_model_artifact_is_written_and_verifies(run, tmp_path: Path) -> None:
    from sep_research.training.artifact import verify_artifact

    frame, _grid, result = run
    art = report.write_model(frame, result, tmp_path / "model.json")
    if result.final.get("params") is None:
        assert art is None
        return
    assert verify_artifact(tmp_path / "model.json").ok
    assert art["signal_params"] == result.final["params"]
    assert isinstance(pd.Timestamp(art["created_at"]), pd.Timestamp)
