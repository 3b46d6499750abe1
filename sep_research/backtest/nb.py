"""numba kernel of the backtest: pure arrays in, pure arrays out.

The rules are those of :mod:`sep_research.backtest.fills` (read its docstring), re-implemented
here in the same order of floating-point operations so that the results equal, bit for bit, the
slow reference in ``tests/reference_backtest.py``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from sep_research.backtest.fills import EXIT_END, EXIT_NONE, EXIT_SIGNAL, EXIT_STOP, EXIT_TAKE

SIZING_FIXED = 0
SIZING_FIXED_FRACTIONAL = 1


@njit(cache=True)
def check_stop_take_nb(direction, stop, take, bo, bh, bl, ao, ah, al):  # pragma: no cover
    """numba twin of :func:`sep_research.backtest.fills.check_stop_take`."""
    if direction > 0:
        if bo <= stop:
            return EXIT_STOP, bo, 0
        if bo >= take:
            return EXIT_TAKE, take, 0
        if bl <= stop:
            return EXIT_STOP, stop, 2
        if bh >= take:
            return EXIT_TAKE, take, 1
    elif direction < 0:
        if ao >= stop:
            return EXIT_STOP, ao, 0
        if ao <= take:
            return EXIT_TAKE, take, 0
        if ah >= stop:
            return EXIT_STOP, stop, 1
        if al <= take:
            return EXIT_TAKE, take, 2
    return EXIT_NONE, np.nan, -1


@njit(cache=True)
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


@njit(cache=True)
def backtest_nb(
    target, units, bid, ask, pip, stop_loss_pips, take_profit_pips,
    sizing, risk_fraction, initial_balance, quote_to_account,
):  # pragma: no cover - compiled
    """Run the backtest.

    Parameters are arrays and scalars: ``target`` int8 (n,) target direction decided at each
    candle's close; ``units`` float64 (n,) units for an entry decided at that close (fixed
    sizing); ``bid``/``ask`` float64 (n, 4) open, high, low, close; stop/take in pips (<= 0:
    disabled); ``sizing`` 0 fixed, 1 fixed-fractional.

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
                    px = bo if pos_dir > 0 else ao
                    cost = entry_cost + (ao - bo) / 2.0
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
                        balance = initial_balance + realized_ccy
                        if balance <= 0:
                            u = 0.0
                        else:
                            u = float(math.floor(balance * risk_fraction / (
                                stop_loss_pips * pip * quote_to_account)))
                    if u > 0:
                        pos_dir = desired
                        pos_units = u
                        entry = ao if desired > 0 else bo
                        entry_cost = (ao - bo) / 2.0
                        entry_idx = t
                        stop = np.nan
                        take = np.nan
                        if stop_loss_pips > 0:
                            stop = entry - desired * stop_loss_pips * pip
                        if take_profit_pips > 0:
                            take = entry + desired * take_profit_pips * pip
        if pos_dir != 0:
            reason, px, comp = check_stop_take_nb(pos_dir, stop, take, bo, bh, bl, ao, ah, al)
            if reason != EXIT_NONE:
                if comp == 0:
                    hs = (ao - bo) / 2.0
                elif comp == 1:
                    hs = (ah - bh) / 2.0
                else:
                    hs = (al - bl) / 2.0
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
            px = bc if pos_dir > 0 else ac
            cost = entry_cost + (ac - bc) / 2.0
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
