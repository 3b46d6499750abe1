"""Every endpoint the emulator serves, answered with the fields and types of OANDA's v20
reference (issue 13: "emulator answers audited against OANDA's v20 reference").

One table, :data:`ANSWERS`, names for each endpoint the keys its answer must carry and their
wire types: decimals are strings (prices, money, units), counts and precisions JSON numbers,
flags booleans, times RFC3339 with 9 fractional digits, IDs decimal strings. The objects
(account, trade, position, order, price, candle, instrument, transaction of each type) are
schemas of their own, checked wherever they appear. Answers come from the emulator driven by
``oandapyV20``'s own request classes. A second set of tests pins the transaction links:
``relatedTransactionIDs`` are exactly the IDs written for the request, contiguous from its
``batchID``; ``lastTransactionID`` is the newest; fills, cancels, replacements and the orders a
fill creates name each other.

Reference: developer.oanda.com (Account, Instrument, Order, Trade, Position, Pricing and
Transaction endpoints and definitions) and OANDA's v20 OpenAPI specification.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from oandapyV20.endpoints import (
    accounts,
    instruments,
    orders,
    positions,
    pricing,
    trades,
    transactions,
)
from oandapyV20.exceptions import StreamTerminated

from sep_research.emulator import Emulator, EmulatorConfig

# -- wire types ------------------------------------------------------------------------------

_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
_DEC = re.compile(r"^-?\d+(\.\d+)?$")
_ID = re.compile(r"^[1-9]\d*$")
_UNITS = re.compile(r"^-?\d+$")


class T:
    """Wire types: each is a predicate on a JSON value, with a name for messages."""

    def __init__(self, name: str, ok: Any) -> None:
        self.name, self.ok = name, ok

    def __repr__(self) -> str:
        return self.name


TIME = T("RFC3339 time with 9 digits", lambda v: isinstance(v, str) and bool(_TIME.match(v)))
DEC = T("decimal string", lambda v: isinstance(v, str) and bool(_DEC.match(v)))
MONEY = T("decimal string with 4 decimals",
          lambda v: isinstance(v, str) and bool(re.fullmatch(r"-?\d+\.\d{4}", v)))
PRICE = T("price string with 5 decimals",
          lambda v: isinstance(v, str) and bool(re.fullmatch(r"\d+\.\d{5}", v)))
UNITS = T("integer string", lambda v: isinstance(v, str) and bool(_UNITS.match(v)))
ID = T("ID string", lambda v: isinstance(v, str) and bool(_ID.match(v)))
STR = T("string", lambda v: isinstance(v, str) and v != "")
INT = T("integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
BOOL = T("boolean", lambda v: isinstance(v, bool))
OBJ = T("object", lambda v: isinstance(v, dict))
LIST = T("list", lambda v: isinstance(v, list))


def IDS(v: Any) -> bool:
    return isinstance(v, list) and all(ID.ok(x) for x in v)


IDLIST = T("list of ID strings", IDS)


def check(obj: Any, schema: Any, where: str) -> None:
    """``obj`` has every key of ``schema`` with its type (dicts and one-item lists nest)."""
    if isinstance(schema, T):
        assert schema.ok(obj), f"{where}: {obj!r} is not a {schema.name}"
    elif isinstance(schema, dict):
        assert isinstance(obj, dict), f"{where}: expected an object, got {obj!r}"
        for key, sub in schema.items():
            assert key in obj, f"{where}: no '{key}' (has {sorted(obj)})"
            check(obj[key], sub, f"{where}.{key}")
    elif isinstance(schema, list):
        assert isinstance(obj, list), f"{where}: expected a list, got {obj!r}"
        for i, item in enumerate(obj):
            check(item, schema[0], f"{where}[{i}]")
    elif callable(schema):
        schema(obj, where)
    else:  # a literal
        assert obj == schema, f"{where}: {obj!r} != {schema!r}"


# -- the objects -----------------------------------------------------------------------------

TX = {"id": ID, "time": TIME, "userID": INT, "accountID": STR, "batchID": ID,
      "requestID": STR, "type": STR}
PRICE_BUCKET = {"price": PRICE, "liquidity": INT}
CLIENT_PRICE = {"type": "PRICE", "instrument": STR, "time": TIME, "tradeable": BOOL,
                "bids": [PRICE_BUCKET], "asks": [PRICE_BUCKET], "closeoutBid": PRICE,
                "closeoutAsk": PRICE}
TX_BY_TYPE: dict[str, dict[str, Any]] = {
    "CREATE": {"divisionID": INT, "siteID": INT, "accountUserID": INT, "accountNumber": INT,
               "homeCurrency": STR},
    "CLIENT_CONFIGURE": {"marginRate": DEC},
    "CLIENT_CONFIGURE_REJECT": {"rejectReason": STR},
    "TRANSFER_FUNDS": {"amount": MONEY, "fundingReason": STR, "accountBalance": MONEY},
    "MARKET_ORDER": {"instrument": STR, "units": UNITS, "timeInForce": STR,
                     "positionFill": STR, "reason": STR},
    "LIMIT_ORDER": {"instrument": STR, "units": UNITS, "price": PRICE, "timeInForce": STR,
                    "positionFill": STR, "triggerCondition": STR, "reason": STR},
    "STOP_ORDER": {"instrument": STR, "units": UNITS, "price": PRICE, "timeInForce": STR,
                   "positionFill": STR, "triggerCondition": STR, "reason": STR},
    "TAKE_PROFIT_ORDER": {"tradeID": ID, "price": PRICE, "timeInForce": STR,
                          "triggerCondition": STR, "reason": STR},
    "STOP_LOSS_ORDER": {"tradeID": ID, "price": PRICE, "timeInForce": STR,
                        "triggerCondition": STR, "reason": STR},
    "TRAILING_STOP_LOSS_ORDER": {"tradeID": ID, "distance": PRICE, "timeInForce": STR,
                                 "triggerCondition": STR, "reason": STR},
    "ORDER_FILL": {
        "orderID": ID, "instrument": STR, "units": UNITS, "price": PRICE, "fullVWAP": PRICE,
        "fullPrice": {"type": "PRICE", "timestamp": TIME, "bids": [{"price": PRICE}],
                      "asks": [{"price": PRICE}], "closeoutBid": PRICE, "closeoutAsk": PRICE},
        "reason": STR, "pl": MONEY, "quotePL": MONEY, "financing": MONEY,
        "commission": MONEY, "guaranteedExecutionFee": MONEY, "halfSpreadCost": MONEY,
        "accountBalance": MONEY, "gainQuoteHomeConversionFactor": DEC,
        "lossQuoteHomeConversionFactor": DEC, "requestedUnits": UNITS},
    "ORDER_CANCEL": {"orderID": ID, "reason": STR},
    "ORDER_CANCEL_REJECT": {"rejectReason": STR},
    "ORDER_CLIENT_EXTENSIONS_MODIFY": {"orderID": ID},
    "TRADE_CLIENT_EXTENSIONS_MODIFY": {"tradeID": ID, "tradeClientExtensionsModify": OBJ},
    "MARKET_ORDER_REJECT": {"rejectReason": STR},
    "DAILY_FINANCING": {
        "financing": MONEY, "accountBalance": MONEY, "accountFinancingMode": STR,
        "positionFinancings": [{
            "instrument": STR, "financing": MONEY, "quoteFinancing": DEC,
            "homeConversionFactors": {"gainQuoteHome": {"factor": DEC},
                                      "lossQuoteHome": {"factor": DEC}},
            "accountFinancingMode": STR,
            "openTradeFinancings": [{"tradeID": ID, "financing": MONEY, "quoteFinancing": DEC,
                                     "financingRate": DEC}]}]},
}
TRADE_OPEN = {"tradeID": ID, "units": UNITS, "price": PRICE, "guaranteedExecutionFee": MONEY,
              "halfSpreadCost": MONEY, "initialMarginRequired": MONEY}
TRADE_REDUCE = {"tradeID": ID, "units": UNITS, "price": PRICE, "realizedPL": MONEY,
                "financing": MONEY, "guaranteedExecutionFee": MONEY, "halfSpreadCost": MONEY}


def TRANSACTION(tx: Any, where: str) -> None:
    """A transaction: the standard fields and those of its type (and of what it nests)."""
    check(tx, TX, where)
    check(tx, TX_BY_TYPE.get(tx["type"], {}), f"{where}<{tx['type']}>")
    if tx["type"] == "ORDER_FILL":
        if "tradeOpened" in tx:
            check(tx["tradeOpened"], TRADE_OPEN, f"{where}.tradeOpened")
        for i, c in enumerate(tx.get("tradesClosed", [])):
            check(c, TRADE_REDUCE, f"{where}.tradesClosed[{i}]")
        if "tradeReduced" in tx:
            check(tx["tradeReduced"], TRADE_REDUCE, f"{where}.tradeReduced")
        assert any(k in tx for k in ("tradeOpened", "tradesClosed", "tradeReduced")), where
    if tx.get("reason") == "ON_FILL":
        check(tx, {"orderFillTransactionID": ID}, where)


ORDER_BASE = {"id": ID, "createTime": TIME, "state": STR, "type": STR}


def ORDER(o: Any, where: str) -> None:
    check(o, ORDER_BASE, where)
    if o["type"] in ("MARKET", "LIMIT", "STOP"):
        check(o, {"instrument": STR, "units": UNITS, "timeInForce": STR, "positionFill": STR},
              where)
    else:
        check(o, {"tradeID": ID, "timeInForce": STR, "triggerCondition": STR}, where)
    if o["state"] == "FILLED":
        check(o, {"fillingTransactionID": ID, "filledTime": TIME}, where)
    if o["state"] == "CANCELLED":
        check(o, {"cancellingTransactionID": ID, "cancelledTime": TIME}, where)


TRADE_COMMON = {"id": ID, "instrument": STR, "price": PRICE, "openTime": TIME, "state": STR,
                "initialUnits": UNITS, "initialMarginRequired": MONEY, "currentUnits": UNITS,
                "realizedPL": MONEY, "unrealizedPL": MONEY, "marginUsed": MONEY,
                "financing": MONEY}


def TRADE(tr: Any, where: str) -> None:
    check(tr, TRADE_COMMON, where)
    for key in ("takeProfitOrder", "stopLossOrder", "trailingStopLossOrder"):
        if key in tr:
            ORDER(tr[key], f"{where}.{key}")
    if tr["state"] == "CLOSED":
        check(tr, {"closeTime": TIME, "closingTransactionIDs": IDLIST,
                   "averageClosePrice": PRICE}, where)


def TRADE_SUMMARY(tr: Any, where: str) -> None:
    check(tr, TRADE_COMMON, where)
    assert not {"takeProfitOrder", "stopLossOrder", "trailingStopLossOrder"} & set(tr), where


SIDE = {"units": UNITS, "pl": MONEY, "resettablePL": MONEY, "financing": MONEY,
        "guaranteedExecutionFees": MONEY, "unrealizedPL": MONEY}
POSITION = {"instrument": STR, "pl": MONEY, "resettablePL": MONEY, "unrealizedPL": MONEY,
            "marginUsed": MONEY, "financing": MONEY, "commission": MONEY,
            "guaranteedExecutionFees": MONEY, "long": SIDE, "short": SIDE}
SUMMARY = {
    "id": STR, "alias": STR, "currency": "USD", "balance": MONEY, "createdByUserID": INT,
    "createdTime": TIME, "guaranteedStopLossOrderMode": STR, "pl": MONEY,
    "resettablePL": MONEY, "financing": MONEY, "commission": MONEY,
    "dividendAdjustment": MONEY, "guaranteedExecutionFees": MONEY, "marginRate": DEC,
    "openTradeCount": INT, "openPositionCount": INT, "pendingOrderCount": INT,
    "hedgingEnabled": BOOL, "unrealizedPL": MONEY, "NAV": MONEY, "marginUsed": MONEY,
    "marginAvailable": MONEY, "positionValue": MONEY, "marginCloseoutUnrealizedPL": MONEY,
    "marginCloseoutNAV": MONEY, "marginCloseoutMarginUsed": MONEY,
    "marginCloseoutPercent": DEC, "marginCloseoutPositionValue": MONEY,
    "withdrawalLimit": MONEY, "marginCallMarginUsed": MONEY, "marginCallPercent": DEC,
    "lastTransactionID": ID, "lastOrderFillTimestamp": TIME}
ACCOUNT = {**SUMMARY, "trades": [TRADE_SUMMARY], "positions": [POSITION], "orders": [ORDER]}
INSTRUMENT = {"name": STR, "type": "CURRENCY", "displayName": STR, "pipLocation": INT,
              "displayPrecision": INT, "tradeUnitsPrecision": INT, "minimumTradeSize": DEC,
              "maximumTrailingStopDistance": DEC, "minimumTrailingStopDistance": DEC,
              "maximumPositionSize": DEC, "maximumOrderUnits": DEC, "marginRate": DEC,
              "financing": {"longRate": DEC, "shortRate": DEC,
                            "financingDaysOfWeek": [{"dayOfWeek": STR, "daysCharged": INT}]}}
OHLC = {"o": PRICE, "h": PRICE, "l": PRICE, "c": PRICE}
CANDLE = {"time": TIME, "volume": INT, "complete": BOOL, "mid": OHLC, "bid": OHLC, "ask": OHLC}
WRITE = {"relatedTransactionIDs": IDLIST, "lastTransactionID": ID}
LAST = {"lastTransactionID": ID}
STATE = {"unrealizedPL": MONEY, "NAV": MONEY, "marginUsed": MONEY, "marginAvailable": MONEY,
         "positionValue": MONEY, "marginCloseoutUnrealizedPL": MONEY,
         "marginCloseoutNAV": MONEY, "marginCloseoutMarginUsed": MONEY,
         "marginCloseoutPercent": DEC, "marginCloseoutPositionValue": MONEY,
         "withdrawalLimit": MONEY, "marginCallMarginUsed": MONEY, "marginCallPercent": DEC,
         "orders": [{"id": ID}], "trades": [{"id": ID, "unrealizedPL": MONEY,
                                              "marginUsed": MONEY}],
         "positions": [{"instrument": STR, "netUnrealizedPL": MONEY, "longUnrealizedPL": MONEY,
                        "shortUnrealizedPL": MONEY, "marginUsed": MONEY}]}

#: endpoint -> the keys its answer must carry, with their types.
ANSWERS: dict[str, dict[str, Any]] = {
    "GET accounts": {"accounts": [{"id": STR, "tags": LIST}]},
    "GET accounts/{id}": {"account": ACCOUNT, **LAST},
    "GET accounts/{id}/summary": {"account": SUMMARY, **LAST},
    "GET accounts/{id}/instruments": {"instruments": [INSTRUMENT], **LAST},
    "GET accounts/{id}/changes": {
        "changes": {k: [ORDER] for k in ("ordersCreated", "ordersCancelled", "ordersFilled",
                                         "ordersTriggered")}
        | {k: [TRADE] for k in ("tradesOpened", "tradesReduced", "tradesClosed")}
        | {"positions": [POSITION], "transactions": [TRANSACTION]},
        "state": STATE, **LAST},
    "PATCH accounts/{id}/configuration": {"clientConfigureTransaction": TRANSACTION, **LAST},
    "GET instruments/{inst}/candles": {"instrument": STR, "granularity": STR,
                                       "candles": [CANDLE]},
    "GET accounts/{id}/pricing": {"prices": [CLIENT_PRICE], "time": TIME},
    "STREAM accounts/{id}/pricing/stream": {"price": CLIENT_PRICE,
                                            "heartbeat": {"type": "HEARTBEAT", "time": TIME}},
    "POST accounts/{id}/orders (filled)": {"orderCreateTransaction": TRANSACTION,
                                           "orderFillTransaction": TRANSACTION, **WRITE},
    "POST accounts/{id}/orders (pending)": {"orderCreateTransaction": TRANSACTION, **WRITE},
    "POST accounts/{id}/orders (cancelled)": {"orderCreateTransaction": TRANSACTION,
                                              "orderCancelTransaction": TRANSACTION, **WRITE},
    "POST accounts/{id}/orders (rejected, 400)": {
        "orderRejectTransaction": TRANSACTION, "errorCode": STR, "errorMessage": STR,
        **WRITE},
    "GET accounts/{id}/orders": {"orders": [ORDER], **LAST},
    "GET accounts/{id}/pendingOrders": {"orders": [ORDER], **LAST},
    "GET accounts/{id}/orders/{oid}": {"order": ORDER, **LAST},
    "PUT accounts/{id}/orders/{oid}": {"orderCancelTransaction": TRANSACTION,
                                       "orderCreateTransaction": TRANSACTION, **WRITE},
    "PUT accounts/{id}/orders/{oid}/cancel": {"orderCancelTransaction": TRANSACTION, **WRITE},
    "PUT accounts/{id}/orders/{oid}/cancel (not pending, 404)": {
        "orderCancelRejectTransaction": TRANSACTION, "errorCode": STR, "errorMessage": STR,
        **WRITE},
    "PUT accounts/{id}/orders/{oid}/clientExtensions": {
        "orderClientExtensionsModifyTransaction": TRANSACTION, **WRITE},
    "GET accounts/{id}/trades": {"trades": [TRADE], **LAST},
    "GET accounts/{id}/openTrades": {"trades": [TRADE], **LAST},
    "GET accounts/{id}/trades/{tid}": {"trade": TRADE, **LAST},
    "PUT accounts/{id}/trades/{tid}/close": {"orderCreateTransaction": TRANSACTION,
                                             "orderFillTransaction": TRANSACTION, **WRITE},
    "PUT accounts/{id}/trades/{tid}/orders": {
        "takeProfitOrderTransaction": TRANSACTION, "stopLossOrderTransaction": TRANSACTION,
        "stopLossOrderCancelTransaction": TRANSACTION, **WRITE},
    "PUT accounts/{id}/trades/{tid}/clientExtensions": {
        "tradeClientExtensionsModifyTransaction": TRANSACTION, **WRITE},
    "GET accounts/{id}/positions": {"positions": [POSITION], **LAST},
    "GET accounts/{id}/openPositions": {"positions": [POSITION], **LAST},
    "GET accounts/{id}/positions/{inst}": {"position": POSITION, **LAST},
    "PUT accounts/{id}/positions/{inst}/close": {"longOrderCreateTransaction": TRANSACTION,
                                                 "longOrderFillTransaction": TRANSACTION,
                                                 **WRITE},
    "GET accounts/{id}/transactions": {"from": TIME, "to": TIME, "pageSize": INT,
                                       "count": INT, "pages": [STR], **LAST},
    "GET accounts/{id}/transactions/{txid}": {"transaction": TRANSACTION, **LAST},
    "GET accounts/{id}/transactions/idrange": {"transactions": [TRANSACTION], **LAST},
    "GET accounts/{id}/transactions/sinceid": {"transactions": [TRANSACTION], **LAST},
    "STREAM accounts/{id}/transactions/stream": {
        "transaction": TRANSACTION,
        "heartbeat": {"type": "HEARTBEAT", "time": TIME, "lastTransactionID": ID}},
}


def _stream_first(api: Any, req: Any, want: set[str]) -> dict[str, dict]:
    seen: dict[str, dict] = {}
    with pytest.raises(StreamTerminated):
        for msg in api.request(req):
            kind = "heartbeat" if msg["type"] == "HEARTBEAT" else (
                "price" if msg["type"] == "PRICE" else "transaction")
            seen.setdefault(kind, msg)
            if want <= set(seen):
                req.terminate("enough")
    return seen


@pytest.fixture(scope="module")
def answers() -> dict[str, Any]:
    """One live answer per endpoint of the table, from a session that reaches every one."""
    import threading

    from oandapyV20.exceptions import V20Error

    cfg = EmulatorConfig(source="sample", heartbeat_s=0.2, price_interval_s=0.05)
    got: dict[str, Any] = {}
    with Emulator(cfg) as emu:
        api = emu.api(request_params={"timeout": 10})
        a = emu.account_id
        got["GET accounts"] = api.request(accounts.AccountList())
        got["PATCH accounts/{id}/configuration"] = api.request(
            accounts.AccountConfiguration(a, data={"alias": "audit", "marginRate": "0.05"}))
        mkt = {"type": "MARKET", "instrument": "EUR_USD"}
        got["POST accounts/{id}/orders (filled)"] = first = api.request(orders.OrderCreate(
            a, data={"order": {**mkt, "units": "1000", "clientExtensions": {"id": "o-1"},
                               "tradeClientExtensions": {"id": "t-1"},
                               "takeProfitOnFill": {"price": "1.30000"},
                               "stopLossOnFill": {"distance": "0.00500"},
                               "trailingStopLossOnFill": {"distance": "0.05000"}}}))
        tid = first["orderFillTransaction"]["tradeOpened"]["tradeID"]
        api.request(orders.OrderCreate(a, data={"order": {**mkt, "units": "400"}}))
        got["POST accounts/{id}/orders (pending)"] = lim = api.request(orders.OrderCreate(
            a, data={"order": {"type": "LIMIT", "instrument": "EUR_USD", "units": "-10",
                               "price": "1.30000"}}))
        oid = lim["orderCreateTransaction"]["id"]
        got["POST accounts/{id}/orders (cancelled)"] = api.request(orders.OrderCreate(
            a, data={"order": {**mkt, "units": "90000000"}}))
        try:
            api.request(orders.OrderCreate(a, data={"order": {**mkt, "units": "0"}}))
        except V20Error as exc:
            import json

            got["POST accounts/{id}/orders (rejected, 400)"] = json.loads(exc.msg)
        got["PUT accounts/{id}/orders/{oid}/clientExtensions"] = api.request(
            orders.OrderClientExtensions(a, oid, data={"clientExtensions": {"comment": "c"}}))
        got["PUT accounts/{id}/orders/{oid}"] = rep = api.request(orders.OrderReplace(
            a, oid, data={"order": {"type": "LIMIT", "instrument": "EUR_USD", "units": "-20",
                                    "price": "1.30000"}}))
        new_oid = rep["orderCreateTransaction"]["id"]
        got["GET accounts/{id}/orders/{oid}"] = api.request(orders.OrderDetails(a, new_oid))
        got["PUT accounts/{id}/orders/{oid}/cancel"] = api.request(
            orders.OrderCancel(a, new_oid))
        try:
            api.request(orders.OrderCancel(a, new_oid))
        except V20Error as exc:
            import json

            got["PUT accounts/{id}/orders/{oid}/cancel (not pending, 404)"] = json.loads(exc.msg)
        got["PUT accounts/{id}/trades/{tid}/orders"] = api.request(trades.TradeCRCDO(
            a, tid, data={"takeProfit": {"price": "1.40000"}, "stopLoss": {"price": "1.00000"}}))
        got["PUT accounts/{id}/trades/{tid}/clientExtensions"] = api.request(
            trades.TradeClientExtensions(a, tid, data={"clientExtensions": {"tag": "x"}}))
        # from 13:00Z on a Tuesday past its 17:00 New York rollover: the open trades are
        # financed (a DAILY_FINANCING), and the account, trades and positions carry it
        emu.clock.set("2017-09-12T21:30:00Z")
        got["GET accounts/{id}"] = api.request(accounts.AccountDetails(a))
        got["GET accounts/{id}/summary"] = api.request(accounts.AccountSummary(a))
        got["GET accounts/{id}/instruments"] = api.request(accounts.AccountInstruments(a))
        got["GET accounts/{id}/orders"] = api.request(orders.OrderList(
            a, params={"state": "ALL"}))
        got["GET accounts/{id}/pendingOrders"] = api.request(orders.OrdersPending(a))
        got["GET accounts/{id}/openTrades"] = api.request(trades.OpenTrades(a))
        got["GET accounts/{id}/trades/{tid}"] = api.request(trades.TradeDetails(a, tid))
        got["GET accounts/{id}/openPositions"] = api.request(positions.OpenPositions(a))
        got["GET accounts/{id}/positions/{inst}"] = api.request(
            positions.PositionDetails(a, "EUR_USD"))
        got["GET instruments/{inst}/candles"] = api.request(instruments.InstrumentsCandles(
            "EUR_USD", params={"granularity": "H1", "count": 5, "price": "MBA"}))
        got["GET accounts/{id}/pricing"] = api.request(pricing.PricingInfo(
            a, params={"instruments": "EUR_USD"}))
        s = _stream_first(api, pricing.PricingStream(a, params={"instruments": "EUR_USD"}),
                          {"price", "heartbeat"})
        got["STREAM accounts/{id}/pricing/stream"] = s
        box: dict[str, Any] = {}

        def tx_stream() -> None:
            box.update(_stream_first(emu.api(request_params={"timeout": 10}),
                                     transactions.TransactionsStream(a),
                                     {"transaction", "heartbeat"}))

        th = threading.Thread(target=tx_stream)
        th.start()
        import time

        time.sleep(0.3)
        got["PUT accounts/{id}/trades/{tid}/close"] = api.request(trades.TradeClose(
            a, tid, data={"units": "100"}))
        th.join(10)
        got["STREAM accounts/{id}/transactions/stream"] = box
        got["PUT accounts/{id}/positions/{inst}/close"] = api.request(positions.PositionClose(
            a, "EUR_USD", data={"longUnits": "ALL"}))
        got["GET accounts/{id}/trades"] = api.request(trades.TradesList(
            a, params={"state": "ALL"}))
        got["GET accounts/{id}/positions"] = api.request(positions.PositionList(a))
        got["GET accounts/{id}/changes"] = api.request(accounts.AccountChanges(
            a, params={"sinceTransactionID": 3}))
        got["GET accounts/{id}/transactions"] = api.request(transactions.TransactionList(a))
        got["GET accounts/{id}/transactions/{txid}"] = api.request(
            transactions.TransactionDetails(a, first["orderFillTransaction"]["id"]))
        last = int(got["GET accounts/{id}/summary"]["lastTransactionID"])
        got["GET accounts/{id}/transactions/idrange"] = api.request(
            transactions.TransactionIDRange(a, params={"from": 1, "to": last}))
        got["GET accounts/{id}/transactions/sinceid"] = api.request(
            transactions.TransactionsSinceID(a, params={"id": 3}))
        got["_log"] = emu.transactions()
    return got


@pytest.mark.parametrize("endpoint", sorted(ANSWERS))
def test_answer_fields_and_types(answers, endpoint):
    """Each endpoint's answer carries the v20 reference's keys with their wire types."""
    assert endpoint in answers, f"the session did not reach {endpoint}"
    check(answers[endpoint], ANSWERS[endpoint], endpoint)


def test_every_transaction_of_the_session_has_its_fields(answers):
    types = set()
    for i, tx in enumerate(answers["_log"]):
        TRANSACTION(tx, f"transaction {i + 1}")
        types.add(tx["type"])
    assert {"ORDER_FILL", "ORDER_CANCEL", "MARKET_ORDER", "LIMIT_ORDER", "TAKE_PROFIT_ORDER",
            "STOP_LOSS_ORDER", "TRAILING_STOP_LOSS_ORDER", "DAILY_FINANCING"} <= types


def test_daily_financing_reaches_account_trades_and_positions(answers):
    """The session's DAILY_FINANCING is in the account's ``financing``, its trades' and its
    position's (the fields above are there; here they are not zero and add up)."""
    (fin,) = [t for t in answers["_log"] if t["type"] == "DAILY_FINANCING"]
    assert fin["time"] == "2017-09-12T21:00:00.000000000Z"
    (pos,) = fin["positionFinancings"]
    assert len(pos["openTradeFinancings"]) == 2
    acct = answers["GET accounts/{id}"]["account"]
    assert acct["financing"] == fin["financing"] != "0.0000"
    assert acct["positions"][0]["financing"] == pos["financing"]
    by_trade = {t["id"]: t["financing"] for t in acct["trades"]}
    assert by_trade == {x["tradeID"]: x["financing"] for x in pos["openTradeFinancings"]}


