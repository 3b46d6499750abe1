"""Sweep grids for ``sep batch``: one distributed sweep, one report folder per instrument.

A sweep grid is a batch grid file with ``kind: sweep``; its format, defaults and validation
are those of :mod:`sep_research.reporting.grid_schema` (:class:`~sep_research.reporting.
grid_schema.SweepGrid`, read by :func:`~sep_research.reporting.grid_schema.load_sweep_grid`);
its configurations are ``SweepGrid.config_grid()``, a :class:`~sep_research.signals.grid.
ConfigGrid` (the product of its ``grid`` lists). :func:`run_sweep_grid` runs one.

The results are in-sample counts and pip sums over the scored candles (no selection, no
out-of-sample estimate: that is walk-forward's job). Engine: ``cpu`` on CPU workers; with
``sep batch --gpus N`` one worker per GPU and ``cuda``. The run id depends on the grid and the
data, not on the engine or the number of workers, so one GPU and N GPUs write the same run
folder; the manifest records what ran where.

Each run folder ``REPORTS/runs/RUN_ID/`` holds ``results.npz`` (the grid's columns and the
sweep's arrays, grid order), ``metrics.json`` (``sep-run-metrics/1``), ``tables/top.csv``,
``figures/``, ``report.html`` and ``manifest.json`` (``sep-run-manifest/1`` with ``kind:
sweep`` and a ``sweep`` section: engine, workers, GPUs, blocks, seconds, throughput).
"""

from __future__ import annotations

import html
import io
import os
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sep_research.reporting.grid_schema import SweepGrid

if TYPE_CHECKING:
    from sep_research.signals.grid import ConfigGrid

RESULTS_FILE = "results.npz"


def load_data(sg: SweepGrid, instrument: str) -> Any:
    """The candles of one instrument (research data: synthetic data are refused)."""
    from sep_research.data import load_candles
    from sep_research.reporting.paths import project_root

    source = sg.data
    if source not in ("sample", "cache") and not Path(source).is_absolute():
        source = str(project_root() / source)
    return load_candles(source, instrument, sg.granularity, start=sg.start, end=sg.end)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _config_label(row: dict[str, float]) -> str:
    return " ".join(f"{k}={int(v) if k == 'window' else round(v, 6):g}" for k, v in row.items())


def _summary(grid: ConfigGrid, res: dict[str, np.ndarray], top: int) -> tuple[dict, Any]:
    """Headline metrics (deterministic: no timings) and the top-configurations table."""
    import pandas as pd

    frame = pd.DataFrame(grid.columns())
    for key, arr in res.items():
        frame[key] = arr
    nn = frame["n_non_hold"].to_numpy()
    frame["accuracy"] = np.where(nn > 0, frame["n_correct"] / np.maximum(nn, 1), np.nan)
    hc = frame["n_hc"].to_numpy()
    frame["hc_accuracy"] = np.where(hc > 0, frame["n_hc_correct"] / np.maximum(hc, 1), np.nan)
    frame["mean_pips_net"] = np.where(nn > 0, frame["sum_pips_net"] / np.maximum(nn, 1), np.nan)
    ranked = frame.sort_values(["sum_pips_net", "n_non_hold"], ascending=[False, True],
                               kind="stable")
    best = ranked.iloc[0]
    best_cfg = {k: float(best[k]) for k in grid.fields}
    metrics = {
        "configurations": len(frame),
        "best_sum_pips_net": float(best["sum_pips_net"]),
        "best_trades": int(best["n_non_hold"]),
        "best_accuracy": float(best["accuracy"]),
        "best_config": _config_label(best_cfg),
        "median_sum_pips_net": float(np.median(frame["sum_pips_net"])),
        "share_configs_net_positive": float(np.mean(frame["sum_pips_net"] > 0)),
        "max_hc_accuracy_100_plus": float(frame.loc[frame["n_hc"] >= 100, "hc_accuracy"].max())
        if (frame["n_hc"] >= 100).any() else None,
    }
    top_table = ranked.head(top).reset_index(names="config")
    return metrics, top_table


