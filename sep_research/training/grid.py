"""Configuration grids of the seed rule for sweeps.

A grid is the Cartesian product of window lengths, weight triples ``(w_s, w_c, w_e)``, buy
and sell thresholds, and the two high-confidence thresholds (confidence, coherence). Every
other constant comes from a base :class:`~sep_research.signals.seed.SeedParams` (the seed
preset by default). Row ``k`` of :attr:`ConfigGrid.table` is one configuration.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from sep_research.signals.seed import SEED, SeedParams

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
    table: np.ndarray  # float64 (K, len(COLUMNS))
    base: SeedParams = SEED

    def __post_init__(self) -> None:
        t = np.asarray(self.table, dtype=np.float64)
        if t.ndim != 2 or t.shape[1] != len(COLUMNS):
            raise ValueError(f"grid table must be (K, {len(COLUMNS)}), got {t.shape}")
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

    def params(self, k: int) -> SeedParams:
        row = self.table[int(k)]
        return self.base.with_(window=int(row[0]), w_s=float(row[1]), w_c=float(row[2]),
                               w_e=float(row[3]), buy_threshold=float(row[4]),
                               sell_threshold=float(row[5]), conf_threshold=float(row[6]),
                               coh_threshold=float(row[7]))

    def row_dict(self, k: int) -> dict[str, Any]:
        row = self.table[int(k)]
        d = {c: float(v) for c, v in zip(COLUMNS, row)}
        d["window"] = int(row[0])
        return d

    def find(self, params: SeedParams) -> int | None:
        """Row of a configuration equal to ``params`` in the gridded fields, or None."""
        want = np.array([params.window, params.w_s, params.w_c, params.w_e,
                         params.buy_threshold, params.sell_threshold, params.conf_threshold,
                         params.coh_threshold])
        hit = np.flatnonzero(np.all(np.isclose(self.table, want, rtol=0, atol=1e-12), axis=1))
        return int(hit[0]) if hit.size else None

    def columns(self) -> dict[str, np.ndarray]:
        """The grid as sweep columns (field -> one value per configuration), for
        :func:`sep_research.signals.sweep.prepare_sweep` with ``params=self.base``."""
        return {name: self.table[:, j].copy() for j, name in enumerate(COLUMNS)}


def make_grid(
    *,
    windows: Any = DEFAULT_WINDOWS,
    weights: Any = DEFAULT_WEIGHTS,
    buy_thresholds: Any = DEFAULT_BUY,
    sell_thresholds: Any = DEFAULT_SELL,
    conf_thresholds: Any = DEFAULT_CONF,
    coh_thresholds: Any = DEFAULT_COH,
    base: SeedParams = SEED,
) -> ConfigGrid:
    """The Cartesian product grid; the defaults give 10 x 10 x 5 x 5 x 4 x 1 = 10 000
    configurations, the seed preset among them."""
    rows = [
        (w, *wt, b, s, c, h)
        for w, wt, b, s, c, h in itertools.product(
            windows, weights, buy_thresholds, sell_thresholds, conf_thresholds, coh_thresholds)
    ]
    for wt in weights:
        if len(wt) != 3:
            raise ValueError(f"each weight entry must be (w_s, w_c, w_e), got {wt!r}")
    return ConfigGrid(np.asarray(rows, dtype=np.float64).reshape(-1, len(COLUMNS)), base)


def small_grid(base: SeedParams = SEED) -> ConfigGrid:
    """A 72-configuration grid for tests and quick looks (includes the seed preset)."""
    return make_grid(windows=(7, 11, 15), weights=DEFAULT_WEIGHTS[:3],
                     buy_thresholds=(0.48, 0.50), sell_thresholds=(0.50, 0.52),
                     conf_thresholds=(0.60, 0.65), base=base)