# -- transaction links -----------------------------------------------------------------------

WRITES = [k for k, v in ANSWERS.items() if "relatedTransactionIDs" in v]


@pytest.mark.parametrize("endpoint", WRITES)
def test_related_ids_are_the_transactions_of_the_request(answers, endpoint):
    """``relatedTransactionIDs`` lists exactly the request's transactions, contiguous from its
    batch; every transaction in the answer is among them and carries that batch; the answer's
    ``lastTransactionID`` is the newest of them."""
    out = answers[endpoint]
    related = out["relatedTransactionIDs"]
    ids = [int(x) for x in related]
    assert ids == list(range(ids[0], ids[0] + len(ids))), related
    assert out["lastTransactionID"] == related[-1]
    log = answers["_log"]
    batch = {tx["batchID"] for tx in log if tx["id"] in related}
    assert batch == {related[0]}, (endpoint, batch)
    assert [tx["id"] for tx in log if tx["batchID"] == related[0]] == related
    for key, tx in out.items():
        if key.endswith("Transaction"):
            assert tx["id"] in related and tx["batchID"] == related[0], (endpoint, key)


def test_trade_close_answer_links(answers):
    """The trade-close answer (issue 13, first): its MARKET_ORDER names the trade, its fill
    names the order and reduces the trade, and both are listed with the newest ID."""
    out = answers["PUT accounts/{id}/trades/{tid}/close"]
    create, fill = out["orderCreateTransaction"], out["orderFillTransaction"]
    assert create["reason"] == "TRADE_CLOSE" and create["tradeClose"]["units"] == "100"
    assert fill["orderID"] == create["id"] and fill["reason"] == "MARKET_ORDER_TRADE_CLOSE"
    assert fill["tradeReduced"]["tradeID"] == create["tradeClose"]["tradeID"]
    assert out["relatedTransactionIDs"] == [create["id"], fill["id"]]
    assert out["lastTransactionID"] == fill["id"]


