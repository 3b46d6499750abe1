"""JSON views: the venue's state as OANDA v20 represents it (read only).

This module owns the shapes of the objects in answers: the account summary and details, the
account changes and their state, trades (full and summary), positions and their sides, prices.
Decimals are strings (prices at the instrument's display precision, money with 4 decimals,
units as integer strings), counts and precisions JSON numbers, times RFC3339 with 9 fractional
digits (turned into UNIX seconds by the server when the client asks), IDs strings. Orders are
kept in their wire form by the venue (``VenueOrder.w``) and appear as they are.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sep_research.emulator.book import ZERO, VenueAccount, VenueTrade
from sep_research.emulator.wire import fmt_time, money, qmoney
from sep_research.financing import FinancingRates

if TYPE_CHECKING:
    from sep_research.emulator.venue import Venue

#: what the instruments endpoint shows where the venue charges no financing
NO_FINANCING = FinancingRates(0.0, 0.0, source="off")
DEPENDENT_KEYS = (("TAKE_PROFIT", "takeProfitOrder"), ("STOP_LOSS", "stopLossOrder"),
                  ("TRAILING_STOP_LOSS", "trailingStopLossOrder"))
#: Summary fields that also make up the ``state`` of ``GET accounts/{id}/changes``.
CHANGING_STATE = ("unrealizedPL", "NAV", "marginUsed", "marginAvailable", "positionValue",
                  "marginCloseoutUnrealizedPL", "marginCloseoutNAV", "marginCloseoutMarginUsed",
                  "marginCloseoutPercent", "marginCloseoutPositionValue", "withdrawalLimit",
                  "marginCallMarginUsed", "marginCallPercent")


def price_object(v: Venue, name: str, t: int) -> dict[str, Any]:
    """A ``ClientPrice`` (pricing and the pricing stream)."""
    s = v.market[name]
    prec = s.spec.display_precision
    bid = s.value_at("B", t)
    ask = s.value_at("A", t)
    tradeable = not s.halted(t)
    b = f"{bid:.{prec}f}" if bid is not None else None
    a = f"{ask:.{prec}f}" if ask is not None else None
    return {
        "type": "PRICE", "instrument": name, "time": fmt_time(s.quote_time(t)),
        "tradeable": tradeable, "status": "tradeable" if tradeable else "non-tradeable",
        "bids": [{"price": b, "liquidity": 10000000}] if b else [],
        "asks": [{"price": a, "liquidity": 10000000}] if a else [],
        "closeoutBid": b, "closeoutAsk": a,
    }


def instrument_json(v: Venue, name: str) -> dict[str, Any]:
    """An ``Instrument`` of the account's instruments endpoint, with its ``financing`` (the
    rates the venue charges; zero rates where it charges none)."""
    rates = v.accounting.financing.get(name) or NO_FINANCING
    return {**v.market[name].spec.describe(), "financing": rates.to_oanda()}


def summary(v: Venue, acct: VenueAccount) -> dict[str, Any]:
    """An ``AccountSummary``."""
    t = v.now()
    x = v.accounting.totals(acct, t)
    open_trades = acct.open_trades()
    open_pos = {tr.instrument for tr in open_trades}
    pending = acct.pending_orders()
    pct = (x["mu"] / x["nav"]).quantize(Decimal("0.00001")) if x["nav"] > 0 else ZERO
    out = {
        "id": acct.id, "alias": acct.alias, "currency": "USD",
        "balance": money(acct.balance), "createdByUserID": acct.user_id,
        "createdTime": fmt_time(acct.created), "guaranteedStopLossOrderMode": "DISABLED",
        "pl": money(acct.pl), "resettablePL": money(acct.pl), "resettablePLTime": "0",
        "financing": money(acct.financing), "commission": "0.0000",
        "dividendAdjustment": "0.0000",
        "guaranteedExecutionFees": "0.0000", "marginRate": acct.margin_rate_str,
        "openTradeCount": len(open_trades), "openPositionCount": len(open_pos),
        "pendingOrderCount": len(pending), "hedgingEnabled": acct.hedging,
        "unrealizedPL": money(x["upl"]), "NAV": money(x["nav"]),
        "marginUsed": money(x["mu"]), "marginAvailable": money(x["ma"]),
        "positionValue": money(x["pv"]), "marginCloseoutUnrealizedPL": money(x["upl"]),
        "marginCloseoutNAV": money(x["nav"]), "marginCloseoutMarginUsed": money(x["mu"]),
        "marginCloseoutPercent": str((pct / 2).quantize(Decimal("0.00001"))),
        "marginCloseoutPositionValue": money(x["pv"]),
        "withdrawalLimit": money(max(x["ma"], ZERO)),
        "marginCallMarginUsed": money(x["mu"]), "marginCallPercent": str(pct),
        "lastTransactionID": str(acct.last_id),
    }
    if acct.last_fill_t is not None:
        out["lastOrderFillTimestamp"] = fmt_time(acct.last_fill_t)
    return out


def details(v: Venue, acct: VenueAccount) -> dict[str, Any]:
    """An ``Account``: the summary with its open trades, positions and pending orders."""
    out = summary(v, acct)
    out["trades"] = [trade_json(v, acct, tr, summary=True)
                     for tr in sorted(acct.open_trades(), key=lambda tr: -tr.id)]
    out["positions"] = positions(v, acct, only_open=False)
    out["orders"] = [o.w for o in sorted(acct.pending_orders(), key=lambda o: -o.id)]
    return out


def trade_json(v: Venue, acct: VenueAccount, tr: VenueTrade, *, summary: bool = False
               ) -> dict[str, Any]:
    """A ``Trade`` (dependent orders in full) or, with ``summary``, a ``TradeSummary``
    (their IDs)."""
    t = v.now()
    prec = v.market[tr.instrument].spec.display_precision
    w: dict[str, Any] = {
        "id": str(tr.id), "instrument": tr.instrument, "price": f"{tr.price:.{prec}f}",
        "openTime": fmt_time(tr.open_t), "state": tr.state,
        "initialUnits": str(tr.initial), "initialMarginRequired": money(tr.initial_margin),
        "currentUnits": str(tr.units), "realizedPL": money(tr.realized),
        "financing": money(tr.financing), "dividendAdjustment": "0.0000",
    }
    if tr.state == "OPEN":
        w["unrealizedPL"] = money(v.accounting.trade_upl(tr, t))
        w["marginUsed"] = money(qmoney(v.accounting.trade_value(tr, t) * acct.margin_rate))
    else:
        w["unrealizedPL"] = "0.0000"
        w["marginUsed"] = "0.0000"
        w["closeTime"] = fmt_time(tr.close_t or t)
    if tr.closed_units:
        avg = tr.close_value / tr.closed_units
        w["averageClosePrice"] = f"{avg:.{prec}f}"
        w["closingTransactionIDs"] = list(tr.closing)
    if tr.ext:
        w["clientExtensions"] = dict(tr.ext)
    for kind, key in DEPENDENT_KEYS:
        oid = tr.dep.get(kind)
        if oid is not None:
            if summary:
                w[key + "ID"] = str(oid)
            else:
                w[key] = acct.orders[oid].w
    return w


def positions(v: Venue, acct: VenueAccount, *, only_open: bool) -> list[dict[str, Any]]:
    """Every instrument the account has traded (or only those with open units)."""
    names = set(acct.pos_pl) | {tr.instrument for tr in acct.trades.values()}
    out = []
    for name in sorted(names):
        p = position_json(v, acct, name)
        if only_open and p["long"]["units"] == "0" and p["short"]["units"] == "0":
            continue
        out.append(p)
    return out


def position_json(v: Venue, acct: VenueAccount, name: str) -> dict[str, Any]:
    """A ``Position`` with its long and short ``PositionSide``."""
    t = v.now()
    prec = v.market[name].spec.display_precision
    pl = acct.pos_pl.get(name, {"long": ZERO, "short": ZERO})
    fin = acct.pos_fin.get(name, {"long": ZERO, "short": ZERO})
    sides = {}
    total_upl = ZERO
    total_mu = ZERO
    for side in ("long", "short"):
        trs = [tr for tr in acct.open_trades(name) if (tr.units > 0) == (side == "long")]
        units = sum(tr.units for tr in trs)
        upl = sum((v.accounting.trade_upl(tr, t) for tr in trs), ZERO)
        mu = qmoney(sum((v.accounting.trade_value(tr, t) for tr in trs), ZERO)
                    * acct.margin_rate)
        total_upl += upl
        total_mu += mu
        d: dict[str, Any] = {"units": str(units), "pl": money(pl[side]),
                             "resettablePL": money(pl[side]), "financing": money(fin[side]),
                             "dividendAdjustment": "0.0000",
                             "guaranteedExecutionFees": "0.0000",
                             "unrealizedPL": money(upl)}
        if trs:
            avg = sum(tr.price * tr.units for tr in trs) / units
            d["averagePrice"] = f"{avg:.{prec}f}"
            d["tradeIDs"] = [str(tr.id) for tr in trs]
        sides[side] = d
    total_pl = pl["long"] + pl["short"]
    return {"instrument": name, "pl": money(total_pl), "resettablePL": money(total_pl),
            "unrealizedPL": money(total_upl), "marginUsed": money(total_mu),
            "financing": money(fin["long"] + fin["short"]), "commission": "0.0000",
            "dividendAdjustment": "0.0000",
            "guaranteedExecutionFees": "0.0000", "long": sides["long"],
            "short": sides["short"]}


def changes(v: Venue, acct: VenueAccount, since: int) -> dict[str, Any]:
    """``AccountChanges`` and ``AccountChangesState`` since transaction ``since``."""
    txs = acct.txs[since:]
    oids: set[int] = set()
    tids: set[int] = set()
    insts: set[str] = set()
    for tx in txs:
        for k in ("orderID", "replacesOrderID"):
            if k in tx:
                oids.add(int(tx[k]))
        if tx["type"].endswith("_ORDER") and int(tx["id"]) in acct.orders:
            oids.add(int(tx["id"]))
        if "tradeID" in tx:
            tids.add(int(tx["tradeID"]))
        for k in ("tradeOpened", "tradeReduced"):
            if tx.get(k):
                tids.add(int(tx[k]["tradeID"]))
        for c in tx.get("tradesClosed", []):
            tids.add(int(c["tradeID"]))
        if "instrument" in tx:
            insts.add(tx["instrument"])
        for pf in tx.get("positionFinancings", []):  # DAILY_FINANCING changes positions
            insts.add(pf["instrument"])
    orders = [acct.orders[i] for i in sorted(oids) if i in acct.orders]
    trades = [acct.trades[i] for i in sorted(tids) if i in acct.trades]
    changed = {
        "ordersCreated": [o.w for o in orders if o.id > since],
        "ordersCancelled": [o.w for o in orders if o.state == "CANCELLED"],
        "ordersFilled": [o.w for o in orders if o.state == "FILLED"],
        "ordersTriggered": [],
        "tradesOpened": [trade_json(v, acct, t) for t in trades if t.id > since],
        "tradesReduced": [trade_json(v, acct, t) for t in trades
                          if t.id <= since and t.state == "OPEN"],
        "tradesClosed": [trade_json(v, acct, t) for t in trades if t.state == "CLOSED"],
        "positions": [position_json(v, acct, n) for n in sorted(insts)],
        "transactions": txs,
    }
    s = summary(v, acct)
    state: dict[str, Any] = {k: s[k] for k in CHANGING_STATE}
    state["orders"] = [{"id": o.w["id"], **({"trailingStopValue": o.w["trailingStopValue"]}
                                            if "trailingStopValue" in o.w else {})}
                       for o in acct.orders.values() if o.state == "PENDING"]
    open_trades = [tr for tr in acct.trades.values() if tr.state == "OPEN"]
    state["trades"] = [{"id": str(tr.id), "unrealizedPL": trade_json(v, acct, tr)["unrealizedPL"],
                        "marginUsed": trade_json(v, acct, tr)["marginUsed"]}
                       for tr in open_trades]
    state["positions"] = [
        {"instrument": p["instrument"], "netUnrealizedPL": p["unrealizedPL"],
         "longUnrealizedPL": p["long"]["unrealizedPL"],
         "shortUnrealizedPL": p["short"]["unrealizedPL"], "marginUsed": p["marginUsed"]}
        for p in positions(v, acct, only_open=True)]
    return {"changes": changed, "state": state, "lastTransactionID": str(acct.last_id)}
