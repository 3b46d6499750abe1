"""Status API of the runner, with a read-only operator page at ``/`` and three commands.

Served by the shared bounded HTTP layer (:mod:`sep_research.httpd`): at most
``max_connections`` connections at once (one more is answered 503), a header deadline and an
idle timeout, bodies read only after the path and the token were checked, JSON errors.

Endpoints
---------
GET  ``/``                the operator page (HTML; its script and style under ``/page/``)
GET  ``/health``          200 while the main loop runs, 503 when it is stuck; without the
                          token off loopback only ``{"ok": true|false}``
GET  ``/api/status``      service, version, mode, model id(s), instruments, market open, last
                          candle per instrument, last signal, open positions, P&L today,
                          realised P&L (``realized``: trades, financing, net), risk
GET  ``/api/positions``   open positions (each with its ``financing`` so far)
GET  ``/api/signals``     recent signals (``?limit=N``, default 100)
GET  ``/api/trades``      recent closed trades (price ``pl``, ``financing``, ``net_pl``), orders
                          and the decisions journal (``?limit=N``)
GET  ``/api/equity``      equity snapshots of the journal, oldest first (``?limit=N``)
GET  ``/api/feed``        per instrument the age of the last candle and price; feed counters
GET  ``/metrics``         Prometheus text format
POST ``/api/halt``        stop opening positions (body optional: ``{"reason": "..."}``, at most
                          :data:`MAX_REASON` characters are kept)
POST ``/api/resume``      resume after a halt
POST ``/api/reload``      verify the model artifact(s) on disk again, then swap them in (body
                          optional: ``{"models": ["path.json", ...]}``)

Authentication: ``Authorization: Bearer TOKEN`` where TOKEN is the value of the environment
variable named by ``status.token_env`` (``SEP_STATUS_TOKEN``); never in the query string. POSTs
always need it. When the server listens on anything other than a loopback address (in a
container, say), every request needs it except ``/health`` (ok or not, no data: the container's
health check) and the page's static files (no data, no secret: the page asks the operator for
the token and keeps it in memory only); the runner refuses to start without a token there. A
loopback listener answers only requests whose ``Host`` is a loopback name (a web page whose name
was rebound to 127.0.0.1 cannot read it). Tokens are compared in constant time, never logged.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import threading
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from sep_research._util import JsonInputError, loads_json
from sep_research.httpd import BoundedHandler, BoundedHTTPServer, HttpError
from sep_research.live.types import GRANULARITY_SECONDS, fmt_time, parse_time

log = logging.getLogger(__name__)

#: longest halt reason passed on to the runner and served (review finding 20)
MAX_REASON = 500
#: largest POST body read (after authentication)
MAX_BODY = 64 * 1024
MAX_LIMIT = 10_000
MAX_RELOAD_PATHS = 100
MAX_PATH_CHARS = 4096

#: the page and its files: scripts, styles, images and requests from this origin only
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_SECURITY_HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": CSP,
                     "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_PAGE_FILES = {"/": "index.html", "/index.html": "index.html", "/page/app.js": "app.js",
               "/page/style.css": "style.css"}
_COMMANDS = ("/api/halt", "/api/resume", "/api/reload")


class StatusSource(Protocol):
    """What the runner exposes to the status API.

    The page's extra reads (``/api/equity``, ``/api/feed``) use the runner's ``journal``
    (``equity(limit)``), ``feed`` (``stats()``), ``quotes`` and ``metrics`` attributes when
    the source has them, and answer empty parts otherwise."""

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


def _host_name(header: str) -> str:
    """The name part of a ``Host`` header (``[::1]:8080`` -> ``::1``, ``a:80`` -> ``a``)."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1:].partition("]")[0]
    name, sep, port = h.rpartition(":")
    return name if sep and port.isdigit() else h


# ------------------------------------------------------------------ the page's reads


def equity_rows(source: Any, limit: int = 1000) -> list[dict[str, Any]]:
    """The journal's equity snapshots, oldest first (empty without a journal)."""
    journal = getattr(source, "journal", None)
    if journal is None:
        return []
    return list(reversed(journal.equity(limit)))


def _seconds_between(later: str | None, earlier: str | None) -> float | None:
    if not later or not earlier:
        return None
    try:
        a, b = parse_time(later), parse_time(earlier)
    except ValueError:
        return None
    return round((a - b).total_seconds(), 3)