def test_fill_cancel_and_replacement_links(answers):
    """Orders created on fill name the fill; replacements name each other; the orders record
    the transactions that filled or cancelled them."""
    first = answers["POST accounts/{id}/orders (filled)"]
    fill = first["orderFillTransaction"]
    log = {tx["id"]: tx for tx in answers["_log"]}
    on_fill = [log[i] for i in first["relatedTransactionIDs"][2:]]
    assert [t["type"] for t in on_fill] == ["TAKE_PROFIT_ORDER", "STOP_LOSS_ORDER",
                                            "TRAILING_STOP_LOSS_ORDER"]
    for t in on_fill:
        assert t["reason"] == "ON_FILL" and t["orderFillTransactionID"] == fill["id"]
        assert t["tradeID"] == fill["tradeOpened"]["tradeID"] and t["clientTradeID"] == "t-1"
    rep = answers["PUT accounts/{id}/orders/{oid}"]
    cancel, create = rep["orderCancelTransaction"], rep["orderCreateTransaction"]
    assert cancel["replacedByOrderID"] == create["id"]
    assert create["replacesOrderID"] == cancel["orderID"]
    crc = answers["PUT accounts/{id}/trades/{tid}/orders"]
    assert crc["stopLossOrderCancelTransaction"]["replacedByOrderID"] == \
        crc["stopLossOrderTransaction"]["id"]
    orders_ = {o["id"]: o for o in answers["GET accounts/{id}/orders"]["orders"]}
    assert orders_[first["orderCreateTransaction"]["id"]]["fillingTransactionID"] == fill["id"]
    assert orders_[cancel["orderID"]]["cancellingTransactionID"] == cancel["id"]
    assert orders_[cancel["orderID"]]["replacedByOrderID"] == create["id"]
    trade = answers["GET accounts/{id}/trades/{tid}"]["trade"]
    assert trade["id"] == fill["id"] and trade["clientExtensions"]["id"] == "t-1"


