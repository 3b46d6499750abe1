"""One bounded HTTP/1.1 server layer for every server of the project (the runner's status API
and the OANDA emulator). Standard library only: the live runner imports it.

What it bounds, and why (security review 2026-12, findings 1, 18, 19, 20):

- **connections**: at most ``max_connections`` are served at once; one more is answered
  ``503`` at once and closed, so idle or slow clients can hold neither threads nor the
  process's file descriptors (the runner's broker connection needs them);
- **time**: every read waits at most ``idle_timeout`` seconds, and the request line and headers
  must arrive within ``header_timeout`` seconds of the connection (or of the previous answer on
  a kept-alive connection), so a trickled header (slowloris) cannot hold a slot;
- **size**: request line and each header line at most 8 KiB, at most 100 headers and 64 KiB of
  them; a body is read only when the handler asks for it (after it has checked the path and
  the token), only with a well-formed ``Content-Length`` at most the handler's limit, never
  chunked; a refused body is never read and its connection is closed;
- **errors**: malformed requests get a proper HTTP/1.1 answer with a JSON body (never an
  HTTP/0.9 page or a traceback on standard error); handler exceptions are logged through
  :mod:`logging` (the project's redacting formatter), and the client sees a generic 500;
- **accept errors**: when the process runs out of file descriptors the accept loop backs off
  instead of spinning.

Use: subclass :class:`BoundedHandler` (``do_GET`` and friends, :meth:`BoundedHandler.send_json`,
:meth:`BoundedHandler.read_body` after authentication, :meth:`BoundedHandler.bearer_ok`) and
serve it with :class:`BoundedHTTPServer`. :func:`sep_research._util.loads_json` parses bodies
with a nesting bound.
"""

from __future__ import annotations

import errno
import hmac
import json
import logging
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

MAX_LINE = 8192
MAX_HEADERS = 100
MAX_HEADER_BYTES = 65536
_CONTENT_LENGTH = re.compile(r"^[0-9]{1,15}$")
_BUSY_BODY = b'{"error":"too many open connections"}'
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
         b"Content-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\nConnection: close\r\n\r\n"
         + _BUSY_BODY)


