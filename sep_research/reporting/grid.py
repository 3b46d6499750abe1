"""Batch grids: load a grid YAML, check it against the notebook's ``parameters`` cell, expand it.

Grid file format (YAML; every key but ``notebook`` is optional)::

    name: sample-exploration             # batch name: prefix of the run ids
    description: free text
    notebook: notebooks/01-data-exploration.ipynb   # relative to the project root
    instruments: [EUR_USD]               # each sets the notebook parameter `instrument`
    granularities: [H1]                  # each sets the notebook parameter `granularity`
    parameters:                          # the same for every run
      data_source: sample
    parameter_sets:                      # explicit sets; one run per set ...
      - {start: "2017-05-01", end: "2017-07-01"}
      - {start: "2017-07-01", end: "2017-09-01"}
    grid:                                # ... times the cartesian product of these lists
      window: [32, 64]
    execution_timeout_s: 600             # limit per notebook cell (default 1800)

Runs = instruments x granularities x parameter_sets x product(grid). The batch sets
``output_dir`` itself; a grid may not. Every parameter is checked against the notebook's
``parameters`` cell before anything runs: an unknown name (with a did-you-mean hint) or a
value whose type differs from the default's type is an error (papermill alone only warns).
Types: ``bool`` only for bool defaults; an ``int`` value is accepted for a ``float`` default;
a default of ``None`` (or one that is not a literal) accepts any value. An annotation
(``x: float = 1``) takes precedence over the default's type.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GRID_KEYS = {
    "name", "description", "notebook", "instruments", "granularities", "parameters",
    "parameter_sets", "grid", "execution_timeout_s",
}
RESERVED = {"output_dir"}
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,60}$")
_TYPES: dict[str, type | tuple[type, ...] | None] = {
    "bool": bool, "int": int, "float": (int, float), "str": str, "list": list, "dict": dict,
    "tuple": (list, tuple), "None": None, "NoneType": None,
}


class GridError(ValueError):
    """A grid file is invalid or does not fit its notebook; the message lists every problem."""


@dataclass(frozen=True)
class NotebookParameter:
    name: str
    type_name: str | None  # None: any value
    default: Any
    help: str


@dataclass
class RunSpec:
    """One run of a batch: what the worker needs to execute it."""

    run_id: str
    batch: str
    notebook: str  # absolute path
    parameters: dict[str, Any]
    execution_timeout_s: int | None = 1800
    grid_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Grid:
    name: str
    notebook: Path
    runs: list[RunSpec]
    source: Path | None
    description: str = ""


def notebook_parameters(path: str | os.PathLike[str]) -> dict[str, NotebookParameter]:
    """The parameters of a notebook's ``parameters`` cell, with the type of each default."""
    import nbformat
    from papermill.inspection import inspect_notebook

    path = Path(path)
    if not path.is_file():
        raise GridError(f"notebook {path} does not exist")
    nb = nbformat.read(path, as_version=4)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise GridError(f"notebook {path.name} has no cell tagged 'parameters'")
    cell = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
    inspected = inspect_notebook(str(path))
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as exc:
        raise GridError(f"notebook {path.name}: the parameters cell is not valid Python: {exc}")
    assigned = [t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                if isinstance(t, ast.Name)]
    unparsed = [n for n in assigned if n not in inspected]
    if unparsed:
        raise GridError(
            f"notebook {path.name}: papermill cannot read the parameter(s) {unparsed} "
            "(one 'name = default  # meaning' per line, with no '=' in the comment)"
        )
    out = {}
    for name, info in inspected.items():
        annotated = info.get("inferred_type_name")
        default_src = info.get("default")
        try:
            default = ast.literal_eval(default_src) if default_src is not None else None
            literal = True
        except (ValueError, SyntaxError):
            default, literal = default_src, False
        if annotated and annotated != "None":
            type_name: str | None = annotated
        elif literal and default is not None:
            type_name = type(default).__name__
        else:
            type_name = None
        out[name] = NotebookParameter(name, type_name, default, info.get("help") or "")
    return out


