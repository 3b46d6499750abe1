"""reporting.qfh_notebooks: QFH tables, engine timings, the visible look-ahead check, the seed
headline."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sep_research.data import load_sample
from sep_research.reporting import qfh_notebooks


@pytest.fixture(scope="module")
def part() -> pd.DataFrame:
    frame = load_sample()
    out = frame.iloc[:1500].copy()
    out.attrs = frame.attrs
    return out


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    return buf.getvalue()


def test_feature_summary_and_figure(part) -> None:
    windows = [5, 11]
    feat = qfh_notebooks.qfh_features(part, windows, engine="cpu")
    table = qfh_notebooks.feature_summary(feat, windows)
    assert set(table.index) == {(m, w) for m in qfh_notebooks.METRICS for w in windows}
    ent = table.loc[("entropy", 11)]
    assert 0 <= ent["p05"] <= ent["median"] <= ent["p95"]
    assert ent["candles"] == int(feat["has"][:, 1].sum())
    assert _png(qfh_notebooks.features_figure(part, feat, windows, last=200)).startswith(b"\x89PNG")


def test_engine_timings_lists_each_engine_and_size(part) -> None:
    t = qfh_notebooks.engine_timings(part, [11], [200, 1000], engines=["python", "cpu"], repeats=1,
                           python_max=200)
    assert list(zip(t.engine, t.n, strict=False)) == [("python", 200), ("cpu", 200), ("cpu", 1000)]
    assert (t.seconds > 0).all() and (t.first_call_s > 0).all()


def test_lookahead_demo_separates_legacy_from_causal(part) -> None:
    demo = qfh_notebooks.lookahead_demo(part, cuts=[300, 700, 1200], engine="cpu")
    summary = qfh_notebooks.lookahead_summary(demo)
    causal = summary.loc["causal"]
    assert (causal["cuts_where_past_changed"] == 0).all() and (causal["verdict"] == "PASS").all()
    legacy = summary.loc["legacy"]
    assert legacy["cuts_where_past_changed"].max() > 0
    changed = demo[demo.past_changed]
    assert (changed.alignment == "legacy").all()
    assert (changed.first_changed_candle <= changed.cut).all()
    assert (changed.before != changed.after).all()
    with pytest.raises(ValueError, match="outside"):
        qfh_notebooks.lookahead_demo(part, cuts=[len(part)])


def test_lookahead_figure_titles_state_the_verdict(part) -> None:
    fig = qfh_notebooks.lookahead_figure(part, cut=700, output="confidence", engine="cpu")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("legacy: FAIL") and titles[1].startswith("causal: PASS")
    assert _png(fig).startswith(b"\x89PNG")


def test_missing_seed_reference_is_skipped_gracefully(tmp_path: Path, capsys) -> None:
    assert qfh_notebooks.load_seed_reference(str(tmp_path), "O-test-2.json") is None
    assert "not present" in capsys.readouterr().out


def test_seed_headline_matches_the_signals_package(seed_o_test: Path) -> None:
    from sep_research.signals.cli import reproduce

    frame = qfh_notebooks.load_seed_reference(str(seed_o_test.parent), seed_o_test.name)
    table, sigs = qfh_notebooks.seed_headline(frame, engine="cpu", shuffles=50)
    for row, alignment in zip(table.index[:2], ("legacy", "causal"), strict=False):
        ref = reproduce(frame, alignment, engine="cpu")
        assert table.loc[row, "hc_signals"] == ref["hc_signals"]
        assert round(table.loc[row, "hc_accuracy"], 2) == ref["hc_accuracy"]
        assert round(table.loc[row, "profitability_score"], 2) == ref["profitability_score"]
        assert table.loc[row, "ci_low"] < table.loc[row, "hc_accuracy"] < table.loc[row, "ci_high"]
    assert set(sigs) == {"legacy", "causal"}
    causal = table.iloc[1]
    assert round(causal["hc_direction_accuracy"], 2) == ref["hc_direction_accuracy"]
    assert causal["p_direction"] > 0.05  # causally: no better than random directions
    assert table.iloc[0]["p_direction"] < 0.05  # the look-ahead reads the answer
    assert _png(qfh_notebooks.seed_headline_figure(table)).startswith(b"\x89PNG")
    fig = qfh_notebooks.cumulative_hits_figure(frame, sigs)
    assert _png(fig).startswith(b"\x89PNG")
    assert np.isfinite(fig.axes[0].lines[0].get_ydata()).all()
