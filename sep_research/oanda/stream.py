"""A resilient reader for OANDA's streaming endpoints (PricingStream, TransactionsStream).

``oandapyV20`` reads a stream without reconnecting, without a heartbeat watchdog and without a
read timeout. :class:`ResilientStream` adds them:

- **Watchdog.** OANDA sends a ``HEARTBEAT`` every 5 s. If none arrives for ``stall_timeout``
  seconds (10 s by default; with ``require_heartbeats=False``: if no message of any kind
  arrives), the connection is declared stalled, dropped, and opened again. The line reading
  runs in a small thread per connection, so the watchdog works whatever the socket does.
- **Reconnect** after a stall, a cut connection (``ChunkedEncodingError``), a clean end of the
  body, a 429 or a 5xx, with jittered exponential backoff (reset once a connection delivers a
  message), through the process-wide new-connection limiter. A 401/403 (bad token, wrong
  account) or another 4xx is raised at once: retrying cannot fix it.
- **Counts** in :attr:`ResilientStream.stats` (connects, reconnects, stalls, messages,
  heartbeats, last error) for the runner's status page.

The endpoint object is built anew for each connection by ``endpoint_factory`` (oandapyV20
endpoints hold per-request state). A caller of a transactions stream should reconcile after a
reconnect (``on_reconnect``), since transactions may have happened while it was away.

Only the standard library, ``requests`` and ``oandapyV20`` are imported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

import requests
from oandapyV20 import API
from oandapyV20 import oandapyV20 as _v20
from oandapyV20.exceptions import V20Error

from sep_research.oanda.client import (
    ErrorKind,
    OandaError,
    RateLimiter,
    classify_error,
    default_connection_limiter,
    to_oanda_error,
)

log = logging.getLogger(__name__)

DEFAULT_STALL_TIMEOUT = 10.0


class StreamStalled(Exception):
    """No heartbeat (or no message) arrived within the stall timeout."""


class StreamClosed(Exception):
    """The server ended the stream (a clean end of the chunked body)."""


class TooManyReconnects(OandaError):
    """``max_reconnects`` was reached."""


@dataclass
class StreamStats:
    connects: int = 0
    reconnects: int = 0
    stalls: int = 0
    messages: int = 0
    heartbeats: int = 0
    last_error: str = ""
    last_message_at: float | None = None  # time.monotonic()
    last_heartbeat_at: float | None = None


_END = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _read_lines(resp: requests.Response, out: queue.Queue, stop: threading.Event) -> None:
    try:
        for line in resp.iter_lines(chunk_size=512):
            if stop.is_set():
                return
            if not line:
                continue
            try:
                out.put(json.loads(line.decode("utf-8")))
            except ValueError as exc:
                out.put(_Failed(ValueError(f"stream sent a line that is not JSON ({exc})")))
                return
        out.put(_END)
    except BaseException as exc:  # handed to the consumer thread
        out.put(_Failed(exc))


class ResilientStream:
    """Iterate over a stream's messages (dicts), reconnecting as needed, until :meth:`close`.

    Example::

        api = make_api(creds.token, creds.environment)
        stream = ResilientStream(
            api, lambda: PricingStream(creds.account_id, params={"instruments": "EUR_USD"}))
        for msg in stream:
            if msg["type"] == "PRICE": ...
    """

    def __init__(
        self,
        api: API,
        endpoint_factory: Callable[[], Any],
        *,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        require_heartbeats: bool = True,
        connect_timeout: float = 5.0,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_reconnects: int | None = None,
        yield_heartbeats: bool = True,
        connection_limiter: RateLimiter | None = None,
        on_reconnect: Callable[[int, str], None] | None = None,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if stall_timeout <= 0:
            raise ValueError(f"stall_timeout must be positive, got {stall_timeout}")
        self.api = api
        self.endpoint_factory = endpoint_factory
        self.stall_timeout = float(stall_timeout)
        self.require_heartbeats = require_heartbeats
        self.connect_timeout = float(connect_timeout)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_reconnects = max_reconnects
        self.yield_heartbeats = yield_heartbeats
        self.connection_limiter = connection_limiter
        self.on_reconnect = on_reconnect
        self.stats = StreamStats()
        self._rng = rng or random.Random()  # noqa: S311 - backoff jitter, not a secret
        self._closed = threading.Event()
        self._sleep = sleep or (lambda s: self._closed.wait(s))
        self._resp: requests.Response | None = None
        self._stop: threading.Event | None = None
        self._queue: queue.Queue | None = None

    # ------------------------------------------------------------------ control
    def close(self) -> None:
        """Stop the stream (from any thread); the iterator ends."""
        self._closed.set()
        if self._queue is not None:
            self._queue.put(_END)  # wake the consumer at once
        self._drop()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _drop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        resp, self._resp = self._resp, None
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.close()

    # ------------------------------------------------------------------ connection
    def _open(self, endpoint: Any) -> requests.Response:
        if not getattr(endpoint, "STREAM", False):
            raise ValueError(f"{endpoint} is not a streaming endpoint")
        base = _v20.TRADING_ENVIRONMENTS[self.api.environment]["stream"]
        url = f"{base}/{endpoint}"
        (self.connection_limiter or default_connection_limiter()).acquire()
        self.stats.connects += 1
        resp = self.api.client.get(
            url, params=getattr(endpoint, "params", None) or {}, stream=True,
            headers=getattr(endpoint, "HEADERS", None) or {},
            # The watchdog declares the stall; the socket timeout, a little longer, only
            # makes sure an abandoned reader thread ends.
            timeout=(self.connect_timeout, self.stall_timeout * 1.5 + 1.0),
        )
        if resp.status_code >= 400:
            text = resp.text
            resp.close()
            raise V20Error(resp.status_code, text)
        return resp

    def _delay(self, failures: int) -> float:
        return min(self.max_backoff, self.backoff * 2 ** max(0, failures - 1)) * self._rng.uniform(
            0.5, 1.0
        )

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[dict[str, Any]]:
        failures = 0
        first = True
        try:
            while not self.closed:
                if not first:
                    self.stats.reconnects += 1
                    if self.max_reconnects is not None and (
                        self.stats.reconnects > self.max_reconnects
                    ):
                        raise TooManyReconnects(
                            f"stream: gave up after {self.max_reconnects} reconnects "
                            f"(last error: {self.stats.last_error})",
                            kind=ErrorKind.RETRYABLE,
                        )
                    delay = self._delay(failures)
                    log.warning("stream: reconnect %d in %.2fs after %s",
                                self.stats.reconnects, delay, self.stats.last_error)
                    self._sleep(delay)
                    if self.closed:
                        return
                first = False
                endpoint = self.endpoint_factory()
                try:
                    resp = self._open(endpoint)
                except (V20Error, requests.RequestException) as exc:
                    if classify_error(exc) is not ErrorKind.RETRYABLE:
                        raise to_oanda_error(exc, endpoint,
                                             environment=self.api.environment) from None
                    failures += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    continue
                healthy = yield from self._pump(resp)
                self._drop()
                if self.closed:
                    return
                # after a connection that worked, the backoff starts again from the bottom
                failures = 1 if healthy else failures + 1
                if self.on_reconnect is not None:
                    self.on_reconnect(self.stats.reconnects + 1, self.stats.last_error)
        finally:
            self._drop()

    def _pump(self, resp: requests.Response) -> Generator[dict[str, Any], None, bool]:
        """Yield one connection's messages; return True if any message arrived."""
        out: queue.Queue = queue.Queue()
        self._queue = out
        stop = threading.Event()
        self._resp, self._stop = resp, stop
        reader = threading.Thread(target=_read_lines, args=(resp, out, stop), daemon=True,
                                  name="oanda-stream-reader")
        reader.start()
        got_any = False
        deadline = time.monotonic() + self.stall_timeout
        while not self.closed:
            try:
                item = out.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stats.stalls += 1
                what = "heartbeat" if self.require_heartbeats else "message"
                self.stats.last_error = f"stalled: no {what} for {self.stall_timeout:g}s"
                break
            if item is _END:
                self.stats.last_error = "stream closed by the server"
                break
            if isinstance(item, _Failed):
                if self.closed:
                    break
                self.stats.last_error = f"{type(item.exc).__name__}: {item.exc}"[:300]
                break
            now = time.monotonic()
            got_any = True
            self.stats.messages += 1
            self.stats.last_message_at = now
            is_heartbeat = isinstance(item, dict) and item.get("type") == "HEARTBEAT"
            if is_heartbeat:
                self.stats.heartbeats += 1
                self.stats.last_heartbeat_at = now
            if is_heartbeat or not self.require_heartbeats:
                deadline = now + self.stall_timeout
            if is_heartbeat and not self.yield_heartbeats:
                continue
            yield item
        stop.set()
        return got_any