def check_parameters(
    values: dict[str, Any], declared: dict[str, NotebookParameter], *, where: str = ""
) -> list[str]:
    """Problems with ``values`` against the notebook's declared parameters ([] when fine)."""
    problems = []
    prefix = f"{where}: " if where else ""
    for name, value in values.items():
        p = declared.get(name)
        if p is None:
            hint = difflib.get_close_matches(name, list(declared), n=1)
            problems.append(
                f"{prefix}unknown parameter {name!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; the notebook's parameters are: {', '.join(sorted(declared))}"
            )
            continue
        if p.type_name is None:
            continue
        want = _TYPES.get(p.type_name, "unknown")
        if want == "unknown" or want is None:
            continue
        ok = isinstance(value, want) and not (isinstance(value, bool) and p.type_name != "bool")
        if not ok:
            problems.append(
                f"{prefix}parameter {name!r} must be {p.type_name} like its default "
                f"{p.default!r}, got {type(value).__name__} {value!r}"
            )
    return problems


def _listing(doc: dict[str, Any], key: str, problems: list[str]) -> list[Any] | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        problems.append(f"{key!r} must be a non-empty list, got {value!r}")
        return None
    return value


def run_id_for(batch: str, notebook_rel: str, params: dict[str, Any]) -> str:
    """``BATCH-[INSTRUMENT-GRANULARITY-]HASH8``: stable, so a re-run finds finished runs."""
    blob = json.dumps({"notebook": notebook_rel, "parameters": params}, sort_keys=True,
                      default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:8]
    parts = [batch]
    for key in ("instrument", "granularity"):
        if isinstance(params.get(key), str):
            parts.append(re.sub(r"[^A-Za-z0-9_]", "", params[key]))
    return "-".join([*parts, digest])


def read_grid_document(
    source: str | os.PathLike[str] | dict[str, Any], error: type[Exception] = ValueError
) -> tuple[Path | None, Any]:
    """A grid's parsed YAML (or the dict given) and its path; ``error`` names a missing file or
    bad YAML."""
    import yaml

    if isinstance(source, dict):
        return None, source
    path = Path(source)
    if not path.is_file():
        raise error(f"grid file {path} does not exist")
    try:
        return path, yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise error(f"grid file {path} is not valid YAML: {exc}") from None


