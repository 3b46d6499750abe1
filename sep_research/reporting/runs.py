"""Execute one batch run (on a Dask worker or in-process) and write its manifest.

:func:`execute_run` runs the notebook with papermill into ``REPORTS/runs/RUN_ID/``:

- ``notebook.ipynb``: the executed notebook (partial, with the error, when a cell failed);
- ``report.html``: its self-contained HTML export;
- ``metrics.json``, ``figures/``, ``tables/`` and any artifacts: written by the notebook
  through :class:`sep_research.reporting.recorder.RunRecorder`;
- ``manifest.json``: see :mod:`sep_research.reporting.manifest`.

It never raises for a failing notebook: the failure goes into the manifest and the returned
summary, so one broken run does not stop a batch.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sep_research.reporting.grid import RunSpec
from sep_research.reporting.manifest import (
    MANIFEST_FILE,
    MANIFEST_SCHEMA,
    hardware_info,
    read_manifest,
)
from sep_research.reporting.paths import atomic_write_json, project_root, read_json
from sep_research.versions import package_versions

NOTEBOOK_FILE = "notebook.ipynb"
HTML_FILE = "report.html"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run_dir_for(reports: str | os.PathLike[str], run_id: str) -> Path:
    return Path(reports) / "runs" / run_id


def is_finished(reports: str | os.PathLike[str], run_id: str) -> bool:
    """True when the run folder holds a manifest with status ``ok``."""
    m = read_manifest(run_dir_for(reports, run_id))
    return bool(m) and m.get("status") == "ok"


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None


def execute_run(
    spec: RunSpec | dict[str, Any],
    reports: str | os.PathLike[str],
    *,
    git: dict[str, Any] | None = None,
    kernel_name: str = "python3",
    probe_gpu: bool = True,
) -> dict[str, Any]:
    """Run one notebook into ``REPORTS/runs/RUN_ID``; return ``{run_id, status, error,
    duration_s, metrics}``. Never raises for a failing notebook."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    if isinstance(spec, dict):
        spec = RunSpec(**spec)
    run_dir = run_dir_for(reports, spec.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    # A re-run of a failed run starts clean: stale figures or metrics must not survive.
    for stale in ("metrics.json", NOTEBOOK_FILE, HTML_FILE):
        (run_dir / stale).unlink(missing_ok=True)
    try:
        nb_rel = str(Path(spec.notebook).resolve().relative_to(project_root()))
    except ValueError:
        nb_rel = spec.notebook
    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "run_id": spec.run_id,
        "batch": spec.batch,
        "grid_file": spec.grid_file,
        "notebook": nb_rel,
        "parameters": dict(spec.parameters),
        "seed": spec.parameters.get("seed"),
        "status": "running",
        "error": None,
        "started_at": _now(),
        "finished_at": None,
        "duration_s": None,
        "git": git or {},
        "data": {},
        "packages": package_versions(),
        "hardware": hardware_info(probe_gpu=probe_gpu),
        "worker": _worker_address(),
        "pid": os.getpid(),
        "files": {},
    }
    atomic_write_json(run_dir / MANIFEST_FILE, manifest)
    t0 = time.perf_counter()
    out_nb = run_dir / NOTEBOOK_FILE
    try:
        papermill.execute_notebook(
            spec.notebook,
            str(out_nb),
            parameters={**spec.parameters, "output_dir": str(run_dir)},
            kernel_name=kernel_name,
            progress_bar=False,
            log_output=False,
            execution_timeout=spec.execution_timeout_s,
            cwd=str(run_dir),
        )
        manifest["status"] = "ok"
    except PapermillExecutionError as exc:
        manifest["status"] = "failed"
        manifest["error"] = {
            "type": exc.ename, "message": str(exc.evalue), "cell": exc.exec_count,
            "traceback": "\n".join(exc.traceback or [])[-8000:],
        }
    except Exception as exc:  # any failure is recorded, the batch goes on
        manifest["status"] = "failed"
        manifest["error"] = {
            "type": exc.__class__.__name__, "message": str(exc),
            "traceback": traceback.format_exc()[-8000:],
        }
    manifest["duration_s"] = round(time.perf_counter() - t0, 3)
    manifest["finished_at"] = _now()
    files: dict[str, Any] = {}
    if out_nb.is_file():
        files["notebook"] = NOTEBOOK_FILE
        try:
            from sep_research.reporting.html import export_html

            export_html(out_nb, run_dir / HTML_FILE, title=spec.run_id)
            files["html"] = HTML_FILE
        except Exception as exc:  # the run's result stands without its HTML
            manifest["html_error"] = f"{exc.__class__.__name__}: {exc}"
    metrics: dict[str, Any] = {}
    if (run_dir / "metrics.json").is_file():
        files["metrics"] = "metrics.json"
        try:
            metrics = read_json(run_dir / "metrics.json")
        except (OSError, ValueError) as exc:
            manifest["metrics_error"] = f"{exc.__class__.__name__}: {exc}"
        manifest["data"] = metrics.get("data", {})
        files["artifacts"] = metrics.get("artifacts", [])
        files["figures"] = [f["file"] for f in metrics.get("figures", []) if f.get("file")]
    manifest["files"] = files
    if manifest["status"] == "ok" and not metrics.get("finished"):
        manifest["status"] = "failed"
        manifest["error"] = {"type": "IncompleteRun", "message":
                             "the notebook ran without error but never called run.finish() "
                             "(no finished metrics.json)"}
    atomic_write_json(run_dir / MANIFEST_FILE, manifest)
    return {
        "run_id": spec.run_id,
        "status": manifest["status"],
        "error": manifest["error"],
        "duration_s": manifest["duration_s"],
        "metrics": metrics.get("metrics", {}),
    }


def spec_dict(spec: RunSpec) -> dict[str, Any]:
    """A plain dict of a run spec (what travels to a Dask worker)."""
    return asdict(spec)
