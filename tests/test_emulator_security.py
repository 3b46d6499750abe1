"""The emulator's findings of the security review 2026-12 (issue 12; the report is
``security-review-2026-12.md`` in the shared docs): each test reproduces one finding (its
number in the docstring) and failed before the fix. Raw HTTP where the finding is about HTTP
itself, ``requests`` where it is about bodies.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from sep_research.emulator import Emulator, EmulatorConfig
from tests.loopback import raw_http, trickle_until_closed

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def emu():
    with Emulator(EmulatorConfig(source="sample", heartbeat_s=0.2, price_interval_s=0.05)) as e:
        yield e


def _session(token: str) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    return s


def _status(resp: bytes) -> int:
    return int(resp.split(b" ", 2)[1])


def _body(resp: bytes) -> dict:
    return json.loads(resp.partition(b"\r\n\r\n")[2])


# -- finding 3: the built-in foreign token ---------------------------------------------------


def test_sep_emulator_refuses_the_foreign_token():
    """Finding 3: ``sep emulator`` accepted a built-in ``foreign-token`` that could inject
    faults and move the clock; the CLI now starts with the given token only."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sep_research", "emulator", "--port", "0", "--token", "S",
         "--speed", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "sep emulator printed nothing in 60 s"
        line = proc.stdout.readline()
        url = line.split(" at ", 1)[1].split()[0]
        foreign = _session("foreign-token")
        r = foreign.post(f"{url}/_emulator/faults", json={"spec": "503:1.0x1"}, timeout=5)
        assert r.status_code == 401, r.text
        assert foreign.get(f"{url}/v3/accounts", timeout=5).status_code == 401
        clock = foreign.post(f"{url}/_emulator/clock", json={"advance_candles": 5}, timeout=5)
        assert clock.status_code == 401
        owner = _session("S")
        assert owner.get(f"{url}/v3/accounts", timeout=5).status_code == 200  # no 503 injected
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_foreign_account_is_opt_in_and_admin_needs_the_main_token():
    """Finding 3: the second (foreign) account exists only when a test asks for it, and even
    then its token may not drive the clock or the faults (``/_emulator/*`` need the main
    token)."""
    with Emulator(EmulatorConfig(source="sample")) as emu:
        assert emu.config.foreign_token is None
        assert _session("foreign-token").get(f"{emu.base_url}/v3/accounts",
                                             timeout=5).status_code == 401
    cfg = EmulatorConfig(source="sample", foreign_token="other-token")
    with Emulator(cfg) as emu:
        other = _session("other-token")
        got = other.get(f"{emu.base_url}/v3/accounts", timeout=5).json()
        assert got == {"accounts": [{"id": cfg.foreign_account_id, "tags": []}]}
        before = emu.clock.now()
        for path, body in (("/_emulator/clock", {"advance_candles": 5}),
                           ("/_emulator/faults", {"spec": "503:1.0"}),
                           ("/_emulator/clock", None)):
            r = other.request("GET" if body is None else "POST", emu.base_url + path,
                              json=body, timeout=5)
            assert r.status_code == 403 and "errorMessage" in r.json(), (path, r.text)
        assert emu.clock.now() == before and not emu.faults
        owner = _session(emu.token)
        assert owner.get(f"{emu.base_url}/_emulator/clock", timeout=5).status_code == 200


# -- finding 10: executed, then answered 500 --------------------------------------------------


