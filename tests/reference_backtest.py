"""Slow, obvious reference of the backtest (plain Python, one candle at a time).

It uses the pure-Python fill rules of :mod:`sep_research.backtest.fills` and an explicit
position object; the numba backtest must give exactly the same trades, equity and costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sep_research.backtest import fills


@dataclass
class _Position:
    direction: int
    units: float
    entry: float
    entry_index: int
    entry_cost: float
    stop: float
    take: float
    fin_pips: float = 0.0
    fin_ccy: float = 0.0


def reference_backtest(
    target, units, bid, ask, pip, stop_loss_pips=None, take_profit_pips=None,
    sizing="fixed", risk_fraction=0.01, initial_balance=10_000.0, quote_to_account=1.0,
    financing=None, financing_days=None,
):
    """Returns (trades, position, equity_pips, equity_ccy, costs_pips, costs_ccy), and with
    ``financing`` (a :class:`sep_research.financing.FinancingRates`, charged
    ``financing_days[t]`` days on the position held at candle t's close) two more:
    financing_pips, financing_ccy.

    ``trades`` is a list of dicts with the same fields as the numba backtest's trades.
    ``bid``/``ask`` are lists of (open, high, low, close) rows.
    """
    from sep_research import financing as fin

    n = len(target)
    trades: list[dict] = []
    position = [0.0] * n
    eq_pips = [0.0] * n
    eq_ccy = [0.0] * n
    state = {"pips": 0.0, "ccy": 0.0, "cost_pips": 0.0, "cost_ccy": 0.0, "fin_pips": 0.0,
             "fin_ccy": 0.0}
    pos: _Position | None = None
    blocked = 0

    def close(p: _Position, t: int, price: float, half_spread: float, reason: int) -> None:
        cost = p.entry_cost + half_spread
        pips = (price - p.entry) * p.direction / pip
        pnl = (price - p.entry) * p.direction * p.units * quote_to_account
        trade = {
            "entry_index": p.entry_index, "exit_index": t, "direction": p.direction,
            "reason": reason, "units": p.units, "entry_price": p.entry, "exit_price": price,
            "pips": pips + p.fin_pips, "pnl": pnl + p.fin_ccy, "cost_pips": cost / pip,
            "cost_pnl": cost * p.units * quote_to_account, "financing_pips": p.fin_pips,
            "financing_pnl": p.fin_ccy,
        }
        trades.append(trade)
        state["cost_pips"] += trade["cost_pips"]
        state["cost_ccy"] += trade["cost_pnl"]
        state["pips"] += pips  # the financing was realised at each rollover
        state["ccy"] += pnl

    for t in range(n):
        bo, bh, bl, bc = bid[t]
        ao, ah, al, ac = ask[t]
        if t > 0:
            want = int(target[t - 1])
            if blocked and want == blocked:
                want = 0
            elif blocked:
                blocked = 0
            have = pos.direction if pos else 0
            if want != have:
                if pos is not None:
                    close(pos, t, fills.exit_price(pos.direction, bo, ao), fills.fill_cost(bo, ao),
                          fills.EXIT_SIGNAL)
                    pos = None
                if want != 0:
                    if sizing == "fixed":
                        u = float(units[t - 1])
                    else:
                        u = fills.fixed_fractional_units(
                            initial_balance + state["ccy"], risk_fraction, stop_loss_pips, pip,
                            quote_to_account)
                    if u > 0:
                        e = fills.entry_price(want, bo, ao)
                        stop, take = fills.stop_take_levels(
                            want, e, pip, stop_loss_pips, take_profit_pips,
                            fills.price_decimals(pip))
                        pos = _Position(want, u, e, t, fills.fill_cost(bo, ao), stop, take)
        if pos is not None:
            reason, price, comp = fills.check_stop_take(
                pos.direction, pos.stop, pos.take, bo, bh, bl, ao, ah, al)
            if reason != fills.EXIT_NONE:
                hs = fills.fill_cost(*((bo, ao), (bh, ah), (bl, al))[comp])
                close(pos, t, price, hs, reason)
                blocked = pos.direction
                pos = None
        if pos is not None and t == n - 1:
            close(pos, t, fills.exit_price(pos.direction, bc, ac), fills.fill_cost(bc, ac),
                  fills.EXIT_END)
            pos = None
        if pos is not None and financing is not None and financing_days[t] != 0.0:
            # held through the rollover(s) after this candle's open: valued at the mid close
            per_unit = fin.per_unit(0.5 * (bc + ac), financing.rate(pos.direction),
                                    financing_days[t])
            fp, fc = per_unit / pip, per_unit * pos.units * quote_to_account
            pos.fin_pips += fp
            pos.fin_ccy += fc
            state["fin_pips"] += fp
            state["fin_ccy"] += fc
            state["pips"] += fp
            state["ccy"] += fc
        if pos is None:
            position[t] = 0.0
            eq_pips[t] = state["pips"]
            eq_ccy[t] = state["ccy"]
        else:
            mark = bc if pos.direction > 0 else ac
            position[t] = pos.direction * pos.units
            eq_pips[t] = state["pips"] + (mark - pos.entry) * pos.direction / pip
            eq_ccy[t] = state["ccy"] + (mark - pos.entry) * pos.direction * pos.units * (
                quote_to_account)
    assert not math.isnan(state["pips"])
    out = (trades, position, eq_pips, eq_ccy, state["cost_pips"], state["cost_ccy"])
    if financing is None:
        return out
    return (*out, state["fin_pips"], state["fin_ccy"])
