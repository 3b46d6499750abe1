"""``sep batch GRID.yaml``: papermill runs of a notebook over a grid, fanned out on Dask.

The library behind ``sep batch`` (``runners/batch.py`` is only its ``python -m`` entry point):
:func:`run_batch`, :func:`run_sweep_batch`, :func:`make_cluster`.

::

    sep batch runners/grids/sample-exploration.yaml              # 2-worker LocalCluster
    sep batch GRID.yaml --workers 4                               # a bigger LocalCluster
    sep batch GRID.yaml --scheduler tcp://HOST:8786               # an existing cluster
    sep batch GRID.yaml --dry-run                                 # check and list the runs
    sep batch --index-only                                        # rebuild reports/index.html
    sep batch runners/grids/sweeps/sample-sweep.yaml --gpus 2     # a sweep, one worker per GPU

Grid files (``kind: notebook``, the default, or ``kind: sweep``) have one schema,
:mod:`sep_research.reporting.grid_schema` (pydantic; ``--dry-run`` prints every problem as
``FILE: KEY: problem``). Every parameter of a notebook grid is checked against the notebook's
``parameters`` cell before anything runs (:mod:`sep_research.reporting.grid`). Each run writes
``REPORTS/runs/RUN_ID/`` (see :mod:`sep_research.reporting.runs`); a failed run keeps its
partial notebook and its error in the manifest, and the batch goes on. Run ids are derived
from the parameters, so running a batch again skips the runs that finished (``--force``
re-runs them). ``REPORTS`` is ``--reports-dir``, else ``$SEP_REPORTS_DIR``, else
``reports/`` in the project root; ``REPORTS/index.html`` is rebuilt after each batch.

With ``--scheduler``, the workers must see the same paths as this machine (the project
checkout and the reports folder, e.g. on a shared file system) and have the project installed.

Worker processes are made in one place, :func:`make_cluster`, which takes a per-worker
environment hook (``worker_env(i) -> dict``): a multi-GPU sweep passes
``lambda i: {"CUDA_VISIBLE_DEVICES": str(i)}`` to pin one worker per GPU.

Sweep grids (``kind: sweep``, run by :mod:`sep_research.sweeps.batch`) run one
distributed parameter sweep instead of notebooks: split by instrument and by blocks of
configurations, one Dask task each, merged into one run folder per instrument. ``--gpus N``
starts one worker per GPU, each pinned with ``CUDA_VISIBLE_DEVICES``, and runs the sweep with
the ``cuda`` engine; without it the workers are CPU processes (``cpu`` engine, an equal share
of the cores each). One GPU and N GPUs give the same results in the same run folder. With
``--gpus``, notebook grids get the same pinned workers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Environment every local worker (and the notebook kernels it starts) gets.
BASE_WORKER_ENV: dict[str, str] = {"MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "batch", help="run a notebook over a parameter grid with papermill on Dask",
        description="Expand GRID.yaml into papermill runs of a notebook, run them on a Dask "
        "cluster and write reports/runs/RUN_ID/ and reports/index.html.",
    )
    p.add_argument("grid", nargs="?", help="grid YAML file (see runners/grids/)")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler, "
                   "e.g. tcp://HOST:8786 (default: start a LocalCluster)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes of the LocalCluster (default 2; with --gpus, one "
                   "per GPU)")
    p.add_argument("--gpus", type=int, default=None, metavar="N",
                   help="one worker per GPU on N GPUs of this host, each pinned with "
                   "CUDA_VISIBLE_DEVICES; sweep grids then run on the cuda engine")
    p.add_argument("--reports-dir", help="reports folder (default: $SEP_REPORTS_DIR or reports/)")
    p.add_argument("--force", action="store_true", help="re-run runs that already finished")
    p.add_argument("--dry-run", action="store_true", help="check the grid and list its runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--index-only", action="store_true",
                   help="only rebuild REPORTS/index.html from the run folders")
    p.set_defaults(func=_cmd_batch)


@dataclass
class BatchResult:
    """What :func:`run_batch` returns: one summary per run, in grid order."""

    reports: Path
    results: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    index: Path | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["status"] != "ok"]

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["status"] == "ok"]


def make_cluster(
    n_workers: int,
    *,
    worker_env: Callable[[int], Mapping[str, str]] | None = None,
    threads_per_worker: int = 1,
) -> Any:
    """Start the local worker processes: the one place where workers are spawned.

    Without ``worker_env``: a ``distributed.LocalCluster`` of ``n_workers`` processes with one
    thread each. With it: the same, built as a ``SpecCluster`` so that worker ``i`` gets
    ``BASE_WORKER_ENV | worker_env(i)`` (e.g. its own ``CUDA_VISIBLE_DEVICES``).
    """
    from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

    if n_workers < 1:
        raise ValueError(f"--workers must be at least 1, got {n_workers}")
    if worker_env is None:
        return LocalCluster(
            n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
            dashboard_address=None, env=dict(BASE_WORKER_ENV),
        )
    workers = {
        f"worker-{i}": {"cls": Nanny, "options": {
            "nthreads": threads_per_worker,
            "env": {**BASE_WORKER_ENV, **{k: str(v) for k, v in worker_env(i).items()}},
        }}
        for i in range(n_workers)
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": None}}
    return SpecCluster(workers=workers, scheduler=scheduler)


def _failed_summary(run_id: str, exc: BaseException) -> dict[str, Any]:
    return {"run_id": run_id, "status": "failed", "duration_s": None, "metrics": {},
            "error": {"type": exc.__class__.__name__, "message": str(exc)}}


def _record_lost_run(reports: Path, spec: Any, exc: BaseException) -> None:
    """A run whose worker died never wrote its final manifest: write it here."""
    from sep_research.reporting.manifest import read_manifest
    from sep_research.reporting.paths import atomic_write_json
    from sep_research.reporting.runs import run_dir_for

    run_dir = run_dir_for(reports, spec.run_id)
    manifest = read_manifest(run_dir) or {"run_id": spec.run_id, "batch": spec.batch,
                                          "parameters": spec.parameters,
                                          "notebook": spec.notebook}
    manifest["status"] = "failed"
    manifest["error"] = {"type": exc.__class__.__name__,
                         "message": f"the worker running this run was lost: {exc}"}
    atomic_write_json(run_dir / "manifest.json", manifest)


def run_batch(
    grid: str | os.PathLike[str] | Any,
    *,
    scheduler: str | None = None,
    workers: int = 2,
    reports: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: bool = True,
    worker_env: Callable[[int], Mapping[str, str]] | None = None,
    build_index: bool = True,
    log: Callable[[str], None] = print,
) -> BatchResult:
    """Check ``grid`` (a path or a loaded :class:`~sep_research.reporting.grid.NotebookBatch`),
    run its unfinished runs on Dask, rebuild the index. Raises ``GridError`` before running
    anything when the grid is invalid or does not fit its notebook."""
    from sep_research.reporting.grid import NotebookBatch, load_grid
    from sep_research.reporting.html import build_index as _build_index
    from sep_research.reporting.paths import project_root, reports_dir
    from sep_research.reporting.runs import is_finished
    from sep_research.versions import git_state

    g = grid if isinstance(grid, NotebookBatch) else load_grid(grid)
    root = reports_dir(reports)
    (root / "runs").mkdir(parents=True, exist_ok=True)
    result = BatchResult(reports=root)
    todo = []
    for spec in g.runs:
        if not force and is_finished(root, spec.run_id):
            result.skipped.append(spec.run_id)
        else:
            todo.append(spec)
    log(f"batch {g.name}: {len(g.runs)} run(s) of {g.notebook.name}, {len(result.skipped)} "
        f"already finished, {len(todo)} to run; reports in {root}")
    t0 = time.perf_counter()
    try:
        if todo:
            git = git_state(project_root())
            summaries = _run_on_dask(todo, root, git, scheduler=scheduler, workers=workers,
                                     progress=progress, worker_env=worker_env, log=log)
            order = {s.run_id: i for i, s in enumerate(todo)}
            result.results = sorted(summaries, key=lambda r: order[r["run_id"]])
    finally:  # also after an interruption: the index shows what finished
        result.seconds = time.perf_counter() - t0
        if build_index:
            result.index = _build_index(root)
    return result


def _run_on_dask(
    todo: list[Any], root: Path, git: dict[str, Any], *, scheduler: str | None, workers: int,
    progress: bool, worker_env: Callable[[int], Mapping[str, str]] | None,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    from distributed import Client, as_completed
    from tqdm.auto import tqdm

    from sep_research.reporting.runs import execute_run, spec_dict

    cluster = None
    if scheduler:
        client = Client(scheduler)
        log(f"connected to the Dask scheduler at {scheduler} "
            f"({len(client.scheduler_info().get('workers', {}))} worker(s))")
    else:
        cluster = make_cluster(workers, worker_env=worker_env)
        client = Client(cluster)
        log(f"started a LocalCluster with {workers} worker process(es)")
    summaries: list[dict[str, Any]] = []
    try:
        futures = {}
        for spec in todo:
            fut = client.submit(execute_run, spec_dict(spec), str(root), git=git,
                                key=f"run-{spec.run_id}", pure=False, retries=0)
            futures[fut] = spec
        bar = tqdm(total=len(futures), desc="runs", unit="run", disable=not progress,
                   file=sys.stderr)
        n_failed = 0
        for fut in as_completed(futures):
            spec = futures[fut]
            try:
                summary = fut.result()
            except Exception as exc:  # a lost worker fails its run only
                _record_lost_run(root, spec, exc)
                summary = _failed_summary(spec.run_id, exc)
            summaries.append(summary)
            if summary["status"] != "ok":
                n_failed += 1
                err = summary.get("error") or {}
                msg = f"FAILED {spec.run_id}: {err.get('type', '')}: {err.get('message', '')}"
            else:
                msg = f"ok     {spec.run_id} ({summary['duration_s']:.1f} s)"
            (bar.write if progress else log)(msg)
            bar.update(1)
            bar.set_postfix(failed=n_failed)
        bar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return summaries


def _workers_and_env(args: argparse.Namespace) -> tuple[int, Any]:
    """(number of workers, worker_env hook) from --workers and --gpus."""
    gpus = getattr(args, "gpus", None)
    if gpus is None:
        return (2 if args.workers is None else args.workers), None
    from sep_research.sweeps.distributed import gpu_worker_env

    if args.scheduler:
        raise ValueError("--gpus starts its own workers; it cannot be used with --scheduler")
    if args.workers is not None and args.workers != gpus:
        raise ValueError(f"--gpus {gpus} runs one worker per GPU: --workers must be {gpus} "
                         f"or left out, got {args.workers}")
    return gpus, gpu_worker_env(gpus)


def run_sweep_batch(
    grid: str | os.PathLike[str] | Any,
    *,
    scheduler: str | None = None,
    workers: int = 2,
    gpus: int | None = None,
    reports: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: bool = True,
    build_index: bool = True,
    log: Callable[[str], None] = print,
) -> BatchResult:
    """Run a sweep grid (a path or a loaded ``SweepGrid``) on Dask: ``gpus`` workers pinned one
    per GPU with the cuda engine, else ``workers`` CPU workers; one run folder per instrument,
    then the index. See :mod:`sep_research.sweeps.batch`."""
    from distributed import Client

    from sep_research.reporting.grid_schema import SweepGrid, load_sweep_grid
    from sep_research.reporting.html import build_index as _build_index
    from sep_research.reporting.paths import reports_dir
    from sep_research.reporting.runs import is_finished
    from sep_research.sweeps.batch import run_sweep_grid
    from sep_research.sweeps.distributed import cpu_worker_env, gpu_worker_env

    sg = grid if isinstance(grid, SweepGrid) else load_sweep_grid(grid)
    root = reports_dir(reports)
    (root / "runs").mkdir(parents=True, exist_ok=True)
    result = BatchResult(reports=root)
    engine = "cuda" if gpus else "cpu"
    cluster = None
    t0 = time.perf_counter()
    if not force and all(is_finished(root, sg.run_id(i)) for i in sg.instruments):
        result.results, result.skipped = run_sweep_grid(sg, root, engine=engine, log=log)
        result.index = _build_index(root) if build_index else None
        return result  # nothing to run: no cluster
    try:
        if scheduler:
            client = Client(scheduler)
            log(f"connected to the Dask scheduler at {scheduler}")
        else:
            n = int(gpus) if gpus else int(workers)
            env = gpu_worker_env(n) if gpus else cpu_worker_env(n)
            cluster = make_cluster(n, worker_env=env)
            client = Client(cluster)
            log(f"started a LocalCluster with {n} worker process(es)"
                + (f", one per GPU ({', '.join(env(i)['CUDA_VISIBLE_DEVICES'] for i in range(n))})"
                   if gpus else ""))
        try:
            result.results, result.skipped = run_sweep_grid(
                sg, root, client=client, engine=engine, gpus=int(gpus or 0), force=force,
                progress=progress, log=log)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    finally:
        result.seconds = time.perf_counter() - t0
        if build_index:
            result.index = _build_index(root)
    return result


def _cmd_batch(args: argparse.Namespace) -> int:
    from sep_research.reporting.grid import load_grid
    from sep_research.reporting.grid_schema import SweepGrid, read_batch_grid
    from sep_research.reporting.html import build_index
    from sep_research.reporting.paths import reports_dir

    if args.index_only:
        print(f"wrote {build_index(reports_dir(args.reports_dir))}")
        return 0
    if not args.grid:
        raise ValueError("a grid file is needed (or --index-only)")
    # GridError (a ValueError) is printed without a traceback: FILE: KEY: problem, each line
    doc = read_batch_grid(args.grid)
    if isinstance(doc, SweepGrid):
        sg = doc
        if args.dry_run:
            print(f"sweep grid {sg.name}: {sg.n_configs} configuration(s) x "
                  f"{len(sg.instruments)} instrument(s) ({sg.data} {sg.granularity})")
            for inst in sg.instruments:
                print(f"  {sg.run_id(inst)}  {inst}")
            return 0
        workers, _ = _workers_and_env(args)
        res = run_sweep_batch(sg, scheduler=args.scheduler, workers=workers, gpus=args.gpus,
                              reports=args.reports_dir, force=args.force,
                              progress=not args.no_progress)
    else:
        grid = load_grid(doc)  # checked against the notebook's parameters, expanded
        if args.dry_run:
            print(f"grid {grid.name}: {len(grid.runs)} run(s) of {grid.notebook}")
            for spec in grid.runs:
                print(f"  {spec.run_id}  {spec.parameters}")
            return 0
        workers, env = _workers_and_env(args)
        res = run_batch(grid, scheduler=args.scheduler, workers=workers,
                        reports=args.reports_dir, force=args.force,
                        progress=not args.no_progress, worker_env=env)
    print(f"done in {res.seconds:.1f} s: {len(res.ok)} ok, {len(res.failed)} failed, "
          f"{len(res.skipped)} skipped (already finished)")
    if not isinstance(doc, SweepGrid):
        print_batch_pvalues(res.reports, grid.name)
    for r in res.failed:
        err = r.get("error") or {}
        print(f"  failed: {r['run_id']}: {err.get('type', '')}: {err.get('message', '')}")
    if res.index is not None:
        print(f"index: {res.index}")
    return 1 if res.failed else 0


def print_batch_pvalues(reports: str | os.PathLike[str], batch: str,
                        log: Callable[[str], None] = print) -> None:
    """The batch's p-values against random signals with their Holm-adjusted values and the
    number of runs counted (:func:`sep_research.reporting.html.batch_pvalues`)."""
    from sep_research.reporting.html import batch_pvalues, collect_runs, holm_lines

    entry = batch_pvalues(collect_runs(reports)).get(batch)
    if entry is None:
        log(f"batch {batch}: no finished run reports a p-value against random signals")
        return
    for line in holm_lines(batch, entry):
        log(line)


def main(argv: list[str] | None = None) -> int:
    """``python -m runners.batch ...``: the same as ``sep batch ...``."""
    from sep_research.cli import main as sep_main

    return sep_main(["batch", *(sys.argv[1:] if argv is None else argv)])
