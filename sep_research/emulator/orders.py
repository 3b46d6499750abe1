"""Order requests: the client's JSON read into typed orders, every value checked before the
venue changes anything.

This module owns what OANDA checks in a request on its own (types, enums, units, prices and
their precision, times in force and GTD times, trigger conditions, client extensions, the
take-profit / stop-loss / trailing-stop details attached to an order or set on a trade). It
knows the instruments but no account: checks that need the account (client IDs in use, the
trade named, a stop's price from the current quote) are the venue's
(:mod:`sep_research.emulator.venue`), also before any change.

Two kinds of failure, as on OANDA:

- :class:`~sep_research.emulator.wire.ApiError` (``invalid(param)``): the body cannot be read
  at all (not an object, unknown instrument or type, units that are not a number, a time that
  is not a time). 400 with ``errorMessage`` only; no transaction.
- :class:`Reject`: a readable order that OANDA refuses with a reason
  (``UNITS_INVALID``, ``PRICE_PRECISION_EXCEEDED``, ...). The venue writes the
  ``*_ORDER_REJECT`` transaction (it uses an ID) and answers 400 with ``errorCode``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sep_research.emulator.market import InstrumentSpec
from sep_research.emulator.wire import (
    WireError,
    decimals_of,
    invalid,
    parse_decimal,
    parse_time_ns,
)

MAX_UNITS = 100_000_000
ENTRY_TYPES = ("MARKET", "LIMIT", "STOP")
DEPENDENT_TYPES = ("TAKE_PROFIT", "STOP_LOSS", "TRAILING_STOP_LOSS")
TRIGGERS = ("DEFAULT", "INVERSE", "BID", "ASK", "MID")
POSITION_FILLS = ("DEFAULT", "REDUCE_FIRST", "REDUCE_ONLY", "OPEN_ONLY")
TIFS = ("GTC", "GTD", "GFD", "FOK", "IOC")
DEPENDENT_TIFS = ("GTC", "GTD", "GFD")
#: On-fill keys of an entry order, the kind of order each creates, and the key of the same
#: details on a trade (``PUT trades/{id}/orders``).
ON_FILL = (("takeProfitOnFill", "TAKE_PROFIT", "takeProfit"),
           ("stopLossOnFill", "STOP_LOSS", "stopLoss"),
           ("trailingStopLossOnFill", "TRAILING_STOP_LOSS", "trailingStopLoss"))
FILL_REASON = {"MARKET": "MARKET_ORDER", "LIMIT": "LIMIT_ORDER", "STOP": "STOP_ORDER",
               "TAKE_PROFIT": "TAKE_PROFIT_ORDER", "STOP_LOSS": "STOP_LOSS_ORDER",
               "TRAILING_STOP_LOSS": "TRAILING_STOP_LOSS_ORDER"}
STANDARD_TX_KEYS = ("id", "time", "userID", "accountID", "batchID", "requestID", "type")

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
    "PRICE_DISTANCE_MAXIMUM_EXCEEDED": "The price distance exceeds that maximum allowed amount",
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


class Reject(Exception):
    """OANDA refuses the order with ``reason`` (a TransactionRejectReason)."""

    def __init__(self, reason: str, kind: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # which dependent order failed, for PUT trades/{id}/orders


@dataclass(frozen=True)
class Attached:
    """A take-profit, stop-loss or trailing stop: on fill of an entry order, set on a trade,
    or an order of its own. ``echo`` is the client's object as given (OANDA echoes it in the
    entry order's ``*OnFill`` field)."""

    kind: str
    price: Decimal | None
    distance: Decimal | None
    tif: str
    gtd: int | None
    trigger: str
    ext: dict[str, str] | None
    echo: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EntryOrder:
    """A MARKET, LIMIT or STOP order request, fully checked."""

    type: str
    instrument: str
    units: int
    price: Decimal | None
    price_bound: Decimal | None
    tif: str
    gtd: int | None
    position_fill: str
    trigger: str
    on_fill: dict[str, Attached]
    ext: dict[str, str] | None
    trade_ext: dict[str, str] | None
    raw: dict[str, Any]