def _figures(grid: ConfigGrid, res: dict[str, np.ndarray], title: str) -> list[tuple]:
    from matplotlib.figure import Figure

    figs = []
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot(1, 2, 1)
    ax.hist(res["sum_pips_net"], bins=50, color="#4472c4")
    ax.axvline(0.0, color="k", linewidth=0.8)
    ax.set_xlabel("net pips over the scored candles")
    ax.set_ylabel("configurations")
    ax.set_title("in-sample net pips per configuration", fontsize=10)
    ax = fig.add_subplot(1, 2, 2)
    window = grid.column("window")
    windows = np.unique(window)
    if windows.size > 1:
        best = [res["sum_pips_net"][window == w].max() for w in windows]
        med = [np.median(res["sum_pips_net"][window == w]) for w in windows]
        ax.plot(windows, best, marker="o", label="best")
        ax.plot(windows, med, marker=".", label="median")
        ax.set_xlabel("window (bits)")
        ax.legend(fontsize=8)
    else:
        nn = res["n_non_hold"]
        ax.scatter(nn, res["sum_pips_net"], s=4)
        ax.set_xlabel("trades (non-HOLD signals)")
    ax.set_ylabel("net pips")
    ax.set_title("net pips by window", fontsize=10)
    fig.suptitle(title, fontsize=11)
    figs.append((fig, "net_pips", "In-sample net pips of the sweep's configurations"))
    return figs


def _report_html(run_id: str, sg: SweepGrid, metrics: dict, top_table: Any,
                 figures: list[str]) -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{e(str(k))}</td><td>{e(str(v))}</td></tr>"
                   for k, v in metrics.items())
    imgs = "".join(f'<p><img src="{e(f)}" style="max-width:100%"></p>' for f in figures)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{e(run_id)}</title></head><body style='font-family:system-ui,sans-serif'>"
        f"<h1>{e(run_id)}</h1><p>{e(sg.description)}</p>"
        "<p>In-sample counts and pip sums of every configuration over the scored candles. "
        "The best in-sample configuration is selected on these very candles: it is not an "
        "estimate of out-of-sample performance.</p>"
        f"<table>{rows}</table>{imgs}<h2>Top configurations</h2>"
        + top_table.to_html(index=False, float_format=lambda v: f"{v:.6g}")
        + "</body></html>\n"
    )


def write_sweep_run(
    run_dir: Path, *, run_id: str, sg: SweepGrid, instrument: str, frame: Any,
    grid: ConfigGrid, res: dict[str, np.ndarray], manifest: dict[str, Any],
) -> dict[str, Any]:
    """Write one instrument's run folder; returns its headline metrics."""
    from sep_research.reporting.paths import atomic_write_bytes, atomic_write_text
    from sep_research.reporting.recorder import RunRecorder

    rec = RunRecorder(run_dir, notebook="sweep", parameters=manifest["parameters"])
    rec.data(frame)
    buf = io.BytesIO()
    np.savez(buf, **{f"grid_{k}": v for k, v in grid.columns().items()}, **res)
    atomic_write_bytes(run_dir / RESULTS_FILE, buf.getvalue())
    rec.artifact("results", run_dir / RESULTS_FILE)
    metrics, top_table = _summary(grid, res, sg.top)
    files = []
    for fig, name, title in _figures(grid, res, f"{sg.name}: {instrument} {sg.granularity}"):
        # saved here rather than with rec.figure, which needs IPython (absent on a bare GPU
        # host); recorded in the same metrics.json layout
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=rec.dpi)
        atomic_write_bytes(run_dir / "figures" / f"{name}.png", png.getvalue())
        files.append(f"figures/{name}.png")
        rec.record["figures"].append({"name": name, "title": title, "key": True,
                                      "file": files[-1]})
    rec.metrics(**metrics)
    rec.table(top_table, "top", show=False)
    atomic_write_text(run_dir / "report.html", _report_html(run_id, sg, metrics, top_table,
                                                            files))
    rec.finish()
    return metrics


