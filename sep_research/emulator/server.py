"""The HTTP/1.1 server: routing, authentication, the REST answers, streams and faults.

Built on the standard library's ``ThreadingHTTPServer`` (one thread per connection, keep-alive),
which measured above the 2,000 requests per second the emulator needs on loopback (see
``bench/emulator.py``). Every answer is written with one ``sendall`` and ``TCP_NODELAY``.
"""

from __future__ import annotations

import bisect
import json
import logging
import re
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sep_research.emulator import views
from sep_research.emulator.faults import FaultSpec
from sep_research.emulator.market import WEEKDAYS
from sep_research.emulator.venue import Venue
from sep_research.emulator.wire import ApiError, WireError, fmt_time, invalid, to_ns
from sep_research.emulator.wire import parse_time_ns as parse_time
from sep_research.fx import GRANULARITY_SECONDS

log = logging.getLogger(__name__)

UNAUTHORIZED = {"errorMessage": "Insufficient authorization to perform request."}
FORBIDDEN = {"errorMessage": "The provided request was forbidden."}
NOT_FOUND = {"errorMessage": "The requested resource could not be found."}
TIME_KEYS = ("time", "createTime", "openTime", "closeTime", "filledTime", "cancelledTime",
             "gtdTime", "timestamp", "createdTime", "from", "to", "triggeredTime")
_ACC = r"/v3/accounts/(?P<acct>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p + "$"), name) for m, p, name in [
        ("GET", r"/v3/accounts", "accounts"),
        ("GET", _ACC, "account"),
        ("GET", _ACC + r"/summary", "summary"),
        ("GET", _ACC + r"/instruments", "instruments"),
        ("GET", _ACC + r"/changes", "changes"),
        ("PATCH", _ACC + r"/configuration", "configuration"),
        ("GET", r"/v3/instruments/(?P<inst>[^/]+)/candles", "candles"),
        ("GET", _ACC + r"/pricing", "pricing"),
        ("GET", _ACC + r"/pricing/stream", "pricing_stream"),
        ("GET", _ACC + r"/instruments/(?P<inst>[^/]+)/candles", "candles"),
        ("POST", _ACC + r"/orders", "order_create"),
        ("GET", _ACC + r"/orders", "orders"),
        ("GET", _ACC + r"/pendingOrders", "pending_orders"),
        ("GET", _ACC + r"/orders/(?P<oid>[^/]+)", "order"),
        ("PUT", _ACC + r"/orders/(?P<oid>[^/]+)", "order_replace"),
        ("PUT", _ACC + r"/orders/(?P<oid>[^/]+)/cancel", "order_cancel"),
        ("PUT", _ACC + r"/orders/(?P<oid>[^/]+)/clientExtensions", "order_ext"),
        ("GET", _ACC + r"/trades", "trades"),
        ("GET", _ACC + r"/openTrades", "open_trades"),
        ("GET", _ACC + r"/trades/(?P<tid>[^/]+)", "trade"),
        ("PUT", _ACC + r"/trades/(?P<tid>[^/]+)/close", "trade_close"),
        ("PUT", _ACC + r"/trades/(?P<tid>[^/]+)/orders", "trade_orders"),
        ("PUT", _ACC + r"/trades/(?P<tid>[^/]+)/clientExtensions", "trade_ext"),
        ("GET", _ACC + r"/positions", "positions"),
        ("GET", _ACC + r"/openPositions", "open_positions"),
        ("GET", _ACC + r"/positions/(?P<inst>[^/]+)", "position"),
        ("PUT", _ACC + r"/positions/(?P<inst>[^/]+)/close", "position_close"),
        ("GET", _ACC + r"/transactions", "transactions"),
        ("GET", _ACC + r"/transactions/idrange", "tx_idrange"),
        ("GET", _ACC + r"/transactions/sinceid", "tx_sinceid"),
        ("GET", _ACC + r"/transactions/stream", "tx_stream"),
        ("GET", _ACC + r"/transactions/(?P<txid>[^/]+)", "transaction"),
        ("GET", r"/_emulator/clock", "admin_clock"),
        ("POST", r"/_emulator/clock", "admin_clock_set"),
        ("POST", r"/_emulator/faults", "admin_faults"),
    ]
]
ORDER_ROUTES = {"order_create", "order_replace", "trade_close", "position_close"}
STREAM_ROUTES = {"pricing_stream", "tx_stream"}