@dataclass(frozen=True)
class DependentRequest:
    """A TAKE_PROFIT, STOP_LOSS or TRAILING_STOP_LOSS order request; its details are read
    against the trade it names (:func:`parse_attached`), which only the venue can find."""

    type: str
    trade_ref: str | None  # "123" or "@clientTradeID"; None when neither is given
    raw: dict[str, Any]


def client_extensions(value: Any, param: str) -> dict[str, str] | None:
    """``{id, tag, comment}`` with string values, or None when absent; else 400."""
    if value is None:
        return None
    if not isinstance(value, dict) or any(
            k not in ("id", "tag", "comment") or not isinstance(v, str) or len(v) > 128
            for k, v in value.items()):
        raise invalid(param)
    return dict(value)


def parse_price(value: Any, prec: int, missing: str, bad: str, precision: str) -> Decimal:
    """A positive price (or distance) with at most ``prec`` decimals, or :class:`Reject`."""
    if value is None:
        raise Reject(missing)
    try:
        d = parse_decimal(value, "price")
    except WireError:
        raise Reject(bad) from None
    if d <= 0:
        raise Reject(bad)
    if decimals_of(d) > prec:
        raise Reject(precision)
    return d


def _gtd_time(raw: Mapping[str, Any], tif: Any, param: str) -> int | None:
    """The GTD time of a GTD order: a Reject when missing, a 400 naming ``param`` when it is
    not a time (malformed, not finite, before 1970 or after 2100); None for other TIFs."""
    if tif != "GTD":
        return None
    if raw.get("gtdTime") is None:
        raise Reject("TIME_IN_FORCE_GTD_TIMESTAMP_MISSING")
    try:
        return parse_time_ns(raw["gtdTime"], param)
    except WireError:
        raise invalid(param) from None


def _attached_common(kind: str, raw: dict[str, Any], price: Decimal | None,
                     distance: Decimal | None, param: str) -> Attached:
    """Time in force, GTD time, trigger and client extensions of a TP/SL/TS."""
    ext = client_extensions(raw.get("clientExtensions"), "clientExtensions")
    tif = raw.get("timeInForce", "GTC")
    if tif not in DEPENDENT_TIFS:
        raise Reject("TIME_IN_FORCE_INVALID")
    gtd = _gtd_time(raw, tif, f"{param}gtdTime")
    trigger = raw.get("triggerCondition", "DEFAULT")
    if trigger not in TRIGGERS:
        raise Reject("TRIGGER_CONDITION_INVALID")
    return Attached(kind, price, distance, tif, gtd, trigger, ext, dict(raw))