def feed_state(source: Any) -> dict[str, Any]:
    """Feed lag and reconnects, for the page.

    Per instrument: ``candle_age_s``, the runner's clock minus the close of the last candle it
    handled (below one candle while the feed keeps up; more means the next candle is late, or
    the market is closed); ``quote_age_s``, the runner's clock minus the time of its last price.
    ``stats``: the feed's counters (stream connects, reconnects, stalls, requests, backfills);
    ``counters``: the runner's event counters (candles, orders, refusals by rule, errors)."""
    st = source.status()
    now = st.get("now")
    gran = GRANULARITY_SECONDS.get(str(st.get("granularity")), 0)
    quotes = getattr(source, "quotes", None) or {}
    per: dict[str, dict[str, Any]] = {}
    for inst in st.get("instruments") or []:
        last = (st.get("last_candle") or {}).get(inst) or {}
        age = _seconds_between(now, last.get("time"))
        q = quotes.get(inst)
        qtime = fmt_time(q.time) if q is not None else None
        per[inst] = {"last_candle": last.get("time"),
                     "candle_age_s": None if age is None else round(age - gran, 3),
                     "quote_time": qtime, "quote_age_s": _seconds_between(now, qtime)}
    feed = getattr(source, "feed", None)
    stats = feed.stats() if feed is not None and hasattr(feed, "stats") else {}
    metrics = getattr(source, "metrics", None)
    counters = dict(getattr(metrics, "counters", {}) or {})
    return {"now": now, "granularity_s": gran, "instruments": per, "stats": stats,
            "counters": counters}


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (containers copied)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _cap_reason(status: dict[str, Any]) -> dict[str, Any]:
    risk = status.get("risk")
    if isinstance(risk, dict) and len(str(risk.get("halt_reason") or "")) > MAX_REASON:
        status = {**status, "risk": {**risk,
                                     "halt_reason": str(risk["halt_reason"])[:MAX_REASON]}}
    return status


def _command_body(name: str, body: Any) -> tuple[dict[str, Any], bool]:
    """Check a command's body; returns it (the halt reason cut to MAX_REASON) and whether it
    was cut. Unknown keys and wrong types are errors (400)."""
    if not isinstance(body, dict):
        raise HttpError(400, "the body must be a JSON object")
    allowed = {"halt": {"reason"}, "resume": set(), "reload": {"models"}}[name]
    extra = sorted(set(body) - allowed)
    if extra:
        raise HttpError(400, f"unknown key(s) for {name}: {', '.join(map(str, extra))[:200]}")
    cut = False
    if "reason" in body:
        reason = body["reason"]
        if not isinstance(reason, str):
            raise HttpError(400, "reason must be a string")
        if len(reason) > MAX_REASON:
            body = {**body, "reason": reason[:MAX_REASON]}
            cut = True
    if "models" in body:
        paths = body["models"]
        if not (isinstance(paths, list) and all(isinstance(p, str) for p in paths)):
            raise HttpError(400, "models must be a list of artifact paths")
        if len(paths) > MAX_RELOAD_PATHS or any(len(p) > MAX_PATH_CHARS for p in paths):
            raise HttpError(400, f"models: at most {MAX_RELOAD_PATHS} paths of at most "
                                 f"{MAX_PATH_CHARS} characters")
    return body, cut


# ------------------------------------------------------------------ the server


class _Server(BoundedHTTPServer):
    source: StatusSource
    token: str | None
    require_token: bool


