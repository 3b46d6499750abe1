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
from sep_research.reporting.grid import load_grid, notebook_parameters
from sep_research.reporting.grid_schema import (
    GridError,
    NotebookGrid,
    SweepGrid,
    load_sweep_grid,
    read_batch_grid,
)

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
    ({"grid": {"rolling_window": 10}}, "grid.rolling_window: Input should be a valid list"),
    ({"grid": {"rolling_window": []}}, "grid.rolling_window: List should have at least 1 item"),
    ({"name": "bad name!"}, "name: must be letters, digits"),
    ({"execution_timeout_s": -1}, "execution_timeout_s: Input should be greater than or equal"),
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
    with pytest.raises(GridError, match="notebook: required key is missing"):
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


# ---- the one batch grid schema (notebook and sweep grids) ------------------------------------

NB = f"notebook: {NB01}\n"
SW = "kind: sweep\ninstruments: [EUR_USD]\n"


def test_every_shipped_grid_file_is_valid_and_keeps_its_run_ids() -> None:
    """Both kinds under runners/grids/ validate against the one schema; their run ids are
    those of main before the schema (so a re-run finds the reports written then)."""
    kinds = {p.relative_to(ROOT / "runners" / "grids").as_posix(): read_batch_grid(p).kind
             for p in sorted((ROOT / "runners" / "grids").rglob("*.yaml"))}
    assert kinds == {"broken-example.yaml": "notebook", "sample-exploration.yaml": "notebook",
                     "sample-training.yaml": "notebook",
                     "sweeps/sample-sweep-thresholded.yaml": "sweep",
                     "sweeps/sample-sweep.yaml": "sweep"}
    broken = load_grid(ROOT / "runners/grids/broken-example.yaml")  # valid: it breaks at run
    assert [r.parameters["granularity"] for r in broken.runs] == ["H1", "H1", "M5"]
    assert [r.run_id for r in load_grid(ROOT / "runners/grids/sample-exploration.yaml").runs] \
        == ["sample-exploration-EUR_USD-H1-93a3ae7d", "sample-exploration-EUR_USD-H1-db09c303",
            "sample-exploration-EUR_USD-H1-e4b30f46", "sample-exploration-EUR_USD-H1-7d78423a"]
    sweep = read_batch_grid(ROOT / "runners/grids/sweeps/sample-sweep.yaml")
    assert sweep.run_id("EUR_USD") == "sample-sweep-EUR_USD-H1-ed826ccb"
    assert sweep.source == str(ROOT / "runners/grids/sweeps/sample-sweep.yaml")


