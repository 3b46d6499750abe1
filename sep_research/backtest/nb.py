"""numba kernel of the backtest: pure arrays in, pure arrays out.

The fill rules are the functions of :mod:`sep_research.backtest.fills` themselves, compiled by
numba as they stand (:data:`FILL_FUNCTIONS`; ``*_nb`` names here), so there is no second copy
of them; the slow reference in ``tests/reference_backtest.py`` calls the same functions as plain
Python, and the two agree bit for bit.
"""

from __future__ import annotations

import types

import numpy as np
from numba import njit

from sep_research.backtest import fills
from sep_research.backtest.fills import EXIT_END, EXIT_NONE, EXIT_SIGNAL

SIZING_FIXED = 0
SIZING_FIXED_FRACTIONAL = 1

#: the fill rules compiled from :mod:`sep_research.backtest.fills` (plain Python there)
FILL_FUNCTIONS = ("on_price_grid", "entry_price", "exit_price", "fill_cost",
                  "stop_take_levels", "check_stop_take", "fixed_fractional_units")


def _compile(name: str, **callees):
    """``fills.<name>`` compiled as it stands; calls to other fill functions inside it go to
    their compiled versions (``callees``). Cached on disk: numba keys the cache to fills.py."""
    f = getattr(fills, name)
    if callees:
        f = types.FunctionType(f.__code__, {**f.__globals__, **callees}, f.__name__,
                               f.__defaults__, f.__closure__)
    return njit(cache=True)(f)


on_price_grid_nb = _compile("on_price_grid")
entry_price_nb = _compile("entry_price")
exit_price_nb = _compile("exit_price")
fill_cost_nb = _compile("fill_cost")
stop_take_levels_nb = _compile("stop_take_levels", on_price_grid=on_price_grid_nb)
check_stop_take_nb = _compile("check_stop_take")
fixed_fractional_units_nb = _compile("fixed_fractional_units")


@njit(cache=False)
def _record_trade_nb(trades_i, trades_f, costs, nt, entry_idx, t, pos_dir, reason, pos_units,
                     entry, px, cost, pip, quote_to_account):  # pragma: no cover
    """Write trade ``nt`` (closed at ``px`` on candle ``t``); returns ``(pips, pnl)``."""
    pips = (px - entry) * pos_dir / pip
    pnl = (px - entry) * pos_dir * pos_units * quote_to_account
    trades_i[nt, 0] = entry_idx
    trades_i[nt, 1] = t
    trades_i[nt, 2] = pos_dir
    trades_i[nt, 3] = reason
    trades_f[nt, 0] = pos_units
    trades_f[nt, 1] = entry
    trades_f[nt, 2] = px
    trades_f[nt, 3] = pips
    trades_f[nt, 4] = pnl
    trades_f[nt, 5] = cost / pip
    trades_f[nt, 6] = cost * pos_units * quote_to_account
    costs[0] += trades_f[nt, 5]
    costs[1] += trades_f[nt, 6]
    return pips, pnl


