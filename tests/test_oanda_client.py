"""The OANDA client wrapper: environments, rate limiter, retry rules, error classes.

Requests go to a local stdlib HTTP server (127.0.0.1, port 0) that answers a scripted list
of statuses, so the real ``oandapyV20`` client and ``requests`` do the talking.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler

import pytest
import requests
from oandapyV20 import oandapyV20 as v20
from oandapyV20.endpoints.instruments import InstrumentsCandles
from oandapyV20.endpoints.orders import OrderCreate, OrderReplace
from oandapyV20.endpoints.trades import TradeClose
from oandapyV20.exceptions import V20Error

from sep_research.oanda.client import (
    AuthError,
    ErrorKind,
    RateLimiter,
    RequestError,
    TemporaryError,
    classify_error,
    environment_key,
    make_api,
    request_with_retry,
    source_label,
)
from sep_research.oanda.credentials import CredentialsError
from tests.loopback import serve_loopback, stop_loopback

pytestmark = pytest.mark.usefixtures("fast_oanda_limits")

TOKEN = "client-test-token-SECRET-42"
ACCOUNT = "101-004-1435156-001"


class ScriptServer:
    """Answers each request with the next (status, body) of ``script``; 200 {} when empty."""

    def __init__(self) -> None:
        self.script: deque[tuple[int, str]] = deque()
        self.requests: list[tuple[str, str]] = []
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                srv.requests.append((self.command, self.path))
                code, body = srv.script.popleft() if srv.script else (200, "{}")
                # order create and order replace succeed with 201, everything else with 200
                creates = self.command == "POST" or (
                    self.command == "PUT" and re.search(r"/orders/[^/]+$", self.path))
                if code == 200 and creates:
                    code = 201
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _answer

        self.httpd, self.url = serve_loopback(Handler)

    def close(self) -> None:
        stop_loopback(self.httpd)




@pytest.fixture
def server():
    srv = ScriptServer()
    yield srv
    srv.close()


def no_sleep(delays: list[float]):
    return delays.append


def candles_ep() -> InstrumentsCandles:
    return InstrumentsCandles("EUR_USD", params={"granularity": "M1", "count": 5})


def order_ep() -> OrderCreate:
    return OrderCreate(ACCOUNT, data={"order": {"type": "MARKET", "instrument": "EUR_USD",
                                                "units": "100"}})


# ------------------------------------------------------------------------------ environments


def test_environments_and_labels() -> None:
    assert environment_key("practice") == "practice"
    assert environment_key("live") == "live"
    assert environment_key("http://127.0.0.1:8090/") == "url:http://127.0.0.1:8090"
    assert source_label("practice") == "oanda:practice"
    assert source_label("live") == "oanda:live"
    assert source_label("http://127.0.0.1:8090") == "emulator:http://127.0.0.1:8090"
    api = make_api(TOKEN, "http://127.0.0.1:8090")
    assert v20.TRADING_ENVIRONMENTS[api.environment] == {
        "api": "http://127.0.0.1:8090", "stream": "http://127.0.0.1:8090"}
    assert make_api(TOKEN, "live").environment == "live"
    with pytest.raises(CredentialsError, match="unknown OANDA environment"):
        make_api(TOKEN, "demo")
    with pytest.raises(ValueError, match="empty token"):
        make_api("", "practice")


# ------------------------------------------------------------------------------ rate limiter


def test_rate_limiter_token_bucket_with_a_fake_clock() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    lim = RateLimiter(5.0, 2, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        lim.acquire()
    # the burst of 2 is free, the other 8 come at 5 per second
    assert sum(slept) == pytest.approx(8 / 5)
    assert lim.waited == pytest.approx(8 / 5)
    now[0] += 100.0  # a long idle period saves up at most `burst` tokens
    slept.clear()
    for _ in range(3):
        lim.acquire()
    assert sum(slept) == pytest.approx(1 / 5)


def test_rate_limiter_really_limits_threads() -> None:
    import time

    lim = RateLimiter(50.0, 1)
    t0 = time.monotonic()
    threads = [threading.Thread(target=lambda: [lim.acquire() for _ in range(5)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 20 acquisitions, 1 free, 19 at 50/s: at least 0.38 s
    assert time.monotonic() - t0 >= 0.36


def test_bad_limiter_arguments() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(0, 1)


# ------------------------------------------------------------------------------ retries


def test_get_retries_429_and_5xx_with_growing_backoff(server: ScriptServer) -> None:
    server.script.extend([(429, '{"errorMessage": "slow down"}'), (503, "<html>down</html>"),
                          (502, ""), (200, '{"candles": []}')])
    api = make_api(TOKEN, server.url)
    delays: list[float] = []
    seen: list[int | None] = []
    out = request_with_retry(api, candles_ep(), retries=5, backoff=0.1, sleep=delays.append,
                             on_retry=lambda a, e, d: seen.append(e.code))
    assert out == {"candles": []}
    assert seen == [429, 503, 502]
    assert len(server.requests) == 4
    # jittered exponential: delay i in [0.5, 1] * 0.1 * 2**i
    for i, d in enumerate(delays):
        assert 0.05 * 2**i <= d <= 0.1 * 2**i


def test_get_gives_up_after_the_retries(server: ScriptServer) -> None:
    server.script.extend([(503, "down")] * 10)
    api = make_api(TOKEN, server.url)
    with pytest.raises(TemporaryError, match="503") as exc:
        request_with_retry(api, candles_ep(), retries=3, sleep=lambda s: None)
    assert exc.value.attempts == 4 and not exc.value.may_have_executed
    assert len(server.requests) == 4


def test_post_is_never_retried(server: ScriptServer) -> None:
    server.script.extend([(503, "down"), (503, "down")])
    api = make_api(TOKEN, server.url)
    with pytest.raises(TemporaryError) as exc:
        request_with_retry(api, order_ep(), retries=5, sleep=lambda s: None)
    assert len(server.requests) == 1
    assert exc.value.may_have_executed  # a 5xx on a write: reconcile before trying again
    with pytest.raises(ValueError, match="never retried"):
        request_with_retry(api, order_ep(), idempotent=True)
    # a 429 means the order was refused before any work
    server.script.clear()
    server.script.append((429, '{"errorMessage": "Too many requests"}'))
    with pytest.raises(TemporaryError) as exc:
        request_with_retry(api, order_ep(), sleep=lambda s: None)
    assert not exc.value.may_have_executed
    # success: a 201 comes back as the response
    assert request_with_retry(api, order_ep()) == {}


def test_put_is_retried_only_when_declared_idempotent(server: ScriptServer) -> None:
    api = make_api(TOKEN, server.url)
    server.script.extend([(503, "down"), (503, "down")])
    with pytest.raises(TemporaryError):
        request_with_retry(api, TradeClose(ACCOUNT, "7", data={"units": "5"}),
                           sleep=lambda s: None)
    assert len(server.requests) == 1
    server.script.clear()
    server.requests.clear()
    server.script.extend([(503, "down"), (200, '{"ok": 1}')])
    out = request_with_retry(api, OrderReplace(ACCOUNT, "9", data={"order": {}}),
                             idempotent=True, sleep=lambda s: None)
    assert out == {"ok": 1} and len(server.requests) == 2


def test_connection_errors(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = make_api(TOKEN, f"http://127.0.0.1:{port}", timeout=(0.5, 0.5))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TemporaryError) as exc:
        request_with_retry(api, candles_ep(), retries=2, sleep=lambda s: None)
    assert exc.value.attempts == 3 and exc.value.code is None
    assert not exc.value.may_have_executed
    with pytest.raises(TemporaryError) as exc:
        request_with_retry(api, order_ep(), retries=2, sleep=lambda s: None)
    assert exc.value.attempts == 1 and exc.value.may_have_executed
    assert "reconcile" in str(exc.value)
    assert TOKEN not in caplog.text


def test_401_403_400_need_a_human_or_a_fix(server: ScriptServer) -> None:
    api = make_api(TOKEN, server.url)
    server.script.append((401, '{"errorMessage": "Insufficient authorization"}'))
    with pytest.raises(AuthError, match="refused the access token") as exc:
        request_with_retry(api, candles_ep(), sleep=lambda s: None)
    assert TOKEN not in str(exc.value) and exc.value.kind is ErrorKind.NEEDS_HUMAN
    server.script.append((403, '{"errorMessage": "forbidden"}'))
    with pytest.raises(AuthError, match="OANDA_ACCOUNT_ID"):
        request_with_retry(api, candles_ep(), sleep=lambda s: None)
    server.script.append((400, json.dumps(
        {"errorMessage": "Invalid value specified for 'granularity'"})))
    with pytest.raises(RequestError, match="granularity") as exc:
        request_with_retry(api, candles_ep(), sleep=lambda s: None)
    assert exc.value.kind is ErrorKind.BAD_REQUEST and exc.value.code == 400
    assert len(server.requests) == 3  # none of them retried


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (V20Error(429, ""), ErrorKind.RETRYABLE),
        (V20Error(500, ""), ErrorKind.RETRYABLE),
        (V20Error(503, "x"), ErrorKind.RETRYABLE),
        (V20Error(401, ""), ErrorKind.NEEDS_HUMAN),
        (V20Error(403, ""), ErrorKind.NEEDS_HUMAN),
        (V20Error(400, ""), ErrorKind.BAD_REQUEST),
        (V20Error(404, ""), ErrorKind.BAD_REQUEST),
        (V20Error(405, ""), ErrorKind.BAD_REQUEST),
        (requests.ConnectionError("x"), ErrorKind.RETRYABLE),
        (requests.Timeout("x"), ErrorKind.RETRYABLE),
        (requests.exceptions.ChunkedEncodingError("x"), ErrorKind.RETRYABLE),
        (KeyError("x"), ErrorKind.UNEXPECTED),
    ],
)
def test_classify_error(exc: BaseException, kind: ErrorKind) -> None:
    assert classify_error(exc) is kind


def test_streams_are_refused(server: ScriptServer) -> None:
    from oandapyV20.endpoints.pricing import PricingStream

    with pytest.raises(ValueError, match="stream"):
        request_with_retry(make_api(TOKEN, server.url), PricingStream(ACCOUNT, {}))


def test_oanda_package_stays_light() -> None:
    """The live runner imports these modules: no pandas, numpy or numba."""
    code = (
        "import sys\n"
        "import sep_research.oanda.credentials, sep_research.oanda.client, "
        "sep_research.oanda.stream\n"
        "bad = [m for m in ('pandas', 'numpy', 'numba', 'matplotlib', 'tqdm') "
        "if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
