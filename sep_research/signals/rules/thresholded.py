"""Thresholded bits: bits from moves of at least ``k_pips``; smaller moves repeat the previous
bit. The seed's transition metrics, features and decision follow unchanged.

**Definition.** Let ``d_j = (close[j+1] - close[j]) * pips_per_unit`` be move ``j`` in pips
(:func:`sep_research.fx.pips_per_unit` of the instrument's pip). A move *counts* when
``|d_j| >= k_pips``. The bit of move ``j`` is the direction (1 if ``d > 0``, else 0) of the
latest counting move among ``j, j-1, ..., j - repeat_limit + 1`` (indices >= 0); when none of
them counts, it is the plain direction of move ``j`` (the spec's bit, a tie is 0). So a move
smaller than ``k_pips`` repeats the previous bit, for at most ``repeat_limit - 1`` moves in a
row; the bound makes the bit of move ``j`` depend on moves ``j - repeat_limit + 1 .. j`` only,
so the live stream's bounded history (``lookback = repeat_limit - 1`` more moves than the seed
rule's) gives exactly the research bits whatever the data's start. The bit of move ``j`` is
known at the close of candle ``j + 1``, as the spec's; candle ``i``'s causal window is the bits
of moves ``i - W .. i - 1``.

``k_pips = 0``: every move counts (``|d| >= 0``), so every bit is the spec's and the rule is
the seed rule exactly (a test compares features, signals and sweep sums bit for bit).

**Grid field**: ``k_pips`` (pips, 0 .. 1000; the small training grid adds 0 and 2, the full
one 0, 1, 2 and 4). **Parameter**: ``repeat_limit`` (moves, 1 .. 5000; 24 by default).

**Sweep**: the decision is the seed's, so the fused sweep is the seed's (threshold-space or
exact brute force, CPU and GPU) over feature columns of (window, ``k_pips``) pairs: the bits
of each ``k_pips`` value are computed once (:func:`threshold_bit`, compiled by
:func:`sep_research.kernels.rules.compile_rule`), then the QFH features of every window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from sep_research import fx
from sep_research.signals.rules.base import BitsRule, GridField
from sep_research.signals.seed import MAX_WINDOW, SeedParams
from sep_research.strategy import check_int, check_number

#: largest k_pips accepted
MAX_K_PIPS = 1000.0


@dataclass(frozen=True)
class ThresholdedParams(SeedParams):
    """The seed's parameters and the bit encoding's: ``k_pips`` (moves smaller than this
    repeat the previous bit) and ``repeat_limit`` (for at most this many moves minus one)."""

    k_pips: float = 2.0
    repeat_limit: int = 24

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.k_pips, (int, float)) and math.isfinite(self.k_pips)
                and 0.0 <= self.k_pips <= MAX_K_PIPS):
            raise ValueError(f"k_pips must be a number of pips in 0..{MAX_K_PIPS:g}, got "
                             f"{self.k_pips!r}")
        if int(self.repeat_limit) != self.repeat_limit or not 1 <= self.repeat_limit <= \
                MAX_WINDOW:
            raise ValueError(f"repeat_limit must be an integer in 1..{MAX_WINDOW}, got "
                             f"{self.repeat_limit!r}")

    @classmethod
    def field_from_json(cls, name: str, value: Any, key: str) -> Any:
        if name == "k_pips":
            return check_number(value, key, minimum=0.0, maximum=MAX_K_PIPS)
        if name == "repeat_limit":
            return check_int(value, key, minimum=1, maximum=MAX_WINDOW)
        return super().field_from_json(name, value, key)


# ---- scalar bodies (plain Python; compiled for the CPU and the GPU) ---------------------------

def threshold_bit(close, j, bp, s):
    """The bit of move j under bp[s] = (k_pips, repeat_limit, pips per price unit)."""
    k = bp[s, 0]
    limit = int(bp[s, 1])
    ppu = bp[s, 2]
    lo = max(0, j - limit + 1)
    for jj in range(j, lo - 1, -1):
        d = (close[jj + 1] - close[jj]) * ppu
        if abs(d) >= k:
            return 1 if d > 0.0 else 0
    return 1 if close[j + 1] > close[j] else 0


SCALAR_FUNCTIONS = ("threshold_bit",)


class ThresholdedRule(BitsRule):
    name: ClassVar[str] = "thresholded"
    summary: ClassVar[str] = ("bits from moves of at least k_pips (smaller moves repeat the "
                              "previous bit), then the seed's metrics and decision")
    params_class: ClassVar[type] = ThresholdedParams
    own_fields: ClassVar[tuple[GridField, ...]] = (
        GridField("k_pips", "float", 0.0, MAX_K_PIPS, doc="a move counts when at least this "
                  "many pips; smaller ones repeat the previous bit", small=(0.0, 2.0),
                  full=(0.0, 1.0, 2.0, 4.0)),
    )
    body_modules: ClassVar[tuple[str, ...]] = (__name__,)
    bit_body: ClassVar[str] = "threshold_bit"
    bit_fields: ClassVar[tuple[str, ...]] = ("k_pips",)

    def bit_vector(self, params: Any, pip: float) -> tuple[float, ...]:
        return (float(params.k_pips), float(params.repeat_limit), fx.pips_per_unit(pip))

    def lookback(self, params: Any) -> int:
        return int(params.repeat_limit) - 1


RULE = ThresholdedRule({"default": ThresholdedParams(),
                        "k0": ThresholdedParams(k_pips=0.0)})
