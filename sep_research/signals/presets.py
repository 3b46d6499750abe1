"""Shipped signal presets: name -> :class:`~sep_research.signals.seed.SeedParams`.

Every preset here is run through the look-ahead check by the tests
(``tests/test_causality.py``), so nothing with look-ahead can be shipped.
"""

from __future__ import annotations

from sep_research.signals.seed import SEED, SeedParams

PRESETS: dict[str, SeedParams] = {
    "seed": SEED,
}


def get_preset(name: str) -> SeedParams:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
