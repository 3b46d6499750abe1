"""Matching: when a pending order triggers (or expires) on the replayed price path.

This module owns the trigger rules, applied to the deterministic path of
:mod:`sep_research.emulator.market` (linear pieces inside each stored candle, jumps between
candles): a buy limit and a sell stop (and a short trade's take-profit, a long trade's stop)
fire when the watched price falls to the level, the others when it rises to it; the watched
component is the order's ``triggerCondition`` (``DEFAULT``: the ask for a buy, the bid for a
sell; ``INVERSE`` the other one; or ``BID``, ``ASK``, ``MID``). A level crossed inside a piece
fires at the interpolated moment at the level; a level jumped over fires at the jump at the
price after it. A trailing stop follows the best price by its distance. A GTD order expires at
its ``gtdTime``. The venue turns an event into a fill or a cancel
(:mod:`sep_research.emulator.accounting`), earliest first across all orders and accounts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sep_research.emulator.book import VenueAccount, VenueOrder
from sep_research.emulator.market import Series
from sep_research.emulator.orders import DEPENDENT_TYPES

#: What an event does: ``"expire"``, or ``("fill", level)`` at the level reached.
Event = tuple[int, Any]


def order_side(acct: VenueAccount, o: VenueOrder) -> tuple[str, int, str]:
    """(instrument, signed units to trade, price component the trigger watches)."""
    if o.kind in DEPENDENT_TYPES:
        tr = acct.trades[o.trade_id]  # type: ignore[index]
        units = -tr.units
        name = tr.instrument
    else:
        units = o.units
        name = o.instrument
    buy = units > 0
    trig = o.trigger
    if trig == "DEFAULT":
        comp = "A" if buy else "B"
    elif trig == "INVERSE":
        comp = "B" if buy else "A"
    else:
        comp = {"BID": "B", "ASK": "A", "MID": "M"}[trig]
    return name, units, comp


def next_event(acct: VenueAccount, o: VenueOrder, market: dict[str, Series], t0: int,
               t1: int) -> Event | None:
    """The first trigger or expiry of pending order ``o`` in ``[t0, t1]``, or None."""
    expire: Event | None = (max(o.gtd, t0), "expire") if o.gtd is not None and o.gtd <= t1 \
        else None
    name, units, comp = order_side(acct, o)
    s = market[name]
    prec = s.spec.display_precision
    buy = units > 0
    hit: Event | None = None
    if o.kind == "TRAILING_STOP_LOSS":
        hit = _trailing(o, s, comp, buy, t0, t1)
    else:
        assert o.price is not None
        level = float(o.price)
        # buy limit / sell stop fire when price <= level; the others when price >= level
        below = (o.kind in ("LIMIT", "TAKE_PROFIT")) == buy
        for ta, va, tb, vb in s.segments(comp, t0, t1):
            ra = round(va, prec)
            if (ra <= level) if below else (ra >= level):
                hit = (ta, ("fill", ra if ra != level else level))
                break
            rb = round(vb, prec)
            if (rb <= level) if below else (rb >= level):
                tc = ta + int((level - va) / (vb - va) * (tb - ta)) if vb != va else tb
                hit = (min(max(tc, ta), tb), ("fill", level))
                break
    if expire is not None and (hit is None or expire[0] < hit[0]):
        return expire
    return hit


def _trailing(o: VenueOrder, s: Series, comp: str, buy: bool, t0: int, t1: int
              ) -> Event | None:
    """Trailing stop: the stop follows the best price by ``distance`` (updates the order's
    peak and its ``trailingStopValue`` as the path is walked)."""
    assert o.distance is not None
    dist = float(o.distance)
    prec = s.spec.display_precision
    sign = -1.0 if buy else 1.0  # a long trade's stop is a sell: trails below the bid
    start = max(t0, o.peak_t)
    for ta, va, tb, vb in s.segments(comp, start, t1):
        peak = o.peak if o.peak is not None else va
        if sign < 0:
            peak = max(peak, va)
            stop = peak - dist
            if round(va, prec) <= round(stop, prec):
                return ta, ("fill", round(va, prec))
            if vb < va and round(vb, prec) <= round(stop, prec):
                tc = ta + int((stop - va) / (vb - va) * (tb - ta))
                o.peak, o.peak_t = peak, tc
                return tc, ("fill", round(stop, prec))
            o.peak = max(peak, vb)
        else:
            peak = min(peak, va)
            stop = peak + dist
            if round(va, prec) >= round(stop, prec):
                return ta, ("fill", round(va, prec))
            if vb > va and round(vb, prec) >= round(stop, prec):
                tc = ta + int((stop - va) / (vb - va) * (tb - ta))
                o.peak, o.peak_t = peak, tc
                return tc, ("fill", round(stop, prec))
            o.peak = min(peak, vb)
        o.peak_t = tb
        o.w["trailingStopValue"] = f"{o.peak + (dist if sign > 0 else -dist):.{prec}f}"
    return None


def earliest(accounts: Iterable[VenueAccount], market: dict[str, Series], cur: int, now: int
             ) -> tuple[int, VenueAccount, VenueOrder, Any] | None:
    """The earliest event of any pending order in ``[cur, now]`` (ties: the first account,
    then the lowest order ID)."""
    best: tuple[int, VenueAccount, VenueOrder, Any] | None = None
    for acct in accounts:
        for o in acct.pending_orders():
            ev = next_event(acct, o, market, max(cur, o.created), now)
            if ev is not None and (best is None or ev[0] < best[0]):
                best = (ev[0], acct, o, ev[1])
    return best