@pytest.mark.parametrize(("text", "key", "problem"), [
    # unknown keys
    (NB + "rolling_window: 5\n", "rolling_window", "unknown grid key for a notebook grid"),
    (SW + "grid: {window: [5]}\ngranularty: H1\n", "granularty",
     "unknown grid key for a sweep grid (did you mean 'granularity'?)"),
    (SW + "grid: {window: [5]}\nspread_pips: 1.0\n", "spread_pips",
     "replaced by half_spread_pips"),
    # wrong types
    (NB + "execution_timeout_s: '600'\n", "execution_timeout_s",
     "Input should be a valid integer, got '600'"),
    ("kind: sweep\ninstruments: EUR_USD\ngrid: {window: [5]}\n", "instruments",
     "Input should be a valid list"),
    (SW + "grid: {window: [5]}\nhalf_spread_pips: true\n", "half_spread_pips",
     "Input should be a valid number, got True"),
    (SW + "grid: {w_s: [0.3, yes]}\n", "grid.w_s[1]", "Input should be a valid number"),
    (SW + "grid: {window: [5]}\nstart: 2017-05-01\n", "start", "must be a time in quotes"),
    # NaN and infinities
    (SW + "grid: {w_s: [0.3, .nan]}\n", "grid.w_s[1]", "Input should be a finite number"),
    (SW + "grid: {window: [5]}\nhalf_spread_pips: .inf\n", "half_spread_pips",
     "Input should be a finite number"),
    (NB + "parameters: {rolling_window: .nan}\n", "parameters.rolling_window",
     "numbers must be finite"),
    # empty lists
    (NB + "instruments: []\n", "instruments", "List should have at least 1 item"),
    (SW + "grid: {window: []}\n", "grid.window", "List should have at least 1 item"),
    (SW + "grid: {}\n", "grid", "Dictionary should have at least 1 item"),
    # the two kinds' keys mixed
    (NB + "score_start: 200\n", "score_start",
     ("not a key of notebook grids (the default kind); it is a key of sweep grids: add "
      "'kind: sweep'")),
    (SW + NB + "grid: {window: [5]}\n", "notebook",
     "not a key of sweep grids (kind: sweep); it is a key of notebook grids"),
    (SW + "granularities: [H1]\ngrid: {window: [5]}\n", "granularities",
     "it is a key of notebook grids"),
    # values
    ("kind: sweeps\n", "kind", "must be 'notebook' (the default) or 'sweep', got 'sweeps'"),
    ("kind: sweep\ninstruments: [EUR_USD, EUR_USD]\ngrid: {window: [5]}\n", "instruments",
     "lists EUR_USD more than once"),
    (NB + "instruments: [EURUSD]\n", "instruments[0]", "not an OANDA instrument name"),
    (SW + "grid: {window: [1]}\n", "grid.window", "must hold integers >= 2, got 1"),
    (SW + "rule: thresholded\ngrid: {k_pips: [-1]}\n", "grid.k_pips", "must be >= 0, got -1"),
    (SW + "grid: {k_pips: [1]}\n", "grid.k_pips", "not a grid field of rule 'seed'"),
    (SW + "grid: {window: [5]}\nscore_start: 10\nscore_end: 5\n", "score_end",
     "5 is before score_start 10"),
    (NB + "parameter_sets: [{start: '2017'}, {output_dir: x}]\n", "parameter_sets[1].output_dir",
     "set by the batch itself"),
    ("kind: sweep\ngrid: {window: [5]}\n", "instruments", "required key is missing"),
])
def test_schema_errors_name_the_file_and_the_key(tmp_path: Path, text: str, key: str,
                                                 problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(GridError) as err:
        read_batch_grid(path)
    lines = str(err.value).splitlines()
    assert any(line.startswith(f"{path}: {key}: ") and problem in line for line in lines), lines


def test_dry_run_says_what_is_wrong_with_a_bad_file(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SW + NB + "score_start: -1\ngrid: {window: [5], w_s: [.nan]}\n")
    assert main(["batch", str(sweep), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for line in ("score_start: Input should be greater than or equal to 0, got -1",
                 "grid.w_s[0]: Input should be a finite number",
                 "notebook: not a key of sweep grids"):
        assert f"{sweep}: {line}" in err, line
    nb = tmp_path / "nb.yaml"
    nb.write_text(NB + "grid: {rolling_windw: [10]}\n")  # schema-valid; not the notebook's
    assert main(["batch", str(nb), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{nb}: grid.rolling_windw: unknown parameter 'rolling_windw' (did you mean " \
           "'rolling_window'?)" in err
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert main(["batch", str(empty), "--dry-run"]) == 2
    assert f"{empty}: the file is empty" in capsys.readouterr().err
    yaml_error = tmp_path / "broken.yaml"
    yaml_error.write_text("notebook: [unclosed\n")
    assert main(["batch", str(yaml_error), "--dry-run"]) == 2
    assert f"{yaml_error}: not valid YAML at line" in capsys.readouterr().err


def test_every_key_of_both_kinds_is_documented() -> None:
    """Each key's default and meaning are in its Field description, and the module
    docstring's examples show every key."""
    import sep_research.reporting.grid_schema as schema

    for model in (NotebookGrid, SweepGrid):
        for name, info in model.model_fields.items():
            assert info.description, (model.__name__, name)
            assert f"{name}:" in (schema.__doc__ or ""), name
    g = read_batch_grid({"notebook": NB01})
    assert g.kind == "notebook" and g.execution_timeout_s == 1800 and g.name == "batch"
    s = read_batch_grid({"kind": "sweep", "instruments": ["EUR_USD"], "grid": {"window": [5]}})
    assert (s.data, s.granularity, s.rule, s.alignment, s.chunk, s.top) == (
        "sample", "H1", "seed", "causal", 8192, 20)
    with pytest.raises(GridError, match="needs 'kind: sweep'"):
        load_sweep_grid({"notebook": NB01})
    with pytest.raises(GridError, match="this is a sweep grid"):
        load_grid({"kind": "sweep", "instruments": ["EUR_USD"], "grid": {"window": [5]}})
