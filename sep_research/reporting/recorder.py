"""What a notebook run records: figures, tables, metrics, data provenance and artifacts.

A notebook calls :func:`start_run` once, then hands it every figure and headline number::

    run = start_run(output_dir, notebook="01-data-exploration", parameters={...})
    run.data(frame)                      # provenance and content hash of the candles used
    run.figure(fig, "price", title="Mid close", key=True)
    run.metric("candles", len(frame))
    run.finish()

With an ``output_dir`` (batch runs), figures go to ``OUTPUT_DIR/figures/NAME.png``, tables to
``OUTPUT_DIR/tables/NAME.csv`` and everything else to ``OUTPUT_DIR/metrics.json``, rewritten
atomically after every record so that a run that fails half-way keeps what it had. With an
empty ``output_dir`` (interactive use, CI) nothing is written; figures and tables are only
shown. Figures are always shown as PNG images, so they are embedded in the executed notebook
and in its HTML export whatever the matplotlib backend.

``metrics.json`` layout (``schema`` ``sep-run-metrics/1``)::

    {"schema": ..., "notebook": "01-data-exploration", "parameters": {...},
     "data": {provenance of each dataset used, by name},
     "metrics": {"name": number or string, ...},          # flat, shown in reports/index.html
     "figures": [{"name", "file", "title", "key"}, ...],  # key figures appear in the index
     "tables": [{"name", "file", "rows"}, ...],
     "artifacts": [{"name", "file", "sha256", "bytes"}, ...],
     "updated_at": ISO UTC, "finished": bool}
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sep_research.reporting.paths import atomic_write_bytes, atomic_write_json, to_jsonable

METRICS_SCHEMA = "sep-run-metrics/1"
METRICS_FILE = "metrics.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"{what} name {name!r} must be letters, digits, '_', '-' or '.' (at most 81 chars)"
        )
    return name


def _display(obj: Any) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is part of the research install
        return
    if get_ipython() is not None:
        display(obj)


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RunRecorder:
    """Collects a notebook run's outputs; see the module docstring."""

    def __init__(
        self,
        output_dir: str | os.PathLike[str] | None,
        *,
        notebook: str,
        parameters: dict[str, Any] | None = None,
        dpi: int = 100,
    ) -> None:
        self.output_dir: Path | None = Path(output_dir).resolve() if output_dir else None
        self.dpi = int(dpi)
        self._tmp: Path | None = None
        self.record: dict[str, Any] = {
            "schema": METRICS_SCHEMA,
            "notebook": notebook,
            "parameters": to_jsonable(dict(parameters or {})),
            "data": {},
            "metrics": {},
            "figures": [],
            "tables": [],
            "artifacts": [],
            "updated_at": _utc_now(),
            "finished": False,
        }
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self._flush()

    # -- recording ------------------------------------------------------------------------
    def data(self, frame: Any, name: str = "candles") -> dict[str, Any]:
        """Record the provenance (source, range, rows, sha256) of a candle frame."""
        from sep_research.data.candles import get_provenance

        prov = get_provenance(frame).to_dict()
        self.record["data"][_check_name(name, "dataset")] = prov
        self._flush()
        return prov

    def metric(self, name: str, value: Any) -> Any:
        """Record one headline number (or short string); returns it unchanged."""
        value_j = to_jsonable(value)
        if isinstance(value_j, (list, dict)):
            raise TypeError(f"metric {name!r} must be a number, string, bool or None")
        self.record["metrics"][_check_name(name, "metric")] = value_j
        self._flush()
        return value

    def metrics(self, **values: Any) -> None:
        for name, value in values.items():
            self.record["metrics"][_check_name(name, "metric")] = to_jsonable(value)
        self._flush()

    def figure(self, fig: Any, name: str, *, title: str = "", key: bool = False) -> Path | None:
        """Show a matplotlib figure as PNG and, with an output folder, save it there.

        ``key=True`` marks the figures that ``reports/index.html`` shows for this run.
        """
        _check_name(name, "figure")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=self.dpi)
        png = buf.getvalue()
        import sys

        if "matplotlib.pyplot" in sys.modules:  # pyplot figures must be closed, or they pile up
            sys.modules["matplotlib.pyplot"].close(fig)
        from IPython.display import Image

        _display(Image(data=png, format="png"))
        path = None
        entry = {"name": name, "title": title or name, "key": bool(key), "file": None}
        if self.output_dir is not None:
            path = atomic_write_bytes(self.output_dir / "figures" / f"{name}.png", png)
            entry["file"] = f"figures/{name}.png"
        self.record["figures"] = [f for f in self.record["figures"] if f["name"] != name]
        self.record["figures"].append(entry)
        self._flush()
        return path

    def table(self, table: Any, name: str, *, show: bool = True) -> Any:
        """Show a pandas table and, with an output folder, save it as CSV. Returns the table."""
        _check_name(name, "table")
        entry = {"name": name, "rows": len(table), "file": None}
        if self.output_dir is not None:
            atomic_write_bytes(
                self.output_dir / "tables" / f"{name}.csv", table.to_csv().encode("utf-8")
            )
            entry["file"] = f"tables/{name}.csv"
        self.record["tables"] = [t for t in self.record["tables"] if t["name"] != name]
        self.record["tables"].append(entry)
        self._flush()
        if show:
            _display(table)
        return table

    def path(self, relative: str) -> Path | None:
        """A path inside the output folder for an artifact (None without an output folder)."""
        if self.output_dir is None:
            return None
        p = (self.output_dir / relative).resolve()
        if self.output_dir not in p.parents:
            raise ValueError(f"artifact path {relative!r} leaves the run folder")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def artifact_path(self, relative: str) -> Path:
        """Where to write an artifact: inside the output folder, or, without one, inside a
        temporary folder of this session (so the artifact is still written and checked)."""
        p = self.path(relative)
        if p is not None:
            return p
        if self._tmp is None:
            import tempfile

            self._tmp = Path(tempfile.mkdtemp(prefix="sep-run-"))
        p = (self._tmp / relative).resolve()
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def artifact(self, name: str, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Record a file written into the output folder (e.g. the model artifact)."""
        _check_name(name, "artifact")
        p = Path(path).resolve()
        if not p.is_file():
            raise FileNotFoundError(f"artifact {name!r}: no file {p}")
        data = p.read_bytes()
        rel = str(p.relative_to(self.output_dir)) if (
            self.output_dir is not None and self.output_dir in p.parents
        ) else str(p)
        entry = {"name": name, "file": rel, "sha256": hashlib.sha256(data).hexdigest(),
                 "bytes": len(data)}
        self.record["artifacts"] = [a for a in self.record["artifacts"] if a["name"] != name]
        self.record["artifacts"].append(entry)
        self._flush()
        return entry

    def finish(self) -> dict[str, Any]:
        """Mark the run finished and write ``metrics.json`` a last time; returns the record."""
        self.record["finished"] = True
        self._flush()
        return self.record

    # -- internals ------------------------------------------------------------------------
    def _flush(self) -> None:
        self.record["updated_at"] = _utc_now()
        if self.output_dir is not None:
            atomic_write_json(self.output_dir / METRICS_FILE, self.record)

    def __repr__(self) -> str:
        where = self.output_dir or "no output folder"
        return f"<RunRecorder {self.record['notebook']} -> {where}>"


def start_run(
    output_dir: str | os.PathLike[str] | None,
    *,
    notebook: str,
    parameters: dict[str, Any] | None = None,
) -> RunRecorder:
    """Begin recording a notebook run (``output_dir`` empty: show only, write nothing)."""
    return RunRecorder(output_dir, notebook=notebook, parameters=parameters)
