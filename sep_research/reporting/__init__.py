"""Reports: figures, tables, the run recorder notebooks use, run manifests, HTML and the index.

Public API (lazy imports, so that ``import sep_research.reporting`` loads neither matplotlib
nor nbconvert)::

    from sep_research.reporting import start_run, figures, tables
    from sep_research.reporting import project_root, reports_dir, seed_reference_dir
    from sep_research.reporting import export_html, build_index
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "start_run": "sep_research.reporting.recorder",
    "RunRecorder": "sep_research.reporting.recorder",
    "project_root": "sep_research.reporting.paths",
    "reports_dir": "sep_research.reporting.paths",
    "seed_reference_dir": "sep_research.reporting.paths",
    "notebooks_dir": "sep_research.reporting.paths",
    "export_html": "sep_research.reporting.html",
    "build_index": "sep_research.reporting.html",
}
_SUBMODULES = {"figures", "tables", "recorder", "paths", "html", "manifest", "grid",
               "grid_schema", "runs", "qfh_notebooks", "training"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"sep_research.reporting.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sep_research.reporting' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [  # noqa: RUF022 - grouped as in _LAZY
    "start_run", "RunRecorder", "project_root", "reports_dir", "seed_reference_dir",
    "notebooks_dir", "export_html", "build_index",
]