def parse_on_fill(spec: Mapping[str, Any], ins: InstrumentSpec) -> dict[str, Attached]:
    """The ``takeProfitOnFill``, ``stopLossOnFill`` and ``trailingStopLossOnFill`` of an entry
    order, checked in that order."""
    prec = ins.display_precision
    out: dict[str, Attached] = {}
    tp = spec.get("takeProfitOnFill")
    if tp is not None:
        if not isinstance(tp, dict):
            raise Reject("TAKE_PROFIT_ON_FILL_PRICE_MISSING")
        p = parse_price(tp.get("price"), prec, "TAKE_PROFIT_ON_FILL_PRICE_MISSING",
                        "TAKE_PROFIT_ON_FILL_PRICE_INVALID",
                        "TAKE_PROFIT_ON_FILL_PRICE_PRECISION_EXCEEDED")
        out["takeProfitOnFill"] = _attached_common("TAKE_PROFIT", tp, p, None,
                                                   "order.takeProfitOnFill.")
    sl = spec.get("stopLossOnFill")
    if sl is not None:
        if not isinstance(sl, dict) or (sl.get("price") is None and sl.get("distance") is None):
            raise Reject("STOP_LOSS_ON_FILL_PRICE_MISSING")
        price = distance = None
        if sl.get("price") is not None:
            price = parse_price(sl["price"], prec, "STOP_LOSS_ON_FILL_PRICE_MISSING",
                                "STOP_LOSS_ON_FILL_PRICE_INVALID",
                                "STOP_LOSS_ON_FILL_PRICE_PRECISION_EXCEEDED")
        else:
            distance = parse_price(sl["distance"], prec, "STOP_LOSS_ON_FILL_DISTANCE_INVALID",
                                   "STOP_LOSS_ON_FILL_DISTANCE_INVALID",
                                   "STOP_LOSS_ON_FILL_DISTANCE_INVALID")
        out["stopLossOnFill"] = _attached_common("STOP_LOSS", sl, price, distance,
                                                 "order.stopLossOnFill.")
    ts = spec.get("trailingStopLossOnFill")
    if ts is not None:
        reason = "TRAILING_STOP_LOSS_ON_FILL_PRICE_DISTANCE_MINIMUM_NOT_MET"
        d = parse_price(ts.get("distance") if isinstance(ts, dict) else None, prec,
                        reason, reason, reason)
        if d < Decimal(ins.describe()["minimumTrailingStopDistance"]):
            raise Reject(reason)
        if d > Decimal(1):
            raise Reject("TRAILING_STOP_LOSS_ON_FILL_PRICE_DISTANCE_MAXIMUM_EXCEEDED")
        assert isinstance(ts, dict)
        out["trailingStopLossOnFill"] = _attached_common("TRAILING_STOP_LOSS", ts, None, d,
                                                         "order.trailingStopLossOnFill.")
    return out


def parse_attached(kind: str, raw: dict[str, Any], ins: InstrumentSpec, *, param: str
                   ) -> Attached:
    """The details of a TP/SL/TS order on a trade of instrument ``ins`` (an order request of
    that type, or one key of ``PUT trades/{id}/orders``)."""
    prec = ins.display_precision
    if kind == "TRAILING_STOP_LOSS":
        reason = "TRAILING_STOP_LOSS_ON_FILL_PRICE_DISTANCE_MINIMUM_NOT_MET"
        d = parse_price(raw.get("distance"), prec, reason, reason, reason)
        if d < Decimal(ins.describe()["minimumTrailingStopDistance"]):
            raise Reject(reason)
        if d > Decimal(ins.describe()["maximumTrailingStopDistance"]):
            raise Reject("PRICE_DISTANCE_MAXIMUM_EXCEEDED")
        return _attached_common(kind, raw, None, d, param)
    if kind == "STOP_LOSS" and raw.get("price") is None and raw.get("distance") is not None:
        d = parse_price(raw["distance"], prec, "PRICE_MISSING", "PRICE_INVALID",
                        "PRICE_PRECISION_EXCEEDED")
        return _attached_common(kind, raw, None, d, param)
    p = parse_price(raw.get("price"), prec, "PRICE_MISSING", "PRICE_INVALID",
                    "PRICE_PRECISION_EXCEEDED")
    return _attached_common(kind, raw, p, None, param)


