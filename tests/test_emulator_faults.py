"""Fault injection (each kind alone and mixed), bad input, vanished clients, the child process.

Each fault test ends by checking that the emulator still serves a normal request.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests
from oandapyV20.endpoints import accounts, instruments, orders, pricing, trades
from oandapyV20.exceptions import V20Error

from sep_research.emulator import Emulator, EmulatorConfig, FaultSpec
from sep_research.emulator.faults import FaultRule


@pytest.fixture
def emu():
    with Emulator(EmulatorConfig(source="sample", heartbeat_s=0.2, price_interval_s=0.05)) as e:
        yield e


def still_serving(emu) -> None:
    api = emu.api(request_params={"timeout": 5})
    got = api.request(accounts.AccountSummary(emu.account_id))
    assert got["account"]["id"] == emu.account_id
    c = api.request(instruments.InstrumentsCandles("EUR_USD", params={"granularity": "H1",
                                                                       "count": 3}))
    assert len(c["candles"]) == 3


def test_fault_spec_parsing():
    f = FaultSpec.parse("429:0.1,503:0.05,slow:0.1@2.5,stall,cut:0.5@3,drop-order:1.0x2,seed=7")
    assert f.seed == 7
    assert f.rules["slow"] == FaultRule("slow", 0.1, 2.5, None)
    assert f.rules["stall"] == FaultRule("stall", 1.0, 1.0, None)
    assert f.rules["drop-order"].count == 2
    assert not FaultSpec.parse(None) and not FaultSpec.parse("")
    for bad in ("teapot", "429:2", "slow@x", "429,429", "seed=x"):
        with pytest.raises(ValueError, match="fault spec"):
            FaultSpec.parse(bad)


def test_faults_are_deterministic_given_a_seed():
    def seq(seed):
        f = FaultSpec.parse(f"429:0.3,503:0.2,seed={seed}")
        return [(bool(f.draw("503")), bool(f.draw("429"))) for _ in range(50)]

    assert seq(4) == seq(4)
    assert seq(4) != seq(5)
    hits = sum(a or b for a, b in seq(4))
    assert 10 < hits < 40


def test_429_then_recovers(emu):
    emu.set_faults("429x2")
    api = emu.api()
    for _ in range(2):
        with pytest.raises(V20Error) as e:
            api.request(accounts.AccountSummary(emu.account_id))
        assert e.value.code == 429
        assert "errorMessage" in json.loads(e.value.msg)
    still_serving(emu)


def test_503_with_a_non_json_body(emu):
    emu.set_faults("503:1.0x1")
    with pytest.raises(V20Error) as e:
        emu.api().request(instruments.InstrumentsCandles("EUR_USD",
                                                         params={"granularity": "H1"}))
    assert e.value.code == 503
    with pytest.raises(ValueError):
        json.loads(e.value.msg)
    still_serving(emu)


def test_slow_answers(emu):
    emu.set_faults("slow@0.6x2")
    t = time.monotonic()
    emu.api().request(accounts.AccountSummary(emu.account_id))
    assert time.monotonic() - t >= 0.6
    with pytest.raises(requests.exceptions.ReadTimeout):
        emu.api(request_params={"timeout": 0.2}).request(
            accounts.AccountSummary(emu.account_id))
    still_serving(emu)


def test_stalled_stream_sends_nothing_not_even_heartbeats(emu):
    emu.set_faults("stall@0.1x1")
    api = emu.api(request_params={"timeout": 1.0})
    got = []
    t = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):  # read timeout inside the stream
        for msg in api.request(pricing.PricingStream(emu.account_id,
                                                     params={"instruments": "EUR_USD"})):
            got.append(msg)  # the stream raises midway
    assert time.monotonic() - t >= 1.0
    assert [m["type"] for m in got] == ["PRICE"]  # the snapshot, then silence
    still_serving(emu)


def test_stream_cut_mid_chunk(emu):
    emu.set_faults("cut@0.5x1")
    api = emu.api(request_params={"timeout": 5})
    got = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for msg in api.request(pricing.PricingStream(emu.account_id,
                                                     params={"instruments": "EUR_USD"})):
            got.append(msg)  # the stream raises midway
    assert got and got[0]["type"] == "PRICE"
    assert any(m["type"] == "HEARTBEAT" for m in got)  # it ran normally before the cut
    still_serving(emu)


def test_dropped_order_answer_but_the_order_exists(emu):
    emu.set_faults("drop-order:1.0@20x1")
    api = emu.api(request_params={"timeout": 0.5})
    body = {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": "100",
                      "clientExtensions": {"id": "retry-me"}}}
    t = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.request(orders.OrderCreate(emu.account_id, data=body))
    assert time.monotonic() - t < 5
    o = emu.api().request(orders.OrderDetails(emu.account_id, "@retry-me"))["order"]
    assert o["state"] == "FILLED"
    assert len(emu.api().request(trades.OpenTrades(emu.account_id))["trades"]) == 1
    still_serving(emu)


def test_mixed_faults_with_rates_keep_the_server_alive(emu):
    emu.set_faults("429:0.2,503:0.2,slow:0.1@0.05,seed=11")
    api = emu.api(request_params={"timeout": 5})
    codes = []
    for _ in range(60):
        try:
            api.request(pricing.PricingInfo(emu.account_id, params={"instruments": "EUR_USD"}))
            codes.append(200)
        except V20Error as e:
            codes.append(e.code)
    assert set(codes) == {200, 429, 503}
    emu.set_faults(None)
    still_serving(emu)


# -- bad input never crashes the server and never leaks a stack trace ------------------------


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/v3/accounts/{acct}/orders", b"{not json"),
    ("POST", "/v3/accounts/{acct}/orders", b"[1, 2, 3]"),
    ("POST", "/v3/accounts/{acct}/orders", b'{"order": "MARKET"}'),
    ("POST", "/v3/accounts/{acct}/orders",
     b'{"order": {"type": "MARKET", "instrument": ["EUR_USD"], "units": "1"}}'),
    ("POST", "/v3/accounts/{acct}/orders",
     b'{"order": {"type": "LIMIT", "instrument": "EUR_USD", "units": "1", "price": {}}}'),
    ("POST", "/v3/accounts/{acct}/orders",
     (b'{"order": {"type": "MARKET", "instrument": "EUR_USD", "units": "1",'
      b' "stopLossOnFill": "close"}}')),
    ("POST", "/v3/accounts/{acct}/orders",
     b'{"order": {"type": "MARKET", "instrument": "EUR_USD", "units": "NaN"}}'),
    ("PUT", "/v3/accounts/{acct}/trades/1/close", b'{"units": -5}'),
    ("PUT", "/v3/accounts/{acct}/positions/EUR_USD/close", b'{"longUnits": null}'),
    ("PUT", "/v3/accounts/{acct}/orders/abc/cancel", b""),
    ("GET", "/v3/accounts/{acct}/transactions/idrange?from=x&to=2", b""),
    ("GET", "/v3/accounts/{acct}/transactions?pageSize=100000", b""),
    ("GET", "/v3/accounts/{acct}/pricing", b""),
    ("GET", "/v3/accounts/{acct}/changes", b""),
    ("GET", "/v3/accounts/{acct}/orders?count=-1", b""),
    ("GET", "/v3/instruments/EUR_USD/candles?granularity=H1&count=1e3", b""),
    ("GET", "/v3/instruments/EUR_USD/candles?granularity=H1&from=2017-13-45T00:00:00Z", b""),
    ("DELETE", "/v3/accounts/{acct}/orders", b""),
    ("GET", "/v3/nowhere", b""),
])
def test_bad_input_gets_oanda_error_forms(emu, method, path, body):
    url = emu.base_url + path.format(acct=emu.account_id)
    r = requests.request(method, url, data=body, timeout=5,
                         headers={"Authorization": f"Bearer {emu.token}",
                                  "Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert "Traceback" not in r.text and "File \"" not in r.text
    assert r.headers["Content-Type"] == "application/json"
    assert isinstance(r.json()["errorMessage"], str)


def test_garbage_on_the_socket(emu):
    for junk in (b"HELLO\r\n\r\n", b"GET /v3/accounts HTTP/9.9\r\n\r\n",
                 b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n", b"\x00\xff" * 100):
        s = socket.create_connection(("127.0.0.1", emu.port), timeout=5)
        s.sendall(junk)
        s.shutdown(socket.SHUT_WR)
        data = s.recv(65536)
        s.close()
        assert b"Traceback" not in data
    still_serving(emu)


def test_stream_clients_that_vanish(emu):
    path = f"/v3/accounts/{emu.account_id}/pricing/stream?instruments=EUR_USD"
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", emu.port), timeout=5)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {emu.token}"
                  "\r\n\r\n".encode())
        assert b"200 OK" in s.recv(4096)
        s.close()
    emu.clock.advance(seconds=900)
    time.sleep(0.5)
    still_serving(emu)
    assert len(emu._server.conns) <= 2  # the vanished streams' threads have ended


def test_stop_ends_streams_cleanly_and_frees_the_port():
    emu = Emulator(EmulatorConfig(source="sample", heartbeat_s=0.1)).start()
    port = emu.port
    r = requests.get(f"{emu.base_url}/v3/accounts/{emu.account_id}/pricing/stream",
                     params={"instruments": "EUR_USD"}, stream=True, timeout=5,
                     headers={"Authorization": f"Bearer {emu.token}"})
    lines = r.iter_lines()
    assert json.loads(next(lines))["type"] == "PRICE"
    emu.stop()
    rest = list(lines)  # ends without ChunkedEncodingError: the final chunk was sent
    assert all(json.loads(x)["type"] in ("PRICE", "HEARTBEAT") for x in rest if x)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


@pytest.mark.slow
def test_child_process_serves_and_can_be_killed():
    proc = Emulator.spawn(EmulatorConfig(source="sample"))
    try:
        api = proc.api(request_params={"timeout": 5})
        assert api.request(accounts.AccountList())["accounts"][0]["id"] == proc.account_id
        before = api.request(instruments.InstrumentsCandles(
            "EUR_USD", params={"granularity": "H1", "count": 1}))["candles"][0]["time"]
        proc.advance(candles=2)
        after = api.request(instruments.InstrumentsCandles(
            "EUR_USD", params={"granularity": "H1", "count": 1}))["candles"][0]["time"]
        assert after > before
        proc.set_faults("429x1")
        with pytest.raises(V20Error):
            api.request(accounts.AccountList())
        proc.kill()
        with pytest.raises(requests.exceptions.ConnectionError):
            api.request(accounts.AccountList())
    finally:
        proc.kill()
    proc2 = Emulator.spawn(EmulatorConfig(source="sample"))
    assert proc2.api().request(accounts.AccountList())["accounts"]
    assert proc2.stop() == 0


@pytest.mark.parametrize("order", [
    {"type": "MARKET", "instrument": "EUR_USD", "units": "1", "clientExtensions": {"id": [1]}},
    {"type": "MARKET", "instrument": "EUR_USD", "units": "1", "clientExtensions": "abc"},
    {"type": "MARKET", "instrument": "EUR_USD", "units": "1",
     "takeProfitOnFill": {"price": "1.5", "triggerCondition": {"x": 1}}},
    {"type": "MARKET", "instrument": "EUR_USD", "units": "1",
     "stopLossOnFill": {"price": "0.5", "timeInForce": []}},
    {"type": "MARKET", "instrument": "EUR_USD", "units": "1", "accountID": "spoof",
     "units_extra": {"deep": [[[]]]}},
    {"type": "LIMIT", "instrument": "EUR_USD", "units": "1e999999", "price": "1e5000"},
    {"type": "TAKE_PROFIT", "tradeID": {"a": 1}, "price": "1.5"},
])
def test_wrong_types_in_orders_never_break_the_server(emu, order):
    api = emu.api()
    try:
        api.request(orders.OrderCreate(emu.account_id, data={"order": order}))
    except V20Error as e:
        assert e.code == 400 and "errorMessage" in json.loads(e.msg)
    emu.clock.advance(candles=3)  # the market moving over whatever was accepted
    still_serving(emu)
    for tx in emu.transactions():
        assert tx["accountID"] == emu.account_id


def test_deeply_nested_json_is_a_400(emu):
    """Review finding 18: deep nesting is a 400, never a RecursionError (the body stays under
    the 64 KiB cap of finding 19, so that it is read and parsed)."""
    r = requests.post(f"{emu.base_url}/v3/accounts/{emu.account_id}/orders",
                      data=b"[" * 30000 + b"]" * 30000, timeout=10,
                      headers={"Authorization": f"Bearer {emu.token}"})
    assert r.status_code == 400 and r.json() == {"errorMessage": "Invalid JSON in request body"}


def test_seeded_fuzz_of_write_bodies_never_gives_a_500(emu):
    """Random (seeded) values of every JSON type in every field of the write endpoints."""
    import random

    rng = random.Random(2024)
    values = [None, True, 0, -1, 1.5, 10**30, "", "ALL", "NONE", "1", "-5", "1.19000",
              "0.00050", "EUR_USD", "GTD", "GTC", "FOK", "MID", "2017-09-13T00:00:00Z",
              "x" * 300, [], [1], {}, {"price": "1.2"}, {"distance": "0.001"}, {"id": "a"},
              {"price": []}, "1e99", "NaN", "Infinity"]
    keys = ["type", "instrument", "units", "price", "priceBound", "timeInForce", "gtdTime",
            "positionFill", "triggerCondition", "takeProfitOnFill", "stopLossOnFill",
            "trailingStopLossOnFill", "clientExtensions", "tradeClientExtensions", "tradeID",
            "distance"]
    types = ["MARKET", "LIMIT", "STOP", "TAKE_PROFIT", "STOP_LOSS", "TRAILING_STOP_LOSS"]
    base = f"{emu.base_url}/v3/accounts/{emu.account_id}"
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {emu.token}"
    statuses = set()
    for i in range(250):
        order = {k: rng.choice(values) for k in rng.sample(keys, rng.randint(1, 8))}
        if rng.random() < 0.8:
            order["type"] = rng.choice(types)
            order.setdefault("instrument", "EUR_USD")
            order.setdefault("units", rng.choice(["100", "-100", 100]))
        r = s.post(f"{base}/orders", json={"order": order}, timeout=10)
        statuses.add(r.status_code)
        assert r.status_code in (201, 400), (order, r.status_code, r.text)
        tid = str(rng.randint(1, 40))
        oid = str(rng.randint(1, 40))
        body = {k: rng.choice(values) for k in rng.sample(
            ["units", "longUnits", "shortUnits", "takeProfit", "stopLoss", "trailingStopLoss",
             "clientExtensions", "tradeClientExtensions"], rng.randint(0, 3))}
        for method, path in [("PUT", f"/trades/{tid}/close"), ("PUT", f"/trades/{tid}/orders"),
                             ("PUT", f"/trades/{tid}/clientExtensions"),
                             ("PUT", "/positions/EUR_USD/close"),
                             ("PUT", f"/orders/{oid}/clientExtensions"),
                             ("PUT", f"/orders/{oid}"), ("PUT", f"/orders/{oid}/cancel")]:
            r = s.request(method, base + path, json=body or None, timeout=10)
            statuses.add(r.status_code)
            assert r.status_code < 500, (method, path, body, r.status_code, r.text)
        if i % 25 == 0:
            emu.clock.advance(candles=1)
    assert {200, 201, 400, 404} <= statuses
    still_serving(emu)
