"""Small standard-library helpers shared by every area (the live runner imports this too)."""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def lazy_getattr(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``names[attr]`` on first use.

    Packages use it so that importing them stays cheap (the live runner must not pull in
    numba or pandas through a package ``__init__``)::

        __getattr__ = lazy_getattr(__name__, {"run_backtest": "sep_research.backtest.simulation"})
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import (setting the umask to read it is not thread-safe later on).
_UMASK = _read_umask()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temporary file in the same folder, fsync it, then rename it over
    ``path``: a crash leaves the old file or the new one, never half of either."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


class JsonInputError(ValueError):
    """Input that is not acceptable JSON (malformed, too deep, too large); names the input."""


def loads_json(data: bytes | str, *, what: str, max_depth: int = 64,
               max_bytes: int | None = None) -> Any:
    """``json.loads`` for untrusted input: a clear :class:`JsonInputError` naming ``what`` for
    malformed or non-UTF-8 text, NaN/Infinity literals, more than ``max_bytes``, or nesting
    deeper than ``max_depth`` (never a ``RecursionError`` or a traceback)."""
    if max_bytes is not None and len(data) > max_bytes:
        raise JsonInputError(f"{what}: {len(data)} bytes of JSON, more than the {max_bytes} "
                             "allowed")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonInputError(f"{what}: not UTF-8 text (byte {exc.start})") from None

    def no_constant(name: str) -> Any:
        raise JsonInputError(f"{what}: {name} is not a JSON number")

    try:
        obj = json.loads(data, parse_constant=no_constant)
    except RecursionError:
        raise JsonInputError(f"{what}: JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise JsonInputError(f"{what}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                             f"column {exc.colno})") from None
    # nesting, counted without recursion
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise JsonInputError(f"{what}: JSON nested deeper than {max_depth} levels")
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return obj
