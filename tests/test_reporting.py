"""Reporting: the run recorder, tables, figures, HTML export and the reports index."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from sep_research.data import load_sample
from sep_research.data.summary import bit_statistics
from sep_research.reporting import figures, tables
from sep_research.reporting.html import build_index, export_html
from sep_research.reporting.manifest import hardware_info, read_manifest
from sep_research.reporting.paths import atomic_write_json, project_root, reports_dir
from sep_research.reporting.recorder import start_run
from sep_research.versions import git_state


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return load_sample()


def _tiny_figure() -> Figure:
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [1, 0])
    return fig


def test_recorder_writes_metrics_figures_tables_and_provenance(tmp_path: Path, sample) -> None:
    run = start_run(tmp_path / "run", notebook="t", parameters={"window": np.int64(3)})
    prov = run.data(sample)
    run.figure(_tiny_figure(), "curve", title="A curve", key=True)
    run.table(pd.DataFrame({"a": [1, 2]}), "tab", show=False)
    run.metric("hit_rate", np.float64(0.5))
    run.metric("undefined", float("nan"))
    art = run.path("model/model.json")
    art.write_text("{}")
    entry = run.artifact("model", art)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["finished"] is False  # written before finish(): a failed run keeps its record
    rec = run.finish()
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m == json.loads(json.dumps(rec))
    assert m["finished"] and m["parameters"] == {"window": 3}
    assert m["data"]["candles"]["sha256"] == prov["sha256"] == sample.attrs["provenance"]["sha256"]
    assert m["metrics"] == {"hit_rate": 0.5, "undefined": None}
    assert m["figures"] == [{"name": "curve", "title": "A curve", "key": True,
                             "file": "figures/curve.png"}]
    png = (tmp_path / "run" / "figures" / "curve.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert (tmp_path / "run" / "tables" / "tab.csv").read_text().splitlines()[0] == ",a"
    assert entry["file"] == "model/model.json" and entry["bytes"] == 2
    assert not list((tmp_path / "run").rglob("*.tmp"))


def test_recorder_without_output_dir_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = start_run("", notebook="t")
    run.figure(_tiny_figure(), "x")
    run.metric("n", 1)
    assert run.path("a.json") is None
    assert run.finish()["metrics"] == {"n": 1}
    assert list(tmp_path.iterdir()) == []


def test_recorder_rejects_bad_names_and_escaping_paths(tmp_path: Path) -> None:
    run = start_run(tmp_path, notebook="t")
    with pytest.raises(ValueError, match="metric name"):
        run.metric("a b", 1)
    with pytest.raises(TypeError, match="must be a number"):
        run.metric("x", [1, 2])
    with pytest.raises(ValueError, match="leaves the run folder"):
        run.path("../outside.json")
    with pytest.raises(FileNotFoundError, match="artifact 'm'"):
        run.artifact("m", tmp_path / "missing.json")


def test_bit_table_agrees_with_the_data_layer(sample) -> None:
    t = tables.bit_table(sample)
    ref = bit_statistics(sample["close"].to_numpy())
    assert t.loc["up bit (next close higher)", "fraction"] == pytest.approx(ref["up_fraction"])
    assert t.loc["flip pair (01 or 10)", "fraction"] == pytest.approx(ref["flip_fraction"])
    assert t.loc["null pair (00)", "fraction"] == pytest.approx(ref["null_fraction"])
    assert (t["ci_low"] <= t["fraction"]).all() and (t["fraction"] <= t["ci_high"]).all()
    pairs = t.loc[["null pair (00)", "flip pair (01 or 10)", "rupture pair (11)"], "count"]
    assert pairs.sum() == len(sample) - 2


def test_gap_and_overview_tables_agree(sample) -> None:
    from sep_research.data.gaps import find_gaps

    gaps = tables.gap_table(sample)
    assert len(gaps) == len(find_gaps(sample.index, "H1"))
    ov = tables.data_overview(sample)
    assert ov.loc["candles", "value"] == len(sample)
    assert ov.loc["missing candles in gaps", "value"] == gaps["missing_candles"].sum()
    m = tables.data_metrics(sample)
    assert m["candles"] == len(sample) and m["gaps"] == len(gaps)
    assert "spread_median_pips" not in m  # the sample is mid only: no invented spread
    r = tables.returns_table(sample)
    assert list(r.index) == ["close-to-close move", "candle range (high-low)"]


def test_spread_rows_appear_with_bid_ask() -> None:
    from sep_research.data import synthetic_candles  # unit test only: labelled synthetic

    frame = synthetic_candles(300, spread_pips=0.8)
    assert tables.returns_table(frame).loc["spread at close", "median"] == pytest.approx(0.8)
    assert tables.data_metrics(frame)["spread_median_pips"] == pytest.approx(0.8)


def _render(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    return buf.getvalue()


def test_data_figures_render(sample) -> None:
    part = sample.iloc[:800].copy()
    part.attrs = sample.attrs
    for fn in (figures.price_figure, figures.returns_figure, figures.gaps_figure,
               figures.bits_figure):
        assert _render(fn(part)).startswith(b"\x89PNG")


def test_result_figures_render_and_check_input(sample) -> None:
    idx = sample.index[:200]
    eq = {"strategy": pd.Series(np.cumsum(np.sign(np.diff(sample["close"].to_numpy()[:201]))),
                                index=idx),
          "buy and hold": pd.Series(np.arange(200.0), index=idx)}
    assert _render(figures.equity_figure(eq, folds=[idx[100]])).startswith(b"\x89PNG")
    actions = np.zeros(len(sample), dtype=int)
    actions[::50], actions[25::50] = 1, -1
    assert _render(figures.signals_on_price_figure(sample, actions, last=400))
    acc = pd.DataFrame({"hit_rate": [0.52, 0.5], "ci_low": [0.49, 0.47],
                        "ci_high": [0.55, 0.53], "n": [1000, 1000]}, index=["qfh", "coin"])
    assert _render(figures.accuracy_figure(acc))
    grid = pd.DataFrame({"window": [16, 16, 32, 32], "threshold": [0.1, 0.2, 0.1, 0.2],
                         "sharpe": [0.1, -0.2, 0.3, 0.0]})
    assert _render(figures.heatmap_figure(grid, x="window", y="threshold", value="sharpe"))
    tim = pd.DataFrame({"engine": ["cpu", "cpu"], "n": [1000, 10000], "seconds": [0.01, 0.1]})
    assert _render(figures.timings_figure(tim))
    with pytest.raises(ValueError, match="lacks columns"):
        figures.accuracy_figure(acc.drop(columns="ci_low"))
    with pytest.raises(ValueError, match="actions for"):
        figures.signals_on_price_figure(sample, actions[:-1])
    with pytest.raises(ValueError, match="no column 'sharp'"):
        figures.heatmap_figure(grid, x="window", y="threshold", value="sharp")
    with pytest.raises(ValueError, match="no curves"):
        figures.equity_figure({})


def test_export_html_embeds_figures(tmp_path: Path) -> None:
    png = _render(_tiny_figure())
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("fig")
    cell.outputs = [nbformat.v4.new_output(
        "display_data", data={"image/png": base64.b64encode(png).decode()})]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), cell]
    nbformat.write(nb, tmp_path / "n.ipynb")
    out = export_html(tmp_path / "n.ipynb", tmp_path / "n.html")
    text = out.read_text()
    assert "data:image/png;base64," + base64.b64encode(png).decode()[:40] in text


def _fake_run(reports: Path, run_id: str, status: str, started: str, **extra) -> Path:
    d = reports / "runs" / run_id
    (d / "figures").mkdir(parents=True)
    (d / "figures" / "eq.png").write_bytes(_render(_tiny_figure()))
    (d / "report.html").write_text("<html></html>")
    atomic_write_json(d / "manifest.json", {
        "run_id": run_id, "status": status, "started_at": started, "duration_s": 1.5,
        "notebook": "notebooks/03-training-run.ipynb", "parameters": {"window": 64},
        "git": {"sha": "a" * 40, "dirty": True}, **extra})
    atomic_write_json(d / "metrics.json", {
        "metrics": {"hit_rate": 0.5123456},
        "figures": [{"name": "eq", "file": "figures/eq.png", "key": True, "title": "Equity"}]})
    return d


def test_index_lists_runs_with_figures_status_and_errors(tmp_path: Path) -> None:
    _fake_run(tmp_path, "b-1", "ok", "2026-01-01T00:00:00Z")
    _fake_run(tmp_path, "b-2", "failed", "2026-01-02T00:00:00Z",
              error={"type": "CandleError", "message": "no <M5> candles"})
    (tmp_path / "runs" / "junk").mkdir()  # a folder without a manifest is ignored
    text = build_index(tmp_path).read_text()
    assert "2 run(s): 1 failed, 1 ok" in text
    assert text.index("b-2") < text.index("b-1")  # newest first
    assert 'src="runs/b-1/figures/eq.png"' in text and 'href="runs/b-1/report.html"' in text
    assert "no &lt;M5&gt; candles" in text  # escaped
    assert "0.5123" in text and "aaaaaaaaaa+dirty" in text


def test_reports_dir_and_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SEP_REPORTS_DIR", raising=False)
    assert reports_dir() == project_root() / "reports"
    monkeypatch.setenv("SEP_REPORTS_DIR", str(tmp_path))
    assert reports_dir() == tmp_path.resolve()
    assert reports_dir(tmp_path / "x") == (tmp_path / "x").resolve()


def test_git_and_hardware_info(tmp_path: Path) -> None:
    info = git_state(project_root())
    if info["sha"] is not None:
        assert len(info["sha"]) == 40 and isinstance(info["dirty"], bool)
    assert git_state(tmp_path)["sha"] is None
    hw = hardware_info(probe_gpu=False)
    assert hw["cpu_count"] >= 1 and hw["memory_bytes"] > 0 and hw["python"].startswith("3.")
    assert read_manifest(tmp_path) is None