# not cached: it calls the fill functions above, and a cached copy would not notice a change
# in fills.py (numba keys a cache to the function's own file only)
@njit(cache=False)
def backtest_nb(
    target, units, bid, ask, pip, stop_loss_pips, take_profit_pips,
    sizing, risk_fraction, initial_balance, quote_to_account, decimals,
):  # pragma: no cover - compiled
    """Run the backtest.

    Parameters are arrays and scalars: ``target`` int8 (n,) target direction decided at each
    candle's close; ``units`` float64 (n,) units for an entry decided at that close (fixed
    sizing); ``bid``/``ask`` float64 (n, 4) open, high, low, close; stop/take in pips (<= 0:
    disabled); ``sizing`` 0 fixed, 1 fixed-fractional; ``decimals``: the price grid of stop
    and take-profit levels.

    Returns ``(trades_i, trades_f, n_trades, position, equity_pips, equity_ccy, costs)`` where
    ``trades_i`` int64 (n, 4) = entry index, exit index, direction, exit reason;
    ``trades_f`` float64 (n, 7) = units, entry price, exit price, pips, pnl, cost pips, cost pnl;
    ``position`` float64 (n,) signed units held over each candle's close;
    ``costs`` float64 (2,) total spread cost in pips and account currency.
    """
    n = target.shape[0]
    trades_i = np.zeros((n + 1, 4), dtype=np.int64)
    trades_f = np.zeros((n + 1, 7), dtype=np.float64)
    position = np.zeros(n, dtype=np.float64)
    equity_pips = np.zeros(n, dtype=np.float64)
    equity_ccy = np.zeros(n, dtype=np.float64)
    costs = np.zeros(2, dtype=np.float64)
    nt = 0
    pos_dir = 0
    pos_units = 0.0
    entry = 0.0
    entry_idx = -1
    entry_cost = 0.0
    stop = np.nan
    take = np.nan
    blocked = 0  # target direction that was stopped out; no re-entry until the target changes
    realized_pips = 0.0
    realized_ccy = 0.0
    for t in range(n):
        bo = bid[t, 0]
        bh = bid[t, 1]
        bl = bid[t, 2]
        bc = bid[t, 3]
        ao = ask[t, 0]
        ah = ask[t, 1]
        al = ask[t, 2]
        ac = ask[t, 3]
        if t > 0:
            desired = int(target[t - 1])
            if blocked != 0:
                if desired == blocked:
                    desired = 0
                else:
                    blocked = 0
            if desired != pos_dir:
                if pos_dir != 0:
                    px = exit_price_nb(pos_dir, bo, ao)
                    cost = entry_cost + fill_cost_nb(bo, ao)
                    pips, pnl = _record_trade_nb(trades_i, trades_f, costs, nt, entry_idx, t, pos_dir,
                                                 EXIT_SIGNAL, pos_units, entry, px, cost, pip,
                                                 quote_to_account)
                    realized_pips += pips
                    realized_ccy += pnl
                    nt += 1
                    pos_dir = 0
                    pos_units = 0.0
                if desired != 0:
                    if sizing == SIZING_FIXED:
                        u = units[t - 1]
                    else:
                        u = fixed_fractional_units_nb(initial_balance + realized_ccy,
                                                      risk_fraction, stop_loss_pips, pip,
                                                      quote_to_account)
                    if u > 0:
                        pos_dir = desired
                        pos_units = u
                        entry = entry_price_nb(desired, bo, ao)
                        entry_cost = fill_cost_nb(bo, ao)
                        entry_idx = t
                        stop, take = stop_take_levels_nb(desired, entry, pip, stop_loss_pips,
                                                         take_profit_pips, decimals)
        if pos_dir != 0:
            reason, px, comp = check_stop_take_nb(pos_dir, stop, take, bo, bh, bl, ao, ah, al)
            if reason != EXIT_NONE:
                if comp == 0:
                    hs = fill_cost_nb(bo, ao)
                elif comp == 1:
                    hs = fill_cost_nb(bh, ah)
                else:
                    hs = fill_cost_nb(bl, al)
                cost = entry_cost + hs
                pips, pnl = _record_trade_nb(trades_i, trades_f, costs, nt, entry_idx, t, pos_dir,
                                             reason, pos_units, entry, px, cost, pip,
                                             quote_to_account)
                realized_pips += pips
                realized_ccy += pnl
                nt += 1
                blocked = pos_dir
                pos_dir = 0
                pos_units = 0.0
        if pos_dir != 0 and t == n - 1:
            px = exit_price_nb(pos_dir, bc, ac)
            cost = entry_cost + fill_cost_nb(bc, ac)
            pips, pnl = _record_trade_nb(trades_i, trades_f, costs, nt, entry_idx, t, pos_dir,
                                         EXIT_END, pos_units, entry, px, cost, pip,
                                         quote_to_account)
            realized_pips += pips
            realized_ccy += pnl
            nt += 1
            pos_dir = 0
            pos_units = 0.0
        position[t] = pos_dir * pos_units
        if pos_dir != 0:
            mark = bc if pos_dir > 0 else ac
            equity_pips[t] = realized_pips + (mark - entry) * pos_dir / pip
            equity_ccy[t] = realized_ccy + (mark - entry) * pos_dir * pos_units * quote_to_account
        else:
            equity_pips[t] = realized_pips
            equity_ccy[t] = realized_ccy
    return trades_i, trades_f, nt, position, equity_pips, equity_ccy, costs