def load_grid(
    source: str | os.PathLike[str] | dict[str, Any], *, root: str | os.PathLike[str] | None = None
) -> Grid:
    """Read and check a grid (a YAML path or an already parsed dict); expand it into runs.

    Raises :class:`GridError` listing every problem, before anything runs.
    """

    from sep_research.reporting.paths import project_root

    root = Path(root) if root else project_root()
    path, doc = read_grid_document(source, GridError)
    where = str(path) if path else "grid"
    if not isinstance(doc, dict):
        raise GridError(f"{where}: a grid must be a YAML mapping")
    problems: list[str] = []
    unknown = set(doc) - GRID_KEYS
    if unknown:
        problems.append(f"unknown grid key(s) {sorted(unknown)}; known: {sorted(GRID_KEYS)}")
    name = doc.get("name") or (path.stem if path else "batch")
    if not isinstance(name, str) or not _RUN_NAME.match(name):
        problems.append(f"'name' {name!r} must be letters, digits, '_', '-', '.' (<= 61 chars)")
    nb_value = doc.get("notebook")
    if not isinstance(nb_value, str) or not nb_value:
        raise GridError(f"{where}: 'notebook' (path of the notebook to run) is required")
    notebook = Path(nb_value)
    if not notebook.is_absolute():
        notebook = root / notebook
    if notebook.suffix != ".ipynb" and notebook.with_suffix(".ipynb").is_file():
        notebook = notebook.with_suffix(".ipynb")
    try:
        declared = notebook_parameters(notebook)
    except GridError as exc:
        raise GridError(f"{where}: {exc}") from None
    if "output_dir" not in declared:
        problems.append(f"notebook {notebook.name} has no 'output_dir' parameter for batch runs")

    fixed = doc.get("parameters") or {}
    if not isinstance(fixed, dict):
        problems.append(f"'parameters' must be a mapping, got {fixed!r}")
        fixed = {}
    sets = _listing(doc, "parameter_sets", problems) or [{}]
    for i, s in enumerate(sets):
        if not isinstance(s, dict):
            problems.append(f"parameter_sets[{i}] must be a mapping, got {s!r}")
    sets = [s if isinstance(s, dict) else {} for s in sets]
    grid = doc.get("grid") or {}
    if not isinstance(grid, dict):
        problems.append(f"'grid' must map parameter names to lists, got {grid!r}")
        grid = {}
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            problems.append(f"grid[{key!r}] must be a non-empty list, got {values!r}")
    grid = {k: v for k, v in grid.items() if isinstance(v, list) and v}
    instruments = _listing(doc, "instruments", problems)
    granularities = _listing(doc, "granularities", problems)
    timeout = doc.get("execution_timeout_s", 1800)
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool)
                                or timeout <= 0):
        problems.append(f"'execution_timeout_s' must be a positive integer, got {timeout!r}")

    # Where each parameter name is set: a name may be set in one place only.
    origins: dict[str, list[str]] = {}
    for k in fixed:
        origins.setdefault(k, []).append("parameters")
    for k in {k for s in sets for k in s}:
        origins.setdefault(k, []).append("parameter_sets")
    for k in grid:
        origins.setdefault(k, []).append("grid")
    if instruments is not None:
        origins.setdefault("instrument", []).append("instruments")
    if granularities is not None:
        origins.setdefault("granularity", []).append("granularities")
    for k, where_set in origins.items():
        if len(where_set) > 1:
            problems.append(f"parameter {k!r} is set in more than one place: {where_set}")
        if k in RESERVED:
            problems.append(f"parameter {k!r} is set by the batch itself; remove it from the grid")

    # Check names and types of every value that can occur, each once.
    problems += check_parameters(fixed, declared, where="parameters")
    for i, s in enumerate(sets):
        problems += check_parameters(s, declared, where=f"parameter_sets[{i}]")
    for k, values in grid.items():
        for v in values:
            problems += check_parameters({k: v}, declared, where=f"grid[{k!r}]")
    for key, values in (("instrument", instruments), ("granularity", granularities)):
        for v in values or []:
            problems += check_parameters({key: v}, declared, where=f"{key}s")
    if problems:
        raise GridError(f"{where}: " + ("\n  ".join(["invalid grid:", *dict.fromkeys(problems)])))

    try:
        nb_rel = str(notebook.resolve().relative_to(root.resolve()))
    except ValueError:
        nb_rel = str(notebook.resolve())
    runs: list[RunSpec] = []
    seen: dict[str, int] = {}
    keys = list(grid)
    for inst in instruments or [None]:
        for gran in granularities or [None]:
            for s in sets:
                for combo in itertools.product(*(grid[k] for k in keys)):
                    params = dict(fixed)
                    if inst is not None:
                        params["instrument"] = inst
                    if gran is not None:
                        params["granularity"] = gran
                    params.update(s)
                    params.update(dict(zip(keys, combo)))
                    rid = run_id_for(name, nb_rel, params)
                    if rid in seen:
                        raise GridError(f"{where}: run {len(runs)} repeats run {seen[rid]} "
                                        f"(same parameters {params})")
                    seen[rid] = len(runs)
                    runs.append(RunSpec(
                        run_id=rid, batch=name, notebook=str(notebook.resolve()),
                        parameters=params, execution_timeout_s=timeout,
                        grid_file=str(path.resolve()) if path else None,
                    ))
    return Grid(name=name, notebook=notebook.resolve(), runs=runs, source=path,
                description=str(doc.get("description") or ""))
