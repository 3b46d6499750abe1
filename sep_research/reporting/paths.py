"""Where things are: the project root, the reports folder, the seed reference data.

Paths are derived from the location of the installed package (the repository root for the
editable install), never from the current directory, and never by changing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sep_research._util import atomic_write_bytes

#: Environment variable that overrides the reports folder (``reports/`` in the project root).
REPORTS_ENV = "SEP_REPORTS_DIR"
#: Environment variable that overrides the seed reference folder.
SEED_REFERENCE_ENV = "SEP_SEED_REFERENCE"


def project_root() -> Path:
    """The repository root: the folder holding the ``sep_research`` package."""
    return Path(__file__).resolve().parents[2]


def reports_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit``, else ``$SEP_REPORTS_DIR``, else ``<project root>/reports``."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(REPORTS_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return project_root() / "reports"


def seed_reference_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit``, else ``$SEP_SEED_REFERENCE``, else ``../shared/data/seed-reference`` next
    to the project root. The folder may be absent: callers check and skip gracefully."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(SEED_REFERENCE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return project_root().parent / "shared" / "data" / "seed-reference"


def notebooks_dir() -> Path:
    return project_root() / "notebooks"



def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(value: Any) -> Any:
    """Plain JSON types from numpy / pandas scalars, paths, timestamps and containers.

    Non-finite floats become None (JSON has no NaN).
    """
    import math

    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return to_jsonable(item())
    if hasattr(value, "tolist"):  # numpy arrays
        return to_jsonable(value.tolist())
    if hasattr(value, "isoformat"):  # datetime, pandas Timestamp
        return value.isoformat()
    return str(value)


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    text = json.dumps(to_jsonable(data), indent=2, sort_keys=False, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
