"""The emulated broker: accounts, orders, trades, positions and transactions.

Everything here runs under one lock and is a pure function of the stored candles, the replay
clock and the requests, so the same data, clock moves and orders give the same transactions
(IDs, times, prices and amounts). Money is in the account currency, USD; P/L of an ``XXX_USD``
pair is in USD already, that of a ``USD_XXX`` pair is divided by the pair's own price, and a
cross ``AAA_BBB`` is converted with ``BBB_USD`` or ``USD_BBB`` (which must then be loaded).
No financing, commission or slippage is charged.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

from sep_research.emulator.market import Series
from sep_research.emulator.wire import (
    WireError,
    decimals_of,
    fmt_time,
    money,
    parse_decimal,
    parse_time,
    qmoney,
)

ZERO = Decimal(0)
MAX_UNITS = 100_000_000

REJECT_MESSAGES = {
    "UNITS_INVALID": "The units specified is invalid",
    "UNITS_PRECISION_EXCEEDED": "The units specified contain more precision than is allowed for "
    "the Order's instrument",
    "UNITS_LIMIT_EXCEEDED": "The units specified exceeds the maximum number of units allowed",
    "TIME_IN_FORCE_INVALID": "The TimeInForce field has not been specified or is invalid",
    "TIME_IN_FORCE_GTD_TIMESTAMP_MISSING": "The TimeInForce is GTD but no GTD timestamp is "
    "provided",
    "TIME_IN_FORCE_GTD_TIMESTAMP_IN_PAST": "The TimeInForce is GTD but the GTD timestamp is in "
    "the past",
    "PRICE_MISSING": "The price has not been specified",
    "PRICE_INVALID": "The price specified is invalid",
    "PRICE_PRECISION_EXCEEDED": "The price specifed contains more precision than is allowed for "
    "the instrument",
    "PRICE_BOUND_INVALID": "The price bound specified is invalid",
    "PRICE_BOUND_PRECISION_EXCEEDED": "The price bound specified contains more precision than is "
    "allowed for the instrument",
    "POSITION_FILL_INVALID": "The OrderFillPositionAction field has not been specified or is "
    "invalid",
    "TRIGGER_CONDITION_INVALID": "The OrderTriggerCondition field has not been specified or is "
    "invalid",
    "CLIENT_ORDER_ID_ALREADY_EXISTS": "The client Order ID specified is already assigned to "
    "another pending Order",
    "CLIENT_TRADE_ID_ALREADY_EXISTS": "The client Trade ID specifed is already assigned to "
    "another open Trade",
    "TAKE_PROFIT_ON_FILL_PRICE_MISSING": "The Take Profit on fill specified does not provide a "
    "price",
    "TAKE_PROFIT_ON_FILL_PRICE_INVALID": "The Take Profit on fill specified contains an invalid "
    "price",
    "TAKE_PROFIT_ON_FILL_PRICE_PRECISION_EXCEEDED": "The Take Profit on fill specified contains a "
    "price with more precision than is allowed by the Order's instrument",
    "STOP_LOSS_ON_FILL_PRICE_MISSING": "The Stop Loss on fill specified does not provide a price "
    "or a distance",
    "STOP_LOSS_ON_FILL_PRICE_INVALID": "The Stop Loss on fill specifies an invalid price",
    "STOP_LOSS_ON_FILL_PRICE_PRECISION_EXCEEDED": "The Stop Loss on fill specifies a price with "
    "more precision than is allowed by the Order's instrument",
    "STOP_LOSS_ON_FILL_DISTANCE_INVALID": "The Stop Loss on fill specifies an invalid distance",
    "TRAILING_STOP_LOSS_ON_FILL_PRICE_DISTANCE_MINIMUM_NOT_MET": "The Trailing Stop Loss on fill "
    "specifies a distance that does not meet the minimum allowed amount",
    "TRAILING_STOP_LOSS_ON_FILL_PRICE_DISTANCE_MAXIMUM_EXCEEDED": "The Trailing Stop Loss on fill "
    "specifies a distance that exceeds the maximum allowed amount",
    "TRADE_ID_UNSPECIFIED": "The Trade ID has not been specified",
    "TRADE_DOESNT_EXIST": "The Trade specified does not exist",
    "TAKE_PROFIT_ORDER_ALREADY_EXISTS": "The Trade specified already has a Take Profit Order",
    "STOP_LOSS_ORDER_ALREADY_EXISTS": "The Trade specified already has a Stop Loss Order",
    "TRAILING_STOP_LOSS_ORDER_ALREADY_EXISTS": "The Trade specified already has a Trailing Stop "
    "Loss Order",
    "CLOSE_TRADE_UNITS_EXCEED_TRADE_SIZE": "The units specified exceed the current size of the "
    "Trade",
    "CLOSEOUT_POSITION_DOESNT_EXIST": "The Position requested to be closed out does not exist",
    "CLOSEOUT_POSITION_UNITS_EXCEED_POSITION_SIZE": "The Position close out units specified "
    "exceed the Position's size",
    "ORDER_DOESNT_EXIST": "The Order specified does not exist",
    "ORDER_NOT_PENDING": "The Order specified is not pending",
}

ENTRY_TYPES = ("MARKET", "LIMIT", "STOP")
DEPENDENT_TYPES = ("TAKE_PROFIT", "STOP_LOSS", "TRAILING_STOP_LOSS")
TRIGGERS = ("DEFAULT", "INVERSE", "BID", "ASK", "MID")
POSITION_FILLS = ("DEFAULT", "REDUCE_FIRST", "REDUCE_ONLY", "OPEN_ONLY")
TIFS = ("GTC", "GTD", "GFD", "FOK", "IOC")
FILL_REASON = {"MARKET": "MARKET_ORDER", "LIMIT": "LIMIT_ORDER", "STOP": "STOP_ORDER",
               "TAKE_PROFIT": "TAKE_PROFIT_ORDER", "STOP_LOSS": "STOP_LOSS_ORDER",
               "TRAILING_STOP_LOSS": "TRAILING_STOP_LOSS_ORDER"}


class ApiError(Exception):
    """An answer other than success: HTTP status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(body.get("errorMessage", ""))
        self.status = status
        self.body = body


def invalid(param: str, status: int = 400) -> ApiError:
    return ApiError(status, {"errorMessage": f"Invalid value specified for '{param}'"})


def client_extensions(value: Any, param: str) -> dict[str, str] | None:
    """``{id, tag, comment}`` with string values, or None when absent; else 400."""
    if value is None:
        return None
    if not isinstance(value, dict) or any(
            k not in ("id", "tag", "comment") or not isinstance(v, str) or len(v) > 128
            for k, v in value.items()):
        raise invalid(param)
    return dict(value)


STANDARD_TX_KEYS = ("id", "time", "userID", "accountID", "batchID", "requestID", "type")


