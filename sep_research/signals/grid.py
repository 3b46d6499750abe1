"""The configuration grid: the one type for "many configurations of a signal rule".

A :class:`ConfigGrid` holds K configurations of one registered rule
(:mod:`sep_research.signals.rules`): a float64 table, one row per configuration, whose columns
(:attr:`ConfigGrid.fields`) are grid fields of that rule (``sep rules`` lists them: the seed's
``w_s w_c w_e buy_threshold sell_threshold conf_threshold coh_threshold window min_move
spread`` and the rule's own), and a **base** parameter object of the rule
(:attr:`ConfigGrid.base`, its default preset unless given) that every field outside the table
comes from (``spread``, the sweep-only extra cost in pips per traded signal: 0). Every value is
checked against its field's range when the grid is made (a ``ValueError`` naming the field).

The sweep (:func:`sep_research.signals.sweep.prepare_sweep`, :func:`~sep_research.signals.
sweep.sweep_seed`), the walk-forward (:func:`sep_research.training.walkforward.walk_forward`),
the Dask sweeps (:func:`sep_research.sweeps.distributed.sweep_distributed`), ``sep batch``
sweep grids and the notebooks all take one; the rule's sweep tables take the kernel's grid
table ``g`` from :meth:`ConfigGrid.kernel_table` (layout: ``sep_research.kernels.qfh.G_*``).

Made by::

    product_grid(rule="seed", *, base=None, **values) -> ConfigGrid   # the cartesian product
    ConfigGrid.product(axes, *, rule="seed", base=None)               # ... with tied axes
    ConfigGrid.from_columns(columns, *, rule="seed", base=None)       # equal-length columns
    ConfigGrid.single(params, *, rule="seed")                         # one configuration
    as_grid(grid, *, rule=None, params=None) -> ConfigGrid            # what a caller passed
    sep_research.training.grid.make_grid(...), small_grid(...)        # the training grids

**A mapping is a grid too.** Where a function takes a grid it also takes a mapping of
equal-length 1-D arrays (field -> one value per configuration), as notebooks and examples
write them; :func:`as_grid` is the one place that converts it (errors name the field).

**Row order.** A product's rows run through its axes in order, the last axis fastest (as
``itertools.product``); a grid keeps the order it was made in, and every result of a sweep is
in that order.

Read::

    len(grid); grid.fields; grid.table; grid.rule; grid.base
    grid.column(name)      # any grid field of the rule, one value per row (base-filled)
    grid.columns()         # the table's columns: field -> array
    grid.windows           # the distinct window lengths
    grid.row_dict(k), grid.params(k), grid.find(params)
    grid.rows(idx), grid.with_base(params)
    grid.kernel_table(window_index)   # the sweep kernel's g
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sep_research.kernels import qfh
from sep_research.signals.rules.base import SEED_GRID_COLUMNS, get_rule

#: the grid field that is a sweep-only cost, not a parameter of the rule (0 outside a grid)
EXTRA_COST_FIELD = "spread"


def _values(values: Any, names: tuple[str, ...]) -> np.ndarray:
    """One axis or column as float64, (n,) for one field or (n, len(names)) for tied ones."""
    label = names[0] if len(names) == 1 else names
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"grid field {label!r}: values must be numbers, got "
                         f"{values!r}"[:300]) from None
    if len(names) == 1:
        arr = np.atleast_1d(arr)
        if arr.ndim != 1:
            raise ValueError(f"grid field {label!r}: values must be a 1-D list, got shape "
                             f"{arr.shape}")
    elif arr.ndim != 2 or arr.shape[1] != len(names):
        raise ValueError(f"grid fields {label!r}: each entry must hold {len(names)} values "
                         f"({', '.join(names)}), got {values!r}"[:300])
    if arr.shape[0] == 0:
        raise ValueError(f"grid field {label!r} has no values (the configuration grid is "
                         "empty)")
    return arr


@dataclass(frozen=True, eq=False, kw_only=True)
class ConfigGrid:
    """K configurations of one rule (see the module docstring).

    ``table``: float64 (K, len(fields)), read-only; ``fields``: its columns, grid fields of
    ``rule`` (each once, in the order given); ``base``: the rule's parameter object the other
    fields come from (None: the rule's default preset); ``rule``: a registered rule's name.
    """

    table: np.ndarray
    fields: tuple[str, ...]
    rule: str = "seed"
    base: Any = None

    def __post_init__(self) -> None:
        r = get_rule(self.rule)
        base = r.preset() if self.base is None else r.check_params(self.base)
        fields = tuple(str(f) for f in self.fields)
        seen = [f for i, f in enumerate(fields) if f in fields[:i]]
        if seen:
            raise ValueError(f"grid field {seen[0]!r} is given twice")
        unknown = [f for f in fields if f not in r.field_names]
        if unknown:
            raise ValueError(f"unknown grid fields {unknown} for rule {r.name!r}; known: "
                             f"{', '.join(r.field_names)}")
        t = np.array(self.table, dtype=np.float64)  # a copy: the grid owns its table
        if t.ndim != 2 or t.shape[1] != len(fields):
            raise ValueError(f"grid table must be (K, {len(fields)}) for the fields "
                             f"{list(fields)}, got shape {t.shape}")
        if t.shape[0] == 0:
            raise ValueError("the configuration grid is empty")
        for j, name in enumerate(fields):
            r.field(name).check(t[:, j])
        t.setflags(write=False)
        object.__setattr__(self, "table", t)
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "rule", r.name)
        object.__setattr__(self, "base", base)

    # -- making grids ---------------------------------------------------------------------
    @classmethod
    def product(cls, axes: Mapping[Any, Any], *, rule: str = "seed",
                base: Any = None) -> ConfigGrid:
        """The cartesian product of ``axes`` (in order, the last fastest): a field name maps
        to its values; a tuple of field names maps to entries that set them together (the
        training grid's weight triples ``("w_s", "w_c", "w_e") -> [(0.4, 0.1, 0.5), ...]``)."""
        names: list[str] = []
        levels: list[np.ndarray] = []
        for key, values in axes.items():
            group = (str(key),) if isinstance(key, str) else tuple(str(k) for k in key)
            arr = _values(values, group)
            levels.append(arr.reshape(arr.shape[0], len(group)))
            names += group
        if not levels:
            raise ValueError("a grid needs at least one field with values")
        idx = np.indices([lv.shape[0] for lv in levels]).reshape(len(levels), -1)
        table = np.concatenate([lv[i] for lv, i in zip(levels, idx, strict=True)], axis=1)
        return cls(table=table, fields=tuple(names), rule=rule, base=base)

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any], *, rule: str = "seed",
                     base: Any = None) -> ConfigGrid:
        """A grid from equal-length 1-D columns (field -> one value per configuration)."""
        if not isinstance(columns, Mapping) or not columns:
            raise ValueError("a grid needs at least one field with values (field -> values)")
        cols = {str(k): _values(v, (str(k),)) for k, v in columns.items()}
        sizes = {k: v.shape[0] for k, v in cols.items()}
        first = next(iter(sizes))
        for k, n in sizes.items():
            if n != sizes[first]:
                raise ValueError(f"grid field {k!r} has {n} value(s) but {first!r} has "
                                 f"{sizes[first]}: a grid's columns must be of one length "
                                 "(one value per configuration)")
        return cls(table=np.stack(list(cols.values()), axis=1), fields=tuple(cols),
                   rule=rule, base=base)

    @classmethod
    def single(cls, params: Any, *, rule: str = "seed") -> ConfigGrid:
        """The one configuration ``params`` (no columns: every field from it)."""
        return cls(table=np.empty((1, 0)), fields=(), rule=rule, base=params)

    def rows(self, idx: Any) -> ConfigGrid:
        """The configurations ``idx`` (indices, a slice or a mask), in that order."""
        return replace(self, table=self.table[idx])

    def with_base(self, params: Any) -> ConfigGrid:
        """The same rows with another base parameter object (of the same rule)."""
        if params is self.base:
            return self
        return replace(self, base=params)

    # -- reading them ---------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.table.shape[0])

    def __repr__(self) -> str:
        return (f"ConfigGrid(rule={self.rule!r}, {len(self)} configurations, "
                f"fields={list(self.fields)})")

    def column(self, name: str) -> np.ndarray:
        """Grid field ``name`` of the rule for every configuration: the table's column, else
        the base's value (``spread``: 0)."""
        if name in self.fields:
            return self.table[:, self.fields.index(name)]
        get_rule(self.rule).field(name)  # a ValueError naming an unknown field
        value = 0.0 if name == EXTRA_COST_FIELD else float(getattr(self.base, name))
        return np.full(len(self), value)

    def columns(self) -> dict[str, np.ndarray]:
        """The table's columns (field -> one value per configuration), copies."""
        return {name: self.table[:, j].copy() for j, name in enumerate(self.fields)}

    @property
    def windows(self) -> np.ndarray:
        """The distinct window lengths, ascending."""
        return np.unique(self.column("window")).astype(np.int64)

    def row_dict(self, k: int) -> dict[str, Any]:
        """The gridded values of configuration ``k`` (ints for int fields)."""
        r = get_rule(self.rule)
        row = self.table[int(k)]
        return {c: r.field(c).cast(v) for c, v in zip(self.fields, row, strict=True)}

    def params(self, k: int) -> Any:
        """Configuration ``k`` as the rule's parameter object (``spread`` is not one)."""
        row = self.row_dict(k)
        row.pop(EXTRA_COST_FIELD, None)
        return self.base.with_(**row)

    def find(self, params: Any) -> int | None:
        """Row of a configuration equal to ``params`` in the gridded fields (and no extra
        ``spread``), or None."""
        names = [f for f in self.fields if f != EXTRA_COST_FIELD]
        if not all(hasattr(params, f) for f in names):
            return None
        want = np.array([float(getattr(params, f)) if f in names else 0.0
                         for f in self.fields])
        hit = np.flatnonzero(np.all(np.isclose(self.table, want, rtol=0, atol=1e-12), axis=1))
        return int(hit[0]) if hit.size else None

    def kernel_table(self, window_index: Any) -> np.ndarray:
        """The sweep kernel's grid table ``g`` (K, ``qfh.N_GRID`` + the rule's kernel
        fields): the seed fields at their ``qfh.G_*`` columns, ``window_index`` (the row of
        the rule's feature table each configuration reads) at ``G_WINDOW_INDEX``, then the
        rule's own fields its decide body reads (:attr:`Rule.kernel_fields`)."""
        own = get_rule(self.rule).kernel_fields
        g = np.zeros((len(self), qfh.N_GRID + len(own)), dtype=np.float64)
        for name, c in SEED_GRID_COLUMNS.items():
            g[:, c] = self.column(name)
        g[:, qfh.G_WINDOW_INDEX] = window_index
        for j, name in enumerate(own):
            g[:, qfh.N_GRID + j] = self.column(name)
        return g


