"""The emulator's HTTP/1.1 server: authentication, fault injection, chunked streams, the wire.

Built on the project's bounded HTTP layer (:mod:`sep_research.httpd`): one thread per
connection with keep-alive, at most ``max_connections`` at once (one more is answered 503),
every read bounded by ``idle_timeout_s`` and the request line and headers by
``header_timeout_s``, malformed requests answered in HTTP/1.1 with OANDA's error body. A
request is routed, then authenticated (the token must own the account in the path; the admin
routes ``/_emulator/*`` need the main token), and only then is its body read: at most
:data:`MAX_BODY` bytes (orders are small), parsed with a nesting bound. Then the faults of
:mod:`sep_research.emulator.faults` apply, then the endpoint of
:mod:`sep_research.emulator.routes` answers. Answers are written with one ``sendall`` and
``TCP_NODELAY`` (``bench/emulator.py`` measures the rate).

The two streams (pricing and transactions) are served here: chunked JSON lines, a heartbeat
every ``heartbeat_s``, the faults ``stall`` and ``cut``, and a clean final chunk when the
emulator stops.
"""

from __future__ import annotations

import hmac
import json
import logging
import select
import socket
import threading
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sep_research._util import JsonInputError, loads_json
from sep_research.emulator import routes, views
from sep_research.emulator.faults import FaultSpec
from sep_research.emulator.routes import (
    ADMIN_ROUTES,
    ENDPOINTS,
    ORDER_ROUTES,
    ROUTES,
    STREAM_ROUTES,
    Call,
    RawJSON,
)
from sep_research.emulator.wire import ApiError, WireError, fmt_time, parse_time_ns
from sep_research.httpd import BoundedHandler, BoundedHTTPServer, HttpError

log = logging.getLogger(__name__)

#: The largest request body read (an order is well under 2 KiB).
MAX_BODY = 64 * 1024
#: Nesting allowed in a request body (an order nests 3 levels).
MAX_BODY_DEPTH = 16
UNAUTHORIZED = {"errorMessage": "Insufficient authorization to perform request."}
FORBIDDEN = {"errorMessage": "The provided request was forbidden."}
NOT_FOUND = {"errorMessage": "The requested resource could not be found."}
INVALID_JSON = {"errorMessage": "Invalid JSON in request body"}
TIME_KEYS = ("time", "createTime", "openTime", "closeTime", "filledTime", "cancelledTime",
             "gtdTime", "timestamp", "createdTime", "from", "to", "triggeredTime",
             "lastOrderFillTimestamp")


class Closed(Exception):
    """The client went away (or a fault cut the connection): end the handler quietly."""


