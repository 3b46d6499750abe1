"""Signal rules: the interface (:mod:`~sep_research.signals.rules.base`) and the registered
rules (:data:`sep_research.strategy.RULES`, the one registry; ``sep rules`` lists them):

- ``seed`` (:mod:`~sep_research.signals.rules.seed`): the spec's rule;
- ``thresholded`` (:mod:`~sep_research.signals.rules.thresholded`): bits from moves of at
  least ``k_pips``, smaller moves repeat the previous bit; the seed's metrics and decision;
- ``mtf`` (:mod:`~sep_research.signals.rules.mtf`): multi-timeframe confirmation, a base
  signal taken only when the same rule on two higher granularities (closed candles only)
  agrees.

``docs/rules.md`` specifies each; the README shows how to write one. Imports are lazy::

    from sep_research.signals.rules import Rule, BitsRule, DecisionRule, GridField, get_rule,
        rule_names, rule_signals
"""

from __future__ import annotations

from sep_research._util import lazy_getattr

_LAZY = dict.fromkeys(("Rule", "BitsRule", "DecisionRule", "GridField", "SEED_GRID_FIELDS",
                       "get_rule", "rule_names", "rule_signals"),
                      "sep_research.signals.rules.base")

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = list(_LAZY)
