"""What code ran: the git state of a checkout and the versions of the packages that matter.

One place for both, used by the run manifest (``reporting/manifest.py``: ``"git"`` and
``"packages"``) and by the model artifact (``training/summary.py``: ``"code"`` and
``"packages"``). "Dirty" means the same thing in both: uncommitted changes to tracked files or
untracked files that git does not ignore (an untracked module can change what runs).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from sep_research.reporting.paths import project_root

#: Packages whose versions manifests and artifacts record (those absent are recorded as None).
PACKAGES = (
    "sep-research", "numpy", "pandas", "pyarrow", "numba", "numba-cuda", "scipy", "arch",
    "matplotlib", "papermill", "nbconvert", "nbclient", "ipykernel", "dask", "distributed",
    "backtesting", "oandapyV20", "pydantic",
)


def git_state(root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """``{"sha", "dirty", "changed_files"}`` of the checkout at ``root`` (default: the
    project root); ``{"sha": None, "dirty": None, "note": ...}`` when it is not a git checkout or
    git is missing."""
    root = project_root() if root is None else Path(root)
    git = shutil.which("git")
    if git is None:
        return {"sha": None, "dirty": None, "note": "git not installed: code version unknown"}

    def run(*args: str) -> str:
        out = subprocess.run([git, "-C", str(root), *args], capture_output=True,  # noqa: S603 - git found on PATH, fixed arguments
                             text=True, timeout=30, check=True)
        return out.stdout.strip()

    try:
        sha = run("rev-parse", "HEAD")
        status = run("status", "--porcelain", "--untracked-files=normal")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        return {"sha": None, "dirty": None,
                "note": f"not a git checkout ({exc.__class__.__name__}): code version unknown"}
    return {"sha": sha, "dirty": bool(status), "changed_files": len(status.splitlines())}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """``{"python": ..., name: version or None}`` for ``names``."""
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out