def test_order_create_location_and_list_link_headers():
    """201 answers carry ``Location`` (the created order); lists cut by ``count`` carry
    ``Link: <...beforeID=N>; rel="next"``, as OANDA's reference says."""
    import requests

    with Emulator(EmulatorConfig(source="sample")) as emu:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {emu.token}"
        base = f"{emu.base_url}/v3/accounts/{emu.account_id}"
        for _ in range(3):
            r = s.post(f"{base}/orders", timeout=5, json={"order": {
                "type": "MARKET", "instrument": "EUR_USD", "units": "10"}})
            assert r.status_code == 201
            oid = r.json()["orderCreateTransaction"]["id"]
            assert r.headers["Location"].endswith(f"/v3/accounts/{emu.account_id}/orders/{oid}")
        r = s.get(f"{base}/trades", params={"count": 2}, timeout=5)
        got = r.json()["trades"]
        assert len(got) == 2
        assert r.headers["Link"] == (f'<http://127.0.0.1:{emu.port}/v3/accounts/'
                                     f'{emu.account_id}/trades?count=2&beforeID={got[-1]["id"]}>;'
                                     ' rel="next"')
        rest = s.get(f"{base}/trades", params={"count": 2, "beforeID": got[-1]["id"]},
                     timeout=5)
        assert len(rest.json()["trades"]) == 1 and "Link" not in rest.headers


