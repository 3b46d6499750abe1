"""The venue: the emulated OANDA trading engine behind the v20 write endpoints.

:class:`Venue` owns the accounts of one emulator and the market they trade on, and carries out
requests: create, replace and cancel orders; close trades and positions; set a trade's
dependent orders; client extensions; account configuration. Each request is read into a typed
order (:mod:`sep_research.emulator.orders`), then checked against the account (client IDs in
use, the trade it names, a stop's price from the quote), and only then carried out
(:mod:`sep_research.emulator.accounting`); a refused request changes nothing but the reject
transaction OANDA writes. :meth:`Venue.sync` moves the market to the clock, firing pending
orders in time order (:mod:`sep_research.emulator.matching`) and charging the daily financing
at each rollover (17:00 New York) on the way, before any fill at or after that instant
(:meth:`~sep_research.emulator.accounting.Accounting.charge_financing`).

Everything runs under one lock and is a pure function of the stored candles, the replay clock
and the requests, so the same data, clock moves and orders give the same transactions (IDs,
times, prices and amounts). Answers are dicts in v20's form; errors are
:class:`~sep_research.emulator.wire.ApiError`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from sep_research import fx
from sep_research.emulator import matching
from sep_research.emulator.accounting import Accounting, dec_price, next_rollover_ns
from sep_research.emulator.book import TransactionLog, VenueAccount, VenueOrder, VenueTrade
from sep_research.emulator.market import InstrumentSpec, Series
from sep_research.emulator.orders import (
    DEPENDENT_TYPES,
    ENTRY_TYPES,
    ON_FILL,
    REJECT_MESSAGES,
    Attached,
    DependentRequest,
    EntryOrder,
    Reject,
    client_extensions,
    parse_attached,
    parse_close_units,
    parse_dependent_orders,
    parse_order,
    reject_fields,
)
from sep_research.emulator.wire import ApiError, WireError, fmt_time, invalid, parse_decimal
from sep_research.financing import FinancingRates


class Venue:
    """All accounts of one emulator and the market they trade on."""

    def __init__(self, market: dict[str, Series], clock: Any, *, accounts: list[str],
                 balance: float, hedging: bool, margin_rate: str, created: int,
                 financing: dict[str, FinancingRates | None] | None = None) -> None:
        self.market = market
        self.instruments: dict[str, InstrumentSpec] = {n: s.spec for n, s in market.items()}
        self.clock = clock
        self.lock = threading.RLock()
        self.synced = created
        self.log = TransactionLog(clock)
        self.accounting = Accounting(market, self.log, financing=financing)
        #: the next rollover to charge (ns), None when no instrument has financing
        self._next_roll = next_rollover_ns(created) if self.accounting.financing_on() else None
        self.accounts: dict[str, VenueAccount] = {}
        for n, aid in enumerate(accounts):
            acct = VenueAccount(aid, balance=Decimal(str(balance)), hedging=hedging,
                                margin_rate=margin_rate, created=created,
                                alias=f"emulator-{n + 1}")
            self.accounts[aid] = acct
            self.accounting.open_account(acct)

    # -- requests -------------------------------------------------------------------------
    def now(self) -> int:
        return self.log.now()

    def request_id(self) -> str:
        return self.log.request_id()

    def begin(self) -> None:
        """Start a request: bring the market up to the clock, new request ID."""
        self.sync(self.clock.now_ns())
        self.log.reset_batch()
        self.log.new_request()

    @contextmanager
    def request(self) -> Iterator[None]:
        """Serve one request under the lock (see :meth:`begin`)."""
        with self.lock:
            self.begin()
            yield

    # -- the market moves -----------------------------------------------------------------
    def sync(self, now: int) -> None:
        """Trigger pending orders along the price path up to ``now``, in time order, and
        charge the financing of each rollover on the way (before any event at or after it)."""
        with self.lock:
            if now <= self.synced:
                return
            cur = self.synced
            while True:
                due = self._next_roll if self._next_roll is not None and \
                    self._next_roll <= now else None
                upto = now if due is None else due - 1  # events strictly before the rollover
                ev = matching.earliest(self.accounts.values(), self.market, cur, upto) \
                    if upto >= cur else None
                if ev is not None:
                    t, acct, o, what = ev
                    cur = t
                    with self.log.event(acct, t):
                        self._fire(acct, o, what)
                    continue
                if due is None:
                    break
                for acct in self.accounts.values():  # a batch (and request) each
                    if acct.open_trades():
                        with self.log.event(acct, due):
                            self.accounting.charge_financing(acct, fx.from_ns(due))
                cur = due
                self._next_roll = next_rollover_ns(due)
            self.synced = now

    def _fire(self, acct: VenueAccount, o: VenueOrder, what: Any) -> None:
        if what == "expire":
            self.accounting.cancel(acct, o, "TIME_IN_FORCE_EXPIRED")
            return
        _, level = what
        name, units, comp = matching.order_side(acct, o)
        t = self.now()
        fill_comp = "A" if units > 0 else "B"
        if comp == fill_comp:
            px = dec_price(level, self.market[name].spec.display_precision)
        else:
            px = self.accounting.price(name, fill_comp, t)
        if o.kind in DEPENDENT_TYPES:
            tr = acct.trades[o.trade_id]  # type: ignore[index]
            self.accounting.execute(acct, o, name, -tr.units, px, target=tr)
        else:
            self.accounting.execute(acct, o, name, units, px)

    # -- lookups --------------------------------------------------------------------------
    def find_order(self, acct: VenueAccount, spec: str) -> VenueOrder:
        """An order by ID or ``@clientID`` (the newest with that client ID); else 404."""
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

    def find_trade(self, acct: VenueAccount, spec: str, strict: bool = True
                   ) -> VenueTrade | None:
        """A trade by ID or ``@clientID``; else 404 (or None when not ``strict``)."""
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

    def _open_trade(self, acct: VenueAccount, spec: str) -> VenueTrade:
        tr = self.find_trade(acct, spec)
        assert tr is not None
        if tr.state != "OPEN":
            raise ApiError(404, {"lastTransactionID": str(acct.last_id),
                                 "errorMessage": "The Trade specified does not exist",
                                 "errorCode": "TRADE_DOESNT_EXIST"})
        return tr

    # -- refusals -------------------------------------------------------------------------
    def _reject(self, acct: VenueAccount, typ: str, spec: dict[str, Any], reason: str,
                key: str = "orderRejectTransaction") -> ApiError:
        tx = self.log.write(acct, f"{typ}_ORDER_REJECT" if typ in ENTRY_TYPES + DEPENDENT_TYPES
                            else "MARKET_ORDER_REJECT",
                            **{**reject_fields(spec), "rejectReason": reason})
        self.log.end_batch(acct)
        return ApiError(400, {key: tx, "relatedTransactionIDs": [tx["id"]],
                              "lastTransactionID": tx["id"], "errorCode": reason,
                              "errorMessage": REJECT_MESSAGES.get(reason, reason)})

    def _cancel_reject(self, acct: VenueAccount, o: VenueOrder | None, spec: str) -> ApiError:
        reason = "ORDER_DOESNT_EXIST" if o is None else "ORDER_NOT_PENDING"
        fields: dict[str, Any] = {"reason": "CLIENT_REQUEST", "rejectReason": reason}
        if spec.startswith("@"):
            fields["clientOrderID"] = spec[1:]
        else:
            fields["orderID"] = spec
        tx = self.log.write(acct, "ORDER_CANCEL_REJECT", **fields)
        self.log.end_batch(acct)
        return ApiError(404, {"orderCancelRejectTransaction": tx,
                              "relatedTransactionIDs": [tx["id"]],
                              "lastTransactionID": tx["id"], "errorCode": reason,
                              "errorMessage": REJECT_MESSAGES[reason]})

    def _check_client_ids(self, acct: VenueAccount, order: EntryOrder) -> None:
        used_orders = {o.client_id for o in acct.orders.values()
                       if o.state == "PENDING" and o.client_id}
        used_trades = {tr.client_id for tr in acct.trades.values()
                       if tr.state == "OPEN" and tr.client_id}
        if order.ext is not None and order.ext.get("id") in used_orders:
            raise Reject("CLIENT_ORDER_ID_ALREADY_EXISTS")
        if order.trade_ext is not None and order.trade_ext.get("id") in used_trades:
            raise Reject("CLIENT_TRADE_ID_ALREADY_EXISTS")

    def _attached_for(self, tr: VenueTrade, kind: str, raw: dict[str, Any], param: str
                      ) -> Attached:
        """Details of a TP/SL/TS for trade ``tr``, checked against the trade: a stop-loss
        distance that would put the stop at zero or below is refused."""
        att = parse_attached(kind, raw, self.instruments[tr.instrument], param=param)
        if att.kind == "STOP_LOSS" and att.price is None and att.distance is not None and \
                self.accounting.stop_price(tr.instrument, tr.units > 0, att.distance,
                                           self.now()) <= 0:
            raise Reject("PRICE_DISTANCE_MAXIMUM_EXCEEDED")
        return att

    # -- orders ---------------------------------------------------------------------------
    def create_order(self, acct: VenueAccount, body: Any, *, replacing: VenueOrder | None = None
                     ) -> dict[str, Any]:
        """``POST orders`` (and the create half of a replace)."""
        typ = body["order"].get("type") if isinstance(body, dict) and isinstance(
            body.get("order"), dict) else None
        try:
            req = parse_order(body, self.instruments, self.now())
            if isinstance(req, EntryOrder):
                self._check_client_ids(acct, req)
        except Reject as rej:
            raise self._reject(acct, str(typ), body["order"], rej.reason) from None
        if isinstance(req, DependentRequest):
            return self._create_dependent_order(acct, req, replacing)
        return self._create_entry(acct, req, replacing)

    def _create_entry(self, acct: VenueAccount, req: EntryOrder,
                      replacing: VenueOrder | None) -> dict[str, Any]:
        t = self.now()
        name, typ, units = req.instrument, req.type, req.units
        s = self.market[name]
        prec = s.spec.display_precision
        fields: dict[str, Any] = {"instrument": name, "units": str(units)}
        if req.price is not None:
            fields["price"] = f"{req.price:.{prec}f}"
        if req.price_bound is not None:
            fields["priceBound"] = f"{req.price_bound:.{prec}f}"
        fields["timeInForce"] = req.tif
        if req.gtd is not None:
            fields["gtdTime"] = fmt_time(req.gtd)
        fields["positionFill"] = req.position_fill
        if typ != "MARKET":
            fields["triggerCondition"] = req.trigger
            fields["partialFill"] = "DEFAULT"
        for key in ("takeProfitOnFill", "stopLossOnFill", "trailingStopLossOnFill"):
            if key in req.on_fill:
                fields[key] = dict(req.on_fill[key].echo)
        if req.ext is not None:
            fields["clientExtensions"] = dict(req.ext)
        if req.trade_ext is not None:
            fields["tradeClientExtensions"] = dict(req.trade_ext)
        out: dict[str, Any] = {}
        if replacing is not None:
            out["orderCancelTransaction"] = self.accounting.cancel(acct, replacing,
                                                                   "CLIENT_REQUEST_REPLACED")
            fields["replacesOrderID"] = str(replacing.id)
        create = self.log.write(acct, f"{typ}_ORDER",
                                reason="REPLACEMENT" if replacing else "CLIENT_ORDER", **fields)
        if replacing is not None:
            replacing.w["replacedByOrderID"] = create["id"]
            out["orderCancelTransaction"]["replacedByOrderID"] = create["id"]
        out["orderCreateTransaction"] = create
        w = {"id": create["id"], "createTime": create["time"], "type": typ, "state": "PENDING",
             **fields}
        o = VenueOrder(int(create["id"]), typ, t, w)
        o.instrument, o.units, o.price, o.trigger, o.tif = name, units, req.price, req.trigger, \
            req.tif
        o.gtd, o.position_fill, o.on_fill = req.gtd, req.position_fill, dict(req.on_fill)
        o.trade_ext = dict(req.trade_ext) if req.trade_ext is not None else None
        acct.orders[o.id] = o
        cancel_key = "replacingOrderCancelTransaction" if replacing else "orderCancelTransaction"
        ask_or_bid = "A" if units > 0 else "B"
        if typ == "MARKET":
            if s.halted(t):
                out[cancel_key] = self.accounting.cancel(acct, o, "MARKET_HALTED")
            else:
                px = self.accounting.price(name, ask_or_bid, t)
                bound = req.price_bound
                if bound is not None and ((px > bound) if units > 0 else (px < bound)):
                    out[cancel_key] = self.accounting.cancel(acct, o, "BOUNDS_VIOLATION")
                else:
                    res = self.accounting.execute(acct, o, name, units, px)
                    out["orderFillTransaction" if res["type"] == "ORDER_FILL"
                        else cancel_key] = res
        else:
            ev = None if s.halted(t) else matching.next_event(acct, o, self.market, t, t)
            if ev is not None and ev[1] != "expire":
                res = self.accounting.execute(acct, o, name, units,
                                              self.accounting.price(name, ask_or_bid, t))
                out["orderFillTransaction" if res["type"] == "ORDER_FILL" else cancel_key] = res
            elif req.tif in ("FOK", "IOC"):
                out[cancel_key] = self.accounting.cancel(acct, o, "TIME_IN_FORCE_EXPIRED")
        return self.log.finish(acct, out)

    def _create_dependent_order(self, acct: VenueAccount, req: DependentRequest,
                                replacing: VenueOrder | None) -> dict[str, Any]:
        typ = req.type
        try:
            if req.trade_ref is None:
                raise Reject("TRADE_ID_UNSPECIFIED")
            tr = self.find_trade(acct, req.trade_ref, strict=False)
            if tr is None or tr.state != "OPEN":
                raise Reject("TRADE_DOESNT_EXIST")
            if typ in tr.dep and (replacing is None or tr.dep[typ] != replacing.id):
                raise Reject(f"{typ}_ORDER_ALREADY_EXISTS")
            att = self._attached_for(tr, typ, req.raw, "order.")
        except Reject as rej:
            raise self._reject(acct, typ, req.raw, rej.reason) from None
        out: dict[str, Any] = {}
        if replacing is not None:
            out["orderCancelTransaction"] = self.accounting.cancel(acct, replacing,
                                                                   "CLIENT_REQUEST_REPLACED")
        out["orderCreateTransaction"] = self.accounting.create_dependent(
            acct, tr, att, "REPLACEMENT" if replacing else "CLIENT_ORDER", replacing)
        if replacing is not None:
            out["orderCancelTransaction"]["replacedByOrderID"] = \
                out["orderCreateTransaction"]["id"]
        done = self._fill_now(acct, int(out["orderCreateTransaction"]["id"]))
        if done is not None:
            out["orderFillTransaction" if done["type"] == "ORDER_FILL"
                else "orderCancelTransaction" if replacing is None
                else "replacingOrderCancelTransaction"] = done
        return self.log.finish(acct, out)

    def _fill_now(self, acct: VenueAccount, oid: int) -> dict[str, Any] | None:
        """Fill a new TP/SL/TS at once when the market already is at or past its price (as
        OANDA does); the fill (or cancel) transaction, or None while it stays pending."""
        o = acct.orders[oid]
        t = self.now()
        if o.state != "PENDING" or acct.trades[o.trade_id].state != "OPEN":  # type: ignore[index]
            return None
        name = matching.order_side(acct, o)[0]
        if self.market[name].halted(t):
            return None
        ev = matching.next_event(acct, o, self.market, t, t)
        if ev is None or ev[1] == "expire":
            return None
        before = acct.last_id
        self._fire(acct, o, ev[1])
        return acct.txs[before] if acct.last_id > before else None

    def replace_order(self, acct: VenueAccount, spec: str, body: Any) -> dict[str, Any]:
        """``PUT orders/{id}``: cancel the pending order and create its replacement."""
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

    def cancel_order(self, acct: VenueAccount, spec: str) -> dict[str, Any]:
        """``PUT orders/{id}/cancel``."""
        try:
            o = self.find_order(acct, spec)
        except ApiError:
            raise self._cancel_reject(acct, None, spec) from None
        if o.state != "PENDING":
            raise self._cancel_reject(acct, o, spec)
        tx = self.accounting.cancel(acct, o, "CLIENT_REQUEST")
        return self.log.finish(acct, {"orderCancelTransaction": tx})

    def order_client_extensions(self, acct: VenueAccount, spec: str, body: Any
                                ) -> dict[str, Any]:
        """``PUT orders/{id}/clientExtensions``."""
        o = self.find_order(acct, spec)
        if not isinstance(body, dict) or not (
                isinstance(body.get("clientExtensions"), dict)
                or isinstance(body.get("tradeClientExtensions"), dict)):
            raise invalid("clientExtensions")
        ext = client_extensions(body.get("clientExtensions"), "clientExtensions")
        text = client_extensions(body.get("tradeClientExtensions"), "tradeClientExtensions")
        tx = self.log.write(acct, "ORDER_CLIENT_EXTENSIONS_MODIFY", orderID=str(o.id),
                            clientOrderID=o.client_id, clientExtensionsModify=ext,
                            tradeClientExtensionsModify=text)
        if isinstance(ext, dict):
            o.w["clientExtensions"] = {**(o.w.get("clientExtensions") or {}), **ext}
        if isinstance(text, dict):
            o.trade_ext = {**(o.trade_ext or {}), **text}
            o.w["tradeClientExtensions"] = dict(o.trade_ext)
        return self.log.finish(acct, {"orderClientExtensionsModifyTransaction": tx})

    # -- trades ---------------------------------------------------------------------------
    def close_trade(self, acct: VenueAccount, spec: str, body: Any) -> dict[str, Any]:
        """``PUT trades/{id}/close`` (an empty body closes all of it)."""
        tr = self._open_trade(acct, spec)
        if not body:
            raw: Any = "ALL"
        elif isinstance(body, dict):
            raw = body.get("units", "ALL")
        else:
            raise invalid("units")
        got = parse_close_units(raw, "units")
        n = abs(tr.units) if got == "ALL" else int(got)
        units = -n if tr.units > 0 else n
        if n > abs(tr.units):
            raise self._reject(acct, "MARKET", {
                "type": "MARKET", "instrument": tr.instrument, "units": str(units),
                "tradeClose": {"tradeID": str(tr.id), "units": str(raw)}},
                "CLOSE_TRADE_UNITS_EXCEED_TRADE_SIZE")
        return self.log.finish(acct, self._market_close(acct, tr.instrument, units, {
            "tradeClose": {"tradeID": str(tr.id), "clientTradeID": tr.client_id,
                           "units": "ALL" if got == "ALL" else str(n)}},
            "TRADE_CLOSE", "MARKET_ORDER_TRADE_CLOSE", target=tr))

    def _market_close(self, acct: VenueAccount, name: str, units: int, extra: dict[str, Any],
                      reason: str, fill_reason: str, target: VenueTrade | None = None,
                      prefix: str = "") -> dict[str, Any]:
        """A MARKET order that closes a trade or a position side, filled at once (or
        cancelled when the market is halted)."""
        t = self.now()
        fields = {"instrument": name, "units": str(units), "timeInForce": "FOK",
                  "positionFill": "REDUCE_ONLY", **extra}
        create = self.log.write(acct, "MARKET_ORDER", reason=reason, **fields)
        o = VenueOrder(int(create["id"]), "MARKET", t,
                       {"id": create["id"], "createTime": create["time"], "type": "MARKET",
                        "state": "PENDING", **fields})
        o.instrument, o.units, o.position_fill = name, units, "REDUCE_ONLY"
        acct.orders[o.id] = o

        def key(k: str) -> str:
            return prefix + k[0].upper() + k[1:] if prefix else k

        out: dict[str, Any] = {key("orderCreateTransaction"): create}
        if self.market[name].halted(t):
            out[key("orderCancelTransaction")] = self.accounting.cancel(acct, o,
                                                                        "MARKET_HALTED")
        else:
            px = self.accounting.price(name, "A" if units > 0 else "B", t)
            res = self.accounting.execute(acct, o, name, units, px, target=target,
                                          reason=fill_reason)
            out[key("orderFillTransaction" if res["type"] == "ORDER_FILL"
                    else "orderCancelTransaction")] = res
        return out

    def trade_orders(self, acct: VenueAccount, spec: str, body: Any) -> dict[str, Any]:
        """``PUT trades/{id}/orders``: create, replace or cancel its TP, SL and TS."""
        tr = self.find_trade(acct, spec)
        assert tr is not None
        wanted = parse_dependent_orders(body)
        tr = self._open_trade(acct, spec)
        plan: list[tuple[str, str, Attached | None]] = []
        try:
            for key, kind, raw in wanted:
                if raw is not None and not isinstance(raw, dict):
                    raise invalid(key)
                try:
                    plan.append((key, kind, None if raw is None else
                                 self._attached_for(tr, kind, raw, f"{key}.")))
                except Reject as rej:
                    raise Reject(rej.reason, kind) from None
        except Reject as rej:
            kind = rej.kind or "TAKE_PROFIT"
            key = {k: key for _, k, key in ON_FILL}[kind]
            raw = body[key] if isinstance(body.get(key), dict) else {}
            tx = self.log.write(acct, f"{kind}_ORDER_REJECT", **{
                **reject_fields(raw), "tradeID": str(tr.id), "clientTradeID": tr.client_id,
                "rejectReason": rej.reason})
            self.log.end_batch(acct)
            raise ApiError(400, {f"{key}OrderRejectTransaction": tx,
                                 "relatedTransactionIDs": [tx["id"]],
                                 "lastTransactionID": tx["id"], "errorCode": rej.reason,
                                 "errorMessage": REJECT_MESSAGES.get(rej.reason, rej.reason)}
                           ) from None
        out: dict[str, Any] = {}
        created: list[tuple[str, int]] = []
        for key, kind, att in plan:
            old = acct.orders[tr.dep[kind]] if kind in tr.dep else None
            if old is not None:
                out[f"{key}OrderCancelTransaction"] = self.accounting.cancel(
                    acct, old, "CLIENT_REQUEST_REPLACED" if att is not None else "CLIENT_REQUEST")
            if att is not None:
                tx = self.accounting.create_dependent(acct, tr, att,
                                                      "REPLACEMENT" if old else "CLIENT_ORDER",
                                                      old)
                out[f"{key}OrderTransaction"] = tx
                if old is not None:
                    out[f"{key}OrderCancelTransaction"]["replacedByOrderID"] = tx["id"]
                created.append((key, int(tx["id"])))
        for key, oid in created:  # then any that the market has already reached fills
            done = self._fill_now(acct, oid)
            if done is not None:
                out[f"{key}OrderFillTransaction" if done["type"] == "ORDER_FILL"
                    else f"{key}OrderCreatedCancelTransaction"] = done
        return self.log.finish(acct, out)

    def trade_client_extensions(self, acct: VenueAccount, spec: str, body: Any
                                ) -> dict[str, Any]:
        """``PUT trades/{id}/clientExtensions``."""
        tr = self.find_trade(acct, spec)
        assert tr is not None
        if not isinstance(body, dict) or not isinstance(body.get("clientExtensions"), dict):
            raise invalid("clientExtensions")
        ext = client_extensions(body["clientExtensions"], "clientExtensions")
        assert ext is not None
        tx = self.log.write(acct, "TRADE_CLIENT_EXTENSIONS_MODIFY", tradeID=str(tr.id),
                            clientTradeID=tr.client_id, tradeClientExtensionsModify=ext)
        tr.ext = {**(tr.ext or {}), **ext}
        return self.log.finish(acct, {"tradeClientExtensionsModifyTransaction": tx})

    # -- positions ------------------------------------------------------------------------
    def close_position(self, acct: VenueAccount, name: str, body: Any) -> dict[str, Any]:
        """``PUT positions/{instrument}/close`` (``longUnits``, ``shortUnits``)."""
        if name not in self.market:
            raise invalid("instrument")
        if not isinstance(body, dict) or not ("longUnits" in body or "shortUnits" in body):
            raise invalid("longUnits")
        wanted: list[tuple[str, int]] = []
        for side, key in (("long", "longUnits"), ("short", "shortUnits")):
            raw = body.get(key, "NONE")
            got = parse_close_units(raw, key, words=("ALL", "NONE"))
            if got == "NONE":
                continue
            have = sum(tr.units for tr in acct.open_trades(name)
                       if (tr.units > 0) == (side == "long"))
            n = abs(have) if got == "ALL" else int(got)
            reject = None
            if have == 0:
                reject = "CLOSEOUT_POSITION_DOESNT_EXIST"
            elif n > abs(have):
                reject = "CLOSEOUT_POSITION_UNITS_EXCEED_POSITION_SIZE"
            if reject:
                units = -n if side == "long" else n
                raise self._reject(acct, "MARKET", {
                    "instrument": name, "units": str(units),
                    f"{side}PositionCloseout": {"instrument": name, "units": str(raw)}},
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
        return self.log.finish(acct, out)

    # -- account --------------------------------------------------------------------------
    def configure(self, acct: VenueAccount, body: Any) -> dict[str, Any]:
        """``PATCH configuration``: ``alias`` and/or ``marginRate`` (a decimal in (0, 1])."""
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
                tx = self.log.write(acct, "CLIENT_CONFIGURE_REJECT", alias=alias,
                                    marginRate=str(body["marginRate"]),
                                    rejectReason="MARGIN_RATE_INVALID")
                self.log.end_batch(acct)
                raise ApiError(400, {"clientConfigureRejectTransaction": tx,
                                     "lastTransactionID": tx["id"],
                                     "errorCode": "MARGIN_RATE_INVALID",
                                     "errorMessage": "The margin rate provided is invalid"})
        tx = self.log.write(acct, "CLIENT_CONFIGURE", alias=alias,
                            marginRate=str(rate) if rate is not None else None)
        if alias is not None:
            acct.alias = alias
        if rate is not None:
            acct.margin_rate = rate
            acct.margin_rate_str = str(rate)
        self.log.end_batch(acct)
        return {"clientConfigureTransaction": tx, "lastTransactionID": tx["id"]}
