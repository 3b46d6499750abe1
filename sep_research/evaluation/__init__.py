"""Honest evaluation: hit rates with Wilson intervals, trading figures net of the spread,
baselines on the same candles, and overfitting statistics (DSR, PBO by CSCV, Hansen's SPA).

Modules: :mod:`~sep_research.evaluation.stats` (the statistics) and
:mod:`~sep_research.evaluation.metrics` (:func:`evaluate_signals`, :func:`score_signals`).
"""
