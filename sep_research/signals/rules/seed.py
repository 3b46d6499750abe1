"""The seed rule as a registered rule: the spec's bits, features and decision (sections 1-4 of
``docs/qfh-spec.md``), its parameters :class:`~sep_research.signals.seed.SeedParams`, its
presets :data:`sep_research.signals.presets.PRESETS`. Its scalar bodies are the QFH kernels'
own (:mod:`sep_research.kernels.qfh`); its sweep is :func:`sep_research.kernels.engine.
run_sweep` (threshold-space or exact brute force), exactly as before it was registered."""

from __future__ import annotations

from typing import Any, ClassVar

from sep_research.signals.presets import PRESETS
from sep_research.signals.rules.base import BitsRule
from sep_research.signals.seed import SeedParams


class SeedRule(BitsRule):
    name: ClassVar[str] = "seed"
    summary: ClassVar[str] = ("the spec's rule: bits of close-to-close moves, QFH transition "
                              "metrics, weighted buy/sell scores against thresholds x vm")
    params_class: ClassVar[type] = SeedParams

    def causality_functions(self) -> dict[str, Any]:
        """The shipped feature functions of :mod:`sep_research.signals.causality`
        (``qfh_features_batch``, ``seed_features``, ``seed_signals``), as before."""
        from sep_research.signals.causality import FEATURE_FUNCTIONS

        return {name: (lambda x, params, f=f, **kw: f(x, kw["alignment"], params, kw["engine"],
                                                     kw["instrument"]))
                for name, f in FEATURE_FUNCTIONS.items()}


RULE = SeedRule(PRESETS)
