"""Distributed sweeps (issue 9): blocks of configurations x instruments on Dask workers, merged
back bit-identical to one ``sweep_seed`` call; ``sep batch`` sweep grids on 1 and 2 workers
give identical reports; ``--gpus N`` pins one worker per GPU (checked here with CPU workers
standing in for GPUs, and with the numba-cuda simulator in the workers).

Data: the packaged REAL EUR_USD H1 sample, whole or in real sub-periods.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from sep_research.cli import main
from sep_research.data import load_sample
from sep_research.reporting.grid_schema import GridError, load_sweep_grid, read_batch_grid
from sep_research.signals.grid import product_grid
from sep_research.signals.sweep import sweep_seed
from sep_research.sweeps.batch import run_sweep_grid
from sep_research.sweeps.distributed import (
    cpu_worker_env,
    gpu_worker_env,
    plan_blocks,
    sweep_distributed,
    visible_gpu_ids,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SWEEP = ROOT / "runners" / "grids" / "sweeps" / "sample-sweep.yaml"


@pytest.fixture(scope="module")
def sample():
    return load_sample()


def _grid():
    # 3 windows x 2 x 2 x 2 x 2 = 48 configurations, spread and thresholds varied
    return product_grid(window=[11, 5, 21], w_s=[0.3, 0.45], buy_threshold=[0.5, 0.55],
                        sell_threshold=[0.5, 0.53], spread=[0.0, 0.7])


def _equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert v.dtype == b[k].dtype, k
        assert np.array_equal(v, b[k]), k  # bit for bit: no tolerance


def test_plan_blocks_partition_the_grid_in_window_order() -> None:
    g = _grid()
    for kw in ({"n_blocks": 1}, {"n_blocks": 5}, {"block_configs": 7}, {"n_blocks": 1000}):
        blocks = plan_blocks(g, **kw)
        rows = np.concatenate(blocks)
        assert np.array_equal(np.sort(rows), np.arange(len(g))), kw
        assert all(b.size for b in blocks)
        w = [g.column("window")[b] for b in blocks]
        assert all(w[i].max() <= w[i + 1].min() for i in range(len(w) - 1)), kw
    assert len(plan_blocks(g, block_configs=7)) == -(-48 // 7)
    assert len(plan_blocks(g, n_blocks=1000)) == 48  # never more blocks than rows
    with pytest.raises(ValueError, match="not both"):
        plan_blocks(g, n_blocks=2, block_configs=3)
    with pytest.raises(ValueError, match="at least 1"):
        plan_blocks(g, block_configs=0)
    with pytest.raises(ValueError, match="one length"):
        plan_blocks({"window": [5, 7], "w_s": [0.1]})


def test_blocks_in_process_are_bit_identical_to_one_sweep(sample) -> None:
    g = _grid()
    later = sample.iloc[2000:]  # a real sub-period as a second "instrument"
    ref_a = sweep_seed(sample, g, score_start=150, score_end=4999, half_spread_pips=0.5,
                       engine="cpu")
    ref_b = sweep_seed(later, g, score_start=300, score_end=2500, half_spread_pips=0.2,
                       engine="cpu")
    for kw in ({"n_blocks": 1}, {"n_blocks": 4}, {"block_configs": 5}):
        out = sweep_distributed({"A": sample, "B": later}, g, score_start={"A": 150, "B": 300},
                                score_end={"B": 2500}, half_spread_pips={"A": 0.5, "B": 0.2},
                                engine="cpu", **kw)
        _equal(out.results["A"], ref_a)
        _equal(out.results["B"], ref_b)
        assert out.scored == {"A": 4999 - 150, "B": 2500 - 300}
        assert out.config_candles == 48 * (4849 + 2200)
        assert sum(t["rows"] for t in out.tasks) == 2 * 48
    # spread from bid/ask at the entry's open (a made-up varying spread on the real mid prices)
    quoted = sample.copy()
    half = 0.00004 + 0.00003 * (np.arange(len(sample)) % 5)
    quoted["bid_open"], quoted["ask_open"] = sample["open"] - half, sample["open"] + half
    ref_q = sweep_seed(quoted, g, score_start=150, score_end=4999, engine="cpu")
    assert not np.array_equal(ref_q["sum_pips_net"], ref_a["sum_pips_net"])
    out = sweep_distributed({"Q": quoted}, g, score_start=150, engine="cpu", n_blocks=3)
    _equal(out.results["Q"], ref_q)
    with pytest.raises(ValueError, match="half_spread_pips"):  # mid only: the spread is paid
        sweep_distributed({"A": sample}, g, engine="cpu")
    with pytest.raises(ValueError, match="USD_JPY"):  # the key names another instrument
        sweep_distributed({"USD_JPY": sample}, g, half_spread_pips=0.5, engine="cpu")
    with pytest.raises(ValueError, match="non-empty mapping"):
        sweep_distributed({}, g)
    with pytest.raises(ValueError, match="no 'volume' column"):
        sweep_distributed({"A": sample.drop(columns="volume")}, g)
    with pytest.raises(ValueError, match="engine='gpu' is unknown"):
        sweep_distributed({"A": sample}, g, engine="gpu")


def test_worker_environments(monkeypatch) -> None:
    env = gpu_worker_env(2, visible=["3", "5", "6"], cpus=16)
    assert env(0) == {"CUDA_VISIBLE_DEVICES": "3", "NUMBA_NUM_THREADS": "8",
                      "NCCL_NVLS_ENABLE": "0"}
    assert env(1)["CUDA_VISIBLE_DEVICES"] == "5"
    with pytest.raises(ValueError, match="--gpus 4: only 3 GPU"):
        gpu_worker_env(4, visible=["3", "5", "6"])
    with pytest.raises(ValueError, match="at least 1"):
        gpu_worker_env(0, visible=["0"])
    assert cpu_worker_env(3, cpus=16)(2) == {"NUMBA_NUM_THREADS": "5"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert visible_gpu_ids() == ["2", "3"]
    assert gpu_worker_env(2)(1)["CUDA_VISIBLE_DEVICES"] == "3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpu_ids() == []
    with pytest.raises(ValueError, match="only 0 GPU"):
        gpu_worker_env(1)


def _sweep_yaml(tmp_path: Path, **changes) -> Path:
    doc = {"kind": "sweep", "name": "t-sweep", "data": "sample", "granularity": "H1",
           "instruments": ["EUR_USD"], "score_start": 200, "half_spread_pips": 0.25, "top": 5,
           "grid": {"window": [5, 9, 13], "w_s": [0.3, 0.4], "buy_threshold": [0.5, 0.52],
                    "conf_threshold": [0.6, 0.7]}}
    doc.update(changes)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_sweep_grid_checks_and_run_ids(tmp_path: Path) -> None:
    sg = load_sweep_grid(SAMPLE_SWEEP)
    assert sg.n_configs == 45_000 and sg.instruments == ["EUR_USD"]
    assert read_batch_grid(SAMPLE_SWEEP).kind == "sweep"
    assert read_batch_grid(ROOT / "runners" / "grids" / "sample-training.yaml").kind == "notebook"
    a = load_sweep_grid(_sweep_yaml(tmp_path))
    b = load_sweep_grid(_sweep_yaml(tmp_path, block_configs=3))  # blocks change no result
    c = load_sweep_grid(_sweep_yaml(tmp_path, half_spread_pips=0.3))
    assert a.run_id("EUR_USD") == b.run_id("EUR_USD") != c.run_id("EUR_USD")
    assert a.run_id("EUR_USD").startswith("t-sweep-EUR_USD-H1-")
    bad = _sweep_yaml(tmp_path, grid={"window": [5.5], "w_x": [1]}, instruments=[],
                      alignment="future", colour=1)
    with pytest.raises(GridError) as err:
        load_sweep_grid(bad)
    msg = str(err.value)
    for part in ("grid.window: must hold integers >= 2", "grid.w_x: not a grid field",
                 "instruments: List should have at least 1 item",
                 "alignment: Input should be 'causal' or 'legacy'", "colour: unknown grid key"):
        assert f"{bad}: {part}" in msg, part
    with pytest.raises(GridError, match=r"grid.w_s: List should have at least 1 item"):
        load_sweep_grid(_sweep_yaml(tmp_path, grid={"window": [5], "w_s": []}))


def test_cli_dry_run_and_argument_errors(tmp_path: Path, capsys, monkeypatch) -> None:
    path = _sweep_yaml(tmp_path)
    assert main(["batch", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "24 configuration(s) x 1 instrument(s)" in out and "t-sweep-EUR_USD-H1-" in out
    assert main(["batch", str(path), "--gpus", "2", "--workers", "3"]) == 2
    assert "--workers must be 2 or left out" in capsys.readouterr().err
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert main(["batch", str(path), "--gpus", "2", "--reports-dir", str(tmp_path)]) == 2
    assert "--gpus 2: only 1 GPU(s) visible" in capsys.readouterr().err
    nb_grid = str(ROOT / "runners" / "grids" / "sample-exploration.yaml")  # notebook grids too
    assert main(["batch", nb_grid, "--gpus", "1", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "cannot be used with --scheduler" in capsys.readouterr().err
    assert main(["batch", nb_grid, "--gpus", "2", "--reports-dir", str(tmp_path)]) == 2
    assert "--gpus 2: only 1 GPU(s) visible" in capsys.readouterr().err
    bad = _sweep_yaml(tmp_path, grid={"window": [1]})
    assert main(["batch", str(bad)]) == 2
    assert f"{bad}: grid.window: must hold integers >= 2, got 1" in capsys.readouterr().err


def test_failed_sweep_is_recorded_not_raised(tmp_path: Path) -> None:
    sg = load_sweep_grid(_sweep_yaml(tmp_path, instruments=["GBP_USD"]))  # not in the sample
    res, skipped = run_sweep_grid(sg, tmp_path, engine="cpu", progress=False, log=lambda m: None)
    assert skipped == [] and [r["status"] for r in res] == ["failed"]
    m = json.loads((tmp_path / "runs" / sg.run_id("GBP_USD") / "manifest.json").read_text())
    assert m["status"] == "failed" and m["kind"] == "sweep"
    assert "GBP_USD" in m["error"]["message"]


class _SpyClient:
    """A Dask client that records what is scattered and what each task is given."""

    def __init__(self, client) -> None:
        self._client = client
        self.scatters: list[dict] = []
        self.task_args: list[tuple] = []

    def scatter(self, data, **kw):
        self.scatters.append({"n": len(data), **kw})
        return self._client.scatter(data, **kw)

    def submit(self, func, *args, **kw):
        self.task_args.append(args)
        return self._client.submit(func, *args, **kw)

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.mark.slow
def test_three_workers_bit_identical_and_data_scattered_once(sample) -> None:
    from distributed import Client, Future

    from sep_research.sweeps.cli import make_cluster

    g = _grid()
    later = sample.iloc[2000:]
    ref_a = sweep_seed(sample, g, score_start=150, score_end=4999, half_spread_pips=0.5,
                       engine="cpu")
    ref_b = sweep_seed(later, g, score_start=300, score_end=2999, half_spread_pips=0.5,
                       engine="cpu")
    with make_cluster(3, worker_env=cpu_worker_env(3)) as cluster, Client(cluster) as client:
        client.wait_for_workers(3)
        spy = _SpyClient(client)
        out = sweep_distributed({"A": sample, "B": later}, g, client=spy, engine="cpu",
                                score_start={"A": 150, "B": 300}, n_blocks=6,
                                half_spread_pips=0.5)
    _equal(out.results["A"], ref_a)
    _equal(out.results["B"], ref_b)
    assert out.n_workers == 3 and len(out.tasks) == 12
    # one scatter of both instruments, to every worker; tasks get references, never arrays
    assert spy.scatters == [{"n": 2, "broadcast": True, "hash": False}]
    assert all(isinstance(args[0], Future) for args in spy.task_args)
    assert len({t["worker"] for t in out.tasks}) >= 2  # the work was spread
    assert {t["engine"] for t in out.tasks} == {"cpu"}


def _run_dir(reports: Path) -> Path:
    (d,) = list((reports / "runs").iterdir())
    return d


@pytest.mark.slow
def test_sep_batch_sweep_on_one_and_two_workers_gives_identical_reports(tmp_path: Path) -> None:
    path = _sweep_yaml(tmp_path, instruments=["EUR_USD"], block_configs=5)
    r1, r2 = tmp_path / "r1", tmp_path / "r2"
    assert main(["batch", str(path), "--workers", "1", "--reports-dir", str(r1),
                 "--no-progress"]) == 0
    assert main(["batch", str(path), "--workers", "2", "--reports-dir", str(r2),
                 "--no-progress"]) == 0
    d1, d2 = _run_dir(r1), _run_dir(r2)
    assert d1.name == d2.name  # the same run id whatever the workers
    with np.load(d1 / "results.npz") as a, np.load(d2 / "results.npz") as b:
        assert a.files == b.files and "sum_pips_net" in a.files and "grid_window" in a.files
        for k in a.files:
            assert np.array_equal(a[k], b[k]), k
        ref = sweep_seed(load_sample(), load_sweep_grid(path).config_grid(), score_start=200,
                         score_end=4999, half_spread_pips=0.25, engine="cpu")
        for k, v in ref.items():
            assert np.array_equal(a[k], v), k
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (d1, d2))
    assert m1["finished"] and m1["metrics"] == m2["metrics"]
    assert m1["metrics"]["configurations"] == 24
    assert (d1 / "tables" / "top.csv").read_text() == (d2 / "tables" / "top.csv").read_text()
    assert (d1 / "figures" / "net_pips.png").stat().st_size > 1000
    man1, man2 = (json.loads((d / "manifest.json").read_text()) for d in (d1, d2))
    assert man1["status"] == man2["status"] == "ok" and man1["kind"] == "sweep"
    assert (man1["sweep"]["workers"], man2["sweep"]["workers"]) == (1, 2)
    assert man1["sweep"]["blocks"] == man2["sweep"]["blocks"] == 5
    assert man1["data"]["candles"]["instrument"] == "EUR_USD"
    assert d1.name in (r1 / "index.html").read_text()
    # a second batch finds the run finished and starts no cluster
    assert main(["batch", str(path), "--reports-dir", str(r1), "--no-progress"]) == 0


@pytest.mark.slow
def test_gpus_flag_pins_one_worker_per_gpu_under_the_simulator(tmp_path: Path,
                                                               monkeypatch) -> None:
    """--gpus 2 with the numba-cuda simulator in the workers (no GPU here): worker i sees
    CUDA_VISIBLE_DEVICES=i, the sweep runs on the cuda engine, results match the CPU."""
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")  # inherited by the spawned workers only
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    path = _sweep_yaml(tmp_path, end="2017-05-03", score_start=60,
                       grid={"window": [5, 9], "w_s": [0.3, 0.4], "buy_threshold": [0.5, 0.52]})
    reports = tmp_path / "r"
    assert main(["batch", str(path), "--gpus", "2", "--reports-dir", str(reports),
                 "--no-progress"]) == 0
    d = _run_dir(reports)
    man = json.loads((d / "manifest.json").read_text())
    assert man["status"] == "ok", man["error"]
    assert man["sweep"]["engine"] == "cuda" and man["sweep"]["engines_resolved"] == ["cuda"]
    assert man["sweep"]["devices"] == ["0", "1"] and man["sweep"]["workers"] == 2
    sg = load_sweep_grid(path)
    frame = load_sample()
    frame = frame[frame.index < "2017-05-03"]
    ref = sweep_seed(frame, sg.config_grid(), score_start=60, score_end=len(frame) - 1,
                     half_spread_pips=0.25, engine="cpu")
    with np.load(d / "results.npz") as got:
        for k, v in ref.items():
            if k.startswith("n_"):
                assert np.array_equal(got[k], v), k
            else:
                np.testing.assert_allclose(got[k], v, rtol=1e-12, atol=1e-9, err_msg=k)