class _Raw(str):
    """A body already encoded as JSON text (the candles fast path)."""


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
        return fmt_time(parse_time(v, "time"), unix=True)
    except WireError:
        return v


def _bool(q: dict[str, str], name: str, default: bool) -> bool:
    v = q.get(name)
    if v is None:
        return default
    if v.lower() in ("true", "1"):
        return True
    if v.lower() in ("false", "0"):
        return False
    raise invalid(name)


def _int(q: dict[str, str], name: str, default: int | None, lo: int, hi: int | None,
         over: str | None = None) -> int | None:
    v = q.get(name)
    if v is None:
        return default
    try:
        n = int(v)
    except ValueError:
        raise invalid(name) from None
    if n < lo:
        raise invalid(name)
    if hi is not None and n > hi:
        if over:
            raise ApiError(400, {"errorMessage": over})
        raise invalid(name)
    return n


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr: tuple[str, int], app: Any):
        self.app = app
        self.stopping = threading.Event()
        self.conns: set[socket.socket] = set()
        self.streams: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # never print to clients
        log.debug("connection error from %s", client_address)


class _Headers(dict):  # type: ignore[type-arg]
    """Request headers by lower-cased name (a lighter stand-in for ``email.message``)."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(str(key).lower())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sep-emulator/1"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are closed after 5 minutes
    server: EmulatorHTTPServer

    def parse_request(self) -> bool:
        """Request line and headers, without the (slow) email parser of the standard one."""
        self.command = None  # type: ignore[assignment]
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            self.send_error(400, "Bad request syntax")
            return False
        self.command, self.path, self.request_version = words
        headers = _Headers()
        for _ in range(101):
            line = self.rfile.readline(65537)
            if len(line) > 65536:
                self.send_error(431, "Line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, sep, value = line.decode("iso-8859-1").partition(":")
            if not sep:
                self.send_error(400, "Bad header line")
                return False
            headers[name.strip().lower()] = value.strip()
        else:
            self.send_error(431, "Too many headers")
            return False
        self.headers = headers  # type: ignore[assignment]
        conn = headers.get("connection", "").lower()
        if self.request_version == "HTTP/1.1":
            self.close_connection = conn == "close"
        else:
            self.close_connection = conn != "keep-alive"
        return True

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.conns_lock:
            self.server.conns.add(self.connection)

    def finish(self) -> None:
        with self.server.conns_lock:
            self.server.conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

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
        reason = self.responses.get(status, ("",))[0]
        head = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {ctype}",
                f"Content-Length: {len(body)}", "Server: sep-emulator/1",
                f"RequestID: {self.server.app.venue.request_id()}"]
        if extra:
            head += [f"{k}: {v}" for k, v in extra.items()]
        if self.close_connection:
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def _json(self, status: int, obj: Any) -> None:
        if isinstance(obj, _Raw):
            self._send(status, obj.encode())
            return
        if self._unix:
            obj = _to_unix(obj)
        self._send(status, json.dumps(obj, separators=(",", ":")).encode())

    # -- dispatch -------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        app = self.server.app
        self._unix = self.headers.get("Accept-Datetime-Format", "").upper() == "UNIX"
        try:
            self._body_bytes = self._read_body()
            url = urlsplit(self.path)
            path = url.path.rstrip("/") or "/"
            q = dict(parse_qsl(url.query, keep_blank_values=True))
            route, params = self._route(method, path)
            self._auth(route, params)
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
                if slow and self._wait(slow.seconds):
                    return
            if route in STREAM_ROUTES:
                with self.server.conns_lock:
                    self.server.streams.add(self.connection)
                try:
                    self._stream(route, params, q)
                finally:
                    with self.server.conns_lock:
                        self.server.streams.discard(self.connection)
                return
            fn = getattr(self, "r_" + route)
            if route in ORDER_ROUTES and faults:
                drop = faults.draw("drop-order")
                if drop:
                    fn(params, q)  # carried out; the answer is lost
                    self._hold_and_drop(drop.seconds)
                    return
            status, body = fn(params, q)
            self._json(status, body)
        except ApiError as err:
            self._json(err.status, err.body)
        except WireError as err:
            self._json(400, {"errorMessage": str(err)})
        except Closed:
            self.close_connection = True
        except Exception:  # the server never crashes on input and never leaks a stack trace
            log.exception("internal error on %s %s", method, self.path)
            self._json(500, {"errorMessage": "An internal server error occurred"})

    def _read_body(self) -> bytes:
        n = self.headers.get("Content-Length")
        if not n:
            return b""
        try:
            size = int(n)
        except ValueError:
            self.close_connection = True
            raise ApiError(400, {"errorMessage": "Invalid Content-Length"}) from None
        if size < 0 or size > 10_000_000:
            self.close_connection = True
            raise ApiError(413, {"errorMessage": "Request body too large"})
        return self.rfile.read(size)

    def _json_body(self) -> Any:
        if not self._body_bytes.strip():
            return None
        try:
            return json.loads(self._body_bytes)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ApiError(400, {"errorMessage": "Invalid JSON in request body"}) from None

    def _route(self, method: str, path: str) -> tuple[str, dict[str, str]]:
        allowed = False
        for m, pat, name in _ROUTES:
            hit = pat.match(path)
            if hit:
                if m == method:
                    return name, hit.groupdict()
                allowed = True
        if allowed:
            raise ApiError(405, {"errorMessage": f"Method {method} not allowed on {path}"})
        raise ApiError(404, NOT_FOUND)

    def _auth(self, route: str, params: dict[str, str]) -> None:
        app = self.server.app
        h = self.headers.get("Authorization", "")
        token = h[7:].strip() if h.startswith("Bearer ") else None
        owned = app.tokens.get(token) if token else None
        if owned is None:
            raise ApiError(401, UNAUTHORIZED)
        acct = params.get("acct")
        if acct is not None and acct not in owned:
            raise ApiError(403, FORBIDDEN)

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the server stops; True when it stopped."""
        return self.server.stopping.wait(seconds)

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

    # -- REST routes: each returns (status, body) -----------------------------------------
    def _acct(self, params: dict[str, str]) -> Any:
        return self.server.app.venue.accounts[params["acct"]]

    def _locked(self, fn: Any, *args: Any) -> Any:
        b: Venue = self.server.app.venue
        with b.lock:
            b.begin()
            return fn(*args)

    def r_accounts(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        token = self.headers["Authorization"][7:].strip()
        ids = self.server.app.tokens[token]
        return 200, {"accounts": [{"id": a, "tags": []} for a in ids]}

    def r_account(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        acct = self._acct(params)

        def go() -> Any:
            return {"account": views.details(b, acct), "lastTransactionID": str(acct.last_id)}
        return 200, self._locked(go)

    def r_summary(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        acct = self._acct(params)
        return 200, self._locked(lambda: {"account": views.summary(b, acct),
                                          "lastTransactionID": str(acct.last_id)})

    def r_instruments(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        app = self.server.app
        acct = self._acct(params)
        names = list(app.venue.market)
        if q.get("instruments"):
            want = q["instruments"].split(",")
            if any(w not in app.venue.market for w in want):
                raise invalid("instruments")
            names = want
        return 200, {"instruments": [app.venue.market[n].spec.describe() for n in names],
                     "lastTransactionID": str(acct.last_id)}

    def r_configuration(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        body = self._json_body()
        return 200, self._locked(b.configure, self._acct(params), body)

    def r_changes(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b: Venue = self.server.app.venue
        acct = self._acct(params)
        since = _int(q, "sinceTransactionID", None, 1, None)
        if since is None:
            raise invalid("sinceTransactionID")

        def go() -> Any:
            if since > acct.last_id:
                raise invalid("sinceTransactionID")
            return views.changes(b, acct, since)
        return 200, self._locked(go)

    def r_candles(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        app = self.server.app
        series = app.venue.market.get(params["inst"])
        if series is None:
            raise invalid("instrument")
        price = q.get("price", "M")
        if not price or any(c not in "MBA" for c in price) or len(set(price)) != len(price):
            raise invalid("price")
        gran = q.get("granularity", "S5")
        if gran not in GRANULARITY_SECONDS or not series.supports(gran):
            raise invalid("granularity")
        count = _int(q, "count", None, 1, 5000, "Maximum value for 'count' exceeded")
        _bool(q, "smooth", False)
        include_first = _bool(q, "includeFirst", True)
        align = _int(q, "dailyAlignment", 17, 0, 23)
        tz = q.get("alignmentTimezone", "America/New_York")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise invalid("alignmentTimezone") from None
        weekly = q.get("weeklyAlignment", "Friday")
        if weekly not in WEEKDAYS:
            raise invalid("weeklyAlignment")
        t_from = parse_time(q["from"], "from") if "from" in q else None
        t_to = parse_time(q["to"], "to") if "to" in q else None
        now = app.clock.now_ns()
        if t_to is not None and t_to > now:
            raise ApiError(400, {"errorMessage":
                                 "Invalid value specified for 'to'. Time is in the future"})
        if t_from is not None and t_from > now:
            raise ApiError(400, {"errorMessage":
                                 "Invalid value specified for 'from'. Time is in the future"})
        if t_from is not None and t_to is not None:
            if count is not None:
                raise ApiError(400, {"errorMessage": "'count' cannot be specified when 'to' "
                                     "and 'from' parameters are set"})
            if t_to < t_from:
                raise invalid("to")
        n = 500 if count is None else count
        with app.venue.lock:
            agg = series.aggregate(gran, align or 0, tz, weekly)
        nvis = agg.visible(now)
        starts = agg.start

        def first_at(t: int) -> int:
            if include_first:
                i = bisect.bisect_right(starts, t) - 1
                if i >= 0 and agg.bend[i] > t:
                    return i
                return i + 1
            return bisect.bisect_right(starts, t)

        if t_from is not None and t_to is not None:
            lo = first_at(t_from)
            hi = min(bisect.bisect_left(starts, t_to), nvis)
            if hi - lo > 5000:
                raise ApiError(400, {"errorMessage": "Maximum value for 'count' exceeded"})
        elif t_from is not None:
            lo = first_at(t_from)
            hi = min(lo + n, nvis)
        elif t_to is not None:
            hi = min(bisect.bisect_left(starts, t_to), nvis)
            lo = max(0, hi - n)
        else:
            hi = nvis
            lo = max(0, hi - n)
        rows = agg.render(lo, hi, price, now, self._unix)
        body = (f'{{"instrument":"{series.spec.name}","granularity":"{gran}","candles":['
                + rows + "]}")
        return 200, _Raw(body)

    def _instruments_param(self, q: dict[str, str]) -> list[str]:
        market = self.server.app.venue.market
        raw = q.get("instruments", "")
        names = [n for n in raw.split(",") if n]
        if not names or any(n not in market for n in names):
            raise invalid("instruments")
        return names

    def r_pricing(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b: Venue = self.server.app.venue
        names = self._instruments_param(q)
        since = parse_time(q["since"], "since") if q.get("since") else None

        def go() -> Any:
            now = b.now()
            prices = [views.price_object(b, n, now) for n in names]
            if since is not None:
                prices = [p for p in prices if parse_time(p["time"], "time") > since]
            return {"time": fmt_time(now), "prices": prices}
        return 200, self._locked(go)

    def r_order_create(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        body = self._json_body()
        return 201, self._locked(b.create_order, self._acct(params), body)

    def r_order_replace(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        body = self._json_body()
        return 201, self._locked(b.replace_order, self._acct(params), params["oid"], body)

    def r_order_cancel(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        return 200, self._locked(b.cancel_order, self._acct(params), params["oid"])

    def r_order_ext(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        body = self._json_body()
        return 200, self._locked(b.order_client_extensions, self._acct(params), params["oid"],
                                 body)

    def r_order(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        acct = self._acct(params)
        return 200, self._locked(lambda: {"order": b.find_order(acct, params["oid"]).w,
                                          "lastTransactionID": str(acct.last_id)})

    def _list(self, q: dict[str, str], items: list[Any], states: tuple[str, ...],
              default_state: str) -> list[Any]:
        state = q.get("state", default_state)
        if state not in states:
            raise invalid("state")
        count = _int(q, "count", 50, 1, 500)
        assert count is not None
        before = _int(q, "beforeID", None, 1, None)
        ids = set(q["ids"].split(",")) if q.get("ids") else None
        inst = q.get("instrument")
        if inst is not None and inst not in self.server.app.venue.market:
            raise invalid("instrument")
        out = []
        for it in items:
            if state != "ALL" and it.state != state:
                continue
            if before is not None and it.id >= before:
                continue
            if ids is not None and str(it.id) not in ids:
                continue
            if inst is not None and self._instrument_of(it) != inst:
                continue
            out.append(it)
            if len(out) >= count:
                break
        return out

    def _instrument_of(self, item: Any) -> str | None:
        if getattr(item, "instrument", ""):
            return item.instrument
        for acct in self.server.app.venue.accounts.values():  # a dependent order
            if acct.orders.get(item.id) is item and item.trade_id in acct.trades:
                return acct.trades[item.trade_id].instrument
        return None

    def r_orders(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        acct = self._acct(params)

        def go() -> Any:
            items = sorted(acct.orders.values(), key=lambda o: -o.id)
            got = self._list(q, items, ("PENDING", "FILLED", "TRIGGERED", "CANCELLED", "ALL"),
                             "PENDING")
            return {"orders": [o.w for o in got], "lastTransactionID": str(acct.last_id)}
        return 200, self._locked(go)

    def r_pending_orders(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        acct = self._acct(params)
        return 200, self._locked(lambda: {
            "orders": [o.w for o in sorted(acct.orders.values(), key=lambda o: -o.id)
                       if o.state == "PENDING"],
            "lastTransactionID": str(acct.last_id)})

    def r_trades(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        acct = self._acct(params)

        def go() -> Any:
            items = sorted(acct.trades.values(), key=lambda t: -t.id)
            got = self._list(q, items, ("OPEN", "CLOSED", "CLOSE_WHEN_TRADEABLE", "ALL"), "OPEN")
            return {"trades": [views.trade_json(b, acct, t) for t in got],
                    "lastTransactionID": str(acct.last_id)}
        return 200, self._locked(go)

    def r_open_trades(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        acct = self._acct(params)
        return 200, self._locked(lambda: {
            "trades": [views.trade_json(b, acct, t) for t in sorted(acct.trades.values(), key=lambda t: -t.id)
                       if t.state == "OPEN"],
            "lastTransactionID": str(acct.last_id)})

    def r_trade(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        acct = self._acct(params)
        return 200, self._locked(lambda: {
            "trade": views.trade_json(b, acct, b.find_trade(acct, params["tid"])),
            "lastTransactionID": str(acct.last_id)})

    def r_trade_close(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        body = self._json_body()
        return 200, self._locked(b.close_trade, self._acct(params), params["tid"], body)

    def r_trade_orders(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        body = self._json_body()
        return 200, self._locked(b.trade_orders, self._acct(params), params["tid"], body)

    def r_trade_ext(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        body = self._json_body()
        return 200, self._locked(b.trade_client_extensions, self._acct(params), params["tid"],
                                 body)

    def r_positions(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        acct = self._acct(params)
        return 200, self._locked(lambda: {"positions": views.positions(b, acct, only_open=False),
                                          "lastTransactionID": str(acct.last_id)})

    def r_open_positions(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        acct = self._acct(params)
        return 200, self._locked(lambda: {"positions": views.positions(b, acct, only_open=True),
                                          "lastTransactionID": str(acct.last_id)})

    def r_position(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        acct = self._acct(params)
        if params["inst"] not in b.market:
            raise invalid("instrument")
        return 200, self._locked(lambda: {"position": views.position_json(b, acct, params["inst"]),
                                          "lastTransactionID": str(acct.last_id)})

    def r_position_close(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        b = self.server.app.venue
        body = self._json_body()
        return 200, self._locked(b.close_position, self._acct(params), params["inst"], body)

    def _types(self, q: dict[str, str]) -> set[str] | None:
        return set(q["type"].split(",")) if q.get("type") else None

    def r_transactions(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        acct = self._acct(params)
        page = _int(q, "pageSize", 100, 1, 1000)
        assert page is not None
        t0 = parse_time(q["from"], "from") if q.get("from") else acct.created
        types = self._types(q)
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"

        def go() -> Any:
            now = self.server.app.venue.now()
            t1 = parse_time(q["to"], "to") if q.get("to") else now
            if t1 < t0:
                raise invalid("to")
            sel = [tx for tx in acct.txs
                   if t0 <= parse_time(tx["time"], "time") <= t1
                   and (types is None or tx["type"] in types)]
            ids = [int(tx["id"]) for tx in sel]
            pages = []
            for i in range(0, len(ids), page):
                chunk = ids[i:i + page]
                pages.append(f"http://{host}/v3/accounts/{acct.id}/transactions/idrange?"
                             f"from={chunk[0]}&to={chunk[-1]}"
                             + (f"&type={q['type']}" if types else ""))
            out = {"from": fmt_time(t0), "to": fmt_time(t1), "pageSize": page,
                   "count": len(ids), "pages": pages, "lastTransactionID": str(acct.last_id)}
            if types:
                out["type"] = sorted(types)
            return out
        return 200, self._locked(go)

    def r_tx_idrange(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        acct = self._acct(params)
        a = _int(q, "from", None, 1, None)
        z = _int(q, "to", None, 1, None)
        if a is None:
            raise invalid("from")
        if z is None or z < a:
            raise invalid("to")
        types = self._types(q)
        return 200, self._locked(lambda: {
            "transactions": [tx for tx in acct.txs[a - 1:z]
                             if types is None or tx["type"] in types],
            "lastTransactionID": str(acct.last_id)})

    def r_tx_sinceid(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        acct = self._acct(params)
        a = _int(q, "id", None, 0, None)
        if a is None:
            raise invalid("id")
        types = self._types(q)
        return 200, self._locked(lambda: {
            "transactions": [tx for tx in acct.txs[a:] if types is None or tx["type"] in types],
            "lastTransactionID": str(acct.last_id)})

    def r_transaction(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        acct = self._acct(params)
        txid = params["txid"]

        def go() -> Any:
            if not txid.isdigit() or not 1 <= int(txid) <= acct.last_id:
                raise ApiError(404, {"lastTransactionID": str(acct.last_id),
                                     "errorMessage": "The transaction ID specified does not "
                                     "exist", "errorCode": "NO_SUCH_TRANSACTION"})
            return {"transaction": acct.txs[int(txid) - 1],
                    "lastTransactionID": str(acct.last_id)}
        return 200, self._locked(go)

    # -- admin (emulator control; not part of v20) ----------------------------------------
    def r_admin_clock(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        clock = self.server.app.clock
        return 200, {"time": fmt_time(clock.now_ns()), "speed": clock.speed}

    def r_admin_clock_set(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        clock = self.server.app.clock
        body = self._json_body() or {}
        if not isinstance(body, dict):
            raise invalid("body")
        try:  # everything is checked before the clock moves at all
            when = to_ns(body["set"]) if "set" in body else None
            if when is not None and when < clock.now_ns():
                raise ValueError(f"the replay clock cannot go back (now {clock.iso()})")
            candles = clock.check_advance(body.get("advance_candles", 0),
                                          body.get("advance_seconds", 0.0))
            seconds = body.get("advance_seconds", 0.0)
            if "speed" in body:
                clock.check_speed(body["speed"])
        except (ValueError, TypeError, OverflowError) as exc:
            raise ApiError(400, {"errorMessage": str(exc)}) from None
        if when is not None:
            clock.set(when)
        if candles or seconds:
            clock.advance(candles=candles, seconds=seconds)
        if "speed" in body:
            clock.run(float(body["speed"]))
        return self.r_admin_clock(params, q)

    def r_admin_faults(self, params: dict[str, str], q: dict[str, str]) -> tuple[int, Any]:
        body = self._json_body() or {}
        if not isinstance(body, dict):
            raise invalid("body")
        spec = body.get("spec")
        if spec is not None and not isinstance(spec, str):
            raise invalid("spec")
        try:
            self.server.app.set_faults(spec)
        except ValueError as exc:
            raise ApiError(400, {"errorMessage": str(exc)}) from None
        return 200, {"spec": spec or ""}

    # -- streams --------------------------------------------------------------------------
    def _chunk(self, obj: Any) -> None:
        if self._unix:
            obj = _to_unix(obj)
        data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        except OSError:
            raise Closed() from None

    def _stream(self, route: str, params: dict[str, str], q: dict[str, str]) -> None:
        app = self.server.app
        b: Venue = app.venue
        acct = self._acct(params)
        names = self._instruments_param(q) if route == "pricing_stream" else []
        faults: FaultSpec = app.faults
        stall = faults.draw("stall") if faults else None
        cut = faults.draw("cut") if faults else None
        head = ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\nServer: sep-emulator/1\r\n"
                f"RequestID: {b.request_id()}\r\n\r\n")
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
            with b.lock:
                b.begin()
                now = b.now()
                for n in names:
                    p = views.price_object(b, n, now)
                    last[n] = (p["bids"], p["asks"], p["tradeable"])
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
                with b.lock:
                    b.begin()
                    now = b.now()
                    out = []
                    for n in names:
                        p = views.price_object(b, n, now)
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
                with b.lock:
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