class _Reject(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _dependent_common(item: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Check the time in force, GTD time, trigger and client extensions of a TP/SL/TS."""
    item["_ext"] = client_extensions(spec.get("clientExtensions"), "clientExtensions")
    tif = spec.get("timeInForce", "GTC")
    if tif not in ("GTC", "GTD", "GFD"):
        raise _Reject("TIME_IN_FORCE_INVALID")
    if tif == "GTD":
        if spec.get("gtdTime") is None:
            raise _Reject("TIME_IN_FORCE_GTD_TIMESTAMP_MISSING")
        try:
            item["_gtd"] = parse_time(spec["gtdTime"], "gtdTime")
        except WireError:
            raise _Reject("TIME_IN_FORCE_GTD_TIMESTAMP_MISSING") from None
    if spec.get("triggerCondition", "DEFAULT") not in TRIGGERS:
        raise _Reject("TRIGGER_CONDITION_INVALID")
    return item


class Order:
    def __init__(self, oid: int, kind: str, created: int, wire: dict[str, Any]):
        self.id = oid
        self.kind = kind
        self.created = created
        self.w = wire  # wire form, kept current
        self.instrument: str = ""
        self.units = 0
        self.trade_id: int | None = None
        self.price: Decimal | None = None
        self.distance: Decimal | None = None
        self.trigger = "DEFAULT"
        self.tif = "GTC"
        self.gtd: int | None = None
        self.position_fill = "DEFAULT"
        self.on_fill: dict[str, Any] = {}
        self.trade_ext: dict[str, Any] | None = None
        self.peak: float | None = None  # trailing stop: best price so far
        self.peak_t = created

    @property
    def state(self) -> str:
        return self.w["state"]

    @property
    def client_id(self) -> str | None:
        return (self.w.get("clientExtensions") or {}).get("id")


class Trade:
    def __init__(self, tid: int, instrument: str, units: int, price: Decimal, t: int):
        self.id = tid
        self.instrument = instrument
        self.initial = units
        self.units = units
        self.price = price
        self.open_t = t
        self.realized = ZERO
        self.state = "OPEN"
        self.close_t: int | None = None
        self.closing: list[str] = []
        self.close_value = ZERO  # sum units*price of closings, for averageClosePrice
        self.closed_units = 0
        self.ext: dict[str, Any] | None = None
        self.dep: dict[str, int] = {}  # kind -> order id
        self.initial_margin = ZERO

    @property
    def client_id(self) -> str | None:
        return (self.ext or {}).get("id")


class Account:
    def __init__(self, account_id: str, *, balance: Decimal, hedging: bool, margin_rate: str,
                 created: int, alias: str):
        self.id = account_id
        parts = account_id.split("-")
        self.user_id = int(parts[2]) if len(parts) == 4 and parts[2].isdigit() else 1
        self.alias = alias
        self.hedging = hedging
        self.margin_rate = Decimal(margin_rate)
        self.margin_rate_str = margin_rate
        self.balance = ZERO
        self.initial_balance = balance
        self.pl = ZERO
        self.created = created
        self.txs: list[dict[str, Any]] = []
        self.orders: dict[int, Order] = {}
        self.trades: dict[int, Trade] = {}
        self.pos_pl: dict[str, dict[str, Decimal]] = {}
        self.cond = threading.Condition()

    @property
    def last_id(self) -> int:
        return len(self.txs)


def _dec_price(x: float, prec: int) -> Decimal:
    return Decimal(f"{x:.{prec}f}")


class Broker:
    """All accounts of one emulator and the market they trade on."""

    def __init__(self, market: dict[str, Series], clock: Any, *, accounts: list[str],
                 balance: float, hedging: bool, margin_rate: str, created: int):
        self.market = market
        self.clock = clock
        self.lock = threading.RLock()
        self.synced = created
        self._req = 0
        self._batch: int | None = None
        self._tx_time: int | None = None
        self._conv = {name: self._conversion_route(name) for name in market}
        self.accounts: dict[str, Account] = {}
        for n, aid in enumerate(accounts):
            acct = Account(aid, balance=Decimal(str(balance)), hedging=hedging,
                           margin_rate=margin_rate, created=created, alias=f"emulator-{n + 1}")
            self.accounts[aid] = acct
            self._open_account(acct)

    # -- plumbing -------------------------------------------------------------------------
    def _conversion_route(self, name: str) -> tuple[str, str | None]:
        base, quote = name.split("_")
        if quote == "USD":
            return ("one", None)
        if base == "USD":
            return ("inverse", name)
        if f"{quote}_USD" in self.market:
            return ("mul", f"{quote}_USD")
        if f"USD_{quote}" in self.market:
            return ("inverse", f"USD_{quote}")
        raise ValueError(
            f"instrument {name}: P/L in {quote} cannot be converted to USD; also load "
            f"{quote}_USD or USD_{quote}"
        )

    def quote_to_usd(self, name: str, t: int) -> Decimal:
        how, other = self._conv[name]
        if how == "one":
            return Decimal(1)
        assert other is not None
        mid = self.market[other].value_at("M", t)
        if not mid:
            return Decimal(1)
        m = _dec_price(mid, self.market[other].spec.display_precision)
        return Decimal(1) / m if how == "inverse" else m

    def now(self) -> int:
        return self._tx_time if self._tx_time is not None else self.clock.now_ns()

    def begin(self) -> None:
        """Start a request: bring the market up to the clock, new request ID."""
        self.sync(self.clock.now_ns())
        self._req += 1

    def _request_id(self) -> str:
        return str(60_000_000_000_000_000 + self._req)

    def _tx(self, acct: Account, type_: str, **fields: Any) -> dict[str, Any]:
        tid = acct.last_id + 1
        if self._batch is None:
            self._batch = tid
        tx = {"id": str(tid), "time": fmt_time(self.now()), "userID": acct.user_id,
              "accountID": acct.id, "batchID": str(self._batch),
              "requestID": self._request_id(), "type": type_}
        tx.update({k: v for k, v in fields.items() if v is not None})
        acct.txs.append(tx)
        return tx

    def _end_batch(self, acct: Account) -> None:
        self._batch = None
        with acct.cond:
            acct.cond.notify_all()

    def _price(self, name: str, comp: str, t: int) -> Decimal:
        s = self.market[name]
        v = s.value_at(comp, t)
        return _dec_price(v if v is not None else 0.0, s.spec.display_precision)

    def price_object(self, name: str, t: int) -> dict[str, Any]:
        s = self.market[name]
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

    # -- account views --------------------------------------------------------------------
    def trade_upl(self, tr: Trade, t: int) -> Decimal:
        comp = "B" if tr.units > 0 else "A"
        px = self._price(tr.instrument, comp, t)
        return qmoney(tr.units * (px - tr.price) * self.quote_to_usd(tr.instrument, t))

    def trade_value(self, tr: Trade, t: int) -> Decimal:
        comp = "B" if tr.units > 0 else "A"
        px = self._price(tr.instrument, comp, t)
        return qmoney(abs(tr.units) * px * self.quote_to_usd(tr.instrument, t))

    def totals(self, acct: Account, t: int) -> dict[str, Decimal]:
        upl = ZERO
        pv = ZERO
        for tr in acct.trades.values():
            if tr.state == "OPEN":
                upl += self.trade_upl(tr, t)
                pv += self.trade_value(tr, t)
        nav = acct.balance + upl
        mu = qmoney(pv * acct.margin_rate)
        return {"upl": upl, "pv": pv, "nav": nav, "mu": mu, "ma": nav - mu}

    def summary(self, acct: Account) -> dict[str, Any]:
        t = self.now()
        x = self.totals(acct, t)
        open_trades = [tr for tr in acct.trades.values() if tr.state == "OPEN"]
        open_pos = {tr.instrument for tr in open_trades}
        pending = [o for o in acct.orders.values() if o.state == "PENDING"]
        pct = (x["mu"] / x["nav"]).quantize(Decimal("0.00001")) if x["nav"] > 0 else ZERO
        return {
            "id": acct.id, "alias": acct.alias, "currency": "USD",
            "balance": money(acct.balance), "createdByUserID": acct.user_id,
            "createdTime": fmt_time(acct.created), "guaranteedStopLossOrderMode": "DISABLED",
            "pl": money(acct.pl), "resettablePL": money(acct.pl), "resettablePLTime": "0",
            "financing": "0.0000", "commission": "0.0000",
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

    def details(self, acct: Account) -> dict[str, Any]:
        out = self.summary(acct)
        out["trades"] = [self.trade_json(tr, summary=True) for tr in self._trades(acct, "OPEN")]
        out["positions"] = self.positions(acct, only_open=False)
        out["orders"] = [o.w for o in self._orders(acct, "PENDING")]
        return out

    def _trades(self, acct: Account, state: str) -> list[Trade]:
        out = [tr for tr in acct.trades.values() if state == "ALL" or tr.state == state]
        return sorted(out, key=lambda tr: -tr.id)

    def _orders(self, acct: Account, state: str) -> list[Order]:
        out = [o for o in acct.orders.values() if state == "ALL" or o.state == state]
        return sorted(out, key=lambda o: -o.id)

    def trade_json(self, tr: Trade, *, summary: bool = False) -> dict[str, Any]:
        t = self.now()
        prec = self.market[tr.instrument].spec.display_precision
        w: dict[str, Any] = {
            "id": str(tr.id), "instrument": tr.instrument, "price": f"{tr.price:.{prec}f}",
            "openTime": fmt_time(tr.open_t), "state": tr.state,
            "initialUnits": str(tr.initial), "initialMarginRequired": money(tr.initial_margin),
            "currentUnits": str(tr.units), "realizedPL": money(tr.realized),
            "financing": "0.0000", "dividendAdjustment": "0.0000",
        }
        if tr.state == "OPEN":
            w["unrealizedPL"] = money(self.trade_upl(tr, t))
            w["marginUsed"] = money(qmoney(self.trade_value(tr, t)
                                           * self.accounts_of(tr).margin_rate))
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
        acct = self.accounts_of(tr)
        for kind, key in (("TAKE_PROFIT", "takeProfitOrder"), ("STOP_LOSS", "stopLossOrder"),
                          ("TRAILING_STOP_LOSS", "trailingStopLossOrder")):
            oid = tr.dep.get(kind)
            if oid is not None:
                o = acct.orders[oid]
                w[key + "ID" if summary else key] = str(oid) if summary else o.w
        return w

    def accounts_of(self, tr: Trade) -> Account:
        for acct in self.accounts.values():
            if acct.trades.get(tr.id) is tr:
                return acct
        raise KeyError(tr.id)

    def positions(self, acct: Account, *, only_open: bool) -> list[dict[str, Any]]:
        names = set(acct.pos_pl) | {tr.instrument for tr in acct.trades.values()}
        out = []
        for name in sorted(names):
            p = self.position_json(acct, name)
            if only_open and p["long"]["units"] == "0" and p["short"]["units"] == "0":
                continue
            out.append(p)
        return out

    def position_json(self, acct: Account, name: str) -> dict[str, Any]:
        t = self.now()
        prec = self.market[name].spec.display_precision
        pl = acct.pos_pl.get(name, {"long": ZERO, "short": ZERO})
        sides = {}
        total_upl = ZERO
        total_mu = ZERO
        for side in ("long", "short"):
            trs = [tr for tr in acct.trades.values() if tr.state == "OPEN"
                   and tr.instrument == name and (tr.units > 0) == (side == "long")]
            trs.sort(key=lambda tr: tr.id)
            units = sum(tr.units for tr in trs)
            upl = sum((self.trade_upl(tr, t) for tr in trs), ZERO)
            mu = qmoney(sum((self.trade_value(tr, t) for tr in trs), ZERO) * acct.margin_rate)
            total_upl += upl
            total_mu += mu
            d: dict[str, Any] = {"units": str(units), "pl": money(pl[side]),
                                 "resettablePL": money(pl[side]), "financing": "0.0000",
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
                "financing": "0.0000", "commission": "0.0000", "dividendAdjustment": "0.0000",
                "guaranteedExecutionFees": "0.0000", "long": sides["long"],
                "short": sides["short"]}

    # -- account creation -----------------------------------------------------------------
    def _open_account(self, acct: Account) -> None:
        self._tx_time = acct.created
        try:
            self._tx(acct, "CREATE", divisionID=1, siteID=101, accountUserID=acct.user_id,
                     accountNumber=int(acct.id.split("-")[-1]) if acct.id[-1].isdigit() else 1,
                     homeCurrency="USD")
            self._tx(acct, "CLIENT_CONFIGURE", alias=acct.alias,
                     marginRate=acct.margin_rate_str)
            acct.balance = qmoney(acct.initial_balance)
            self._tx(acct, "TRANSFER_FUNDS", amount=money(acct.balance),
                     fundingReason="CLIENT_FUNDING", accountBalance=money(acct.balance))
        finally:
            self._tx_time = None
            self._end_batch(acct)

    # -- the market moves -----------------------------------------------------------------
    def sync(self, now: int) -> None:
        """Trigger pending orders along the price path up to ``now``, in time order."""
        with self.lock:
            if now <= self.synced:
                return
            cur = self.synced
            while True:
                best: tuple[int, Account, Order, Any] | None = None
                for acct in self.accounts.values():
                    for o in sorted((o for o in acct.orders.values() if o.state == "PENDING"),
                                    key=lambda o: o.id):
                        ev = self._next_event(acct, o, max(cur, o.created), now)
                        if ev is not None and (best is None or ev[0] < best[0]):
                            best = (ev[0], acct, o, ev[1])
                if best is None:
                    break
                t, acct, o, what = best
                cur = t
                self._tx_time = t
                self._req += 1
                try:
                    self._fire(acct, o, what)
                finally:
                    self._tx_time = None
                    self._end_batch(acct)
            self.synced = now

    def _order_side(self, acct: Account, o: Order) -> tuple[str, int, str]:
        """(instrument, signed units to trade, component the trigger watches)."""
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

    def _next_event(self, acct: Account, o: Order, t0: int, t1: int) -> tuple[int, Any] | None:
        if o.gtd is not None and o.gtd <= t1:
            expire = (max(o.gtd, t0), "expire")
        else:
            expire = None
        name, units, comp = self._order_side(acct, o)
        s = self.market[name]
        prec = s.spec.display_precision
        buy = units > 0
        hit: tuple[int, Any] | None = None
        if o.kind == "TRAILING_STOP_LOSS":
            hit = self._trailing(o, s, comp, buy, t0, t1)
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

    def _trailing(self, o: Order, s: Series, comp: str, buy: bool, t0: int, t1: int):
        """Trailing stop: the stop follows the best price by ``distance``."""
        assert o.distance is not None
        dist = float(o.distance)
        prec = s.spec.display_precision
        sign = -1.0 if buy else 1.0  # a long trade's stop is a sell: trails below the bid
        start = max(t0, o.peak_t)
        for ta, va, tb, vb in s.segments(comp, start, t1):
            peak = o.peak if o.peak is not None else va
            # in "long" orientation: peak is the max for sells, min for buys
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

    def _fire(self, acct: Account, o: Order, what: Any) -> None:
        if what == "expire":
            self._cancel(acct, o, "TIME_IN_FORCE_EXPIRED")
            return
        _, level = what
        name, units, comp = self._order_side(acct, o)
        s = self.market[name]
        t = self.now()
        fill_comp = "A" if units > 0 else "B"
        if comp == fill_comp:
            px = _dec_price(level, s.spec.display_precision)
        else:
            px = self._price(name, fill_comp, t)
        if o.kind in DEPENDENT_TYPES:
            tr = acct.trades[o.trade_id]  # type: ignore[index]
            self._execute(acct, o, name, -tr.units, px, target=tr)
        else:
            self._execute(acct, o, name, units, px)

    # -- execution ------------------------------------------------------------------------
    def _cancel(self, acct: Account, o: Order, reason: str, **extra: Any) -> dict[str, Any]:
        tx = self._tx(acct, "ORDER_CANCEL", orderID=str(o.id), clientOrderID=o.client_id,
                      reason=reason, **extra)
        o.w["state"] = "CANCELLED"
        o.w["cancellingTransactionID"] = tx["id"]
        o.w["cancelledTime"] = tx["time"]
        if o.kind in DEPENDENT_TYPES and o.trade_id is not None:
            tr = acct.trades.get(o.trade_id)
            if tr is not None and tr.dep.get(o.kind) == o.id:
                del tr.dep[o.kind]
        return tx

    def _execute(self, acct: Account, o: Order, name: str, units: int, px: Decimal,
                 *, target: Trade | None = None, reason: str | None = None
                 ) -> dict[str, Any]:
        """Fill ``units`` at ``px`` for order ``o``; returns the fill or cancel transaction."""
        t = self.now()
        s = self.market[name]
        prec = s.spec.display_precision
        conv = self.quote_to_usd(name, t)
        # which trades close or shrink
        closes: list[tuple[Trade, int]] = []
        remaining = units
        if target is not None:
            closes.append((target, units))
            remaining = 0
        else:
            reduce = o.position_fill in ("REDUCE_FIRST", "REDUCE_ONLY") or (
                o.position_fill == "DEFAULT" and not acct.hedging)
            if reduce:
                opp = sorted((tr for tr in acct.trades.values() if tr.state == "OPEN"
                              and tr.instrument == name and (tr.units > 0) != (units > 0)),
                             key=lambda tr: tr.id)
                for tr in opp:
                    if remaining == 0:
                        break
                    take = -tr.units if abs(tr.units) <= abs(remaining) else remaining
                    closes.append((tr, take))
                    remaining -= take
            if o.position_fill == "REDUCE_ONLY":
                remaining = 0
        if not closes and remaining == 0:
            return self._cancel(acct, o, "REDUCE_ONLY" if o.position_fill == "REDUCE_ONLY"
                                else "POSITION_CLOSEOUT_FAILED")
        # margin for the opening part
        initial_margin = ZERO
        if remaining:
            x = self.totals(acct, t)
            freed = sum((qmoney(self.trade_value(tr, t) * Decimal(abs(n)) / abs(tr.units)
                                * acct.margin_rate) for tr, n in closes), ZERO)
            initial_margin = qmoney(abs(remaining) * px * conv * acct.margin_rate)
            if initial_margin > x["ma"] + freed:
                return self._cancel(acct, o, "INSUFFICIENT_MARGIN")
            tp = o.on_fill.get("takeProfitOnFill")
            sl = o.on_fill.get("stopLossOnFill")
            if tp is not None and ((tp["_p"] <= px) if remaining > 0 else (tp["_p"] >= px)):
                return self._cancel(acct, o, "TAKE_PROFIT_ON_FILL_LOSS")
            if sl is not None and sl.get("_p") is not None and (
                    (sl["_p"] >= px) if remaining > 0 else (sl["_p"] <= px)):
                return self._cancel(acct, o, "STOP_LOSS_ON_FILL_LOSS")
        # the fill
        total_pl = ZERO
        quote_pl = ZERO
        closed_w, reduced_w = [], None
        fill_id = str(acct.last_id + 1)
        for tr, n in closes:
            pl = qmoney(-n * (px - tr.price) * conv)
            total_pl += pl
            quote_pl += -n * (px - tr.price)
            tr.units += n
            tr.realized += pl
            tr.closing.append(fill_id)
            tr.close_value += abs(n) * px
            tr.closed_units += abs(n)
            side = "long" if tr.initial > 0 else "short"
            acct.pos_pl.setdefault(name, {"long": ZERO, "short": ZERO})[side] += pl
            item = {"tradeID": str(tr.id), "units": str(n), "price": f"{px:.{prec}f}",
                    "realizedPL": money(pl), "financing": "0.0000",
                    "guaranteedExecutionFee": "0.0000", "halfSpreadCost": "0.0000"}
            if tr.client_id:
                item["clientTradeID"] = tr.client_id
            if tr.units == 0:
                tr.state = "CLOSED"
                tr.close_t = t
                closed_w.append(item)
            else:
                reduced_w = item
        acct.balance += total_pl
        acct.pl += total_pl
        opened = None
        if remaining:
            opened = {"tradeID": fill_id, "units": str(remaining), "price": f"{px:.{prec}f}",
                      "guaranteedExecutionFee": "0.0000", "halfSpreadCost": "0.0000",
                      "initialMarginRequired": money(initial_margin)}
            if o.trade_ext:
                opened["clientExtensions"] = dict(o.trade_ext)
        bid = self._price(name, "B", t)
        ask = self._price(name, "A", t)
        fill_reason = reason or FILL_REASON[o.kind]
        tx = self._tx(
            acct, "ORDER_FILL", orderID=str(o.id), clientOrderID=o.client_id, instrument=name,
            units=str(units), requestedUnits=str(units), price=f"{px:.{prec}f}",
            fullVWAP=f"{px:.{prec}f}",
            fullPrice={"type": "PRICE", "timestamp": fmt_time(t),
                       "bids": [{"price": f"{bid:.{prec}f}", "liquidity": "10000000"}],
                       "asks": [{"price": f"{ask:.{prec}f}", "liquidity": "10000000"}],
                       "closeoutBid": f"{bid:.{prec}f}", "closeoutAsk": f"{ask:.{prec}f}"},
            reason=fill_reason, pl=money(total_pl), quotePL=money(quote_pl),
            financing="0.0000", baseFinancing="0.0000", commission="0.0000",
            guaranteedExecutionFee="0.0000", quoteGuaranteedExecutionFee="0.0000",
            halfSpreadCost="0.0000", accountBalance=money(acct.balance),
            gainQuoteHomeConversionFactor=str(conv.quantize(Decimal("0.000000001"))),
            lossQuoteHomeConversionFactor=str(conv.quantize(Decimal("0.000000001"))),
            tradeOpened=opened, tradesClosed=closed_w or None, tradeReduced=reduced_w,
        )
        assert tx["id"] == fill_id
        o.w["state"] = "FILLED"
        o.w["fillingTransactionID"] = tx["id"]
        o.w["filledTime"] = tx["time"]
        if opened:
            o.w["tradeOpenedID"] = fill_id
        if reduced_w:
            o.w["tradeReducedID"] = reduced_w["tradeID"]
        if closed_w:
            o.w["tradeClosedIDs"] = [c["tradeID"] for c in closed_w]
        # dependents of closed trades go
        for tr, _ in closes:
            if tr.state == "CLOSED":
                for kind in list(tr.dep):
                    dep = acct.orders[tr.dep[kind]]
                    if dep is not o and dep.state == "PENDING":
                        self._cancel(acct, dep, "LINKED_TRADE_CLOSED", closedTradeID=str(tr.id),
                                     tradeCloseTransactionID=fill_id)
                tr.dep.clear()
        if opened:
            tr = Trade(int(fill_id), name, remaining, px, t)
            tr.initial_margin = initial_margin
            tr.ext = dict(o.trade_ext) if o.trade_ext else None
            acct.trades[tr.id] = tr
            for key, kind in (("takeProfitOnFill", "TAKE_PROFIT"),
                              ("stopLossOnFill", "STOP_LOSS"),
                              ("trailingStopLossOnFill", "TRAILING_STOP_LOSS")):
                spec = o.on_fill.get(key)
                if spec is not None:
                    self._create_dependent(acct, tr, kind, spec, "ON_FILL")
        return tx

    def _create_dependent(self, acct: Account, tr: Trade, kind: str, spec: dict[str, Any],
                          reason: str, replaces: Order | None = None) -> dict[str, Any]:
        t = self.now()
        s = self.market[tr.instrument]
        prec = s.spec.display_precision
        fields: dict[str, Any] = {"tradeID": str(tr.id), "clientTradeID": tr.client_id,
                                  "timeInForce": spec.get("timeInForce", "GTC"),
                                  "triggerCondition": spec.get("triggerCondition", "DEFAULT")}
        price: Decimal | None = spec.get("_p")
        dist: Decimal | None = spec.get("_d")
        if kind == "STOP_LOSS" and price is None and dist is not None:
            ref = self._price(tr.instrument, "A" if tr.units > 0 else "B", t)
            price = ref - dist if tr.units > 0 else ref + dist
            fields["distance"] = f"{dist:.{prec}f}"
        if kind == "TRAILING_STOP_LOSS":
            fields["distance"] = f"{dist:.{prec}f}"
        else:
            fields["price"] = f"{price:.{prec}f}"
        if spec.get("_gtd") is not None:
            fields["gtdTime"] = fmt_time(spec["_gtd"])
        if spec.get("_ext"):
            fields["clientExtensions"] = dict(spec["_ext"])
        if replaces is not None:
            fields["replacesOrderID"] = str(replaces.id)
        tx = self._tx(acct, f"{kind}_ORDER", reason=reason, **fields)
        w = {"id": tx["id"], "createTime": tx["time"], "type": kind, "state": "PENDING",
             **{k: v for k, v in fields.items() if v is not None}}
        o = Order(int(tx["id"]), kind, t, w)
        o.trade_id = tr.id
        o.price = price
        o.distance = dist
        o.trigger = fields["triggerCondition"]
        o.tif = fields["timeInForce"]
        if spec.get("_gtd") is not None:
            o.gtd = spec["_gtd"]
        if kind == "TRAILING_STOP_LOSS":
            comp = "B" if tr.units > 0 else "A"
            ref = float(self._price(tr.instrument, comp, t))
            o.peak, o.peak_t = ref, t
            w["trailingStopValue"] = f"{ref - float(dist) if tr.units > 0 else ref + float(dist):.{prec}f}"
        acct.orders[o.id] = o
        tr.dep[kind] = o.id
        if replaces is not None:
            replaces.w["replacedByOrderID"] = tx["id"]
        return tx

    # -- order requests -------------------------------------------------------------------
    def _parse_price(self, value: Any, prec: int, missing: str, bad: str, precision: str
                     ) -> Decimal:
        if value is None:
            raise _Reject(missing)
        try:
            d = parse_decimal(value, "price")
        except WireError:
            raise _Reject(bad) from None
        if d <= 0:
            raise _Reject(bad)
        if decimals_of(d) > prec:
            raise _Reject(precision)
        return d

    def _parse_on_fill(self, spec: dict[str, Any], prec: int, min_dist: Decimal) -> dict:
        out: dict[str, Any] = {}
        tp = spec.get("takeProfitOnFill")
        if tp is not None:
            if not isinstance(tp, dict):
                raise _Reject("TAKE_PROFIT_ON_FILL_PRICE_MISSING")
            p = self._parse_price(tp.get("price"), prec, "TAKE_PROFIT_ON_FILL_PRICE_MISSING",
                                  "TAKE_PROFIT_ON_FILL_PRICE_INVALID",
                                  "TAKE_PROFIT_ON_FILL_PRICE_PRECISION_EXCEEDED")
            out["takeProfitOnFill"] = _dependent_common({**tp, "_p": p}, tp)
        sl = spec.get("stopLossOnFill")
        if sl is not None:
            if not isinstance(sl, dict) or (sl.get("price") is None
                                            and sl.get("distance") is None):
                raise _Reject("STOP_LOSS_ON_FILL_PRICE_MISSING")
            item = dict(sl)
            if sl.get("price") is not None:
                item["_p"] = self._parse_price(sl["price"], prec,
                                               "STOP_LOSS_ON_FILL_PRICE_MISSING",
                                               "STOP_LOSS_ON_FILL_PRICE_INVALID",
                                               "STOP_LOSS_ON_FILL_PRICE_PRECISION_EXCEEDED")
            else:
                item["_d"] = self._parse_price(sl["distance"], prec,
                                               "STOP_LOSS_ON_FILL_DISTANCE_INVALID",
                                               "STOP_LOSS_ON_FILL_DISTANCE_INVALID",
                                               "STOP_LOSS_ON_FILL_DISTANCE_INVALID")
            out["stopLossOnFill"] = _dependent_common(item, sl)
        ts = spec.get("trailingStopLossOnFill")
        if ts is not None:
            reason = "TRAILING_STOP_LOSS_ON_FILL_PRICE_DISTANCE_MINIMUM_NOT_MET"
            d = self._parse_price(ts.get("distance") if isinstance(ts, dict) else None, prec,
                                  reason, reason, reason)
            if d < min_dist:
                raise _Reject(reason)
            if d > Decimal(1):
                raise _Reject("TRAILING_STOP_LOSS_ON_FILL_PRICE_DISTANCE_MAXIMUM_EXCEEDED")
            out["trailingStopLossOnFill"] = _dependent_common({**ts, "_d": d}, ts)
        return out

    def _reject(self, acct: Account, typ: str, spec: dict[str, Any], reason: str,
                key: str = "orderRejectTransaction") -> ApiError:
        fields = {k: v for k, v in spec.items() if k not in STANDARD_TX_KEYS}
        tx = self._tx(acct, f"{typ}_ORDER_REJECT" if typ in ENTRY_TYPES + DEPENDENT_TYPES
                      else "MARKET_ORDER_REJECT", rejectReason=reason,
                      **fields)
        self._end_batch(acct)
        return ApiError(400, {key: tx, "relatedTransactionIDs": [tx["id"]],
                              "lastTransactionID": tx["id"], "errorCode": reason,
                              "errorMessage": REJECT_MESSAGES.get(reason, reason)})

    def _client_ids_in_use(self, acct: Account) -> tuple[set[str], set[str]]:
        orders = {o.client_id for o in acct.orders.values()
                  if o.state == "PENDING" and o.client_id}
        trades = {tr.client_id for tr in acct.trades.values()
                  if tr.state == "OPEN" and tr.client_id}
        return orders, trades  # type: ignore[return-value]

    def create_order(self, acct: Account, body: Any, *, replacing: Order | None = None
                     ) -> dict[str, Any]:
        """POST orders (and the create half of a replace)."""
        if not isinstance(body, dict) or not isinstance(body.get("order"), dict):
            raise invalid("order")
        spec = body["order"]
        typ = spec.get("type")
        if typ not in ENTRY_TYPES + DEPENDENT_TYPES:
            raise invalid("order.type")
        if typ in DEPENDENT_TYPES:
            return self._create_dependent_request(acct, spec, typ, replacing)
        name = spec.get("instrument")
        if not isinstance(name, str) or name not in self.market:
            raise invalid("order.instrument")
        if "units" not in spec:
            raise invalid("order.units")
        try:
            units_d = parse_decimal(spec["units"], "order.units")
        except WireError:
            raise invalid("order.units") from None
        s = self.market[name]
        prec = s.spec.display_precision
        t = self.now()
        ext = client_extensions(spec.get("clientExtensions"), "order.clientExtensions")
        text = client_extensions(spec.get("tradeClientExtensions"),
                                 "order.tradeClientExtensions")
        try:
            if units_d == 0:
                raise _Reject("UNITS_INVALID")
            if units_d != units_d.to_integral_value():
                raise _Reject("UNITS_PRECISION_EXCEEDED")
            if abs(units_d) > MAX_UNITS:
                raise _Reject("UNITS_LIMIT_EXCEEDED")
            units = int(units_d)
            tif = spec.get("timeInForce", "FOK" if typ == "MARKET" else "GTC")
            if tif not in TIFS or (typ == "MARKET" and tif not in ("FOK", "IOC")):
                raise _Reject("TIME_IN_FORCE_INVALID")
            gtd = None
            if tif == "GTD":
                if spec.get("gtdTime") is None:
                    raise _Reject("TIME_IN_FORCE_GTD_TIMESTAMP_MISSING")
                try:
                    gtd = parse_time(spec["gtdTime"], "order.gtdTime")
                except WireError:
                    raise invalid("order.gtdTime") from None
                if gtd <= t:
                    raise _Reject("TIME_IN_FORCE_GTD_TIMESTAMP_IN_PAST")
            pf = spec.get("positionFill", "DEFAULT")
            if pf not in POSITION_FILLS:
                raise _Reject("POSITION_FILL_INVALID")
            trig = spec.get("triggerCondition", "DEFAULT")
            if trig not in TRIGGERS:
                raise _Reject("TRIGGER_CONDITION_INVALID")
            price = None
            if typ != "MARKET":
                price = self._parse_price(spec.get("price"), prec, "PRICE_MISSING",
                                          "PRICE_INVALID", "PRICE_PRECISION_EXCEEDED")
            bound = None
            if spec.get("priceBound") is not None:
                bound = self._parse_price(spec["priceBound"], prec, "PRICE_BOUND_INVALID",
                                          "PRICE_BOUND_INVALID",
                                          "PRICE_BOUND_PRECISION_EXCEEDED")
            min_dist = Decimal(s.spec.describe()["minimumTrailingStopDistance"])
            on_fill = self._parse_on_fill(spec, prec, min_dist)
            used_o, used_t = self._client_ids_in_use(acct)
            if isinstance(ext, dict) and ext.get("id") in used_o:
                raise _Reject("CLIENT_ORDER_ID_ALREADY_EXISTS")
            if isinstance(text, dict) and text.get("id") in used_t:
                raise _Reject("CLIENT_TRADE_ID_ALREADY_EXISTS")
        except _Reject as rej:
            raise self._reject(acct, typ, spec, rej.reason) from None

        fields: dict[str, Any] = {"instrument": name, "units": str(units)}
        if price is not None:
            fields["price"] = f"{price:.{prec}f}"
        if bound is not None:
            fields["priceBound"] = f"{bound:.{prec}f}"
        fields["timeInForce"] = tif
        if gtd is not None:
            fields["gtdTime"] = fmt_time(gtd)
        fields["positionFill"] = pf
        if typ != "MARKET":
            fields["triggerCondition"] = trig
            fields["partialFill"] = "DEFAULT"
        for key in ("takeProfitOnFill", "stopLossOnFill", "trailingStopLossOnFill"):
            if key in on_fill:
                fields[key] = {k: v for k, v in on_fill[key].items() if not k.startswith("_")}
        if isinstance(ext, dict):
            fields["clientExtensions"] = dict(ext)
        if isinstance(text, dict):
            fields["tradeClientExtensions"] = dict(text)
        out: dict[str, Any] = {}
        if replacing is not None:
            out["orderCancelTransaction"] = self._cancel(acct, replacing,
                                                         "CLIENT_REQUEST_REPLACED")
            fields["replacesOrderID"] = str(replacing.id)
            reason = "REPLACEMENT"
        else:
            reason = "CLIENT_ORDER"
        create = self._tx(acct, f"{typ}_ORDER", reason=reason, **fields)
        if replacing is not None:
            replacing.w["replacedByOrderID"] = create["id"]
            out["orderCancelTransaction"]["replacedByOrderID"] = create["id"]
        out["orderCreateTransaction"] = create
        w = {"id": create["id"], "createTime": create["time"], "type": typ, "state": "PENDING",
             **fields}
        o = Order(int(create["id"]), typ, t, w)
        o.instrument, o.units, o.price, o.trigger, o.tif = name, units, price, trig, tif
        o.gtd, o.position_fill, o.on_fill = gtd, pf, on_fill
        o.trade_ext = dict(text) if isinstance(text, dict) else None
        acct.orders[o.id] = o
        cancel_key = "replacingOrderCancelTransaction" if replacing else "orderCancelTransaction"
        if typ == "MARKET":
            if s.halted(t):
                out[cancel_key] = self._cancel(acct, o, "MARKET_HALTED")
            else:
                px = self._price(name, "A" if units > 0 else "B", t)
                if bound is not None and ((px > bound) if units > 0 else (px < bound)):
                    out[cancel_key] = self._cancel(acct, o, "BOUNDS_VIOLATION")
                else:
                    res = self._execute(acct, o, name, units, px)
                    out["orderFillTransaction" if res["type"] == "ORDER_FILL"
                        else cancel_key] = res
        else:
            ev = None if s.halted(t) else self._next_event(acct, o, t, t)
            if ev is not None and ev[1] != "expire":
                res = self._execute(acct, o, name, units,
                                    self._price(name, "A" if units > 0 else "B", t))
                out["orderFillTransaction" if res["type"] == "ORDER_FILL" else cancel_key] = res
            elif tif in ("FOK", "IOC"):
                out[cancel_key] = self._cancel(acct, o, "TIME_IN_FORCE_EXPIRED")
        return self._finish(acct, out)

    def _finish(self, acct: Account, out: dict[str, Any]) -> dict[str, Any]:
        first = int(self._batch) if self._batch is not None else acct.last_id + 1
        out["relatedTransactionIDs"] = [str(i) for i in range(first, acct.last_id + 1)]
        out["lastTransactionID"] = str(acct.last_id)
        self._end_batch(acct)
        return out

    def _create_dependent_request(self, acct: Account, spec: dict[str, Any], typ: str,
                                  replacing: Order | None) -> dict[str, Any]:
        tid = spec.get("tradeID")
        try:
            if tid is None and not spec.get("clientTradeID"):
                raise _Reject("TRADE_ID_UNSPECIFIED")
            tr = self.find_trade(acct, str(tid) if tid is not None
                                 else "@" + str(spec["clientTradeID"]), strict=False)
            if tr is None or tr.state != "OPEN":
                raise _Reject("TRADE_DOESNT_EXIST")
            if typ in tr.dep and (replacing is None or tr.dep[typ] != replacing.id):
                raise _Reject(f"{typ}_ORDER_ALREADY_EXISTS")
            item = self._dependent_spec(tr, typ, spec)
        except _Reject as rej:
            raise self._reject(acct, typ, spec, rej.reason) from None
        out: dict[str, Any] = {}
        if replacing is not None:
            out["orderCancelTransaction"] = self._cancel(acct, replacing,
                                                         "CLIENT_REQUEST_REPLACED")
        out["orderCreateTransaction"] = self._create_dependent(
            acct, tr, typ, item, "REPLACEMENT" if replacing else "CLIENT_ORDER", replacing)
        if replacing is not None:
            out["orderCancelTransaction"]["replacedByOrderID"] = out["orderCreateTransaction"]["id"]
        return self._finish(acct, out)

    def _dependent_spec(self, tr: Trade, typ: str, spec: dict[str, Any]) -> dict[str, Any]:
        prec = self.market[tr.instrument].spec.display_precision
        item = dict(spec)
        if typ == "TRAILING_STOP_LOSS":
            reason = "TRAILING_STOP_LOSS_ON_FILL_PRICE_DISTANCE_MINIMUM_NOT_MET"
            d = self._parse_price(spec.get("distance"), prec, reason, reason, reason)
            min_dist = Decimal(self.market[tr.instrument].spec.describe()
                               ["minimumTrailingStopDistance"])
            if d < min_dist:
                raise _Reject(reason)
            item["_d"] = d
        elif typ == "STOP_LOSS" and spec.get("price") is None and spec.get("distance") is not None:
            item["_d"] = self._parse_price(spec["distance"], prec, "PRICE_MISSING",
                                           "PRICE_INVALID", "PRICE_PRECISION_EXCEEDED")
        else:
            item["_p"] = self._parse_price(spec.get("price"), prec, "PRICE_MISSING",
                                           "PRICE_INVALID", "PRICE_PRECISION_EXCEEDED")
        return _dependent_common(item, spec)

    def configure(self, acct: Account, body: Any) -> dict[str, Any]:
        """PATCH configuration: ``alias`` and/or ``marginRate`` (a decimal in (0, 1])."""
        if not isinstance(body, dict) or not ({"alias", "marginRate"} & set(body)):
            raise invalid("alias")
        alias = body.get("alias")
        if alias is not None and (not isinstance(alias, str) or len(alias) > 100):
            raise invalid("alias")
        rate = None
        if "marginRate" in body:
            try:
                rate = parse_decimal(body["marginRate"], "marginRate")
            except WireError:
                rate = None
            if rate is None or not Decimal(0) < rate <= Decimal(1):
                tx = self._tx(acct, "CLIENT_CONFIGURE_REJECT", alias=alias,
                              marginRate=str(body["marginRate"]),
                              rejectReason="MARGIN_RATE_INVALID")
                self._end_batch(acct)
                raise ApiError(400, {"clientConfigureRejectTransaction": tx,
                                     "lastTransactionID": tx["id"],
                                     "errorCode": "MARGIN_RATE_INVALID",
                                     "errorMessage": "The margin rate provided is invalid"})
        tx = self._tx(acct, "CLIENT_CONFIGURE", alias=alias,
                      marginRate=str(rate) if rate is not None else None)
        if alias is not None:
            acct.alias = alias
        if rate is not None:
            acct.margin_rate = rate
            acct.margin_rate_str = str(rate)
        self._end_batch(acct)
        return {"clientConfigureTransaction": tx, "lastTransactionID": tx["id"]}

    # -- lookups --------------------------------------------------------------------------
    def find_order(self, acct: Account, spec: str) -> Order:
        if spec.startswith("@"):
            cid = spec[1:]
            for o in sorted(acct.orders.values(), key=lambda o: -o.id):
                if o.client_id == cid:
                    return o
        elif spec.isdigit() and int(spec) in acct.orders:
            return acct.orders[int(spec)]
        raise ApiError(404, {"lastTransactionID": str(acct.last_id),
                             "errorMessage": "The order ID specified does not exist",
                             "errorCode": "NO_SUCH_ORDER"})

    def find_trade(self, acct: Account, spec: str, strict: bool = True) -> Trade | None:
        if spec.startswith("@"):
            cid = spec[1:]
            for tr in sorted(acct.trades.values(), key=lambda tr: -tr.id):
                if tr.client_id == cid:
                    return tr
        elif spec.isdigit() and int(spec) in acct.trades:
            return acct.trades[int(spec)]
        if not strict:
            return None
        raise ApiError(404, {"lastTransactionID": str(acct.last_id),
                             "errorMessage": "The trade ID specified does not exist",
                             "errorCode": "NO_SUCH_TRADE"})

    # -- order endpoints ------------------------------------------------------------------
    def replace_order(self, acct: Account, spec: str, body: Any) -> dict[str, Any]:
        o = self.find_order(acct, spec)
        if o.state != "PENDING":
            raise self._cancel_reject(acct, o, spec)
        if not isinstance(body, dict) or not isinstance(body.get("order"), dict):
            raise invalid("order")
        new_type = body["order"].get("type")
        if (o.kind in DEPENDENT_TYPES) != (new_type in DEPENDENT_TYPES):
            raise invalid("order.type")
        if o.kind in DEPENDENT_TYPES and "tradeID" not in body["order"]:
            body = {"order": {**body["order"], "tradeID": str(o.trade_id)}}
        return self.create_order(acct, body, replacing=o)

    def _cancel_reject(self, acct: Account, o: Order | None, spec: str) -> ApiError:
        reason = "ORDER_DOESNT_EXIST" if o is None else "ORDER_NOT_PENDING"
        fields: dict[str, Any] = {"reason": "CLIENT_REQUEST", "rejectReason": reason}
        if spec.startswith("@"):
            fields["clientOrderID"] = spec[1:]
        else:
            fields["orderID"] = spec
        tx = self._tx(acct, "ORDER_CANCEL_REJECT", **fields)
        self._end_batch(acct)
        return ApiError(404, {"orderCancelRejectTransaction": tx,
                              "relatedTransactionIDs": [tx["id"]],
                              "lastTransactionID": tx["id"], "errorCode": reason,
                              "errorMessage": REJECT_MESSAGES[reason]})

    def cancel_order(self, acct: Account, spec: str) -> dict[str, Any]:
        try:
            o = self.find_order(acct, spec)
        except ApiError:
            raise self._cancel_reject(acct, None, spec) from None
        if o.state != "PENDING":
            raise self._cancel_reject(acct, o, spec)
        tx = self._cancel(acct, o, "CLIENT_REQUEST")
        return self._finish(acct, {"orderCancelTransaction": tx})

    def order_client_extensions(self, acct: Account, spec: str, body: Any) -> dict[str, Any]:
        o = self.find_order(acct, spec)
        if not isinstance(body, dict) or not (
                isinstance(body.get("clientExtensions"), dict)
                or isinstance(body.get("tradeClientExtensions"), dict)):
            raise invalid("clientExtensions")
        ext = client_extensions(body.get("clientExtensions"), "clientExtensions")
        text = client_extensions(body.get("tradeClientExtensions"), "tradeClientExtensions")
        tx = self._tx(acct, "ORDER_CLIENT_EXTENSIONS_MODIFY", orderID=str(o.id),
                      clientOrderID=o.client_id, clientExtensionsModify=ext,
                      tradeClientExtensionsModify=text)
        if isinstance(ext, dict):
            o.w["clientExtensions"] = {**(o.w.get("clientExtensions") or {}), **ext}
        if isinstance(text, dict):
            o.trade_ext = {**(o.trade_ext or {}), **text}
            o.w["tradeClientExtensions"] = dict(o.trade_ext)
        return self._finish(acct, {"orderClientExtensionsModifyTransaction": tx})

    # -- trade endpoints ------------------------------------------------------------------
    def close_trade(self, acct: Account, spec: str, body: Any) -> dict[str, Any]:
        tr = self.find_trade(acct, spec)
        assert tr is not None
        if tr.state != "OPEN":
            raise ApiError(404, {"lastTransactionID": str(acct.last_id),
                                 "errorMessage": "The Trade specified does not exist",
                                 "errorCode": "TRADE_DOESNT_EXIST"})
        raw = "ALL" if not body else (body.get("units", "ALL") if isinstance(body, dict)
                                      else None)
        if raw is None:
            raise invalid("units")
        if raw == "ALL":
            n = abs(tr.units)
        else:
            try:
                d = parse_decimal(raw, "units")
            except WireError:
                raise invalid("units") from None
            if d <= 0 or d != d.to_integral_value():
                raise invalid("units")
            n = int(d)
        units = -n if tr.units > 0 else n
        spec_w = {"type": "MARKET", "instrument": tr.instrument, "units": str(units)}
        if n > abs(tr.units):
            raise self._reject(acct, "MARKET", {**spec_w, "tradeClose": {
                "tradeID": str(tr.id), "units": str(raw)}}, "CLOSE_TRADE_UNITS_EXCEED_TRADE_SIZE")
        return self._market_close(acct, tr.instrument, units, {
            "tradeClose": {"tradeID": str(tr.id), "clientTradeID": tr.client_id,
                           "units": "ALL" if raw == "ALL" else str(n)}},
            "TRADE_CLOSE", "MARKET_ORDER_TRADE_CLOSE", target=tr)

    def _market_close(self, acct: Account, name: str, units: int, extra: dict[str, Any],
                      reason: str, fill_reason: str, target: Trade | None = None,
                      prefix: str = "") -> dict[str, Any]:
        t = self.now()
        fields = {"instrument": name, "units": str(units), "timeInForce": "FOK",
                  "positionFill": "REDUCE_ONLY", **extra}
        create = self._tx(acct, "MARKET_ORDER", reason=reason, **fields)
        o = Order(int(create["id"]), "MARKET", t,
                  {"id": create["id"], "createTime": create["time"], "type": "MARKET",
                   "state": "PENDING", **fields})
        o.instrument, o.units, o.position_fill = name, units, "REDUCE_ONLY"
        acct.orders[o.id] = o
        def key(k: str) -> str:
            return prefix + k[0].upper() + k[1:] if prefix else k

        out: dict[str, Any] = {key("orderCreateTransaction"): create}
        if self.market[name].halted(t):
            out[key("orderCancelTransaction")] = self._cancel(acct, o, "MARKET_HALTED")
        else:
            px = self._price(name, "A" if units > 0 else "B", t)
            if target is not None:
                res = self._execute(acct, o, name, units, px, target=target,
                                    reason=fill_reason)
            else:
                res = self._execute(acct, o, name, units, px, reason=fill_reason)
            out[key("orderFillTransaction" if res["type"] == "ORDER_FILL"
                    else "orderCancelTransaction")] = res
        return out

    def trade_orders(self, acct: Account, spec: str, body: Any) -> dict[str, Any]:
        tr = self.find_trade(acct, spec)
        assert tr is not None
        if not isinstance(body, dict) or not any(
                k in body for k in ("takeProfit", "stopLoss", "trailingStopLoss")):
            raise invalid("takeProfit")
        if tr.state != "OPEN":
            raise ApiError(404, {"lastTransactionID": str(acct.last_id),
                                 "errorMessage": "The Trade specified does not exist",
                                 "errorCode": "TRADE_DOESNT_EXIST"})
        plan = []
        try:
            for key, kind in (("takeProfit", "TAKE_PROFIT"), ("stopLoss", "STOP_LOSS"),
                              ("trailingStopLoss", "TRAILING_STOP_LOSS")):
                if key not in body:
                    continue
                val = body[key]
                if val is not None and not isinstance(val, dict):
                    raise invalid(key)
                plan.append((key, kind, None if val is None else
                             self._dependent_spec(tr, kind, val)))
        except _Reject as rej:
            tx = self._tx(acct, "TAKE_PROFIT_ORDER_REJECT", tradeID=str(tr.id),
                          rejectReason=rej.reason)
            self._end_batch(acct)
            raise ApiError(400, {"takeProfitOrderRejectTransaction": tx,
                                 "relatedTransactionIDs": [tx["id"]],
                                 "lastTransactionID": tx["id"], "errorCode": rej.reason,
                                 "errorMessage": REJECT_MESSAGES.get(rej.reason, rej.reason)}
                           ) from None
        out: dict[str, Any] = {}
        for key, kind, item in plan:
            old = acct.orders[tr.dep[kind]] if kind in tr.dep else None
            if old is not None:
                out[f"{key}OrderCancelTransaction"] = self._cancel(
                    acct, old, "CLIENT_REQUEST_REPLACED" if item is not None else "CLIENT_REQUEST")
            if item is not None:
                tx = self._create_dependent(acct, tr, kind, item,
                                            "REPLACEMENT" if old else "CLIENT_ORDER", old)
                out[f"{key}OrderTransaction"] = tx
                if old is not None:
                    out[f"{key}OrderCancelTransaction"]["replacedByOrderID"] = tx["id"]
        return self._finish(acct, out)

    def trade_client_extensions(self, acct: Account, spec: str, body: Any) -> dict[str, Any]:
        tr = self.find_trade(acct, spec)
        assert tr is not None
        if not isinstance(body, dict) or not isinstance(body.get("clientExtensions"), dict):
            raise invalid("clientExtensions")
        ext = client_extensions(body["clientExtensions"], "clientExtensions")
        assert ext is not None
        tx = self._tx(acct, "TRADE_CLIENT_EXTENSIONS_MODIFY", tradeID=str(tr.id),
                      clientTradeID=tr.client_id, tradeClientExtensionsModify=ext)
        tr.ext = {**(tr.ext or {}), **ext}
        return self._finish(acct, {"tradeClientExtensionsModifyTransaction": tx})

    # -- positions ------------------------------------------------------------------------
    def close_position(self, acct: Account, name: str, body: Any) -> dict[str, Any]:
        if name not in self.market:
            raise invalid("instrument")
        if not isinstance(body, dict) or not ("longUnits" in body or "shortUnits" in body):
            raise invalid("longUnits")
        wanted: list[tuple[str, int]] = []
        for side, key in (("long", "longUnits"), ("short", "shortUnits")):
            raw = body.get(key, "NONE")
            if raw == "NONE":
                continue
            have = sum(tr.units for tr in acct.trades.values() if tr.state == "OPEN"
                       and tr.instrument == name and (tr.units > 0) == (side == "long"))
            if raw == "ALL":
                n = abs(have)
            else:
                try:
                    d = parse_decimal(raw, key)
                except WireError:
                    raise invalid(key) from None
                if d <= 0 or d != d.to_integral_value():
                    raise invalid(key)
                n = int(d)
            reject = None
            if have == 0:
                reject = "CLOSEOUT_POSITION_DOESNT_EXIST"
            elif n > abs(have):
                reject = "CLOSEOUT_POSITION_UNITS_EXCEED_POSITION_SIZE"
            if reject:
                units = -n if side == "long" else n
                raise self._reject(acct, "MARKET", {"instrument": name, "units": str(units),
                                   f"{side}PositionCloseout": {"instrument": name,
                                                               "units": str(raw)}},
                                   reject, key=f"{side}OrderRejectTransaction")
            wanted.append((side, n))
        if not wanted:
            raise invalid("longUnits")
        out: dict[str, Any] = {}
        for side, n in wanted:
            units = -n if side == "long" else n
            out.update(self._market_close(
                acct, name, units,
                {f"{side}PositionCloseout": {"instrument": name, "units":
                                             "ALL" if body.get(f"{side}Units") == "ALL"
                                             else str(n)}},
                "POSITION_CLOSEOUT", "MARKET_ORDER_POSITION_CLOSEOUT", prefix=side))
        return self._finish(acct, out)