def run_sweep_grid(
    sg: SweepGrid,
    reports: str | os.PathLike[str],
    *,
    client: Any = None,
    engine: str = "cpu",
    gpus: int = 0,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run a sweep grid on ``client``'s workers into ``REPORTS/runs/RUN_ID/`` (one per
    instrument). Returns (one summary per instrument run, run ids skipped as finished).

    A failure (bad data, a worker lost, a GPU error) marks the instruments' runs failed in
    their manifests and in the summaries; it is not raised.
    """
    from sep_research.reporting.manifest import (
        MANIFEST_FILE,
        MANIFEST_SCHEMA,
        hardware_info,
    )
    from sep_research.reporting.paths import atomic_write_json, project_root
    from sep_research.reporting.runs import is_finished, run_dir_for
    from sep_research.sweeps.distributed import sweep_distributed
    from sep_research.versions import git_state, package_versions

    root = Path(reports)
    skipped = [sg.run_id(i) for i in sg.instruments if not force and is_finished(root,
                                                                                sg.run_id(i))]
    todo = [i for i in sg.instruments if sg.run_id(i) not in skipped]
    log(f"sweep {sg.name}: {len(sg.instruments)} instrument(s) x {sg.n_configs} "
        f"configuration(s), {len(skipped)} already finished; engine {engine}"
        + (f" on {gpus} GPU(s)" if gpus else "") + f"; reports in {root}")
    if not todo:
        return [], skipped
    git = git_state(project_root())
    manifests: dict[str, dict[str, Any]] = {}
    for inst in todo:
        rid = sg.run_id(inst)
        run_dir = run_dir_for(root, rid)
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("metrics.json", RESULTS_FILE, "report.html"):
            (run_dir / stale).unlink(missing_ok=True)
        manifests[inst] = {
            "schema": MANIFEST_SCHEMA, "kind": "sweep", "run_id": rid, "batch": sg.name,
            "grid_file": sg.source, "notebook": None, "parameters": sg.spec(inst),
            "seed": None, "status": "running", "error": None, "started_at": _now(),
            "finished_at": None, "duration_s": None, "git": git, "data": {},
            "packages": package_versions(), "hardware": hardware_info(probe_gpu=bool(gpus)),
            "worker": None, "pid": os.getpid(), "files": {},
        }
        atomic_write_json(run_dir / MANIFEST_FILE, manifests[inst])
    t0 = time.perf_counter()
    summaries = []
    try:
        frames = {inst: load_data(sg, inst) for inst in todo}
        grid = sg.config_grid()
        out = sweep_distributed(
            {inst: frames[inst] for inst in todo}, grid, client=client,
            granularity=sg.granularity, score_start=sg.score_start, score_end=sg.score_end,
            half_spread_pips=sg.half_spread_pips,
            alignment=sg.alignment, engine=engine, chunk=sg.chunk,
            block_configs=sg.block_configs, progress=progress)
        for inst in todo:
            rid = sg.run_id(inst)
            run_dir = run_dir_for(root, rid)
            m = manifests[inst]
            tasks = [t for t in out.tasks if t["instrument"] == inst]
            m["sweep"] = {
                "engine": engine, "gpus": gpus, "workers": out.n_workers,
                "blocks": len(tasks), "configurations": out.n_configs,
                "scored_candles": out.scored[inst],
                "devices": sorted({str(t["cuda_visible_devices"]) for t in tasks}),
                "engines_resolved": sorted({t["engine"] for t in tasks}),
                "seconds_all_instruments": round(out.seconds, 4),
                "config_candles_per_s_all_instruments": out.rate,
                "task_seconds": round(sum(t["seconds"] for t in tasks), 4),
            }
            m["worker"] = sorted({str(t["worker"]) for t in tasks})
            metrics = write_sweep_run(run_dir, run_id=rid, sg=sg, instrument=inst,
                                      frame=frames[inst], grid=grid, res=out.results[inst],
                                      manifest=m)
            from sep_research.data.candles import get_provenance

            m["data"] = {"candles": get_provenance(frames[inst]).to_dict()}
            m["status"] = "ok"
            m["files"] = {"html": "report.html", "metrics": "metrics.json",
                          "artifacts": [RESULTS_FILE], "figures": ["figures/net_pips.png"],
                          "tables": ["tables/top.csv"]}
            summaries.append({"run_id": rid, "status": "ok", "error": None,
                              "metrics": metrics})
    except Exception as exc:  # recorded in every unfinished manifest
        err = {"type": exc.__class__.__name__, "message": str(exc),
               "traceback": traceback.format_exc()[-8000:]}
        done = {s["run_id"] for s in summaries}
        for inst in todo:
            if sg.run_id(inst) not in done:
                manifests[inst].update(status="failed", error=err)
                summaries.append({"run_id": sg.run_id(inst), "status": "failed",
                                  "error": err, "metrics": {}})
    seconds = round(time.perf_counter() - t0, 3)
    for inst in todo:
        m = manifests[inst]
        m["duration_s"] = seconds
        m["finished_at"] = _now()
        atomic_write_json(run_dir_for(root, m["run_id"]) / MANIFEST_FILE, m)
    for s in summaries:
        s["duration_s"] = seconds
    order = {sg.run_id(i): n for n, i in enumerate(sg.instruments)}
    return sorted(summaries, key=lambda s: order[s["run_id"]]), skipped
