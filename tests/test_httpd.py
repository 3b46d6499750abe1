"""The bounded HTTP layer shared by the status API and the emulator (review findings 1, 18-20)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from sep_research._util import JsonInputError, loads_json
from sep_research.httpd import BoundedHandler, BoundedHTTPServer, HttpError
from tests.loopback import raw_http

TOKEN = "test-token-not-a-secret"


class EchoHandler(BoundedHandler):
    def do_GET(self) -> None:
        if self.path == "/boom":
            raise RuntimeError("a bug in a handler")
        self.send_json(200, {"path": self.path})

    def do_POST(self) -> None:
        if not self.bearer_ok(TOKEN):
            raise HttpError(401, "missing or wrong bearer token")
        body = loads_json(self.read_body(1024), what="body") if self.body_length() else None
        self.send_json(200, {"body": body})


@pytest.fixture()
def server():
    srv = BoundedHTTPServer(("127.0.0.1", 0), EchoHandler, max_connections=4,
                            idle_timeout=2.0, header_timeout=1.0)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _status(resp: bytes) -> int:
    return int(resp.split(b" ", 2)[1])


def test_get_and_keepalive(server):
    port = server.server_address[1]
    resp = raw_http(port, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert _status(resp) == 200 and b'"path":"/x"' in resp


def test_connection_cap_answers_503_and_frees_the_socket(server):
    """Finding 1/19: idle connections beyond the cap cannot hold threads or descriptors."""
    port = server.server_address[1]
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    try:
        deadline = time.monotonic() + 5
        while server.active_connections < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        resp = raw_http(port, b"GET / HTTP/1.1\r\n\r\n")
        assert _status(resp) == 503
        assert server.refused_connections >= 1
    finally:
        for s in idle:
            s.close()


def test_trickled_headers_are_cut_at_the_header_deadline(server):
    """Finding 19: a slowloris client cannot hold a slot past header_timeout (1 s here)."""
    import select

    port = server.server_address[1]
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")
    t0 = time.monotonic()
    closed_after = None
    while time.monotonic() - t0 < 8.0:  # one byte every 0.2 s: each read is inside idle_timeout
        try:
            s.sendall(b"x")
        except OSError:
            closed_after = time.monotonic() - t0
            break
        if select.select([s], [], [], 0.2)[0]:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                closed_after = time.monotonic() - t0
                break
    s.close()
    assert closed_after is not None, "the server kept a trickling client for 8 s"
    assert closed_after < 5.0


def test_unauthenticated_body_is_never_read(server):
    """Finding 1: a huge POST without the token is refused before its body is read."""
    port = server.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /api/halt HTTP/1.1\r\nContent-Length: 1000000000\r\n\r\n")
        resp = s.recv(4096)
    assert _status(resp) == 401 and b"Connection: close" in resp


def test_authenticated_body_over_the_limit_is_refused(server):
    port = server.server_address[1]
    head = (f"POST / HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Length: 5000\r\n\r\n").encode()
    resp = raw_http(port, head)
    assert _status(resp) == 413


@pytest.mark.parametrize("request_bytes,status", [
    (b"garbage\r\n\r\n", 400),  # finding 20: a proper HTTP/1.1 answer, not HTTP/0.9
    (b"GET / HTTP/2.0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nAuthorization: Bearer " + TOKEN.encode() +
     b"\r\nContent-Length: abc\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nAuthorization: Bearer " + TOKEN.encode() +
     b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n", 431),
    (b"BREW / HTTP/1.1\r\n\r\n", 405),
])
def test_malformed_requests_get_json_errors(server, request_bytes, status):
    """Findings 18/20: malformed input gets a clear answer, never a traceback or HTTP/0.9."""
    resp = raw_http(server.server_address[1], request_bytes)
    assert resp.startswith(b"HTTP/1.1 ")
    assert _status(resp) == status
    body = resp.partition(b"\r\n\r\n")[2]
    assert "error" in json.loads(body)


def test_handler_exception_is_a_500_and_the_server_stays_up(server, caplog):
    port = server.server_address[1]
    assert _status(raw_http(port, b"GET /boom HTTP/1.1\r\n\r\n")) == 500
    assert _status(raw_http(port, b"GET /ok HTTP/1.1\r\n\r\n")) == 200


def test_deep_or_bad_json_is_a_clear_error():
    """Finding 18: deep nesting is an error that names the input, not a RecursionError."""
    with pytest.raises(JsonInputError, match="body: JSON nested"):
        loads_json("[" * 100_000 + "]" * 100_000, what="body")
    with pytest.raises(JsonInputError, match="deeper than 3"):
        loads_json('{"a": [[{"b": 1}]]}', what="body", max_depth=3)
    with pytest.raises(JsonInputError, match="not UTF-8"):
        loads_json(b'{"a": "\xff"}', what="body")
    with pytest.raises(JsonInputError, match="NaN is not a JSON number"):
        loads_json('{"a": NaN}', what="body")
    with pytest.raises(JsonInputError, match="more than the 10 allowed"):
        loads_json(b"[" + b"1," * 20 + b"1]", what="body", max_bytes=10)
    assert loads_json('{"a": [1, {"b": 2}]}', what="body") == {"a": [1, {"b": 2}]}
