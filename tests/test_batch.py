"""``sep batch``: grid checking before anything runs, expansion, run ids, and (slow) a real
batch of papermill runs of 01-data-exploration on the packaged sample on a 2-worker
LocalCluster, with one deliberately broken run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
import yaml

from sep_research.cli import main
from sep_research.reporting.grid import GridError, load_grid, notebook_parameters

ROOT = Path(__file__).resolve().parents[1]
NB01 = "notebooks/01-data-exploration.ipynb"


def _grid(tmp_path: Path, doc: dict, name: str = "g.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def test_shipped_grids_are_valid() -> None:
    for path in sorted((ROOT / "runners" / "grids").glob("*.yaml")):
        grid = load_grid(path)
        assert grid.runs, path.name
    assert len(load_grid(ROOT / "runners/grids/sample-exploration.yaml").runs) == 4


def test_expansion_is_the_product_and_ids_are_stable(tmp_path: Path) -> None:
    doc = {"name": "t", "notebook": NB01, "instruments": ["EUR_USD", "GBP_USD"],
           "granularities": ["H1"], "parameters": {"data_source": "sample"},
           "parameter_sets": [{"start": "2017-05-01"}, {"start": "2017-06-01"}],
           "grid": {"rolling_window": [10, 20, 30]}}
    g = load_grid(_grid(tmp_path, doc))
    assert len(g.runs) == 2 * 1 * 2 * 3
    ids = [r.run_id for r in g.runs]
    assert len(set(ids)) == len(ids)
    assert ids == [r.run_id for r in load_grid(doc).runs]  # same parameters, same ids
    first = g.runs[0]
    assert first.parameters == {"data_source": "sample", "instrument": "EUR_USD",
                                "granularity": "H1", "start": "2017-05-01",
                                "rolling_window": 10}
    assert first.run_id.startswith("t-EUR_USD-H1-")
    assert "output_dir" not in first.parameters


@pytest.mark.parametrize(("change", "message"), [
    ({"grid": {"rolling_windw": [10]}}, ("unknown parameter 'rolling_windw' (did you mean "
                                        "'rolling_window'?)")),
    ({"parameters": {"rolling_window": "500"}}, "'rolling_window' must be int"),
    ({"parameters": {"rolling_window": True}}, "'rolling_window' must be int"),
    ({"parameters": {"start": 2017}}, "'start' must be str"),
    ({"parameters": {"output_dir": "/tmp/x"}}, "set by the batch itself"),
    ({"parameters": {"instrument": "EUR_USD"}, "instruments": ["EUR_USD"]},
     "set in more than one place"),
    ({"grids": {}}, "unknown grid key"),
    ({"grid": {"rolling_window": 10}}, "must be a non-empty list"),
    ({"name": "bad name!"}, "'name'"),
    ({"execution_timeout_s": -1}, "positive integer"),
])
def test_bad_grids_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    doc = {"name": "t", "notebook": NB01, **change}
    with pytest.raises(GridError) as err:
        load_grid(_grid(tmp_path, doc))
    assert message in str(err.value)


def test_duplicate_runs_and_missing_notebook_are_refused(tmp_path: Path) -> None:
    with pytest.raises(GridError, match="repeats run 0"):
        load_grid({"notebook": NB01, "parameter_sets": [{"start": ""}, {"start": ""}]})
    with pytest.raises(GridError, match="does not exist"):
        load_grid({"notebook": "notebooks/99-nothing.ipynb"})
    with pytest.raises(GridError, match="'notebook'"):
        load_grid({"name": "x"})


def test_unreadable_parameter_line_is_refused(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    cell = nbformat.v4.new_code_cell('a = 1  # fine\nb = ""  # empty ("" = nothing)\n'
                                     'output_dir = ""  # out')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), cell]
    nbformat.write(nb, tmp_path / "01-t.ipynb")
    with pytest.raises(GridError, match=r"papermill cannot read the parameter\(s\) \['b'\]"):
        notebook_parameters(tmp_path / "01-t.ipynb")


def test_cli_refuses_a_misspelled_parameter_before_any_run(tmp_path: Path, capsys) -> None:
    grid = _grid(tmp_path, {"notebook": str(ROOT / NB01),
                            "parameter_sets": [{"rolling_window": 10}, {"rolling_windo": 20}]})
    reports = tmp_path / "reports"
    assert main(["batch", str(grid), "--reports-dir", str(reports)]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'rolling_windo'" in err and "Traceback" not in err
    assert not reports.exists()  # nothing ran, nothing was written


def test_cli_dry_run_lists_runs(tmp_path: Path, capsys) -> None:
    assert main(["batch", str(ROOT / "runners/grids/sample-exploration.yaml"), "--dry-run",
                 "--reports-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("sample-exploration-EUR_USD-H1-") == 4
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_per_worker_environment_hook() -> None:
    from distributed import Client

    from sep_research.sweeps.cli import make_cluster

    with make_cluster(2, worker_env=lambda i: {"SEP_TEST_WORKER": f"w{i}"}) as cluster, \
            Client(cluster) as client:
        seen = client.run(lambda: (os.environ.get("SEP_TEST_WORKER"),
                                   os.environ.get("MPLBACKEND")))
    assert sorted(seen.values()) == [("w0", "Agg"), ("w1", "Agg")]


@pytest.mark.slow
def test_batch_on_a_two_worker_cluster_with_a_broken_run(tmp_path: Path) -> None:
    from sep_research.sweeps.cli import run_batch

    # Four runs over short periods of the real sample; the M5 run is broken on purpose (the
    # sample is H1 only) and must be reported without stopping the others.
    doc = {"name": "t", "notebook": NB01, "instruments": ["EUR_USD"],
           "parameters": {"data_source": "sample", "rolling_window": 50},
           "parameter_sets": [
               {"granularity": "H1", "start": "2017-06-01", "end": "2017-06-15"},
               {"granularity": "H1", "start": "2017-09-01", "end": "2017-09-15"},
               {"granularity": "H1", "start": "2017-12-01", "end": "2017-12-15"},
               {"granularity": "M5", "start": "2017-06-01", "end": "2017-06-15"}]}
    grid = _grid(tmp_path, doc)
    reports = tmp_path / "reports"
    res = run_batch(grid, workers=2, reports=reports, progress=False, log=lambda s: None)
    assert [r["status"] for r in res.results] == ["ok", "ok", "ok", "failed"]
    broken = res.results[3]
    assert broken["error"]["type"] == "CandleError" and "M5" in broken["error"]["message"]
    for r in res.results:
        d = reports / "runs" / r["run_id"]
        m = json.loads((d / "manifest.json").read_text())
        assert m["status"] == r["status"] and m["finished_at"] >= m["started_at"]
        assert (d / "notebook.ipynb").is_file() and (d / "report.html").is_file()
        assert m["git"]["sha"] is None or len(m["git"]["sha"]) == 40
        assert m["packages"]["papermill"] and m["hardware"]["cpu_count"] >= 1
        assert m["worker"].startswith("tcp://")
        if r["status"] == "ok":
            assert m["data"]["candles"]["source"].startswith("package:backtesting")
            assert m["data"]["candles"]["start"] >= m["parameters"]["start"]
            assert r["metrics"]["candles"] == m["data"]["candles"]["rows"] > 0
            assert (d / "figures" / "bits.png").is_file()
            assert "data:image/png;base64," in (d / "report.html").read_text()
        else:  # the partial notebook keeps the error
            nb = nbformat.read(d / "notebook.ipynb", as_version=4)
            errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                      if o.output_type == "error"]
            assert errors and errors[0]["ename"] == "CandleError"
            assert m["error"]["traceback"]
    index = (reports / "index.html").read_text()
    assert "4 run(s): 1 failed, 3 ok" in index
    assert sum(f'runs/{r["run_id"]}/report.html' in index for r in res.results) == 4
    assert index.count("/figures/bits.png") >= 3

    # Again: the three finished runs are skipped, only the failed one runs (and fails) again.
    again = run_batch(grid, workers=1, reports=reports, progress=False, log=lambda s: None)
    assert sorted(again.skipped) == sorted(r["run_id"] for r in res.results[:3])
    assert [r["run_id"] for r in again.results] == [broken["run_id"]]
    assert again.results[0]["status"] == "failed"


def test_cli_index_only_and_missing_grid(tmp_path: Path, capsys) -> None:
    assert main(["batch", "--index-only", "--reports-dir", str(tmp_path)]) == 0
    assert "0 run(s): no runs yet" in (tmp_path / "index.html").read_text()
    assert main(["batch", "--reports-dir", str(tmp_path)]) == 2
    assert "a grid file is needed" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _run_folder(reports: Path, run_id: str, batch: str, status: str, metrics: dict) -> None:
    d = reports / "runs" / run_id
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({
        "run_id": run_id, "batch": batch, "status": status, "parameters": {},
        "started_at": f"2026-01-01T00:00:0{len(list((reports / 'runs').iterdir()))}Z"}))
    (d / "metrics.json").write_text(json.dumps({"metrics": metrics, "finished": True}))


def test_index_and_summary_show_holm_adjusted_pvalues_of_a_multi_run_batch(
        tmp_path: Path, capsys) -> None:
    """Run folders as execute_run writes them: a batch of three training runs (one failed run
    beside them) and another batch of one; each batch is adjusted over its own runs."""
    from sep_research.reporting.html import batch_pvalues, build_index, collect_runs
    from sep_research.sweeps.cli import print_batch_pvalues

    reports = tmp_path / "reports"
    (reports / "runs").mkdir(parents=True)
    for rid, p in (("t-a", 0.01), ("t-b", 0.04), ("t-c", 0.03)):
        _run_folder(reports, rid, "t", "ok", {"oos_net_pips": -5.0, "p_vs_random": p,
                                               "p_direction_vs_random_direction": 0.5})
    _run_folder(reports, "t-d", "t", "failed", {})
    _run_folder(reports, "u-a", "u", "ok", {"oos_net_pips": 12.0, "p_vs_random": 0.02})
    stats = batch_pvalues(collect_runs(reports))
    assert stats["t"]["m"] == 3 and stats["t"]["n_runs"] == 4 and stats["u"]["m"] == 1
    holm = {r["run_id"]: r["p_holm"] for r in stats["t"]["runs"]}
    # sorted 0.01, 0.03, 0.04: 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    assert holm == pytest.approx({"t-a": 0.03, "t-c": 0.06, "t-b": 0.06})
    assert stats["u"]["runs"][0]["p_holm"] == pytest.approx(0.02)
    index = build_index(reports).read_text()
    assert "Across runs" in index
    assert "batch t: m = 3 run(s) with a p-value (4 run folder(s) in all)" in index
    assert "p Holm (m = 3)" in index and "<b>0.060</b>" in index and "<b>0.030</b>" in index
    assert "p_vs_random, Holm-adjusted (m = 3)" in index
    assert "batch u: m = 1 run(s)" in index
    print_batch_pvalues(reports, "t")
    out = capsys.readouterr().out
    assert "Holm-adjusted over the m = 3 run(s)" in out
    assert "1 of 3 run(s) below 0.05 after the Holm adjustment" in out
    print_batch_pvalues(reports, "nothing")
    assert "no finished run reports a p-value" in capsys.readouterr().out


@pytest.mark.slow
def test_a_training_batch_reports_holm_adjusted_pvalues(tmp_path: Path, capsys) -> None:
    """Two real walk-forward runs of notebook 03 (packaged sample, small grid): sep batch
    prints each run's p-value against random signals with its Holm-adjusted value over m = 2,
    and the index shows them."""
    doc = {"name": "holm", "notebook": "notebooks/03-training-run.ipynb",
           "instruments": ["EUR_USD"], "granularities": ["H1"],
           "parameters": {"data_source": "sample", "folds": 3, "grid": "small",
                          "n_random": 30, "seed": 0, "end": "2017-11-01"},
           "grid": {"objective": ["net_pips", "hc_accuracy"]}, "execution_timeout_s": 600}
    grid = _grid(tmp_path, doc)
    reports = tmp_path / "reports"
    assert main(["batch", str(grid), "--workers", "2", "--reports-dir", str(reports),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "batch holm: p-values against random signals" in out
    assert "Holm-adjusted over the m = 2 run(s) that have one (2 run folder(s) in all)" in out
    index = (reports / "index.html").read_text()
    assert "batch holm: m = 2 run(s) with a p-value" in index and "p Holm (m = 2)" in index
    for d in (reports / "runs").iterdir():
        met = json.loads((d / "metrics.json").read_text())["metrics"]
        assert 0 < met["p_vs_random"] <= 1 and met["oos_financing_pips"] is not None
