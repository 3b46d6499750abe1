"""Read-only status API of the runner (standard library ``http.server``), plus three commands.

Endpoints
---------
GET  ``/health``          ``{"ok": true, ...}`` (200) or 503 when the main loop is stuck
GET  ``/api/status``      service, version, mode, model id(s), instruments, market open, last
                          candle per instrument, last signal, open positions, P&L today, risk
GET  ``/api/positions``   open positions
GET  ``/api/signals``     recent signals (``?limit=N``, default 100)
GET  ``/api/trades``      recent closed trades and the decisions journal (``?limit=N``)
GET  ``/metrics``         Prometheus text format
POST ``/api/halt``        stop opening positions (body optional: ``{"reason": "..."}``)
POST ``/api/resume``      resume after a halt
POST ``/api/reload``      verify the model artifact(s) on disk again, then swap them in

Authentication: ``Authorization: Bearer TOKEN`` where TOKEN is the value of the environment
variable named by ``status.token_env`` (``SEP_STATUS_TOKEN``). POSTs always need it. When the
server listens on anything other than a loopback address, every request needs it, and the
runner refuses to start without a token. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)


class StatusSource(Protocol):
    """What the runner exposes to the status API."""

    def status(self) -> dict[str, Any]: ...
    def health(self) -> tuple[bool, dict[str, Any]]: ...
    def positions(self) -> list[dict[str, Any]]: ...
    def signals(self, limit: int) -> list[dict[str, Any]]: ...
    def trades(self, limit: int) -> dict[str, Any]: ...
    def metrics_text(self) -> str: ...
    def command(self, name: str, body: dict[str, Any]) -> dict[str, Any]: ...


class StatusError(ValueError):
    pass


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _handler(source: StatusSource, token: str | None, require_token_for_get: bool
             ) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "sep-runner"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("status api: " + format, *args)

        def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
            data = (json.dumps(body, default=str) if ctype == "application/json"
                    else str(body)).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", ctype + "; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if not token:
                return False
            got = self.headers.get("Authorization", "")
            if not got.startswith("Bearer "):
                return False
            return hmac.compare_digest(got[7:].strip().encode(), token.encode())

        def _limit(self, query: dict[str, list[str]]) -> int:
            try:
                n = int(query.get("limit", ["100"])[0])
            except ValueError:
                raise StatusError("limit must be an integer") from None
            return max(1, min(n, 10_000))

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if require_token_for_get and not self._authorised():
                self._send(401, {"error": "missing or wrong bearer token"})
                return
            try:
                if url.path == "/health":
                    ok, body = source.health()
                    self._send(200 if ok else 503, body)
                elif url.path == "/api/status":
                    self._send(200, source.status())
                elif url.path == "/api/positions":
                    self._send(200, {"positions": source.positions()})
                elif url.path == "/api/signals":
                    self._send(200, {"signals": source.signals(self._limit(query))})
                elif url.path == "/api/trades":
                    self._send(200, source.trades(self._limit(query)))
                elif url.path == "/metrics":
                    self._send(200, source.metrics_text(), "text/plain; version=0.0.4")
                else:
                    self._send(404, {"error": f"no such endpoint {url.path}"})
            except StatusError as exc:
                self._send(400, {"error": str(exc)})
            except Exception as exc:
                log.exception("status api GET %s failed", url.path)
                self._send(500, {"error": type(exc).__name__})

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            if url.path not in ("/api/halt", "/api/resume", "/api/reload"):
                self._send(404, {"error": f"no such endpoint {url.path}"})
                return
            if not self._authorised():
                self._send(401, {"error": "missing or wrong bearer token" if token else
                                 "no status token configured (set the token_env variable)"})
                return
            try:
                body = json.loads(raw) if raw.strip() else {}
                if not isinstance(body, dict):
                    raise StatusError("the body must be a JSON object")
            except (json.JSONDecodeError, StatusError) as exc:
                self._send(400, {"error": f"bad body: {exc}"})
                return
            try:
                result = source.command(url.path.rsplit("/", 1)[1], body)
                self._send(200 if result.get("ok", True) else 409, result)
            except Exception as exc:
                log.exception("status api POST %s failed", url.path)
                self._send(500, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})

        def do_PUT(self) -> None:
            self._send(405, {"error": "method not allowed"})

        do_DELETE = do_PUT

    return Handler


class StatusServer:
    """The status API in a daemon thread. ``port=0`` picks a free port (see :attr:`port`)."""

    def __init__(self, source: StatusSource, *, host: str = "127.0.0.1", port: int = 8080,
                 token: str | None = None) -> None:
        loopback = is_loopback(host)
        if not loopback and not token:
            raise StatusError(
                f"the status API would listen on {host}, which is not a loopback address: set a "
                "token in the environment variable named by status.token_env (SEP_STATUS_TOKEN)")
        self._httpd = ThreadingHTTPServer((host, port),
                                          _handler(source, token, require_token_for_get=not
                                                   loopback))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.host = host

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> StatusServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="status-api",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# ------------------------------------------------------------------ Prometheus text format


def prometheus(metrics: list[tuple[str, str, str, list[tuple[dict[str, str], float]]]]) -> str:
    """Render ``[(name, type, help, [(labels, value), ...]), ...]`` in the text format."""
    out: list[str] = []
    for name, mtype, help_text, samples in metrics:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {mtype}")
        for labels, value in samples:
            if labels:
                lab = ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(labels.items()))
                out.append(f"{name}{{{lab}}} {_num(value)}")
            else:
                out.append(f"{name} {_num(value)}")
    return "\n".join(out) + "\n"


def _esc(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


