"""Signals: per-candle QFH features, the seed rule, the sweep, the live stream, the look-ahead
check. Causal alignment is the default everywhere; ``legacy`` is for reproduction only.

Public API (imported lazily; nothing here imports numba or pandas at import time)::

    from sep_research.signals import (
        SeedParams, SEED, PRESETS,                       # parameters and presets
        seed_features, seed_signals, qfh_features_batch, # vectorised features and signals
        label_moves,                                     # the spec's label (scoring:
                                                         #   evaluation.metrics.score_signals)
        ConfigGrid, product_grid, as_grid,               # the one configuration grid
        sweep_seed, config_signals,                      # the fused sweep (training, batch)
        prepare_sweep, run_prepared, sweep_spread_pips,  # its one preparation and spread
        SeedSignalStream, Signal,                        # the live runner's pure path
        check_causality, check_preset, check_rule,       # the look-ahead check
        get_rule, rule_names, rule_signals,              # the signal rules (signals.rules)
    )
"""

from __future__ import annotations

from sep_research._util import lazy_getattr

_LAZY = {
    "SeedParams": "sep_research.signals.seed",
    "SEED": "sep_research.signals.seed",
    "SeedSignals": "sep_research.signals.seed",
    "seed_features": "sep_research.signals.seed",
    "seed_signals": "sep_research.signals.seed",
    "qfh_features_batch": "sep_research.signals.seed",
    "label_moves": "sep_research.signals.seed",
    "PRESETS": "sep_research.signals.presets",
    "get_preset": "sep_research.signals.presets",
    "sweep_seed": "sep_research.signals.sweep",
    "config_signals": "sep_research.signals.sweep",
    "ConfigGrid": "sep_research.signals.grid",
    "product_grid": "sep_research.signals.grid",
    "as_grid": "sep_research.signals.grid",
    "sweep_spread_pips": "sep_research.signals.sweep",
    "prepare_sweep": "sep_research.signals.sweep",
    "run_prepared": "sep_research.signals.sweep",
    "SweepInputs": "sep_research.signals.sweep",
    "SeedSignalStream": "sep_research.signals.live",
    "Signal": "sep_research.signals.live",
    "check_causality": "sep_research.signals.causality",
    "check_preset": "sep_research.signals.causality",
    "FEATURE_FUNCTIONS": "sep_research.signals.causality",
    "check_rule": "sep_research.signals.causality",
    "get_rule": "sep_research.signals.rules.base",
    "rule_names": "sep_research.signals.rules.base",
    "rule_signals": "sep_research.signals.rules.base",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = list(_LAZY)
