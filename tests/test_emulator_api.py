"""The emulator driven through oandapyV20's own request classes (no hand-written HTTP).

Realism checks use the packaged real EUR_USD H1 sample; mechanics that need a second
instrument use ``synthetic_candles`` (labelled synthetic).
"""

from __future__ import annotations

import json
import re
import threading
import time
from decimal import Decimal

import pandas as pd
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
from oandapyV20.exceptions import StreamTerminated, V20Error

from sep_research.data import load_sample, synthetic_candles
from sep_research.emulator import Emulator, EmulatorConfig

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
TX_FIELDS = {"id", "time", "userID", "accountID", "batchID", "requestID", "type"}


@pytest.fixture
def emu():
    with Emulator(EmulatorConfig(source="sample", heartbeat_s=0.3, price_interval_s=0.05)) as e:
        yield e


@pytest.fixture
def api(emu):
    a = emu.api(request_params={"timeout": 10})
    yield a
    a.close()


def err(exc: pytest.ExceptionInfo) -> tuple[int, dict]:
    return exc.value.code, json.loads(exc.value.msg)


def market(api, acct, units, **extra):
    body = {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": str(units), **extra}}
    r = orders.OrderCreate(acct, data=body)
    out = api.request(r)
    assert r.status_code == 201
    return out


def check_tx(tx: dict, acct: str) -> None:
    assert TX_FIELDS <= set(tx), TX_FIELDS - set(tx)
    assert tx["accountID"] == acct
    assert isinstance(tx["id"], str) and tx["id"].isdigit()
    assert isinstance(tx["batchID"], str) and TIME_RE.match(tx["time"])


def d(x: str) -> Decimal:
    assert isinstance(x, str), x
    return Decimal(x)


# -- accounts --------------------------------------------------------------------------------


def test_accounts_and_initial_transactions(emu, api):
    got = api.request(accounts.AccountList())
    assert got == {"accounts": [{"id": emu.account_id, "tags": []}]}
    summ = api.request(accounts.AccountSummary(emu.account_id))["account"]
    assert summ["id"] == emu.account_id and summ["currency"] == "USD"
    assert summ["balance"] == "100000.0000" and summ["lastTransactionID"] == "3"
    assert summ["hedgingEnabled"] is False and isinstance(summ["openTradeCount"], int)
    det = api.request(accounts.AccountDetails(emu.account_id))
    assert det["lastTransactionID"] == "3"
    assert {"trades", "positions", "orders"} <= set(det["account"])
    txs = api.request(transactions.TransactionIDRange(emu.account_id,
                                                      params={"from": 1, "to": 3}))
    assert [t["type"] for t in txs["transactions"]] == ["CREATE", "CLIENT_CONFIGURE",
                                                          "TRANSFER_FUNDS"]
    for tx in txs["transactions"]:
        check_tx(tx, emu.account_id)
    ins = api.request(accounts.AccountInstruments(emu.account_id))["instruments"]
    assert ins[0]["name"] == "EUR_USD" and ins[0]["pipLocation"] == -4
    assert ins[0]["displayPrecision"] == 5 and ins[0]["tradeUnitsPrecision"] == 0
    assert isinstance(ins[0]["marginRate"], str)


def test_account_configuration(emu, api):
    r = accounts.AccountConfiguration(emu.account_id, data={"alias": "rehearsal",
                                                            "marginRate": "0.05"})
    got = api.request(r)
    tx = got["clientConfigureTransaction"]
    assert tx["type"] == "CLIENT_CONFIGURE" and tx["marginRate"] == "0.05"
    assert got["lastTransactionID"] == tx["id"] == "4"
    summ = api.request(accounts.AccountSummary(emu.account_id))["account"]
    assert summ["alias"] == "rehearsal" and summ["marginRate"] == "0.05"
    with pytest.raises(V20Error) as e:
        api.request(accounts.AccountConfiguration(emu.account_id, data={"marginRate": "7"}))
    assert err(e)[0] == 400 and err(e)[1]["errorCode"] == "MARGIN_RATE_INVALID"


def test_auth_401_403_and_404(emu):
    from sep_research.emulator import make_api

    with pytest.raises(V20Error) as e:
        make_api(emu.base_url, "wrong-token").request(accounts.AccountList())
    assert err(e) == (401, {"errorMessage": "Insufficient authorization to perform request."})
    with pytest.raises(V20Error) as e:
        make_api(emu.base_url, "").request(accounts.AccountSummary(emu.account_id))
    assert e.value.code == 401
    api = emu.api()
    with pytest.raises(V20Error) as e:
        api.request(accounts.AccountSummary(emu.config.foreign_account_id))
    assert err(e) == (403, {"errorMessage": "The provided request was forbidden."})
    with pytest.raises(V20Error) as e:
        api.request(orders.OrderDetails(emu.account_id, "999"))
    code, body = err(e)
    assert code == 404 and body["errorCode"] == "NO_SUCH_ORDER"
    assert body["errorMessage"] == "The order ID specified does not exist"
    with pytest.raises(V20Error) as e:
        api.request(trades.TradeDetails(emu.account_id, "999"))
    assert err(e)[1]["errorCode"] == "NO_SUCH_TRADE"
    with pytest.raises(V20Error) as e:
        api.request(transactions.TransactionDetails(emu.account_id, "999"))
    assert err(e)[0] == 404 and err(e)[1]["errorCode"] == "NO_SUCH_TRANSACTION"


def test_account_identities_hold_while_prices_move(emu, api):
    acct = emu.account_id
    market(api, acct, 10000)
    market(api, acct, -3000)
    for _ in range(6):
        emu.clock.advance(seconds=1700)
        a = api.request(accounts.AccountSummary(acct))["account"]
        for key in ("balance", "NAV", "unrealizedPL", "marginUsed", "marginAvailable",
                    "positionValue", "pl"):
            assert re.fullmatch(r"-?\d+\.\d{4}", a[key]), (key, a[key])
        assert d(a["NAV"]) == d(a["balance"]) + d(a["unrealizedPL"])
        assert d(a["marginUsed"]) == (d(a["positionValue"]) * d(a["marginRate"])).quantize(
            Decimal("0.0001"))
        assert d(a["marginAvailable"]) == d(a["NAV"]) - d(a["marginUsed"])
        assert a["openTradeCount"] == 1 and a["openPositionCount"] == 1
    ch = api.request(accounts.AccountChanges(acct, params={"sinceTransactionID": 3}))
    assert [t["id"] for t in ch["changes"]["transactions"]] == [str(i) for i in range(4, 8)]
    assert len(ch["changes"]["tradesOpened"]) == 1 and ch["state"]["NAV"] == a["NAV"]


# -- candles ---------------------------------------------------------------------------------


def test_candles_match_the_sample_and_types(emu, api):
    frame = load_sample()
    r = api.request(instruments.InstrumentsCandles(
        "EUR_USD", params={"granularity": "H1", "count": 50, "price": "MBA"}))
    assert r["instrument"] == "EUR_USD" and r["granularity"] == "H1"
    cs = r["candles"]
    assert len(cs) == 50
    for c in cs:
        assert TIME_RE.match(c["time"]) and isinstance(c["volume"], int)
        assert isinstance(c["complete"], bool)
        for side in ("mid", "bid", "ask"):
            assert all(isinstance(c[side][k], str) for k in "ohlc")
            assert len(c[side]["o"].split(".")[1]) == 5
        assert d(c["bid"]["c"]) < d(c["mid"]["c"]) < d(c["ask"]["c"])
    # the clock sits at a candle start: the newest candle is forming, the rest match the data
    assert cs[-1]["complete"] is False and all(c["complete"] for c in cs[:-1])
    for c in cs[:-1]:
        row = frame.loc[pd.Timestamp(c["time"])]
        assert float(c["mid"]["o"]) == pytest.approx(row["open"], abs=1e-9)
        assert float(c["mid"]["h"]) == pytest.approx(row["high"], abs=1e-9)
        assert c["volume"] == row["volume"]
    assert pd.Timestamp(cs[-1]["time"]) == pd.Timestamp(emu.clock.now())


def test_forming_candle_walks_to_the_stored_candle(emu, api):
    frame = load_sample()
    t0 = pd.Timestamp(emu.clock.now())
    row = frame.loc[t0]
    seen = []
    for _ in range(6):
        emu.clock.advance(seconds=600)
        cs = api.request(instruments.InstrumentsCandles(
            "EUR_USD", params={"granularity": "H1", "count": 2}))["candles"]
        c = next(x for x in cs if pd.Timestamp(x["time"]) == t0)
        seen.append(c)
        if c["complete"]:
            break
        assert c["time"].startswith(t0.strftime("%Y-%m-%dT%H")) and c["mid"]["o"] == \
            f"{row['open']:.5f}"
        assert d(c["mid"]["l"]) <= d(c["mid"]["c"]) <= d(c["mid"]["h"])
    vols = [c["volume"] for c in seen]
    assert vols == sorted(vols) and vols[-1] == row["volume"]
    last = seen[-1]
    assert last["complete"] is True
    assert [last["mid"][k] for k in "ohlc"] == [f"{row[k]:.5f}" for k in
                                                 ("open", "high", "low", "close")]


def test_candles_aggregate_to_coarser_granularities(emu, api):
    frame = load_sample()
    emu.clock.advance(candles=100)
    h4 = api.request(instruments.InstrumentsCandles(
        "EUR_USD", params={"granularity": "H4", "count": 30}))["candles"]
    for c in h4[:-1]:
        t = pd.Timestamp(c["time"])
        part = frame[(frame.index >= t) & (frame.index < t + pd.Timedelta(hours=4))]
        assert c["mid"]["h"] == f"{part['high'].max():.5f}"
        assert c["mid"]["l"] == f"{part['low'].min():.5f}"
        assert c["mid"]["o"] == f"{part['open'].iloc[0]:.5f}"
        assert c["volume"] == int(part["volume"].sum())
    daily = api.request(instruments.InstrumentsCandles(
        "EUR_USD", params={"granularity": "D", "count": 10}))["candles"]
    for c in daily:
        hour = pd.Timestamp(c["time"]).hour
        assert hour in (21, 22), c["time"]  # 17:00 New York
    weekly = api.request(instruments.InstrumentsCandles(
        "EUR_USD", params={"granularity": "W", "count": 3}))["candles"]
    assert all(pd.Timestamp(c["time"]).day_name() == "Friday" for c in weekly)


def test_candles_from_to_paging(emu, api):
    frame = load_sample()
    t0 = frame.index[100]
    p = {"granularity": "H1", "from": t0.strftime("%Y-%m-%dT%H:%M:%SZ"), "count": 10}
    a = api.request(instruments.InstrumentsCandles("EUR_USD", params=p))["candles"]
    assert pd.Timestamp(a[0]["time"]) == t0 and len(a) == 10
    p["includeFirst"] = False
    b = api.request(instruments.InstrumentsCandles("EUR_USD", params=p))["candles"]
    assert b[0]["time"] == a[1]["time"]
    to = frame.index[120].strftime("%Y-%m-%dT%H:%M:%SZ")
    c = api.request(instruments.InstrumentsCandles(
        "EUR_USD", params={"granularity": "H1", "from": p["from"], "to": to}))["candles"]
    assert len(c) == 20 and pd.Timestamp(c[-1]["time"]) == frame.index[119]
    unix = emu.api(headers={"Accept-Datetime-Format": "UNIX"})
    u = unix.request(instruments.InstrumentsCandles(
        "EUR_USD", params={"granularity": "H1", "count": 2}))["candles"]
    assert re.fullmatch(r"\d+\.\d{9}", u[0]["time"])


@pytest.mark.parametrize("params,message", [
    ({"granularity": "M1"}, "Invalid value specified for 'granularity'"),
    ({"granularity": "H7"}, "Invalid value specified for 'granularity'"),
    ({"count": 5001}, "Maximum value for 'count' exceeded"),
    ({"count": "ten"}, "Invalid value specified for 'count'"),
    ({"count": 0}, "Invalid value specified for 'count'"),
    ({"price": "X"}, "Invalid value specified for 'price'"),
    ({"to": "2030-01-01T00:00:00Z"},
     "Invalid value specified for 'to'. Time is in the future"),
    ({"from": "2017-06-01T00:00:00Z", "to": "2017-06-02T00:00:00Z", "count": 5},
     "'count' cannot be specified when 'to' and 'from' parameters are set"),
    ({"from": "yesterday"}, "Invalid value specified for 'from'"),
    ({"dailyAlignment": 25, "granularity": "D"}, "Invalid value specified for 'dailyAlignment'"),
    ({"alignmentTimezone": "Mars/Base", "granularity": "D"},
     "Invalid value specified for 'alignmentTimezone'"),
])
def test_candle_errors(emu, api, params, message):
    emu.clock.set("2018-02-01T00:00:00Z")
    base = {"granularity": "H1"}
    base.update(params)
    with pytest.raises(V20Error) as e:
        api.request(instruments.InstrumentsCandles("EUR_USD", params=base))
    assert err(e) == (400, {"errorMessage": message})


def test_from_to_range_over_5000_candles():
    frames = {"EUR_USD": synthetic_candles(6000, granularity="M1")}
    with Emulator(EmulatorConfig(candles=frames, start="2024-01-05T00:00:00Z")) as emu:
        with pytest.raises(V20Error) as e:
            emu.api().request(instruments.InstrumentsCandles("EUR_USD", params={
                "granularity": "M1", "from": "2024-01-01T00:00:00Z",
                "to": "2024-01-04T12:00:00Z"}))
        assert err(e) == (400, {"errorMessage": "Maximum value for 'count' exceeded"})


def test_unknown_instrument(api):
    with pytest.raises(V20Error) as e:
        api.request(instruments.InstrumentsCandles("XXX_YYY", params={"granularity": "H1"}))
    assert err(e) == (400, {"errorMessage": "Invalid value specified for 'instrument'"})


# -- pricing and the weekend -----------------------------------------------------------------


def test_pricing_and_weekend_halt(emu, api):
    acct = emu.account_id
    p = api.request(pricing.PricingInfo(acct, params={"instruments": "EUR_USD"}))
    pr = p["prices"][0]
    assert pr["type"] == "PRICE" and pr["tradeable"] is True
    assert isinstance(pr["bids"][0]["price"], str) and isinstance(pr["bids"][0]["liquidity"], int)
    assert d(pr["asks"][0]["price"]) - d(pr["bids"][0]["price"]) == Decimal("0.00014")
    emu.clock.set("2017-09-16T12:00:00Z")  # a Saturday
    pr = api.request(pricing.PricingInfo(acct, params={"instruments": "EUR_USD"}))["prices"][0]
    assert pr["tradeable"] is False
    assert pd.Timestamp(pr["time"]) <= pd.Timestamp("2017-09-15T21:00:00Z")
    out = market(api, acct, 100)
    assert "orderFillTransaction" not in out
    assert out["orderCancelTransaction"]["reason"] == "MARKET_HALTED"
    c = api.request(instruments.InstrumentsCandles(
        "EUR_USD", params={"granularity": "H1", "count": 1}))["candles"][0]
    assert pd.Timestamp(c["time"]).day_name() == "Friday" and c["complete"] is True
    with pytest.raises(V20Error) as e:
        api.request(pricing.PricingInfo(acct, params={"instruments": "EUR_USD,NOPE_USD"}))
    assert err(e)[0] == 400


# -- orders ----------------------------------------------------------------------------------


def test_market_order_with_attached_orders_and_id_rules(emu, api):
    acct = emu.account_id
    out = market(api, acct, 1000, clientExtensions={"id": "my-1", "tag": "t"},
                 tradeClientExtensions={"id": "tr-1"},
                 takeProfitOnFill={"price": "1.30000"},
                 stopLossOnFill={"distance": "0.00500"},
                 trailingStopLossOnFill={"distance": "0.00100"})
    create, fill = out["orderCreateTransaction"], out["orderFillTransaction"]
    assert create["type"] == "MARKET_ORDER" and create["id"] == "4"
    assert fill["orderID"] == create["id"] and fill["id"] == "5"
    assert fill["tradeOpened"]["tradeID"] == fill["id"]
    assert fill["batchID"] == create["id"] and fill["units"] == "1000"
    assert out["relatedTransactionIDs"] == ["4", "5", "6", "7", "8"]
    assert out["lastTransactionID"] == "8"
    for tx in (create, fill):
        check_tx(tx, acct)
    price = pricing.PricingInfo(acct, params={"instruments": "EUR_USD"})
    ask = api.request(price)["prices"][0]["asks"][0]["price"]
    assert fill["price"] == ask
    tr = api.request(trades.TradeDetails(acct, "@tr-1"))["trade"]
    assert tr["id"] == "5" and tr["currentUnits"] == "1000"
    assert tr["takeProfitOrder"]["price"] == "1.30000"
    assert d(tr["stopLossOrder"]["price"]) == d(fill["price"]) - Decimal("0.005")
    assert tr["trailingStopLossOrder"]["distance"] == "0.00100"
    o = api.request(orders.OrderDetails(acct, "@my-1"))["order"]
    assert o["id"] == "4" and o["state"] == "FILLED" and o["tradeOpenedID"] == "5"
    pend = api.request(orders.OrdersPending(acct))["orders"]
    assert sorted(x["type"] for x in pend) == ["STOP_LOSS", "TAKE_PROFIT", "TRAILING_STOP_LOSS"]


def test_limit_and_stop_orders_fill_on_the_price_path(emu, api):
    acct = emu.account_id
    frame = load_sample()
    now = pd.Timestamp(emu.clock.now())
    ahead = frame[frame.index >= now].iloc[:24]
    bid = d(api.request(pricing.PricingInfo(acct, params={"instruments": "EUR_USD"}))
            ["prices"][0]["bids"][0]["price"])
    high = Decimal(f"{ahead['high'].iloc[1:].max() - 0.0003:.5f}")  # the real data goes there
    assert high > bid + Decimal("0.0005")
    lim = api.request(orders.OrderCreate(acct, data={"order": {
        "type": "LIMIT", "instrument": "EUR_USD", "units": "-100", "price": str(high)}}))
    assert set(lim) == {"orderCreateTransaction", "relatedTransactionIDs", "lastTransactionID"}
    oid = lim["orderCreateTransaction"]["id"]
    assert api.request(orders.OrderDetails(acct, oid))["order"]["state"] == "PENDING"
    stop_px = bid + Decimal("0.5")  # never reached
    st = api.request(orders.OrderCreate(acct, data={"order": {
        "type": "STOP", "instrument": "EUR_USD", "units": "100", "price": str(stop_px),
        "timeInForce": "GTC"}}))
    sid = st["orderCreateTransaction"]["id"]
    emu.clock.advance(candles=24)
    o = api.request(orders.OrderDetails(acct, oid))["order"]
    assert o["state"] == "FILLED"
    fill = api.request(transactions.TransactionDetails(acct, o["fillingTransactionID"]))
    fx = fill["transaction"]
    assert fx["type"] == "ORDER_FILL" and fx["reason"] == "LIMIT_ORDER"
    assert d(fx["price"]) >= high and fx["units"] == "-100"
    assert api.request(orders.OrderDetails(acct, sid))["order"]["state"] == "PENDING"
    # replace the stop (201, new ID), then cancel it (200)
    r = orders.OrderReplace(acct, sid, data={"order": {
        "type": "STOP", "instrument": "EUR_USD", "units": "200", "price": str(stop_px)}})
    rep = api.request(r)
    assert r.status_code == 201
    new_id = rep["orderCreateTransaction"]["id"]
    assert rep["orderCreateTransaction"]["replacesOrderID"] == sid
    assert rep["orderCancelTransaction"]["reason"] == "CLIENT_REQUEST_REPLACED"
    c = orders.OrderCancel(acct, new_id)
    can = api.request(c)
    assert c.status_code == 200 and can["orderCancelTransaction"]["orderID"] == new_id
    with pytest.raises(V20Error) as e:
        api.request(orders.OrderCancel(acct, new_id))
    assert err(e)[0] == 404
    listed = api.request(orders.OrderList(acct, params={"state": "ALL"}))["orders"]
    assert [x["id"] for x in listed] == sorted((x["id"] for x in listed), key=int, reverse=True)
    ext = api.request(orders.OrderClientExtensions(acct, oid, data={
        "clientExtensions": {"comment": "hello"}}))
    assert ext["orderClientExtensionsModifyTransaction"]["orderID"] == oid


def test_order_rejects_and_invalid_bodies(emu, api):
    acct = emu.account_id
    cases = [
        ({"type": "MARKET", "instrument": "EUR_USD", "units": "0"}, "UNITS_INVALID"),
        ({"type": "MARKET", "instrument": "EUR_USD", "units": "1.5"},
         "UNITS_PRECISION_EXCEEDED"),
        ({"type": "LIMIT", "instrument": "EUR_USD", "units": "10", "price": "1.123456"},
         "PRICE_PRECISION_EXCEEDED"),
        ({"type": "LIMIT", "instrument": "EUR_USD", "units": "10"}, "PRICE_MISSING"),
        ({"type": "MARKET", "instrument": "EUR_USD", "units": "10", "timeInForce": "GTC"},
         "TIME_IN_FORCE_INVALID"),
    ]
    for spec, code in cases:
        last = int(api.request(accounts.AccountSummary(acct))["lastTransactionID"])
        with pytest.raises(V20Error) as e:
            api.request(orders.OrderCreate(acct, data={"order": spec}))
        status, body = err(e)
        assert status == 400 and body["errorCode"] == code, body
        rej = body["orderRejectTransaction"]
        assert rej["rejectReason"] == code and rej["id"] == str(last + 1)  # uses an ID
        assert body["lastTransactionID"] == rej["id"] and body["errorMessage"]
    for spec, param in [
        ({"type": "MARKET", "instrument": "NOPE_USD", "units": "1"}, "order.instrument"),
        ({"type": "MARKET", "units": "1"}, "order.instrument"),
        ({"type": "SIDEWAYS", "instrument": "EUR_USD", "units": "1"}, "order.type"),
        ({"type": "MARKET", "instrument": "EUR_USD", "units": True}, "order.units"),
        ({"type": "MARKET", "instrument": "EUR_USD"}, "order.units"),
    ]:
        with pytest.raises(V20Error) as e:
            api.request(orders.OrderCreate(acct, data={"order": spec}))
        assert err(e) == (400, {"errorMessage": f"Invalid value specified for '{param}'"})


def test_insufficient_margin_is_a_201_cancel(emu, api):
    out = market(api, emu.account_id, 90_000_000)
    assert "orderFillTransaction" not in out
    assert out["orderCancelTransaction"]["reason"] == "INSUFFICIENT_MARGIN"


def test_netting_fifo_and_realized_pl(emu, api):
    acct = emu.account_id
    a = market(api, acct, 1000)["orderFillTransaction"]
    b = market(api, acct, 500)["orderFillTransaction"]
    emu.clock.advance(candles=3)
    c = market(api, acct, -1200)["orderFillTransaction"]
    assert [x["tradeID"] for x in c["tradesClosed"]] == [a["id"]]
    assert c["tradeReduced"]["tradeID"] == b["id"] and c["tradeReduced"]["units"] == "-200"
    exit_px = d(c["price"])
    want = (1000 * (exit_px - d(a["price"])) + 200 * (exit_px - d(b["price"]))).quantize(
        Decimal("0.0001"))
    assert d(c["pl"]) == want
    assert d(c["accountBalance"]) == Decimal(100000) + want
    pos = api.request(positions.PositionDetails(acct, "EUR_USD"))["position"]
    assert pos["long"]["units"] == "300" and pos["short"]["units"] == "0"
    assert pos["long"]["tradeIDs"] == [b["id"]] and d(pos["pl"]) == want
    assert len(api.request(trades.OpenTrades(acct))["trades"]) == 1


def test_hedging_account_opens_opposite_trades():
    with Emulator(EmulatorConfig(source="sample", hedging=True)) as emu:
        api = emu.api()
        market(api, emu.account_id, 1000)
        out = market(api, emu.account_id, -400)
        assert "tradeOpened" in out["orderFillTransaction"]
        pos = api.request(positions.PositionDetails(emu.account_id, "EUR_USD"))["position"]
        assert pos["long"]["units"] == "1000" and pos["short"]["units"] == "-400"
        summ = api.request(accounts.AccountSummary(emu.account_id))["account"]
        assert summ["hedgingEnabled"] is True and summ["openTradeCount"] == 2


def test_trades_close_part_and_all_and_change_orders(emu, api):
    acct = emu.account_id
    market(api, acct, 1000, tradeClientExtensions={"id": "abc"})
    tid = api.request(trades.OpenTrades(acct))["trades"][0]["id"]
    r = trades.TradeClose(acct, tid, data={"units": "300"})
    part = api.request(r)
    assert r.status_code == 200
    assert part["orderCreateTransaction"]["tradeClose"]["units"] == "300"
    assert part["orderFillTransaction"]["tradeReduced"]["units"] == "-300"
    crc = api.request(trades.TradeCRCDO(acct, tid, data={
        "takeProfit": {"price": "1.40000"}, "stopLoss": {"price": "1.00000"}}))
    assert crc["takeProfitOrderTransaction"]["tradeID"] == tid
    tp1 = crc["takeProfitOrderTransaction"]["id"]
    crc2 = api.request(trades.TradeCRCDO(acct, tid, data={"takeProfit": {"price": "1.45000"}}))
    assert crc2["takeProfitOrderCancelTransaction"]["orderID"] == tp1
    assert crc2["takeProfitOrderTransaction"]["replacesOrderID"] == tp1
    ext = api.request(trades.TradeClientExtensions(acct, "@abc", data={
        "clientExtensions": {"comment": "note"}}))
    assert ext["tradeClientExtensionsModifyTransaction"]["tradeID"] == tid
    full = api.request(trades.TradeClose(acct, tid))  # empty body: ALL
    closed = full["orderFillTransaction"]["tradesClosed"][0]
    assert closed["tradeID"] == tid and closed["units"] == "-700"
    assert full["orderFillTransaction"]["reason"] == "MARKET_ORDER_TRADE_CLOSE"
    t = api.request(trades.TradeDetails(acct, tid))["trade"]
    assert t["state"] == "CLOSED" and t["currentUnits"] == "0"
    cancels = [x for x in emu.transactions() if x["type"] == "ORDER_CANCEL"
               and x["reason"] == "LINKED_TRADE_CLOSED"]
    assert len(cancels) == 2  # the take-profit and stop-loss died with the trade
    listed = api.request(trades.TradesList(acct, params={"state": "CLOSED"}))["trades"]
    assert [x["id"] for x in listed] == [tid]
    with pytest.raises(V20Error) as e:
        api.request(trades.TradeClose(acct, tid))
    assert e.value.code == 404


def test_take_profit_triggers_on_the_path(emu, api):
    acct = emu.account_id
    frame = load_sample()
    now = pd.Timestamp(emu.clock.now())
    fill = market(api, acct, 1000)["orderFillTransaction"]
    ahead = frame[frame.index >= now].iloc[1:48]
    target = Decimal(f"{ahead['high'].max() - 0.0003:.5f}")
    assert target > d(fill["price"])
    api.request(trades.TradeCRCDO(acct, fill["id"], data={"takeProfit": {"price": str(target)}}))
    emu.clock.advance(candles=48)
    t = api.request(trades.TradeDetails(acct, fill["id"]))["trade"]
    assert t["state"] == "CLOSED"
    tx = api.request(transactions.TransactionDetails(acct, t["closingTransactionIDs"][0]))
    fx = tx["transaction"]
    assert fx["reason"] == "TAKE_PROFIT_ORDER" and d(fx["price"]) >= target
    assert d(fx["pl"]) == (1000 * (d(fx["price"]) - d(fill["price"]))).quantize(
        Decimal("0.0001"))
    assert pd.Timestamp(fx["time"]) < pd.Timestamp(emu.clock.now())


def test_positions_list_and_close(emu, api):
    acct = emu.account_id
    market(api, acct, 700)
    allp = api.request(positions.PositionList(acct))["positions"]
    assert allp[0]["instrument"] == "EUR_USD" and allp[0]["long"]["units"] == "700"
    assert len(api.request(positions.OpenPositions(acct))["positions"]) == 1
    with pytest.raises(V20Error) as e:
        api.request(positions.PositionClose(acct, "EUR_USD", data={"shortUnits": "ALL"}))
    assert err(e)[1]["errorCode"] == "CLOSEOUT_POSITION_DOESNT_EXIST"
    out = api.request(positions.PositionClose(acct, "EUR_USD", data={"longUnits": "ALL"}))
    assert out["longOrderFillTransaction"]["units"] == "-700"
    assert out["longOrderCreateTransaction"]["longPositionCloseout"]["units"] == "ALL"
    assert api.request(positions.OpenPositions(acct))["positions"] == []


def test_transactions_pages_idrange_sinceid(emu, api):
    acct = emu.account_id
    for _ in range(4):
        market(api, acct, 10)
    r = api.request(transactions.TransactionList(acct, params={"pageSize": 5}))
    assert r["count"] == 11 and r["pageSize"] == 5 and len(r["pages"]) == 3
    assert r["pages"][0].endswith(f"/v3/accounts/{acct}/transactions/idrange?from=1&to=5")
    rng = api.request(transactions.TransactionIDRange(acct, params={"from": 4, "to": 6}))
    assert [t["id"] for t in rng["transactions"]] == ["4", "5", "6"]
    since = api.request(transactions.TransactionsSinceID(acct, params={"id": 9}))
    assert [t["id"] for t in since["transactions"]] == ["10", "11"]
    fills = api.request(transactions.TransactionIDRange(
        acct, params={"from": 1, "to": 11, "type": "ORDER_FILL"}))["transactions"]
    assert len(fills) == 4
    for t in emu.transactions():
        check_tx(t, acct)
    ids = [int(t["id"]) for t in emu.transactions()]
    assert ids == list(range(1, len(ids) + 1))


def test_usd_jpy_pl_is_converted_to_usd():
    frames = {"USD_JPY": synthetic_candles(400, instrument="USD_JPY", granularity="M1",
                                           price=110.0, seed=3)}
    with Emulator(EmulatorConfig(candles=frames)) as emu:
        api = emu.api()
        body = {"order": {"type": "MARKET", "instrument": "USD_JPY", "units": "10000"}}
        a = api.request(orders.OrderCreate(emu.account_id, data=body))["orderFillTransaction"]
        assert re.fullmatch(r"\d+\.\d{3}", a["price"])
        emu.clock.advance(candles=30)
        c = api.request(trades.TradeClose(emu.account_id, a["id"]))["orderFillTransaction"]
        quote_pl = 10000 * (d(c["price"]) - d(a["price"]))
        assert d(c["quotePL"]) == quote_pl
        # converted at the USD_JPY rate of the moment (mid); the bid differs by a hair
        assert abs(d(c["pl"]) - quote_pl / d(c["price"])) < Decimal("0.002")
        assert d(c["pl"]) != quote_pl


# -- streams ---------------------------------------------------------------------------------


def test_pricing_stream_snapshot_changes_heartbeats(emu, api):
    r = pricing.PricingStream(emu.account_id, params={"instruments": "EUR_USD"})
    got = []
    with pytest.raises(StreamTerminated):
        for msg in api.request(r):
            got.append(msg)
            if len(got) == 1:
                emu.clock.advance(seconds=1800)
            if sum(m["type"] == "HEARTBEAT" for m in got) >= 2:
                r.terminate("enough")
    assert got[0]["type"] == "PRICE"
    prices = [m for m in got if m["type"] == "PRICE"]
    assert len(prices) >= 2 and prices[0]["bids"] != prices[1]["bids"]
    assert all(TIME_RE.match(m["time"]) for m in got)


def test_running_clock_drives_the_stream_and_fills():
    cfg = EmulatorConfig(source="sample", speed=3600.0, price_interval_s=0.05, heartbeat_s=5)
    with Emulator(cfg) as emu:
        api = emu.api(request_params={"timeout": 10})
        start = emu.clock.now()
        bid = d(api.request(pricing.PricingInfo(emu.account_id, params={
            "instruments": "EUR_USD"}))["prices"][0]["bids"][0]["price"])
        api.request(orders.OrderCreate(emu.account_id, data={"order": {
            "type": "LIMIT", "instrument": "EUR_USD", "units": "-10",
            "price": str(bid + Decimal("0.00010"))}}))
        r = pricing.PricingStream(emu.account_id, params={"instruments": "EUR_USD"})
        got = []
        with pytest.raises(StreamTerminated):
            for msg in api.request(r):
                got.append(msg)
                if len(got) >= 6:
                    r.terminate("enough")
        times = [pd.Timestamp(m["time"]) for m in got]
        assert times == sorted(times) and times[-1] > times[0]
        deadline = time.time() + 5
        while time.time() < deadline:
            if any(t["type"] == "ORDER_FILL" for t in emu.transactions()):
                break
            time.sleep(0.1)
        assert any(t["type"] == "ORDER_FILL" for t in emu.transactions())
        assert emu.clock.now() - start > pd.Timedelta(minutes=30)


def test_transaction_stream_and_clean_end_on_stop():
    emu = Emulator(EmulatorConfig(source="sample", heartbeat_s=0.2)).start()
    api = emu.api(request_params={"timeout": 10})
    got: list[dict] = []
    errors: list[BaseException] = []

    def reader():
        try:
            for msg in api.request(transactions.TransactionsStream(emu.account_id)):
                got.append(msg)  # the stream may raise midway
        except BaseException as exc:  # recorded for the assertion
            errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.3)
    market(emu.api(), emu.account_id, 100)
    deadline = time.time() + 5
    while time.time() < deadline and not any(m["type"] == "ORDER_FILL" for m in got):
        time.sleep(0.05)
    emu.stop()
    t.join(5)
    assert not t.is_alive() and errors == []  # a clean end of the chunked body
    types = [m["type"] for m in got]
    assert "MARKET_ORDER" in types and "ORDER_FILL" in types and "HEARTBEAT" in types
    hb = next(m for m in got if m["type"] == "HEARTBEAT")
    assert hb["lastTransactionID"].isdigit()


# -- determinism -----------------------------------------------------------------------------


def _session() -> list[dict]:
    with Emulator(EmulatorConfig(source="sample")) as emu:
        api = emu.api()
        acct = emu.account_id
        market(api, acct, 1000, stopLossOnFill={"distance": "0.00200"},
               takeProfitOnFill={"price": "1.25000"})
        emu.clock.advance(candles=5)
        api.request(orders.OrderCreate(acct, data={"order": {
            "type": "LIMIT", "instrument": "EUR_USD", "units": "-500", "price": "1.20000"}}))
        emu.clock.advance(candles=40)
        market(api, acct, -300)
        emu.clock.advance(seconds=5000)
        return emu.transactions()


def test_same_data_clock_and_orders_give_same_transactions():
    a, b = _session(), _session()
    assert len(a) > 8 and a == b
