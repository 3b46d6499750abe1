"""Batch grid files for ``sep batch``: one YAML schema, two kinds, validated with pydantic.

A batch grid file is a YAML mapping; its ``kind`` says what a batch runs:

``kind: notebook`` (the default: a file without ``kind`` is one) runs a notebook with
papermill, once per combination of its values::

    name: sample-exploration             # batch name: prefix of the run ids (default: file stem)
    description: free text
    notebook: notebooks/01-data-exploration.ipynb   # relative to the project root (required)
    instruments: [EUR_USD]               # each sets the notebook parameter `instrument`
    granularities: [H1]                  # each sets the notebook parameter `granularity`
    parameters:                          # the same for every run
      data_source: sample
    parameter_sets:                      # explicit sets; one run per set ...
      - {start: "2017-05-01", end: "2017-07-01"}
      - {start: "2017-07-01", end: "2017-09-01"}
    grid:                                # ... times the cartesian product of these lists
      window: [32, 64]
    execution_timeout_s: 600             # limit per notebook cell (default 1800; null: none)

Runs = instruments x granularities x parameter_sets x product(grid). The batch sets
``output_dir`` itself; a grid may not, and a parameter is set in one place only. Every
parameter is checked against the notebook's ``parameters`` cell before anything runs
(:func:`sep_research.reporting.grid.load_grid`): an unknown name (with a did-you-mean hint)
or a value whose type differs from the default's type is an error.

``kind: sweep`` runs one fused parameter sweep of a signal rule over the grid's
configurations (:mod:`sep_research.sweeps.batch`), one report folder per instrument::

    kind: sweep
    name: sample-sweep                   # prefix of the run ids (default: file stem)
    description: free text
    data: sample                         # sample | cache | a JSON/CSV candle file
    granularity: H1
    instruments: [EUR_USD]               # one report folder each (required)
    rule: seed                           # a registered rule (sep rules)
    start: null                          # candle start times start <= t < end (optional)
    end: null
    score_start: 200                     # first scored candle (index in the loaded candles)
    score_end: null                      # null: up to the last candle that has a label
    alignment: causal                    # causal | legacy
    half_spread_pips: null               # null: the data's bid/ask (required without them);
                                         # a number: mid +/- this (a round trip pays twice it)
    chunk: 8192                          # candles per partial sum (changes rounding only)
    block_configs: null                  # configurations per Dask task (null: automatic)
    top: 20                              # rows of the top-configurations table
    grid:                                # the cartesian product of these lists (required):
      window: [7, 11, 15]                #   grid fields of the rule (sep rules), checked
      w_s: [0.3, 0.4]                    #   against their ranges
      buy_threshold: [0.5, 0.55]

**Validation** (:func:`read_batch_grid`; the pydantic models :class:`NotebookGrid` and
:class:`SweepGrid`, whose ``Field`` descriptions document every key and default): unknown
keys are errors (a key of the other kind says so: a notebook grid with ``score_start`` is
missing ``kind: sweep``), types are strict (``true`` is not a number, ``"5"`` not an integer),
numbers finite (no ``.nan``/``.inf``, also inside notebook parameters), lists non-empty and
bounded (:data:`MAX_LIST`, :data:`MAX_VALUES`, :data:`MAX_RUNS`, :data:`MAX_CONFIGS`). Every
problem becomes one line of a :class:`GridError` that names the file, the key and the
problem, e.g. ``runners/grids/x.yaml: grid.window: must hold integers >= 2, got 1``;
``sep batch GRID --dry-run`` prints them.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sep_research.schema import Num, StrictModel

if TYPE_CHECKING:
    from sep_research.signals.grid import ConfigGrid

#: most entries of a list (instruments, granularities, the values of a notebook grid key)
MAX_LIST = 1000
#: most values of one sweep grid field
MAX_VALUES = 100_000
#: most runs of a notebook grid, most configurations of a sweep grid
MAX_RUNS = 10_000
MAX_CONFIGS = 100_000_000
RESERVED = {"output_dir"}
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,60}$")
#: keys of earlier versions, with what replaced them
_RENAMED = {"spread_pips": "replaced by half_spread_pips (half of it: mid +/- this; a round "
                           "trip pays twice it), e.g. spread_pips: 1.0 -> half_spread_pips: 0.5"}


class GridError(ValueError):
    """A grid file is invalid or does not fit its notebook; the message lists every problem,
    one line each: ``FILE: KEY: problem``."""


class _Problems(ValueError):
    """Problems found by one validator, each at its own key: ``[(loc, message), ...]``."""

    def __init__(self, items: list[tuple[tuple[Any, ...], str]]) -> None:
        super().__init__("; ".join(m for _loc, m in items))
        self.items = items


# -- value types ---------------------------------------------------------------------------

def _run_name(v: str) -> str:
    if not _RUN_NAME.match(v):
        raise ValueError(f"must be letters, digits, '_', '-', '.' (at most 61 characters, "
                         f"starting with a letter or digit), got {v!r}")
    return v


def _instrument(v: str) -> str:
    from sep_research import fx

    try:
        return fx.check_instrument(v, name="instrument")
    except fx.FxError as exc:
        raise ValueError(str(exc).removeprefix("instrument: ")) from None


def _granularity(v: str) -> str:
    from sep_research import fx

    try:
        return fx.check_granularity(v)
    except fx.FxError as exc:
        raise ValueError(str(exc)) from None


def _time(v: Any) -> Any:
    if not isinstance(v, str) and v is not None:
        raise ValueError(f"must be a time in quotes, e.g. '2017-05-01' (YAML reads an unquoted "
                         f"date as a date), got {type(v).__name__} {v!r}")
    if v is not None:
        from sep_research import fx

        try:
            fx.parse_time_ns(v, name="time")
        except fx.FxError as exc:
            raise ValueError(str(exc).removeprefix("time: ")) from None
    return v


def _finite(v: Any) -> Any:
    """Refuse NaN and infinities anywhere in a notebook parameter's value."""
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, float) and not math.isfinite(x):
            raise ValueError(f"numbers must be finite, got {v!r}"[:200])
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
    return v


