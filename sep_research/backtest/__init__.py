"""Backtest: fills at bid/ask, stops, equity and costs.

``from sep_research.backtest import run_backtest`` (lazy: importing this package or
:mod:`sep_research.backtest.fills` loads neither numba nor pandas, so the live runner's paper
broker can reuse the fill rules).
"""

from __future__ import annotations

from sep_research._util import lazy_getattr

_LAZY = {
    "run_backtest": "sep_research.backtest.engine",
    "BacktestResult": "sep_research.backtest.engine",
    "positions_from_actions": "sep_research.backtest.engine",
    "quote_arrays": "sep_research.backtest.engine",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["BacktestResult", "positions_from_actions", "quote_arrays", "run_backtest"]
