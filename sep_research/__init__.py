"""SEP Research: QFH bit-transition signals, honest evaluation and an OANDA runner.

The ten lines of a study need this package alone (every name is imported on first use, so
``import sep_research`` stays cheap and the headless runner, ``sep_research.live``, still
loads no numba, pandas or Jupyter)::

    import sep_research as sep

    frame = sep.load_candles("sample", "EUR_USD", "H1")        # real candles + provenance
    feats = sep.seed_features(frame)                           # QFH features per candle
    sig = sep.rule_signals(frame, rule="seed")                 # any registered rule's signals
    sw = sep.sweep_seed(frame, sep.product_grid(window=[7, 11, 15]), score_start=200,
                        score_end=len(frame) - 1, half_spread_pips=0.5)   # the fused sweep
    bt = sep.run_backtest(frame, sig.action, instrument="EUR_USD", half_spread_pips=0.5)
    ev = sep.evaluate_signals(frame, sig.action, sig.hc, instrument="EUR_USD",
                              granularity="H1", half_spread_pips=0.5)     # vs baselines
    print(sep.verdict(ev))
    wf = sep.walk_forward(frame, instrument="EUR_USD", granularity="H1",
                          grid=sep.small_grid(), half_spread_pips=0.5)   # out of sample

The modules these come from are the places to read for the details: ``data``, ``signals``
(and ``signals.rules``), ``backtest``, ``evaluation``, ``training``, ``strategy``, ``fx``.
"""

from __future__ import annotations

from sep_research._util import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    # data
    "load_candles": "sep_research.data.load",
    "load_sample": "sep_research.data.sample",
    "get_provenance": "sep_research.data.candles",
    # features, signals, rules, the look-ahead check
    "seed_features": "sep_research.signals.seed",
    "seed_signals": "sep_research.signals.seed",
    "SeedParams": "sep_research.signals.seed",
    "SEED": "sep_research.signals.seed",
    "label_moves": "sep_research.signals.seed",
    "rule_signals": "sep_research.signals.rules.base",
    "get_rule": "sep_research.signals.rules.base",
    "rule_names": "sep_research.signals.rules.base",
    "check_causality": "sep_research.signals.causality",
    "check_rule": "sep_research.signals.causality",
    # the sweep
    "sweep_seed": "sep_research.signals.sweep",
    "ConfigGrid": "sep_research.signals.grid",
    "product_grid": "sep_research.signals.grid",
    "prepare_sweep": "sep_research.signals.sweep",
    "run_prepared": "sep_research.signals.sweep",
    "config_signals": "sep_research.signals.sweep",
    # backtest and evaluation
    "run_backtest": "sep_research.backtest.simulation",
    "evaluate_signals": "sep_research.evaluation.metrics",
    "score_signals": "sep_research.evaluation.metrics",
    "verdict": "sep_research.evaluation.metrics",
    # training
    "walk_forward": "sep_research.training.walkforward",
    "make_grid": "sep_research.training.grid",
    "small_grid": "sep_research.training.grid",
    "load_artifact": "sep_research.training.artifact",
    "verify_artifact": "sep_research.training.artifact",
    # the strategy contract
    "StrategySpec": "sep_research.strategy",
    "Policy": "sep_research.strategy",
    "CostModel": "sep_research.strategy",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = ["__version__", *(str(k) for k in _LAZY)]


def __dir__() -> list[str]:
    return sorted(__all__)