def _to_unix(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: (_unix_str(v) if k in TIME_KEYS and isinstance(v, str) else _to_unix(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_unix(v) for v in obj]
    return obj


def _unix_str(v: str) -> str:
    try:
        return fmt_time(parse_time_ns(v, "time"), unix=True)
    except WireError:
        return v


class EmulatorHTTPServer(BoundedHTTPServer):
    """The bounded server with the emulator (``app``), its stop flag and its open streams."""

    request_queue_size = 256

    def __init__(self, addr: tuple[str, int], app: Any, *, max_connections: int,
                 idle_timeout: float, header_timeout: float) -> None:
        self.app = app
        self.stopping = threading.Event()
        self.streams: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, EmulatorHandler, max_connections=max_connections,
                         idle_timeout=idle_timeout, header_timeout=header_timeout)

    @property
    def conns(self) -> set[socket.socket]:
        """The connections being served now (a copy)."""
        with self._lock:
            return set(self._active)


class EmulatorHandler(BoundedHandler):
    """One connection: v20 requests in, OANDA-style answers out (see the module docstring)."""

    server_version = "sep-emulator/1"
    server: EmulatorHTTPServer

    def error_body(self, status: int, message: str) -> Any:
        return {"errorMessage": message}

    def send_json(self, status: int, obj: Any, extra: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(obj, separators=(",", ":")).encode(),
                        "application/json", extra)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- writing --------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              extra: dict[str, str] | None = None) -> None:
        if self._unread:
            self.close_connection = True  # an unread body must never be read as a request
        head = {"RequestID": self.server.app.venue.request_id()}
        if extra:
            head.update(extra)
        self.send_bytes(status, body, ctype, head)

    def _json(self, status: int, obj: Any, extra: dict[str, str] | None = None) -> None:
        if isinstance(obj, RawJSON):
            self._send(status, obj.encode(), extra=extra)
            return
        if self._unix:
            obj = _to_unix(obj)
        self._send(status, json.dumps(obj, separators=(",", ":")).encode(), extra=extra)

    # -- dispatch -------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        app = self.server.app
        head = self.headers  # names are lower-cased: plain dict reads on the hot path
        self._unix = dict.get(head, "accept-datetime-format", "").upper() == "UNIX"
        self._body_bytes = b""
        self._unread = dict.get(head, "content-length", "") not in ("", "0")
        try:
            url = urlsplit(self.path)
            path = url.path.rstrip("/") or "/"
            q = dict(parse_qsl(url.query, keep_blank_values=True))
            route, params = self._route(method, path)
            owned = self._auth(route, params)
            if self._unread:
                self._body_bytes = self.read_body(MAX_BODY)
                self._unread = False
            faults: FaultSpec = app.faults
            if faults:
                if faults.draw("503"):
                    self._send(503, b"<html><body><h1>503 Service Unavailable</h1></body></html>",
                               "text/html")
                    return
                if faults.draw("429"):
                    self._send(429, b'{"errorMessage":"Requests are being rate limited"}',
                               extra={"Retry-After": "1"})
                    return
                slow = faults.draw("slow")
                if slow and self.server.stopping.wait(slow.seconds):
                    return
            call = Call(app, params, q, owned, self._json_body, self._unix,
                        dict.get(head, "host"), self.server.server_address[1])
            if route in STREAM_ROUTES:
                with self.server.conns_lock:
                    self.server.streams.add(self.connection)
                try:
                    self._stream(route, call)
                finally:
                    with self.server.conns_lock:
                        self.server.streams.discard(self.connection)
                return
            fn = ENDPOINTS[route]
            if route in ORDER_ROUTES and faults:
                drop = faults.draw("drop-order")
                if drop:
                    fn(call)  # carried out; the answer is lost
                    self._hold_and_drop(drop.seconds)
                    return
            answer = fn(call)
            self._json(answer[0], answer[1], answer[2] if len(answer) > 2 else None)
        except ApiError as err:
            self._json(err.status, err.body)
        except WireError as err:
            self._json(400, {"errorMessage": str(err)})
        except HttpError as err:
            self.close_connection = self.close_connection or err.close
            self._json(err.status, {"errorMessage": err.message})
        except Closed:
            self.close_connection = True
        except Exception:  # the server never crashes on input and never leaks a stack trace
            log.exception("internal error on %s %s", method, self.path[:200])
            self._json(500, {"errorMessage": "An internal server error occurred"})

    def _json_body(self) -> Any:
        if not self._body_bytes.strip():
            return None
        try:
            return loads_json(self._body_bytes, what="request body", max_depth=MAX_BODY_DEPTH)
        except JsonInputError:
            raise ApiError(400, INVALID_JSON) from None

    def _route(self, method: str, path: str) -> tuple[str, dict[str, str]]:
        allowed = False
        for m, pat, name in ROUTES:
            hit = pat.match(path)
            if hit:
                if m == method:
                    return name, hit.groupdict()
                allowed = True
        if allowed:
            raise ApiError(405, {"errorMessage": f"Method {method} not allowed on {path[:200]}"})
        raise ApiError(404, NOT_FOUND)

    def _auth(self, route: str, params: dict[str, str]) -> list[str]:
        """The accounts the request's token owns; 401 without a known token, 403 for another
        account or, without the main token, for the admin routes."""
        app = self.server.app
        got = self.bearer_token()
        owned = None
        main = False
        if got:
            given = got.encode("utf-8", "replace")
            for token, accounts, is_main in app.token_table:  # constant-time, every token
                if hmac.compare_digest(given, token):
                    owned, main = accounts, is_main
        if owned is None:
            raise ApiError(401, UNAUTHORIZED)
        if route in ADMIN_ROUTES and not main:
            raise ApiError(403, FORBIDDEN)
        acct = params.get("acct")
        if acct is not None and acct not in owned:
            raise ApiError(403, FORBIDDEN)
        return list(owned)

    def _client_gone(self) -> bool:
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if r:
                return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True
        return False

    def _hold_and_drop(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.server.stopping.is_set():
            if self._client_gone():
                break
            time.sleep(0.05)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- streams --------------------------------------------------------------------------
    def _chunk(self, obj: Any) -> None:
        if self._unix:
            obj = _to_unix(obj)
        data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        except OSError:
            raise Closed() from None

    def _stream(self, route: str, call: Call) -> None:
        app = self.server.app
        venue = app.venue
        acct = call.account
        names = routes.instruments_param(venue, call.query) if route == "pricing_stream" else []
        faults: FaultSpec = app.faults
        stall = faults.draw("stall") if faults else None
        cut = faults.draw("cut") if faults else None
        head = ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Transfer-Encoding: chunked\r\nServer: {self.server_version}\r\n"
                f"RequestID: {venue.request_id()}\r\n\r\n")
        try:
            self.wfile.write(head.encode())
        except OSError:
            raise Closed() from None
        self.close_connection = True
        opened = time.monotonic()
        hb_every = app.heartbeat_s
        tick = app.price_interval_s
        last: dict[str, Any] = {}
        sent_tx = acct.last_id
        if route == "pricing_stream":
            with venue.request():
                now = venue.now()
                first = [views.price_object(venue, n, now) for n in names]
            for p in first:
                last[p["instrument"]] = (p["bids"], p["asks"], p["tradeable"])
                self._chunk(p)
        next_hb = time.monotonic() + hb_every
        stopping = self.server.stopping
        while not stopping.is_set():
            elapsed = time.monotonic() - opened
            if cut is not None and elapsed >= cut.seconds:
                data = b'{"type":"PRICE","instrument":"CUT","bids":[{"price":"1.0'
                try:
                    self.wfile.write(b"%x\r\n" % (len(data) + 40) + data)
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                raise Closed()
            if stall is not None and elapsed >= stall.seconds:
                while not stopping.is_set() and not self._client_gone():
                    stopping.wait(0.1)
                raise Closed()
            if route == "pricing_stream":
                stopping.wait(tick)
                if self._client_gone():
                    raise Closed()
                with venue.request():
                    now = venue.now()
                    out = []
                    for n in names:
                        p = views.price_object(venue, n, now)
                        key = (p["bids"], p["asks"], p["tradeable"])
                        if key != last.get(n):
                            last[n] = key
                            out.append(p)
                for p in out:
                    self._chunk(p)
            else:
                with acct.cond:
                    if acct.last_id == sent_tx:
                        acct.cond.wait(min(tick, max(0.0, next_hb - time.monotonic())))
                if self._client_gone():
                    raise Closed()
                with venue.lock:
                    new = acct.txs[sent_tx:]
                    sent_tx = acct.last_id
                for tx in new:
                    self._chunk(tx)
            if time.monotonic() >= next_hb:
                hb: dict[str, Any] = {"type": "HEARTBEAT", "time": fmt_time(app.clock.now_ns())}
                if route == "tx_stream":
                    hb["lastTransactionID"] = str(acct.last_id)
                self._chunk(hb)
                next_hb += hb_every
        try:  # clean end of the chunked body on shutdown
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        raise Closed()
