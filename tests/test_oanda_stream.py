"""ResilientStream against a local chunked-HTTP server that stalls, cuts, ends and fails.

Each connection to the server follows the next entry of a script: send some JSON lines, then
stall (send nothing), cut the connection mid-chunk, end the body cleanly, or keep sending
heartbeats; or answer with an error status.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler

import pytest
from oandapyV20.endpoints.pricing import PricingStream
from oandapyV20.endpoints.transactions import TransactionsStream

from sep_research.oanda.client import AuthError, make_api
from sep_research.oanda.stream import ResilientStream, TooManyReconnects
from tests.loopback import serve_loopback, stop_loopback

pytestmark = pytest.mark.usefixtures("fast_oanda_limits")

TOKEN = "stream-test-token-SECRET"
ACCOUNT = "101-004-1435156-001"


def price(i: int) -> dict:
    return {"type": "PRICE", "instrument": "EUR_USD", "time": f"2024-01-02T10:00:{i:02d}Z",
            "bids": [{"price": f"1.1{i:03d}", "liquidity": 1000000}],
            "asks": [{"price": f"1.1{i + 1:03d}", "liquidity": 1000000}]}


HEARTBEAT = {"type": "HEARTBEAT", "time": "2024-01-02T10:00:00Z"}


class StreamServer:
    def __init__(self) -> None:
        self.script: deque[tuple] = deque()
        self.paths: list[str] = []
        self.done = threading.Event()
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def chunk(self, obj: dict) -> None:
                data = (json.dumps(obj) + "\n").encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def do_GET(self) -> None:
                srv.paths.append(self.path)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    step: tuple = ("status", 401)
                else:
                    step = srv.script.popleft() if srv.script else ("lines", [], "hold")
                if step[0] == "status":
                    body = json.dumps({"errorMessage": f"status {step[1]}"}).encode()
                    self.send_response(step[1])
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                _, lines, then = step
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for obj in lines:
                        self.chunk(obj)
                    if then == "stall":
                        srv.done.wait(10)
                    elif then == "cut":
                        self.wfile.write(b"400\r\n{\"type\": \"PRI")  # promise 1024 bytes
                        self.wfile.flush()
                        self.close_connection = True
                    elif then == "end":
                        self.wfile.write(b"0\r\n\r\n")
                        self.close_connection = True
                    elif then == "prices":  # prices keep coming, heartbeats never
                        i = 0
                        while not srv.done.wait(0.03):
                            self.chunk(price(50 + i % 40))
                            i += 1
                    elif then == "hold":
                        while not srv.done.wait(0.03):
                            self.chunk(HEARTBEAT)
                except OSError:
                    pass

        self.httpd, self.url = serve_loopback(Handler)

    def close(self) -> None:
        self.done.set()
        stop_loopback(self.httpd)




@pytest.fixture
def server():
    srv = StreamServer()
    yield srv
    srv.close()


def pricing(server: StreamServer, token: str = TOKEN, **kw) -> ResilientStream:
    api = make_api(token, server.url)
    kw.setdefault("stall_timeout", 0.4)
    kw.setdefault("backoff", 0.01)
    return ResilientStream(
        api, lambda: PricingStream(ACCOUNT, params={"instruments": "EUR_USD"}), **kw)


def collect_prices(stream: ResilientStream, n: int, limit_s: float = 10.0) -> list[dict]:
    got: list[dict] = []
    t0 = time.monotonic()
    for msg in stream:
        if msg["type"] == "PRICE":
            got.append(msg)
        if len(got) >= n:
            stream.close()
        assert time.monotonic() - t0 < limit_s, "stream did not deliver in time"
    return got


def test_survives_stall_error_status_cut_and_clean_end(server: StreamServer) -> None:
    server.script.extend([
        ("lines", [price(1), HEARTBEAT, price(2)], "stall"),
        ("status", 503),
        ("lines", [price(3)], "cut"),
        ("status", 429),
        ("lines", [price(4), HEARTBEAT], "end"),
        ("lines", [HEARTBEAT, price(5)], "hold"),
    ])
    reconnects: list[tuple[int, str]] = []
    stream = pricing(server, on_reconnect=lambda n, why: reconnects.append((n, why)))
    t0 = time.monotonic()
    got = collect_prices(stream, 5)
    elapsed = time.monotonic() - t0
    assert [m["time"][-3:-1] for m in got] == ["01", "02", "03", "04", "05"]
    st = stream.stats
    assert st.connects == 6 and st.reconnects == 5
    assert st.stalls == 1
    assert st.heartbeats >= 3
    assert [r[0] for r in reconnects] == [1, 3, 5]  # after each connection that was read
    assert "stalled" in reconnects[0][1]
    assert all("/pricing/stream" in p and "instruments=EUR_USD" in p for p in server.paths)
    assert elapsed < 5.0


def test_prices_without_heartbeats_count_as_a_stall(server: StreamServer) -> None:
    server.script.extend([("lines", [HEARTBEAT], "prices"), ("lines", [price(7)], "hold")])
    stream = pricing(server, stall_timeout=0.3)
    seen: list[str] = []
    for msg in stream:
        seen.append(msg["type"])
        if msg["type"] == "PRICE" and msg["time"].endswith("07Z"):
            stream.close()
    assert stream.stats.stalls == 1 and stream.stats.reconnects == 1
    assert seen.count("PRICE") > 3  # the flowing prices were delivered before the stall


def test_any_message_feeds_the_watchdog_when_heartbeats_are_not_required(
    server: StreamServer,
) -> None:
    server.script.extend([("lines", [], "prices")])
    stream = pricing(server, stall_timeout=0.3, require_heartbeats=False)
    t0 = time.monotonic()
    for _ in stream:
        if time.monotonic() - t0 > 1.0:
            stream.close()
    assert stream.stats.stalls == 0 and stream.stats.reconnects == 0


def test_refused_token_is_raised_at_once(server: StreamServer) -> None:
    stream = pricing(server, token="wrong-SECRET-token")
    with pytest.raises(AuthError, match="refused the access token") as exc:
        next(iter(stream))
    assert "wrong-SECRET-token" not in str(exc.value)
    assert stream.stats.connects == 1


def test_max_reconnects(server: StreamServer) -> None:
    server.script.extend([("status", 503)] * 5)
    stream = pricing(server, max_reconnects=2)
    with pytest.raises(TooManyReconnects, match="2 reconnects"):
        list(stream)
    assert stream.stats.connects == 3


def test_close_from_another_thread_ends_a_stalled_stream(server: StreamServer) -> None:
    server.script.append(("lines", [HEARTBEAT], "stall"))
    stream = pricing(server, stall_timeout=30.0)
    threading.Timer(0.3, stream.close).start()
    t0 = time.monotonic()
    msgs = list(stream)
    assert time.monotonic() - t0 < 3.0
    assert msgs == [HEARTBEAT] and stream.closed


def test_transactions_stream_and_heartbeat_filter(server: StreamServer) -> None:
    tx = {"type": "ORDER_FILL", "id": "12", "accountID": ACCOUNT}
    server.script.append(("lines", [HEARTBEAT, tx, HEARTBEAT], "hold"))
    api = make_api(TOKEN, server.url)
    stream = ResilientStream(api, lambda: TransactionsStream(ACCOUNT), stall_timeout=1.0,
                             yield_heartbeats=False)
    first = next(iter(stream))
    stream.close()
    assert first == tx
    assert server.paths[0].startswith(f"/v3/accounts/{ACCOUNT}/transactions/stream")


def test_bad_arguments() -> None:
    api = make_api(TOKEN, "http://127.0.0.1:9")
    with pytest.raises(ValueError, match="stall_timeout"):
        ResilientStream(api, lambda: None, stall_timeout=0)
    from oandapyV20.endpoints.instruments import InstrumentsCandles

    stream = ResilientStream(api, lambda: InstrumentsCandles("EUR_USD"))
    with pytest.raises(ValueError, match="not a streaming endpoint"):
        next(iter(stream))
