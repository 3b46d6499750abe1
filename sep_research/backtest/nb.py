"""numba kernel of the backtest: pure arrays in, pure arrays out.

The fill rules are the functions of :mod:`sep_research.backtest.fills` themselves, compiled by
numba as they stand (:data:`FILL_FUNCTIONS`; ``*_nb`` names here), so there is no second copy
of them; the slow reference in ``tests/reference_backtest.py`` calls the same functions as plain
Python, and the two agree bit for bit.
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
from numba import njit

from sep_research import financing
from sep_research.backtest import fills
from sep_research.backtest.fills import EXIT_END, EXIT_NONE, EXIT_SIGNAL
from sep_research.kernels import cache as _cache

SIZING_FIXED = 0
SIZING_FIXED_FRACTIONAL = 1

#: the fill rules compiled from :mod:`sep_research.backtest.fills` (plain Python there)
FILL_FUNCTIONS = ("on_price_grid", "entry_price", "exit_price", "fill_cost",
                  "stop_take_levels", "check_stop_take", "fixed_fractional_units")


#: every file the compiled backtest comes from: its on-disk cache is keyed to their bytes
#: (:mod:`sep_research.kernels.cache`), so a change in any of them means a fresh compile
SOURCES = (Path(fills.__file__), Path(financing.__file__), Path(__file__))


def _jit(f):
    """``njit`` with the source-keyed on-disk cache of :data:`SOURCES` (a second process
    starts warm; numba's own ``cache=True`` would key only the function's own file)."""
    return _cache.attach(njit(cache=False)(f), SOURCES)


def _compile(name: str, **callees):
    """``fills.<name>`` compiled as it stands; calls to other fill functions inside it go to
    their compiled versions (``callees``)."""
    f = getattr(fills, name)
    if callees:
        f = types.FunctionType(f.__code__, {**f.__globals__, **callees}, f.__name__,
                               f.__defaults__, f.__closure__)
    return _jit(f)


on_price_grid_nb = _compile("on_price_grid")
entry_price_nb = _compile("entry_price")
exit_price_nb = _compile("exit_price")
fill_cost_nb = _compile("fill_cost")
stop_take_levels_nb = _compile("stop_take_levels", on_price_grid=on_price_grid_nb)
check_stop_take_nb = _compile("check_stop_take")
fixed_fractional_units_nb = _compile("fixed_fractional_units")
#: the financing formula of :mod:`sep_research.financing`, compiled as it stands
financing_per_unit_nb = _jit(financing.per_unit)


@_jit
def _record_trade_nb(trades_i, trades_f, costs, nt, entry_idx, t, pos_dir, reason, pos_units,
                     entry, px, cost, pip, quote_to_account, fin_pips,
                     fin_ccy):  # pragma: no cover
    """Write trade ``nt`` (closed at ``px`` on candle ``t``, with the financing it accrued);
    returns its price ``(pips, pnl)`` (the financing was realised at each rollover)."""
    pips = (px - entry) * pos_dir / pip
    pnl = (px - entry) * pos_dir * pos_units * quote_to_account
    trades_i[nt, 0] = entry_idx
    trades_i[nt, 1] = t
    trades_i[nt, 2] = pos_dir
    trades_i[nt, 3] = reason
    trades_f[nt, 0] = pos_units
    trades_f[nt, 1] = entry
    trades_f[nt, 2] = px
    trades_f[nt, 3] = pips + fin_pips
    trades_f[nt, 4] = pnl + fin_ccy
    trades_f[nt, 5] = cost / pip
    trades_f[nt, 6] = cost * pos_units * quote_to_account
    trades_f[nt, 7] = fin_pips
    trades_f[nt, 8] = fin_ccy
    costs[0] += trades_f[nt, 5]
    costs[1] += trades_f[nt, 6]
    return pips, pnl


@_jit
def backtest_nb(
    target, units, bid, ask, pip, stop_loss_pips, take_profit_pips,
    sizing, risk_fraction, initial_balance, quote_to_account, decimals,
    fin_days, long_rate, short_rate,
):  # pragma: no cover - compiled
    """Run the backtest.

    Parameters are arrays and scalars: ``target`` int8 (n,) target direction decided at each
    candle's close; ``units`` float64 (n,) units for an entry decided at that close (fixed
    sizing); ``bid``/``ask`` float64 (n, 4) open, high, low, close; stop/take in pips (<= 0:
    disabled); ``sizing`` 0 fixed, 1 fixed-fractional; ``decimals``: the price grid of stop
    and take-profit levels; ``fin_days`` float64 (n,) days of financing charged at the
    rollovers after candle ``t``'s open up to the next candle's open (all 0: no financing),
    ``long_rate``/``short_rate`` annual rates (decimal, negative = charge).

    Financing (:mod:`sep_research.financing`): a position held at the close of candle ``t``
    with ``fin_days[t] > 0`` is charged ``mid_close x rate x days / 365`` per unit (quote
    currency; ``/ pip`` in pips, ``x units x quote_to_account`` in the account currency),
    realised at once (into the equity) and summed into the trade's financing.

    Returns ``(trades_i, trades_f, n_trades, position, equity_pips, equity_ccy, costs,
    financing)`` where ``trades_i`` int64 (n, 4) = entry index, exit index, direction, exit
    reason; ``trades_f`` float64 (n, 9) = units, entry price, exit price, pips, pnl, cost pips,
    cost pnl, financing pips, financing pnl (pips and pnl net of the spread and the
    financing); ``position`` float64 (n,) signed units held over each candle's close;
    ``costs`` float64 (2,) total spread cost and ``financing`` float64 (2,) total financing
    (signed), each in pips and account currency.
    """
    n = target.shape[0]
    trades_i = np.zeros((n + 1, 4), dtype=np.int64)
    trades_f = np.zeros((n + 1, 9), dtype=np.float64)
    position = np.zeros(n, dtype=np.float64)
    equity_pips = np.zeros(n, dtype=np.float64)
    equity_ccy = np.zeros(n, dtype=np.float64)
    costs = np.zeros(2, dtype=np.float64)
    fin_total = np.zeros(2, dtype=np.float64)
    fin_pips = 0.0  # financing of the open position so far
    fin_ccy = 0.0
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
                    pips, pnl = _record_trade_nb(trades_i, trades_f, costs, nt, entry_idx, t,
                                                 pos_dir,
                                                 EXIT_SIGNAL, pos_units, entry, px, cost, pip,
                                                 quote_to_account, fin_pips, fin_ccy)
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
                        fin_pips = 0.0
                        fin_ccy = 0.0
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
                                             quote_to_account, fin_pips, fin_ccy)
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
                                         quote_to_account, fin_pips, fin_ccy)
            realized_pips += pips
            realized_ccy += pnl
            nt += 1
            pos_dir = 0
            pos_units = 0.0
        if pos_dir != 0 and fin_days[t] != 0.0:
            rate = long_rate if pos_dir > 0 else short_rate
            per_unit = financing_per_unit_nb(0.5 * (bc + ac), rate, fin_days[t])
            fp = per_unit / pip
            fc = per_unit * pos_units * quote_to_account
            fin_pips += fp
            fin_ccy += fc
            fin_total[0] += fp
            fin_total[1] += fc
            realized_pips += fp
            realized_ccy += fc
        position[t] = pos_dir * pos_units
        if pos_dir != 0:
            mark = bc if pos_dir > 0 else ac
            equity_pips[t] = realized_pips + (mark - entry) * pos_dir / pip
            equity_ccy[t] = realized_ccy + (mark - entry) * pos_dir * pos_units * quote_to_account
        else:
            equity_pips[t] = realized_pips
            equity_ccy[t] = realized_ccy
    return trades_i, trades_f, nt, position, equity_pips, equity_ccy, costs, fin_total