def test_invalid_attached_time_refuses_the_order_before_executing_it(emu):
    """Finding 10: a MARKET order with ``takeProfitOnFill.gtdTime: 1e30`` was filled and then
    answered 500 (``fmt_time`` overflowed after the fill), leaving the batch open; now every
    time and number is checked first: 400, nothing executed, the next batch is clean."""
    s = _session(emu.token)
    url = f"{emu.base_url}/v3/accounts/{emu.account_id}/orders"
    before = len(emu.transactions())
    r = s.post(url, timeout=5, json={"order": {
        "type": "MARKET", "instrument": "EUR_USD", "units": "100",
        "takeProfitOnFill": {"price": "5.00000", "timeInForce": "GTD", "gtdTime": 1e30}}})
    assert r.status_code == 400, r.text
    assert "gtdTime" in r.json()["errorMessage"]
    txs = emu.transactions()
    assert len(txs) == before
    assert not any(t["type"] in ("MARKET_ORDER", "ORDER_FILL") for t in txs)
    ok = s.post(url, timeout=5, json={"order": {"type": "MARKET", "instrument": "EUR_USD",
                                                 "units": "10"}}).json()
    create = ok["orderCreateTransaction"]
    assert create["batchID"] == create["id"]
    assert ok["relatedTransactionIDs"][0] == create["id"]


# -- finding 18: 500s on hostile numbers and times --------------------------------------------

MARKET = {"type": "MARKET", "instrument": "EUR_USD", "units": "10"}
LIMIT = {"type": "LIMIT", "instrument": "EUR_USD", "units": "10", "price": "1.00000"}


@pytest.mark.parametrize("body", [
    json.dumps({"order": {**MARKET, "units": "1E+999999999"}}),
    json.dumps({"order": {**LIMIT, "price": "1E+1000000"}}),
    json.dumps({"order": {**MARKET, "trailingStopLossOnFill": {"distance": "1E+1000000"}}}),
    json.dumps({"order": {**MARKET, "stopLossOnFill": {"distance": "1E+1000000"}}}),
    json.dumps({"order": {**MARKET, "priceBound": "1E+1000000"}}),
    ('{"order": {"type": "LIMIT", "instrument": "EUR_USD", "units": "10", "price": "1.00000",'
     ' "timeInForce": "GTD", "gtdTime": Infinity}}'),
    ('{"order": {"type": "LIMIT", "instrument": "EUR_USD", "units": "10", "price": "1.00000",'
     ' "timeInForce": "GTD", "gtdTime": NaN}}'),
    json.dumps({"order": {**LIMIT, "timeInForce": "GTD", "gtdTime": 1e30}}),
    json.dumps({"order": {**LIMIT, "timeInForce": "GTD", "gtdTime": 1e999}}),
    json.dumps({"order": {**MARKET, "stopLossOnFill": {"price": "0.50000", "timeInForce": "GTD",
                                                       "gtdTime": "Infinity"}}}),
], ids=["units-1e999999999", "price-1e1000000", "tsl-distance", "sl-distance", "price-bound",
        "gtd-Infinity", "gtd-NaN", "gtd-1e30", "gtd-1e999", "sl-gtd-string-Infinity"])