def _unique(v: list[str]) -> list[str]:
    twice = sorted({x for x in v if v.count(x) > 1})
    if twice:
        raise ValueError(f"lists {', '.join(twice)} more than once")
    return v


RunName = Annotated[str, AfterValidator(_run_name)]
Instrument = Annotated[str, AfterValidator(_instrument)]
Granularity = Annotated[str, AfterValidator(_granularity)]
Time = Annotated[str | None, BeforeValidator(_time)]
#: a notebook parameter's value: any YAML value (its type is the notebook's to check), finite
Param = Annotated[Any, AfterValidator(_finite)]
ParamList = Annotated[list[Param], Field(min_length=1, max_length=MAX_LIST)]
GridValues = Annotated[list[Num], Field(min_length=1, max_length=MAX_VALUES)]


class StrictModel(StrictModel):

    _source: str | None = PrivateAttr(None)

    @property
    def source(self) -> str | None:
        """The file this grid was read from (absolute), or None."""
        return self._source


class NotebookGrid(StrictModel):
    """A notebook grid (``kind: notebook``, the default): papermill runs of one notebook."""

    kind: Literal["notebook"] = Field(
        "notebook", description="notebook (the default): papermill runs of a notebook; "
        "sweep: one parameter sweep")
    name: RunName = Field(
        "batch", description="batch name, the prefix of the run ids (default: the file's "
        "stem)")
    description: str = Field("", max_length=5000, description="free text shown in the index")
    notebook: str = Field(
        min_length=1, description="the notebook to run, relative to the project root; "
        "'.ipynb' may be left out (required)")
    instruments: list[Instrument] | None = Field(
        None, min_length=1, max_length=MAX_LIST, description="each sets the notebook "
        "parameter instrument, one run each; null: not set by the grid")
    granularities: list[Granularity] | None = Field(
        None, min_length=1, max_length=MAX_LIST, description="each sets the notebook "
        "parameter granularity, one run each; null: not set by the grid")
    parameters: dict[str, Param] = Field(
        default_factory=dict, max_length=MAX_LIST, description="notebook parameters, the "
        "same for every run")
    parameter_sets: list[dict[str, Param]] | None = Field(
        None, min_length=1, max_length=MAX_RUNS, description="explicit sets of notebook "
        "parameters, one run per set (times the grid)")
    grid: dict[str, ParamList] = Field(
        default_factory=dict, max_length=MAX_LIST, description="notebook parameter -> list "
        "of values: one run per combination (the cartesian product)")
    execution_timeout_s: int | None = Field(
        1800, ge=1, le=7 * 86_400, description="limit per notebook cell in seconds; null: "
        "none")

    @field_validator("instruments", "granularities")
    @classmethod
    def _no_repeats(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _unique(v)

    @model_validator(mode="after")
    def _one_place(self) -> NotebookGrid:
        origins: dict[str, list[tuple[Any, ...]]] = {}  # parameter -> the keys that set it
        for k in self.parameters:
            origins.setdefault(k, []).append(("parameters", k))
        for i, s in enumerate(self.parameter_sets or []):
            for k in s:
                if ("parameter_sets",) not in [w[:1] for w in origins.get(k, [])]:
                    origins.setdefault(k, []).append(("parameter_sets", i, k))
        for k in self.grid:
            origins.setdefault(k, []).append(("grid", k))
        if self.instruments is not None:
            origins.setdefault("instrument", []).append(("instruments",))
        if self.granularities is not None:
            origins.setdefault("granularity", []).append(("granularities",))
        problems = []
        for k, where in origins.items():
            if len(where) > 1:
                problems.append((where[-1], (f"parameter {k!r} is set in more than one "
                                             f"place: {[w[0] for w in where]}")))
            if k in RESERVED:
                problems.append((where[0], (f"parameter {k!r} is set by the batch itself; "
                                            "remove it from the grid")))
        if self.n_runs > MAX_RUNS:
            problems.append(((), f"{self.n_runs} runs: at most {MAX_RUNS} in one grid"))
        if problems:
            raise _Problems(problems)
        return self

    @property
    def n_runs(self) -> int:
        n = len(self.instruments or [None]) * len(self.granularities or [None])
        n *= len(self.parameter_sets or [{}])
        return n * math.prod(len(v) for v in self.grid.values())


class SweepGrid(StrictModel):
    """A sweep grid (``kind: sweep``): one distributed parameter sweep of a signal rule, one
    report folder per instrument (:mod:`sep_research.sweeps.batch`)."""

    kind: Literal["sweep"] = Field(description="sweep: one parameter sweep (required for it)")
    name: RunName = Field(
        "sweep", description="prefix of the run ids (default: the file's stem)")
    description: str = Field("", max_length=5000, description="free text shown in the report")
    data: str = Field(
        "sample", min_length=1, description="the candles: sample (the packaged sample), cache "
        "(the Parquet cache) or a JSON/CSV candle file relative to the project root")
    granularity: Granularity = Field("H1", description="candle granularity of the data")
    instruments: list[Instrument] = Field(
        min_length=1, max_length=MAX_LIST, description="instruments, one report folder each "
        "(required); each sets the pip of its sweep")
    rule: str = Field("seed", description="a registered signal rule (sep rules)")
    start: Time = Field(None, description="first candle start time (in quotes); null: the "
                        "data's first")
    end: Time = Field(None, description="candles start before this time (in quotes); null: "
                      "up to the data's last")
    score_start: int = Field(
        0, ge=0, description="first scored candle (index in the loaded candles)")
    score_end: int | None = Field(
        None, ge=0, description="scored candles end before this index; null: up to the last "
        "candle that has a label")
    alignment: Literal["causal", "legacy"] = Field(
        "causal", description="causal, or legacy (the original's look-ahead, for "
        "reproduction only)")
    half_spread_pips: Num | None = Field(
        None, ge=0, le=1000, description="null: the spread of the data's bid/ask (required "
        "without them); a number: mid +/- this many pips (a round trip pays twice it)")
    chunk: int = Field(8192, ge=1, le=1 << 24, description="candles per partial sum (changes "
                       "the sums' rounding only)")
    block_configs: int | None = Field(
        None, ge=1, description="configurations per Dask task; null: automatic (changes no "
        "result)")
    top: int = Field(20, ge=1, le=10_000, description="rows of the top-configurations table")
    grid: dict[str, GridValues] = Field(
        min_length=1, max_length=100, description="grid field of the rule -> values: the "
        "cartesian product of these lists, in this order (required; sep rules lists the "
        "fields and ranges)")

    @field_validator("instruments")
    @classmethod
    def _no_repeats(cls, v: list[str]) -> list[str]:
        return _unique(v)

    @field_validator("rule")
    @classmethod
    def _rule(cls, v: str) -> str:
        from sep_research.strategy import SpecError, rule_object

        try:
            rule_object(v)
        except SpecError as exc:
            raise ValueError(str(exc).removeprefix("rule: ")) from None
        return v

    @field_validator("end")
    @classmethod
    def _end(cls, v: str | None, info: ValidationInfo) -> str | None:
        from sep_research import fx

        start = info.data.get("start")
        if v is not None and start is not None and (
                fx.parse_time_ns(v, name="end") <= fx.parse_time_ns(start, name="start")):
            raise ValueError(f"{v!r} is not after start {start!r}")
        return v

    @field_validator("score_end")
    @classmethod
    def _score_end(cls, v: int | None, info: ValidationInfo) -> int | None:
        start = info.data.get("score_start")
        if v is not None and isinstance(start, int) and v < start:
            raise ValueError(f"{v} is before score_start {start}")
        return v

    @field_validator("grid")
    @classmethod
    def _fields(cls, v: dict[str, list[float]], info: ValidationInfo) -> dict[str, list[float]]:
        import numpy as np

        from sep_research.signals.rules.base import get_rule

        rule = info.data.get("rule")
        if rule is None:  # the rule is invalid: that error is reported
            return v
        r = get_rule(rule)
        problems = []
        for key, values in v.items():
            if key not in r.field_names:
                hint = difflib.get_close_matches(key, r.field_names, n=1)
                problems.append(((key,), f"not a grid field of rule {rule!r}"
                                 + (f" (did you mean {hint[0]!r}?)" if hint else "")
                                 + f"; its fields: {', '.join(r.field_names)}"))
                continue
            try:
                r.field(key).check(np.array(values, dtype=np.float64))
            except ValueError as exc:
                problems.append(((key,), str(exc).replace(f"grid field {key!r} ", "")))
        n = math.prod(len(x) for x in v.values())
        if not problems and n > MAX_CONFIGS:
            problems.append(((), (f"{n} configurations: at most {MAX_CONFIGS} in one "
                                  "sweep grid (split it into several files)")))
        if problems:
            raise _Problems(problems)
        return v

    # -- what the sweep batch reads ----------------------------------------------------
    @property
    def n_configs(self) -> int:
        return math.prod(len(v) for v in self.grid.values())

    def config_grid(self) -> ConfigGrid:
        """The configurations: ``product_grid(rule, **grid)``, one row each in that order (a
        :class:`~sep_research.signals.grid.ConfigGrid`)."""
        from sep_research.signals.grid import product_grid

        return product_grid(self.rule, **self.grid)

    def spec(self, instrument: str) -> dict[str, Any]:
        """What determines one instrument's results (hashed into its run id)."""
        keys = ("data", "granularity", "start", "end", "score_start", "score_end", "alignment",
                "half_spread_pips", "chunk", "grid")
        # the seed rule's spec has no "rule" key, so its run ids are those of earlier versions
        rule = {} if self.rule == "seed" else {"rule": self.rule}
        return {"kind": "sweep", "instrument": instrument, **rule,
                **{k: getattr(self, k) for k in keys}}

    def run_id(self, instrument: str) -> str:
        """``NAME-INSTRUMENT-GRANULARITY-HASH8``: the same whatever the engine or workers."""
        blob = json.dumps(self.spec(instrument), sort_keys=True, default=str)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:8]
        clean = "".join(ch for ch in f"{instrument}-{self.granularity}"
                        if ch.isalnum() or ch in "_-")
        return f"{self.name}-{clean}-{digest}"


