"""Notebook batch grids: a grid file of ``kind: notebook`` checked against its notebook's
``parameters`` cell and expanded into runs (:func:`load_grid`).

The file format of both kinds of batch grid (notebook and sweep) is
:mod:`sep_research.reporting.grid_schema`: :func:`load_grid` validates the file against it,
then checks every value that can occur against the notebook's parameters before anything
runs: an unknown name (with a did-you-mean hint) or a value whose type differs from the
default's type is an error (papermill alone only warns). Types: ``bool`` only for bool
defaults; an ``int`` value is accepted for a ``float`` default; a default of ``None`` (or one
that is not a literal) accepts any value. An annotation (``x: float = 1``) takes precedence
over the default's type. Errors name the file, the key and the problem, like the schema's.

Runs = instruments x granularities x parameter_sets x product(grid), in that order; run ids
are ``BATCH-[INSTRUMENT-GRANULARITY-]HASH8`` over the notebook and the parameters, so running
a grid again finds the runs that finished.
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

from sep_research.reporting.grid_schema import GridError, NotebookGrid, read_batch_grid

_TYPES: dict[str, type | tuple[type, ...] | None] = {
    "bool": bool, "int": int, "float": (int, float), "str": str, "list": list, "dict": dict,
    "tuple": (list, tuple), "None": None, "NoneType": None,
}


@dataclass(frozen=True)
class NotebookParameter:
    name: str
    type_name: str | None  # None: any value
    default: Any
    help: str


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
        raise GridError(
            f"notebook {path.name}: the parameters cell is not valid Python: {exc}") from exc
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
    values: dict[str, Any], declared: dict[str, NotebookParameter], *, where: str = "",
    by_key: bool = True,
) -> list[str]:
    """Problems with ``values`` against the notebook's declared parameters ([] when fine),
    each ``WHERE.NAME: problem`` (``WHERE: problem`` without ``by_key``)."""
    problems = []
    for name, value in values.items():
        at = f"{where}.{name}" if where and by_key else (where or name)
        prefix = f"{at}: "
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
class NotebookBatch:
    """A checked notebook grid expanded into its runs (:func:`load_grid`)."""

    name: str
    notebook: Path
    runs: list[RunSpec]
    source: Path | None
    description: str = ""


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


def load_grid(
    source: str | os.PathLike[str] | dict[str, Any] | NotebookGrid, *,
    root: str | os.PathLike[str] | None = None,
) -> NotebookBatch:
    """Read and check a notebook grid (a YAML path, an already parsed dict or a validated
    :class:`~sep_research.reporting.grid_schema.NotebookGrid`): the schema
    (:func:`~sep_research.reporting.grid_schema.read_batch_grid`), then every parameter
    against the notebook's ``parameters`` cell; expand it into runs. Raises
    :class:`~sep_research.reporting.grid_schema.GridError` listing every problem, each
    ``FILE: KEY: problem``, before anything runs."""
    from sep_research.reporting.paths import project_root

    root = Path(root) if root else project_root()
    g = source if isinstance(source, NotebookGrid) else read_batch_grid(source)
    path = Path(g.source) if g.source else None
    where = (str(source) if isinstance(source, (str, os.PathLike)) else g.source) or "batch grid"
    if not isinstance(g, NotebookGrid):
        raise GridError(f"{where}: kind: this is a sweep grid; run it with sep batch (or "
                        "sep_research.sweeps.cli.run_sweep_batch)")
    notebook = Path(g.notebook)
    if not notebook.is_absolute():
        notebook = root / notebook
    if notebook.suffix != ".ipynb" and notebook.with_suffix(".ipynb").is_file():
        notebook = notebook.with_suffix(".ipynb")
    try:
        declared = notebook_parameters(notebook)
    except GridError as exc:
        raise GridError(f"{where}: notebook: {exc}") from None
    problems: list[str] = []
    if "output_dir" not in declared:
        problems.append(f"notebook: {notebook.name} has no 'output_dir' parameter for batch "
                        "runs")
    # check names and types of every value that can occur, each once, at its key
    problems += check_parameters(g.parameters, declared, where="parameters")
    for i, s in enumerate(g.parameter_sets or []):
        problems += check_parameters(s, declared, where=f"parameter_sets[{i}]")
    for k, values in g.grid.items():
        for v in values:
            problems += check_parameters({k: v}, declared, where="grid")
    for key, values in (("instrument", g.instruments), ("granularity", g.granularities)):
        for v in values or []:
            problems += check_parameters({key: v}, declared, where=f"{key}s", by_key=False)
    if problems:
        raise GridError("\n".join(f"{where}: {p}" for p in dict.fromkeys(problems)))

    try:
        nb_rel = str(notebook.resolve().relative_to(root.resolve()))
    except ValueError:
        nb_rel = str(notebook.resolve())
    runs: list[RunSpec] = []
    seen: dict[str, int] = {}
    keys = list(g.grid)
    for inst in g.instruments or [None]:
        for gran in g.granularities or [None]:
            for s in g.parameter_sets or [{}]:
                for combo in itertools.product(*(g.grid[k] for k in keys)):
                    params = dict(g.parameters)
                    if inst is not None:
                        params["instrument"] = inst
                    if gran is not None:
                        params["granularity"] = gran
                    params.update(s)
                    params.update(dict(zip(keys, combo, strict=True)))
                    rid = run_id_for(g.name, nb_rel, params)
                    if rid in seen:
                        raise GridError(f"{where}: run {len(runs)} repeats run {seen[rid]} "
                                        f"(same parameters {params})")
                    seen[rid] = len(runs)
                    runs.append(RunSpec(
                        run_id=rid, batch=g.name, notebook=str(notebook.resolve()),
                        parameters=params, execution_timeout_s=g.execution_timeout_s,
                        grid_file=g.source,
                    ))
    return NotebookBatch(name=g.name, notebook=notebook.resolve(), runs=runs, source=path,
                         description=g.description)