class StatusHandler(BoundedHandler):
    server_version = "sep-runner"
    server: _Server

    def send_bytes(self, status: int, body: bytes, ctype: str = "application/json",
                   extra: dict[str, str] | None = None) -> None:
        super().send_bytes(status, body, ctype, {**_SECURITY_HEADERS, **(extra or {})})

    def _authorised(self) -> None:
        if not self.bearer_ok(self.server.token):
            raise HttpError(401, "missing or wrong bearer token" if self.server.token else
                            "no status token configured (set the token_env variable)")

    def send_json(self, status: int, obj: Any, extra: dict[str, str] | None = None) -> None:
        """JSON with ``null`` for NaN and infinities (a browser's ``JSON.parse`` refuses
        Python's ``NaN``; the journal and the risk state hold NaN for "not known")."""
        if status == 401:
            extra = {**(extra or {}), "WWW-Authenticate": "Bearer"}
        try:
            body = json.dumps(obj, default=str, separators=(",", ":"), allow_nan=False)
        except ValueError:
            body = json.dumps(_finite(obj), default=str, separators=(",", ":"))
        self.send_bytes(status, body.encode("utf-8"), "application/json; charset=utf-8", extra)

    def _check_host(self) -> None:
        """Without a token for reads (a loopback listener), answer loopback names only."""
        if self.server.require_token:
            return
        host = self.headers.get("host")
        if host is None:
            return
        name = _host_name(host)
        if name != "localhost" and not name.endswith(".localhost") and not is_loopback(name):
            raise HttpError(403, "the Host header is not a loopback name (a loopback status "
                                 "API answers only requests for localhost or 127.0.0.1)")

    def _limit(self, query: dict[str, list[str]], default: int = 100) -> int:
        try:
            n = int(query.get("limit", [str(default)])[0])
        except ValueError:
            raise HttpError(400, "limit must be an integer") from None
        return max(1, min(n, MAX_LIMIT))

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        src = self.server.source
        if path == "/health":
            ok, body = src.health()
            if self.server.require_token and not self.bearer_ok(self.server.token):
                body = {"ok": bool(ok)}
            self.send_json(200 if ok else 503, body)
            return
        self._check_host()
        if path in _PAGE_FILES:
            from sep_research.live.page import asset

            name = _PAGE_FILES[path]
            self.send_bytes(200, asset(name), _CONTENT_TYPES[name.rpartition(".")[2]])
            return
        if self.server.require_token:
            self._authorised()
        query = parse_qs(url.query)
        if path == "/api/status":
            self.send_json(200, _cap_reason(src.status()))
        elif path == "/api/positions":
            self.send_json(200, {"positions": src.positions()})
        elif path == "/api/signals":
            self.send_json(200, {"signals": src.signals(self._limit(query))})
        elif path == "/api/trades":
            self.send_json(200, src.trades(self._limit(query)))
        elif path == "/api/equity":
            self.send_json(200, {"equity": equity_rows(src, self._limit(query, 1000))})
        elif path == "/api/feed":
            self.send_json(200, feed_state(src))
        elif path == "/metrics":
            self.send_bytes(200, src.metrics_text().encode("utf-8"),
                            "text/plain; version=0.0.4; charset=utf-8")
        else:
            raise HttpError(404, f"no such endpoint {path[:100]}")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path not in _COMMANDS:
            raise HttpError(404, f"no such endpoint {path[:100]}")
        self._authorised()  # before a byte of the body is read
        raw = self.read_body(MAX_BODY)
        try:
            body = loads_json(raw, what="request body", max_depth=8) if raw.strip() else {}
        except JsonInputError as exc:
            raise HttpError(400, str(exc)) from None
        name = path.rsplit("/", 1)[1]
        body, cut = _command_body(name, body)
        result = self.server.source.command(name, body)
        if cut:
            result = {**result, "reason_truncated": True}
        self.send_json(200 if result.get("ok", True) else 409, result)


_CONTENT_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
                  "css": "text/css; charset=utf-8"}


class StatusServer:
    """The status API in a daemon thread. ``port=0`` picks a free port (see :attr:`port`)."""

    def __init__(self, source: StatusSource, *, host: str = "127.0.0.1", port: int = 8080,
                 token: str | None = None, max_connections: int = 64,
                 idle_timeout: float = 30.0, header_timeout: float = 10.0) -> None:
        loopback = is_loopback(host)
        if not loopback and not token:
            raise StatusError(
                f"the status API would listen on {host}, which is not a loopback address: set a "
                "token in the environment variable named by status.token_env (SEP_STATUS_TOKEN)")
        self._httpd = _Server((host, port), StatusHandler, max_connections=max_connections,
                              idle_timeout=idle_timeout, header_timeout=header_timeout)
        self._httpd.source = source
        self._httpd.token = token
        self._httpd.require_token = not loopback
        self._thread: threading.Thread | None = None
        self.host = host

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def active_connections(self) -> int:
        return self._httpd.active_connections

    @property
    def refused_connections(self) -> int:
        return self._httpd.refused_connections

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