KINDS = {"notebook": NotebookGrid, "sweep": SweepGrid}


def _kind(v: Any) -> str | None:
    if isinstance(v, dict):
        k = v.get("kind", "notebook")
        return k if isinstance(k, str) else None
    return getattr(v, "kind", None)


#: the one schema: a notebook grid or a sweep grid, told apart by ``kind``
BatchGrid = Annotated[
    Annotated[NotebookGrid, Tag("notebook")] | Annotated[SweepGrid, Tag("sweep")],
    Discriminator(_kind),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(BatchGrid)


# -- reading a file ----------------------------------------------------------------------------

def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _shown(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 80 else s[:77] + "..."


def _extra_key(key: str, kind: str) -> str:
    if key in _RENAMED:
        return _RENAMED[key]
    other = "sweep" if kind == "notebook" else "notebook"
    if key in KINDS[other].model_fields:
        if kind == "notebook":
            return ("not a key of notebook grids (the default kind); it is a key of sweep "
                    "grids: add 'kind: sweep', or remove it")
        return ("not a key of sweep grids (kind: sweep); it is a key of notebook grids: "
                "remove it, or the 'kind: sweep' line")
    hint = difflib.get_close_matches(key, list(KINDS[kind].model_fields), n=1)
    return (f"unknown grid key for a {kind} grid"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; known: {', '.join(KINDS[kind].model_fields)}")


def _problems(exc: ValidationError) -> list[str]:
    """``KEY: problem`` lines of a validation error (the kind's tag taken out)."""
    lines = []
    for err in exc.errors():
        loc, kind = tuple(err["loc"]), None
        if err["type"].startswith("union_tag"):
            got = err.get("input", {}).get("kind") if isinstance(err.get("input"), dict) else None
            lines.append(f"kind: must be 'notebook' (the default) or 'sweep', got {_shown(got)}")
            continue
        if loc and loc[0] in KINDS:
            kind, loc = str(loc[0]), loc[1:]
        error = (err.get("ctx") or {}).get("error")
        if isinstance(error, _Problems):  # each at its key under the validated one
            for sub, msg in error.items:
                full = _path((*loc, *sub))
                lines.append(f"{full}: {msg}" if full else msg)
            continue
        if err["type"] == "extra_forbidden":
            msg = _extra_key(str(loc[-1]), kind or "notebook")
        elif err["type"] == "missing":
            info = KINDS[kind or "notebook"].model_fields.get(str(loc[-1]))
            msg = "required key is missing" + (f": {info.description}" if info and
                                              info.description else "")
        elif error is not None:
            msg = str(error)
        elif err["type"] in ("too_short", "too_long"):
            msg = err["msg"].replace(" after validation", "")
        else:
            msg = f"{err['msg']}, got {_shown(err.get('input'))}"
        lines.append(f"{_path(loc)}: {msg}" if loc else msg)
    return list(dict.fromkeys(lines))


def read_grid_document(source: str | os.PathLike[str] | dict[str, Any]
                       ) -> tuple[Path | None, Any]:
    """A grid's parsed YAML (or the dict given) and its path; a missing file, bad YAML or an
    empty file is a :class:`GridError`."""
    import yaml

    if isinstance(source, dict):
        return None, source
    path = Path(source)
    if not path.is_file():
        raise GridError(f"grid file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise GridError(f"{path}: not valid YAML{at}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GridError(f"cannot read grid file {path}: {exc}") from None
    if doc is None:
        raise GridError(f"{path}: the file is empty (a notebook grid needs at least "
                        "'notebook:', a sweep grid 'kind: sweep', 'instruments:' and 'grid:')")
    return path, doc


def read_batch_grid(source: str | os.PathLike[str] | dict[str, Any]
                    ) -> NotebookGrid | SweepGrid:
    """Read and validate a batch grid file (or an already parsed mapping) against the schema:
    a :class:`NotebookGrid` or a :class:`SweepGrid` by its ``kind``. Raises :class:`GridError`
    listing every problem, each ``FILE: KEY: problem``. (A notebook grid's parameters are
    checked against its notebook by :func:`sep_research.reporting.grid.load_grid`.)"""
    path, doc = read_grid_document(source)
    where = str(path) if path else "batch grid"
    if not isinstance(doc, dict):
        raise GridError(f"{where}: a grid file must be a YAML mapping of keys to values, got "
                        f"{type(doc).__name__}")
    if path is not None and "name" not in doc:
        doc = {**doc, "name": path.stem}
    try:
        grid = _ADAPTER.validate_python(doc)
    except ValidationError as exc:
        raise GridError("\n".join(f"{where}: {line}" for line in _problems(exc))) from None
    grid._source = str(path.resolve()) if path else None
    return grid


def load_sweep_grid(source: str | os.PathLike[str] | dict[str, Any]) -> SweepGrid:
    """:func:`read_batch_grid` of a file that must be a sweep grid (``kind: sweep``)."""
    grid = read_batch_grid(source)
    if not isinstance(grid, SweepGrid):
        where = str(source) if not isinstance(source, dict) else "batch grid"
        raise GridError(f"{where}: kind: a sweep grid needs 'kind: sweep' (this is a "
                        "notebook grid)")
    return grid
