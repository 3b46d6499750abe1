"""Configuration grids of a signal rule for sweeps (the seed rule by default).

A grid is the Cartesian product of window lengths, weight triples ``(w_s, w_c, w_e)``, buy
and sell thresholds, the two high-confidence thresholds (confidence, coherence) and, for a
rule other than the seed's, the values of its own grid fields (``GridField.full`` in the full
grid, ``GridField.small`` in the small one; ``sep rules`` lists them). Every other constant
comes from a base parameter object of the rule (its default preset by default). Row ``k`` of
:attr:`ConfigGrid.table` is one configuration; its columns are :attr:`ConfigGrid.fields`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from sep_research.signals.seed import SEED

#: table columns
COLUMNS = ("window", "w_s", "w_c", "w_e", "buy_threshold", "sell_threshold",
           "conf_threshold", "coh_threshold")

DEFAULT_WINDOWS = (5, 7, 9, 11, 13, 15, 17, 21, 25, 31)
DEFAULT_WEIGHTS = (
    (0.40, 0.10, 0.50),  # the seed's
    (1 / 3, 1 / 3, 1 / 3), (0.50, 0.00, 0.50), (0.60, 0.10, 0.30), (0.30, 0.10, 0.60),
    (0.20, 0.20, 0.60), (0.50, 0.20, 0.30), (0.40, 0.30, 0.30), (0.20, 0.10, 0.70),
    (0.60, 0.20, 0.20),
)
DEFAULT_BUY = (0.45, 0.48, 0.50, 0.52, 0.55)
DEFAULT_SELL = (0.47, 0.50, 0.52, 0.54, 0.57)
DEFAULT_CONF = (0.60, 0.65, 0.70, 0.75)
DEFAULT_COH = (0.30,)


@dataclass(frozen=True)
class ConfigGrid:
    table: np.ndarray  # float64 (K, len(fields))
    base: Any = SEED  # the rule's parameter object the other constants come from
    fields: tuple[str, ...] = COLUMNS  # the table's columns (COLUMNS, then the rule's own)
    rule: str = "seed"

    def __post_init__(self) -> None:
        from sep_research.signals.rules.base import get_rule

        r = get_rule(self.rule)
        r.check_params(self.base)
        if tuple(self.fields[:len(COLUMNS)]) != COLUMNS or any(
                f not in r.field_names for f in self.fields):
            raise ValueError(f"grid fields {self.fields}: must be {COLUMNS} then fields of "
                             f"rule {self.rule!r}")
        t = np.asarray(self.table, dtype=np.float64)
        if t.ndim != 2 or t.shape[1] != len(self.fields):
            raise ValueError(f"grid table must be (K, {len(self.fields)}), got {t.shape}")
        if t.shape[0] == 0:
            raise ValueError("the configuration grid is empty")
        if not np.isfinite(t).all():
            raise ValueError("the configuration grid has NaN or infinite values")
        w = t[:, 0]
        if (w < 2).any() or (w != np.round(w)).any():
            raise ValueError("grid window lengths must be integers >= 2")

    def __len__(self) -> int:
        return int(self.table.shape[0])

    @property
    def windows(self) -> np.ndarray:
        return np.unique(self.table[:, 0]).astype(np.int64)

    def params(self, k: int) -> Any:
        return self.base.with_(**self.row_dict(k))

    def row_dict(self, k: int) -> dict[str, Any]:
        from sep_research.signals.rules.base import get_rule

        r = get_rule(self.rule)
        row = self.table[int(k)]
        return {c: r.field(c).cast(v) for c, v in zip(self.fields, row, strict=True)}

    def find(self, params: Any) -> int | None:
        """Row of a configuration equal to ``params`` in the gridded fields, or None."""
        if not all(hasattr(params, f) for f in self.fields):
            return None
        want = np.array([float(getattr(params, f)) for f in self.fields])
        hit = np.flatnonzero(np.all(np.isclose(self.table, want, rtol=0, atol=1e-12), axis=1))
        return int(hit[0]) if hit.size else None

    def columns(self) -> dict[str, np.ndarray]:
        """The grid as sweep columns (field -> one value per configuration), for
        :func:`sep_research.signals.sweep.prepare_sweep` with ``params=self.base`` and
        ``rule=self.rule``."""
        return {name: self.table[:, j].copy() for j, name in enumerate(self.fields)}


def make_grid(
    *,
    windows: Any = DEFAULT_WINDOWS,
    weights: Any = DEFAULT_WEIGHTS,
    buy_thresholds: Any = DEFAULT_BUY,
    sell_thresholds: Any = DEFAULT_SELL,
    conf_thresholds: Any = DEFAULT_CONF,
    coh_thresholds: Any = DEFAULT_COH,
    base: Any = None,
    rule: str = "seed",
    own: dict[str, Any] | None = None,
    size: str = "full",
) -> ConfigGrid:
    """The Cartesian product grid; the defaults give 10 x 10 x 5 x 5 x 4 x 1 = 10 000
    configurations, the seed preset among them, times the values of ``rule``'s own grid
    fields (``own``: field -> values; by default each field's ``full`` values, or its
    ``small`` ones with ``size="small"``). ``base``: the rule's parameter object the other
    constants come from (default: its default preset)."""
    from sep_research.signals.rules.base import get_rule

    r = get_rule(rule)
    base = r.preset() if base is None else r.check_params(base)
    if size not in ("full", "small"):
        raise ValueError(f"size={size!r}: expected 'full' or 'small'")
    own = dict(own or {})
    unknown = set(own) - {f.name for f in r.own_fields}
    if unknown:
        raise ValueError(f"own grid fields {sorted(unknown)} are not rule {rule!r}'s own "
                         f"({', '.join(f.name for f in r.own_fields) or 'none'})")
    extra = [(f.name, tuple(own.get(f.name, f.full if size == "full" else f.small)))
             for f in r.own_fields]
    for wt in weights:
        if len(wt) != 3:
            raise ValueError(f"each weight entry must be (w_s, w_c, w_e), got {wt!r}")
    rows = [
        (w, *wt, b, s, c, h, *ex)
        for w, wt, b, s, c, h, *ex in itertools.product(
            windows, weights, buy_thresholds, sell_thresholds, conf_thresholds, coh_thresholds,
            *[v for _, v in extra])
    ]
    fields = COLUMNS + tuple(name for name, _ in extra)
    table = np.asarray(rows, dtype=np.float64).reshape(-1, len(fields))
    for j, name in enumerate(fields):
        r.field(name).check(table[:, j])
    return ConfigGrid(table, base, fields, rule)


def small_grid(base: Any = None, rule: str = "seed") -> ConfigGrid:
    """A 72-configuration grid for tests and quick looks (includes the seed preset), times
    the small values of ``rule``'s own grid fields."""
    return make_grid(windows=(7, 11, 15), weights=DEFAULT_WEIGHTS[:3],
                     buy_thresholds=(0.48, 0.50), sell_thresholds=(0.50, 0.52),
                     conf_thresholds=(0.60, 0.65), base=base, rule=rule, size="small")