def parse_order(body: Any, instruments: Mapping[str, InstrumentSpec], now: int
                ) -> EntryOrder | DependentRequest:
    """``POST orders`` (and the order of ``PUT orders/{id}``): an entry order checked in full,
    or a dependent order request (checked by the venue against its trade)."""
    if not isinstance(body, dict) or not isinstance(body.get("order"), dict):
        raise invalid("order")
    spec = body["order"]
    typ = spec.get("type")
    if typ not in ENTRY_TYPES + DEPENDENT_TYPES:
        raise invalid("order.type")
    if typ in DEPENDENT_TYPES:
        tid = spec.get("tradeID")
        ref = (str(tid) if tid is not None else
               "@" + str(spec["clientTradeID"]) if spec.get("clientTradeID") else None)
        return DependentRequest(typ, ref, spec)
    name = spec.get("instrument")
    if not isinstance(name, str) or name not in instruments:
        raise invalid("order.instrument")
    if "units" not in spec:
        raise invalid("order.units")
    try:
        units_d = parse_decimal(spec["units"], "order.units")
    except WireError:
        raise invalid("order.units") from None
    ins = instruments[name]
    prec = ins.display_precision
    ext = client_extensions(spec.get("clientExtensions"), "order.clientExtensions")
    trade_ext = client_extensions(spec.get("tradeClientExtensions"),
                                  "order.tradeClientExtensions")
    if units_d == 0:
        raise Reject("UNITS_INVALID")
    if units_d != units_d.to_integral_value():
        raise Reject("UNITS_PRECISION_EXCEEDED")
    if abs(units_d) > MAX_UNITS:
        raise Reject("UNITS_LIMIT_EXCEEDED")
    tif = spec.get("timeInForce", "FOK" if typ == "MARKET" else "GTC")
    if tif not in TIFS or (typ == "MARKET" and tif not in ("FOK", "IOC")):
        raise Reject("TIME_IN_FORCE_INVALID")
    gtd = _gtd_time(spec, tif, "order.gtdTime")
    if gtd is not None and gtd <= now:
        raise Reject("TIME_IN_FORCE_GTD_TIMESTAMP_IN_PAST")
    pf = spec.get("positionFill", "DEFAULT")
    if pf not in POSITION_FILLS:
        raise Reject("POSITION_FILL_INVALID")
    trigger = spec.get("triggerCondition", "DEFAULT")
    if trigger not in TRIGGERS:
        raise Reject("TRIGGER_CONDITION_INVALID")
    price = None
    if typ != "MARKET":
        price = parse_price(spec.get("price"), prec, "PRICE_MISSING", "PRICE_INVALID",
                            "PRICE_PRECISION_EXCEEDED")
    bound = None
    if spec.get("priceBound") is not None:
        bound = parse_price(spec["priceBound"], prec, "PRICE_BOUND_INVALID",
                            "PRICE_BOUND_INVALID", "PRICE_BOUND_PRECISION_EXCEEDED")
    on_fill = parse_on_fill(spec, ins)
    return EntryOrder(typ, name, int(units_d), price, bound, tif, gtd, pf, trigger, on_fill,
                      ext, trade_ext, spec)


def parse_dependent_orders(body: Any) -> list[tuple[str, str, Any]]:
    """``PUT trades/{id}/orders``: ``(key, kind, details)`` for each of ``takeProfit``,
    ``stopLoss``, ``trailingStopLoss`` given, in that order; details are None (cancel) or an
    object, read against the trade by :func:`parse_attached` (the venue checks them one by
    one, so that the first bad one decides the answer)."""
    if not isinstance(body, dict) or not any(
            k in body for k in ("takeProfit", "stopLoss", "trailingStopLoss")):
        raise invalid("takeProfit")
    return [(key, kind, body[key]) for _, kind, key in ON_FILL if key in body]


def parse_close_units(raw: Any, key: str, *, words: tuple[str, ...] = ("ALL",)) -> str | int:
    """One of ``words`` or a positive whole number of units, as in ``PUT trades/{id}/close``
    (``units``: ``"ALL"`` or a number) and ``PUT positions/{inst}/close`` (``longUnits``,
    ``shortUnits``: also ``"NONE"``)."""
    if isinstance(raw, str) and raw in words:
        return raw
    try:
        d = parse_decimal(raw, key)
    except WireError:
        raise invalid(key) from None
    if d <= 0 or d != d.to_integral_value():
        raise invalid(key)
    return int(d)


def reject_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The client's fields echoed in a reject transaction (never its standard keys)."""
    return {k: v for k, v in spec.items() if k not in STANDARD_TX_KEYS}