def test_hostile_numbers_and_times_are_400_never_500(emu, body):
    """Finding 18: units ``1E+999999999``, prices and distances ``1E+1000000``
    (``decimal.Overflow``) and gtdTime ``Infinity``/``NaN``/``1e30`` were answered 500."""
    s = _session(emu.token)
    r = s.post(f"{emu.base_url}/v3/accounts/{emu.account_id}/orders", data=body, timeout=5,
               headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert isinstance(r.json()["errorMessage"], str)
    assert not any(t["type"] == "ORDER_FILL" for t in emu.transactions())


@pytest.mark.parametrize("extra", [{"rejectReason": "mine"}, {"tradeID": "1"},
                                   {"stopLoss": {"rejectReason": "x"}}])
def test_client_fields_named_like_ours_do_not_break_a_reject(emu, extra):
    """Finding 18 (found while fixing it): an order carrying a field the venue writes itself
    (``rejectReason``) was answered 500 when refused; the venue's own value wins."""
    s = _session(emu.token)
    r = s.post(f"{emu.base_url}/v3/accounts/{emu.account_id}/orders", timeout=5,
               json={"order": {**MARKET, "units": "0", **extra}})
    assert r.status_code == 400, r.text
    assert r.json()["orderRejectTransaction"]["rejectReason"] == "UNITS_INVALID"
    tid = s.post(f"{emu.base_url}/v3/accounts/{emu.account_id}/orders", timeout=5,
                 json={"order": {**MARKET, "units": "10"}}).json()["orderFillTransaction"]["id"]
    r = s.put(f"{emu.base_url}/v3/accounts/{emu.account_id}/trades/{tid}/orders", timeout=5,
              json={"stopLoss": {"price": "1.123456", **extra}})
    assert r.status_code == 400, r.text
    rej = r.json()["stopLossOrderRejectTransaction"]
    assert rej["rejectReason"] == "PRICE_PRECISION_EXCEEDED" and rej["tradeID"] == tid


@pytest.mark.parametrize("path,body", [
    ("/_emulator/clock", {"advance_seconds": 1e300}),
    ("/_emulator/clock", {"advance_seconds": -1}),
    ("/_emulator/clock", {"advance_candles": 1e300}),
    ("/_emulator/clock", {"advance_candles": "many"}),
    ("/_emulator/clock", '{"speed": 1e999}'),
    ("/_emulator/clock", '{"advance_seconds": 1e999}'),
    ("/_emulator/clock", {"set": 1e30}),
    ("/_emulator/clock", {"set": "2017-09-14T00:00:00Z", "advance_seconds": 1e300}),
    ("/_emulator/clock", [1, 2]),
    ("/_emulator/faults", {"spec": 5}),
    ("/_emulator/faults", {"spec": ["429"]}),
])
def test_hostile_admin_bodies_are_400(emu, path, body):
    """Finding 18: ``advance_seconds: 1e300`` and faults ``{"spec": 5}`` were answered 500."""
    before = emu.clock.now()
    s = _session(emu.token)
    if isinstance(body, str):
        r = s.post(emu.base_url + path, data=body, timeout=5)
    else:
        r = s.post(emu.base_url + path, json=body, timeout=5)
    assert r.status_code == 400, r.text
    assert isinstance(r.json()["errorMessage"], str)
    assert emu.clock.now() == before and not emu.faults


# -- finding 19: connections, time and memory bounds ------------------------------------------


def test_connections_beyond_the_cap_get_503():
    """Finding 19: there was no connection cap (4000 idle connections made 4005 threads)."""
    with Emulator(EmulatorConfig(source="sample", max_connections=4)) as emu:
        idle = [socket.create_connection(("127.0.0.1", emu.port)) for _ in range(4)]
        try:
            deadline = time.monotonic() + 5
            while emu._server.active_connections < 4 and time.monotonic() < deadline:
                time.sleep(0.02)
            resp = raw_http(emu.port, b"GET /v3/accounts HTTP/1.1\r\n\r\n")
            assert _status(resp) == 503
        finally:
            for s in idle:
                s.close()
        deadline = time.monotonic() + 5
        while emu._server.active_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        ok = _session(emu.token).get(f"{emu.base_url}/v3/accounts", timeout=5)
        assert ok.status_code == 200


def test_trickled_headers_are_cut_at_the_header_deadline():
    """Finding 19: a trickled header was held indefinitely (300 s per read)."""
    with Emulator(EmulatorConfig(source="sample", header_timeout_s=1.0)) as emu:
        closed_after = trickle_until_closed(emu.port, b"GET /v3/accounts HTTP/1.1\r\nX-Slow: ")
    assert closed_after is not None, "the emulator kept a trickling client for 8 s"
    assert closed_after < 5.0


def test_body_is_not_read_before_authentication(emu):
    """Finding 19: bodies of up to 10 MB were read before the token was checked."""
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as s:
        s.sendall(f"POST /v3/accounts/{emu.account_id}/orders HTTP/1.1\r\n"
                  "Content-Length: 10000000\r\n\r\n".encode())
        resp = s.recv(65536)  # answered at once: the 10 MB are never awaited
    assert _status(resp) == 401 and b"Connection: close" in resp
    assert _body(resp) == {"errorMessage": "Insufficient authorization to perform request."}


def test_authenticated_body_over_the_cap_is_refused(emu):
    """Finding 19: with the token, a body over the cap (orders are small) is a 413 and is
    never read."""
    head = (f"POST /v3/accounts/{emu.account_id}/orders HTTP/1.1\r\n"
            f"Authorization: Bearer {emu.token}\r\nContent-Length: 10000000\r\n\r\n").encode()
    resp = raw_http(emu.port, head)
    assert _status(resp) == 413
    assert "errorMessage" in _body(resp)
    assert not emu.transactions()[3:]


def test_aggregate_cache_is_bounded(emu):
    """Finding 19: aggregates were cached per (granularity, dailyAlignment,
    alignmentTimezone, weeklyAlignment) without bound."""
    from sep_research.emulator.market import MAX_AGGREGATES

    s = _session(emu.token)
    series = emu.market["EUR_USD"]
    zones = ("UTC", "America/New_York", "Europe/London", "Asia/Tokyo")
    n = 0
    for align in range(24):
        for tz in zones:
            r = s.get(f"{emu.base_url}/v3/instruments/EUR_USD/candles", timeout=10, params={
                "granularity": "D", "count": 2, "dailyAlignment": align,
                "alignmentTimezone": tz})
            assert r.status_code == 200
            n += 1
    assert n > MAX_AGGREGATES
    assert series.cached_aggregates <= MAX_AGGREGATES


# -- finding 20: cosmetic -----------------------------------------------------------------------


def test_malformed_request_line_gets_an_http11_json_answer(emu):
    """Finding 20: a malformed request line got a headerless HTTP/0.9 body."""
    resp = raw_http(emu.port, b"HELLO\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 400 ")
    assert isinstance(_body(resp)["errorMessage"], str)


def test_stop_loss_distance_beyond_the_price_is_refused(emu):
    """Finding 20: ``stopLossOnFill {"distance": "5.00000"}`` created a stop at a negative
    price. OANDA cancels such an order (``STOP_LOSS_ON_FILL_PRICE_DISTANCE_MAXIMUM_EXCEEDED``:
    the stop's price would be zero or negative) and rejects such a stop on a trade."""
    s = _session(emu.token)
    url = f"{emu.base_url}/v3/accounts/{emu.account_id}/orders"
    r = s.post(url, timeout=5, json={"order": {**MARKET, "units": "100",
                                               "stopLossOnFill": {"distance": "5.00000"}}})
    assert r.status_code == 201, r.text
    out = r.json()
    assert "orderFillTransaction" not in out
    assert out["orderCancelTransaction"]["reason"] == \
        "STOP_LOSS_ON_FILL_PRICE_DISTANCE_MAXIMUM_EXCEEDED"
    fill = s.post(url, timeout=5, json={"order": {**MARKET, "units": "100"}}).json()
    tid = fill["orderFillTransaction"]["tradeOpened"]["tradeID"]
    r = s.post(url, timeout=5, json={"order": {"type": "STOP_LOSS", "tradeID": tid,
                                               "distance": "5.00000"}})
    assert r.status_code == 400, r.text
    assert r.json()["errorCode"] == "PRICE_DISTANCE_MAXIMUM_EXCEEDED"
    r = s.put(f"{emu.base_url}/v3/accounts/{emu.account_id}/trades/{tid}/orders", timeout=5,
              json={"stopLoss": {"distance": "5.00000"}})
    assert r.status_code == 400, r.text
    assert r.json()["stopLossOrderRejectTransaction"]["rejectReason"] == \
        "PRICE_DISTANCE_MAXIMUM_EXCEEDED"
    for tx in emu.transactions():
        if tx["type"] == "STOP_LOSS_ORDER":
            assert float(tx["price"]) > 0, tx
