"""Backtest: fills at bid/ask, stops, equity and costs.

``from sep_research.backtest import run_backtest`` (candle frames) or ``backtest_arrays``
(bid/ask arrays, keyword arguments; what evaluation calls) (lazy: importing this package or
:mod:`sep_research.backtest.fills` loads neither numba nor pandas, so the live runner's paper
broker can reuse the fill rules).
"""

from __future__ import annotations

from sep_research._util import lazy_getattr

_LAZY = {
    "run_backtest": "sep_research.backtest.simulation",
    "backtest_arrays": "sep_research.backtest.simulation",
    "ArrayBacktest": "sep_research.backtest.simulation",
    "BacktestResult": "sep_research.backtest.simulation",
    "positions_from_actions": "sep_research.backtest.simulation",
    "quote_arrays": "sep_research.backtest.simulation",
    "candle_financing_days": "sep_research.backtest.simulation",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["ArrayBacktest", "BacktestResult", "backtest_arrays", "candle_financing_days",
           "positions_from_actions", "quote_arrays", "run_backtest"]
