"""The run manifest: what ran, on what code, data and machine, when, and how it ended.

``manifest.json`` in each ``reports/runs/RUN_ID/`` (``schema`` ``sep-run-manifest/1``)::

    {"schema": "sep-run-manifest/1",
     "run_id": "...", "batch": "NAME", "grid_file": "...",
     "notebook": "notebooks/01-data-exploration.ipynb",
     "parameters": {... every parameter the notebook ran with ...},
     "seed": 0 or null,
     "status": "running" | "ok" | "failed",
     "error": null | {"type", "message", "traceback"},
     "started_at", "finished_at" (ISO UTC), "duration_s",
     "git": {"sha", "dirty", "describe"},
     "data": {dataset name: provenance (source, instrument, granularity, range, rows, sha256)},
     "packages": {name: version},
     "hardware": {"hostname", "platform", "python", "cpu_count", "memory_bytes", "gpus": [...]},
     "worker": "tcp://..." (the Dask worker that ran it),
     "files": {"notebook", "html", "metrics", "artifacts": [...]}}
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

MANIFEST_SCHEMA = "sep-run-manifest/1"
MANIFEST_FILE = "manifest.json"

def _memory_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:  # pragma: no cover - psutil comes with distributed
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None


@functools.lru_cache(maxsize=1)
def gpu_info() -> list[dict[str, Any]]:
    """GPUs that numba-cuda sees in this process; [] without an NVIDIA driver or numba-cuda.

    numba is imported only when an NVIDIA driver is present, so CPU machines pay nothing.
    """
    if not (Path("/proc/driver/nvidia").exists() or shutil.which("nvidia-smi")):
        return []
    try:
        from numba import cuda

        if not cuda.is_available():
            return []
        gpus = []
        for dev in cuda.list_devices():
            with dev:
                ctx = cuda.current_context()
                _free, total = ctx.get_memory_info()
                gpus.append({
                    "id": int(dev.id),
                    "name": dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name),
                    "compute_capability": list(dev.compute_capability),
                    "memory_bytes": int(total),
                })
        return gpus
    except Exception as exc:  # hardware probing must never fail a run
        return [{"error": f"{exc.__class__.__name__}: {exc}"}]


def hardware_info(*, probe_gpu: bool = True) -> dict[str, Any]:
    """This machine: host, OS, Python, CPUs, memory, GPUs (see :func:`gpu_info`)."""
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    info["gpus"] = gpu_info() if probe_gpu else None
    return info


def read_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of a run folder, or None if it has none (or an unreadable one)."""
    import json

    path = Path(run_dir) / MANIFEST_FILE
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None