class Headers(dict):  # type: ignore[type-arg]
    """Request headers by lower-cased name (lighter than ``email.message``)."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(str(key).lower())


class HttpError(Exception):
    """Raised inside a handler to answer ``status`` with an error body and stop."""

    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


class BoundedHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with a connection cap, read and header deadlines, quiet errors
    and an accept loop that backs off on EMFILE. See the module docstring."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], handler: type[BoundedHandler], *,
                 max_connections: int = 64, idle_timeout: float = 30.0,
                 header_timeout: float = 10.0) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if not (idle_timeout > 0 and header_timeout > 0):
            raise ValueError("idle_timeout and header_timeout must be > 0")
        self.max_connections = int(max_connections)
        self.idle_timeout = float(idle_timeout)
        self.header_timeout = float(header_timeout)
        self.refused_connections = 0
        self._active: set[socket.socket] = set()
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._reaper: threading.Thread | None = None
        super().__init__(addr, handler)

    # ---- accept, cap and release
    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                log.warning("accept failed (%s): backing off", errno.errorcode.get(exc.errno))
                time.sleep(0.05)
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            full = len(self._active) >= self.max_connections
            if not full:
                self._active.add(request)
        if full:
            self.refused_connections += 1
            try:
                request.setblocking(False)
                request.send(_BUSY)
            except OSError:
                pass
            self._close_socket(request)
            return
        self._start_reaper()
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._active.discard(request)
            self._deadlines.pop(request, None)
        self._lingering_close(request)

    @staticmethod
    def _lingering_close(sock: socket.socket) -> None:
        """Send our FIN, then read and drop a little of what the client still sends (at most
        64 KiB or 0.2 s), so that closing with unread input does not reset the connection and
        destroy the answer on its way (an unread body of a refused POST, say)."""
        try:
            sock.shutdown(socket.SHUT_WR)
            end = time.monotonic() + 0.2
            left = 65536
            while left > 0:
                wait = end - time.monotonic()
                if wait <= 0:
                    break
                sock.settimeout(wait)
                chunk = sock.recv(min(left, 16384))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass

    @staticmethod
    def _close_socket(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._active)

    # ---- header deadlines
    def set_deadline(self, sock: socket.socket, seconds: float | None) -> None:
        with self._lock:
            if seconds is None:
                self._deadlines.pop(sock, None)
            elif sock in self._active:
                self._deadlines[sock] = time.monotonic() + seconds

    def _start_reaper(self) -> None:
        if self._reaper is not None:
            return
        with self._lock:
            if self._reaper is not None:
                return
            self._reaper = threading.Thread(target=self._reap, name="http-deadlines",
                                            daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        while not self._closing.wait(0.25):
            now = time.monotonic()
            with self._lock:
                late = [s for s, t in self._deadlines.items() if t <= now]
                for s in late:
                    del self._deadlines[s]
            for s in late:
                try:
                    s.shutdown(socket.SHUT_RDWR)  # the handler's read returns at once
                except OSError:
                    pass

    def server_close(self) -> None:
        self._closing.set()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # never print a traceback on standard error: log it (redacted) at debug level
        log.debug("connection error from %s: %r", client_address, sys.exc_info()[1])


class BoundedHandler(BaseHTTPRequestHandler):
    """Request handler with bounded parsing and JSON answers (see the module docstring).

    Subclasses implement ``do_GET`` etc. and may override :meth:`error_body` (the emulator
    answers ``{"errorMessage": ...}`` as OANDA does).
    """

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.1"  # a malformed request line still gets HTTP/1.1 back
    server_version = "sep"
    sys_version = ""
    server: BoundedHTTPServer
    headers: Headers  # type: ignore[assignment]

    # ---- connection life
    def setup(self) -> None:
        self.timeout = self.server.idle_timeout
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def handle_one_request(self) -> None:
        self.headers = Headers()
        self._body_consumed = False
        self.server.set_deadline(self.connection, self.server.header_timeout)
        try:
            self.raw_requestline = self.rfile.readline(MAX_LINE + 1)
            if len(self.raw_requestline) > MAX_LINE:
                self.requestline = ""
                self.request_version = "HTTP/1.1"
                self.command = ""
                self.send_error(414, "request line too long")
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self.server.set_deadline(self.connection, None)
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self.send_error(405 if self.command.isalpha() else 400,
                                f"method {self.command[:20]!r} is not allowed")
                return
            try:
                method()
            except HttpError as err:
                self.close_connection = self.close_connection or err.close
                self.send_error(err.status, err.message)
            except (ConnectionError, TimeoutError):
                self.close_connection = True
            except Exception:
                log.exception("%s %s failed", self.command, self.path[:200])
                self.close_connection = True
                self.send_error(500, "internal error")
            try:
                self.wfile.flush()
            except OSError:
                self.close_connection = True
        except (TimeoutError, ConnectionError, OSError):
            self.close_connection = True

    def parse_request(self) -> bool:
        """Request line and headers with the bounds of the module docstring."""
        self.command = ""
        self.request_version = "HTTP/1.1"
        self.close_connection = True
        self.headers = Headers()
        self._body_consumed = False
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(400, "bad request line")
            return False
        self.command, self.path, self.request_version = words
        headers = Headers()
        total = 0
        while True:
            line = self.rfile.readline(MAX_LINE + 1)
            total += len(line)
            if len(line) > MAX_LINE or total > MAX_HEADER_BYTES:
                self.send_error(431, "request header fields too large")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            if len(headers) >= MAX_HEADERS:
                self.send_error(431, "too many header fields")
                return False
            name, sep, value = line.decode("iso-8859-1").partition(":")
            name = name.strip().lower()
            if not sep or not name or " " in name:
                self.send_error(400, "bad header line")
                return False
            value = value.strip()
            if name == "content-length" and name in headers and headers[name] != value:
                self.send_error(400, "conflicting Content-Length headers")
                return False
            headers[name] = value
        self.headers = headers
        conn = headers.get("connection", "").lower()
        if self.request_version == "HTTP/1.1":
            self.close_connection = conn == "close"
        else:
            self.close_connection = conn != "keep-alive"
        if "transfer-encoding" in headers:
            self.send_error(501, "chunked request bodies are not supported")
            return False
        return True

    # ---- bodies
    def body_length(self) -> int:
        """The announced body length (0 when none); HttpError for a malformed one."""
        raw = self.headers.get("content-length")
        if raw is None or raw == "":
            return 0
        if not _CONTENT_LENGTH.match(raw):
            raise HttpError(400, "invalid Content-Length", close=True)
        return int(raw)

    def read_body(self, limit: int) -> bytes:
        """Read the request body (at most ``limit`` bytes) — only after authentication."""
        n = self.body_length()
        if n > limit:
            raise HttpError(413, f"request body over {limit} bytes", close=True)
        self._body_consumed = True
        if n == 0:
            return b""
        data = self.rfile.read(n)
        if len(data) != n:
            raise HttpError(400, "request body shorter than its Content-Length", close=True)
        return data

    # ---- auth
    def bearer_token(self) -> str | None:
        got = self.headers.get("authorization", "")
        return got[7:].strip() if got.startswith("Bearer ") else None

    def bearer_ok(self, token: str | None) -> bool:
        """Constant-time comparison of the request's bearer token with ``token``."""
        got = self.bearer_token()
        if not token or got is None:
            return False
        return hmac.compare_digest(got.encode("utf-8", "replace"), token.encode("utf-8"))

    # ---- answers
    def error_body(self, status: int, message: str) -> Any:
        return {"error": message}

    def send_bytes(self, status: int, body: bytes, ctype: str = "application/json",
                   extra: dict[str, str] | None = None) -> None:
        reason = self.responses.get(status, ("",))[0]
        head = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {ctype}",
                f"Content-Length: {len(body)}", f"Server: {self.server_version}"]
        if extra:
            head += [f"{k}: {v}" for k, v in extra.items()]
        if self.close_connection:
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (
            body if self.command != "HEAD" else b"")
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def send_json(self, status: int, obj: Any, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(obj, default=str, separators=(",", ":")).encode("utf-8")
        self.send_bytes(status, body, "application/json; charset=utf-8", extra)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        # an answer sent before the body was read leaves it on the wire: close, never parse
        # it as the next request
        unread = not getattr(self, "_body_consumed", False) and self.headers.get(
            "content-length", "0") not in ("", "0")
        if unread or code in (400, 408, 411, 413, 414, 431, 500, 501, 503):
            self.close_connection = True
        self.send_json(code, self.error_body(code, message or self.responses.get(
            code, ("error",))[0]))

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.client_address[0], format % args)

    def log_error(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.client_address[0], format % args)