def product_grid(rule: str = "seed", *, base: Any = None, **values: Any) -> ConfigGrid:
    """The cartesian product of the given field values (one row per combination, the last
    field fastest); the fields are grid fields of ``rule``, the others come from ``base``
    (None: the rule's default preset)."""
    return ConfigGrid.product(values, rule=rule, base=base)


def as_grid(grid: Any, *, rule: str | None = None, params: Any = None) -> ConfigGrid:
    """What a caller passed as a grid, as a :class:`ConfigGrid`: a grid itself (``rule``, when
    given, must be its rule; ``params``, when given, replaces its base), or a mapping of
    equal-length 1-D arrays (field -> values) of ``rule`` (default ``"seed"``) with the other
    fields from ``params`` (None: the rule's default preset)."""
    if isinstance(grid, ConfigGrid):
        if rule is not None and get_rule(rule).name != grid.rule:
            raise ValueError(f"rule={rule!r} but the grid is of rule {grid.rule!r}")
        return grid if params is None else grid.with_base(params)
    if isinstance(grid, Mapping):
        return ConfigGrid.from_columns(grid, rule="seed" if rule is None else rule,
                                       base=params)
    hint = ""
    if isinstance(grid, np.ndarray) and grid.dtype.names:
        hint = (" (a numpy structured array: pass {name: arr[name] for name in "
                "arr.dtype.names}, or make it with product_grid)")
    raise ValueError("grid must be a ConfigGrid (product_grid, make_grid, small_grid) or a "
                     "mapping of equal-length arrays (field -> values), got "
                     f"{type(grid).__name__}{hint}")
