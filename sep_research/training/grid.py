"""The training grids of a signal rule (the seed rule by default): two
:class:`~sep_research.signals.grid.ConfigGrid` presets that ``sep train`` and notebook 03 sweep.

A training grid is the cartesian product of window lengths, weight triples ``(w_s, w_c,
w_e)`` (set together), buy and sell thresholds, the two high-confidence thresholds
(confidence, coherence) and, for a rule other than the seed's, the values of its own grid
fields (``GridField.full`` in the full grid, ``GridField.small`` in the small one; ``sep
rules`` lists them). Every other constant comes from the grid's base parameter object (the
rule's default preset by default). Its columns are :data:`TRAINING_FIELDS`, then the rule's own
fields; rows run through them in that order, the last fastest.
"""

from __future__ import annotations

from typing import Any

from sep_research.signals.grid import ConfigGrid

#: the training grids' columns (then the rule's own grid fields)
TRAINING_FIELDS = ("window", "w_s", "w_c", "w_e", "buy_threshold", "sell_threshold",
                   "conf_threshold", "coh_threshold")
WEIGHTS = ("w_s", "w_c", "w_e")

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
    """The training grid; the defaults give 10 x 10 x 5 x 5 x 4 x 1 = 10 000
    configurations, the seed preset among them, times the values of ``rule``'s own grid
    fields (``own``: field -> values; by default each field's ``full`` values, or its
    ``small`` ones with ``size="small"``). ``base``: the rule's parameter object the other
    constants come from (default: its default preset)."""
    from sep_research.signals.rules.base import get_rule

    r = get_rule(rule)
    if size not in ("full", "small"):
        raise ValueError(f"size={size!r}: expected 'full' or 'small'")
    own = dict(own or {})
    unknown = set(own) - {f.name for f in r.own_fields}
    if unknown:
        raise ValueError(f"own grid fields {sorted(unknown)} are not rule {rule!r}'s own "
                         f"({', '.join(f.name for f in r.own_fields) or 'none'})")
    axes: dict[Any, Any] = {
        "window": windows, WEIGHTS: weights, "buy_threshold": buy_thresholds,
        "sell_threshold": sell_thresholds, "conf_threshold": conf_thresholds,
        "coh_threshold": coh_thresholds,
    }
    for f in r.own_fields:
        axes[f.name] = tuple(own.get(f.name, f.full if size == "full" else f.small))
    return ConfigGrid.product(axes, rule=rule, base=base)


def small_grid(base: Any = None, rule: str = "seed") -> ConfigGrid:
    """A 72-configuration grid for tests and quick looks (includes the seed preset), times
    the small values of ``rule``'s own grid fields."""
    return make_grid(windows=(7, 11, 15), weights=DEFAULT_WEIGHTS[:3],
                     buy_thresholds=(0.48, 0.50), sell_thresholds=(0.50, 0.52),
                     conf_thresholds=(0.60, 0.65), base=base, rule=rule, size="small")