def test_dependent_order_at_a_reached_price_fills_in_the_same_answer():
    """A take-profit set on a trade at a price the market is already past fills at once, in
    the answer (``takeProfitOrderFillTransaction``), as OANDA's reference lists."""
    with Emulator(EmulatorConfig(source="sample")) as emu:
        api = emu.api()
        a = emu.account_id
        fill = api.request(orders.OrderCreate(a, data={"order": {
            "type": "MARKET", "instrument": "EUR_USD", "units": "100"}}))["orderFillTransaction"]
        out = api.request(trades.TradeCRCDO(a, fill["id"], data={
            "takeProfit": {"price": "1.00000"}, "stopLoss": {"price": "0.90000"}}))
        tp_fill = out["takeProfitOrderFillTransaction"]
        assert tp_fill["reason"] == "TAKE_PROFIT_ORDER"
        assert tp_fill["orderID"] == out["takeProfitOrderTransaction"]["id"]
        assert tp_fill["tradesClosed"][0]["tradeID"] == fill["id"]
        ids = [int(i) for i in out["relatedTransactionIDs"]]
        assert ids == list(range(ids[0], ids[-1] + 1)) and out["lastTransactionID"] == str(ids[-1])
        log = {t["id"]: t for t in emu.transactions()}
        sl_cancel = [log[str(i)] for i in ids if log[str(i)]["type"] == "ORDER_CANCEL"]
        assert [c["reason"] for c in sl_cancel] == ["LINKED_TRADE_CLOSED"]
        assert api.request(trades.TradeDetails(a, fill["id"]))["trade"]["state"] == "CLOSED"
