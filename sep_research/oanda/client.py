"""The one way the project talks to OANDA's REST API: environments, rate limit, retries.

- :func:`make_api` builds an ``oandapyV20.API`` for ``practice``, ``live`` or a base URL
  (``http://127.0.0.1:PORT``: the local emulator or a test server), registering the URL in
  ``oandapyV20.oandapyV20.TRADING_ENVIRONMENTS`` because the client reads its URLs from there.
- :class:`RateLimiter` is a thread-safe token bucket. The default request limiter allows
  :data:`DEFAULT_REQUEST_RATE` requests per second (OANDA asks for at most 120) and the
  default connection limiter :data:`DEFAULT_CONNECTION_RATE` new connections per second (OANDA
  asks for at most 2). New connections are counted where we open them: a new API session,
  a retry after a connection error, and each (re)connection of a stream.
- :func:`request_with_retry` retries 429, 5xx and connection errors with jittered
  exponential backoff **for idempotent requests only**. It never retries a POST (order
  creation): a POST that timed out may have been executed, so the caller must reconcile
  (:attr:`OandaError.may_have_executed` says whether that is possible). A PUT is retried only
  when the caller passes ``idempotent=True``.
- :func:`classify_error` sorts failures freqtrade-style into retryable ones and ones that need
  a human (bad token, someone else's account) or a code change (a bad request).

Only the standard library, ``requests`` and ``oandapyV20`` are imported (the live runner uses
this module). Nothing here prints or logs the token.
"""

from __future__ import annotations

import enum
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests
from oandapyV20 import API
from oandapyV20 import oandapyV20 as _v20
from oandapyV20.exceptions import V20Error

from sep_research.oanda.credentials import check_environment, is_url_environment

log = logging.getLogger(__name__)

DEFAULT_REQUEST_RATE = 20.0  # requests per second; OANDA's limit is 120
DEFAULT_REQUEST_BURST = 20
DEFAULT_CONNECTION_RATE = 1.0  # new connections per second; OANDA's limit is 2
DEFAULT_CONNECTION_BURST = 2
DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds for REST calls
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


# --------------------------------------------------------------------------- environments


def environment_key(environment: str) -> str:
    """The ``TRADING_ENVIRONMENTS`` key for 'practice', 'live' or a base URL."""
    env = check_environment(environment)
    return f"url:{env}" if is_url_environment(env) else env


def register_environment(base_url: str, *, stream_url: str | None = None) -> str:
    """Add a base URL (e.g. the emulator) to ``TRADING_ENVIRONMENTS``; return its key."""
    url = check_environment(base_url)
    if not is_url_environment(url):
        raise ValueError(f"register_environment needs an http(s) URL, got {base_url!r}")
    stream = check_environment(stream_url) if stream_url else url
    key = f"url:{url}"
    _v20.TRADING_ENVIRONMENTS[key] = {"api": url, "stream": stream}
    return key


def source_label(environment: str) -> str:
    """Provenance source for data from this environment: ``oanda:practice``, ``oanda:live`` or
    ``emulator:URL`` (any base URL is labelled an emulator, never OANDA)."""
    env = check_environment(environment)
    return f"emulator:{env}" if is_url_environment(env) else f"oanda:{env}"


def base_urls(environment: str) -> dict[str, str]:
    """``{"api": ..., "stream": ...}`` for an environment (registering a URL if needed)."""
    key = environment_key(environment)
    if key.startswith("url:"):
        register_environment(environment)
    return dict(_v20.TRADING_ENVIRONMENTS[key])


def make_api(
    token: str,
    environment: str = "practice",
    *,
    timeout: float | tuple[float, float] | None = DEFAULT_TIMEOUT,
    headers: dict[str, str] | None = None,
    connection_limiter: RateLimiter | None = None,
) -> API:
    """An ``oandapyV20.API`` for 'practice', 'live' or an ``http(s)://host:port`` base URL.

    ``timeout`` is passed to every request (``None``: no timeout, not recommended).
    """
    if not token:
        raise ValueError("make_api: empty token (see sep_research.oanda.credentials)")
    key = environment_key(environment)
    if key.startswith("url:"):
        register_environment(environment)
    (connection_limiter or default_connection_limiter()).acquire()
    params = {"timeout": timeout} if timeout is not None else None
    api = API(access_token=token, environment=key, headers=headers, request_params=params)
    return api


# --------------------------------------------------------------------------- rate limiting


class RateLimiter:
    """Thread-safe token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"RateLimiter: need rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()
        self.waited = 0.0  # total seconds spent waiting, for reports

    def acquire(self, n: float = 1.0) -> float:
        """Take ``n`` tokens, sleeping until they are there; return the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
            self.waited += wait
        if wait > 0:
            self._sleep(wait)
        return wait


_default_limiters: dict[str, RateLimiter] = {}
_default_lock = threading.Lock()


def default_request_limiter() -> RateLimiter:
    """The process-wide request limiter (shared by every caller that passes none)."""
    with _default_lock:
        if "request" not in _default_limiters:
            _default_limiters["request"] = RateLimiter(DEFAULT_REQUEST_RATE, DEFAULT_REQUEST_BURST)
        return _default_limiters["request"]


def default_connection_limiter() -> RateLimiter:
    """The process-wide new-connection limiter."""
    with _default_lock:
        if "connection" not in _default_limiters:
            _default_limiters["connection"] = RateLimiter(
                DEFAULT_CONNECTION_RATE, DEFAULT_CONNECTION_BURST
            )
        return _default_limiters["connection"]


# --------------------------------------------------------------------------- errors


class ErrorKind(enum.Enum):
    RETRYABLE = "retryable"  # 429, 5xx, connection errors and timeouts: try again later
    NEEDS_HUMAN = "needs_human"  # 401 bad token, 403 someone else's account
    BAD_REQUEST = "bad_request"  # 400, 404, 405 and other 4xx: the request itself is wrong
    UNEXPECTED = "unexpected"  # wrong success status, unreadable body


class OandaError(RuntimeError):
    """A failed OANDA call. ``code`` is the HTTP status (None for network errors), ``kind`` an
    :class:`ErrorKind`, ``message`` the server's ``errorMessage`` (or body text)."""

    def __init__(
        self,
        text: str,
        *,
        code: int | None = None,
        kind: ErrorKind = ErrorKind.UNEXPECTED,
        message: str = "",
        body: Any = None,
        may_have_executed: bool = False,
        attempts: int = 1,
    ) -> None:
        super().__init__(text)
        self.code = code
        self.kind = kind
        self.message = message
        self.body = body
        self.may_have_executed = may_have_executed
        self.attempts = attempts

    @property
    def retryable(self) -> bool:
        return self.kind is ErrorKind.RETRYABLE


class TemporaryError(OandaError):
    """Retryable failure (429, 5xx, network) that outlasted the retries."""


class AuthError(OandaError, PermissionError):
    """401/403: the token was refused or the account is not the token's. Needs a human."""


class RequestError(OandaError, ValueError):
    """400/404/405...: the request is wrong (bad instrument, time, count...)."""


def _body(msg: str) -> tuple[Any, str]:
    try:
        body = json.loads(msg)
    except (TypeError, ValueError):
        return msg, (msg or "").strip()[:300]
    if isinstance(body, dict):
        return body, str(body.get("errorMessage") or body.get("message") or "")
    return body, ""


def classify_error(exc: BaseException) -> ErrorKind:
    """Sort an exception from ``api.request`` into an :class:`ErrorKind`."""
    if isinstance(exc, OandaError):
        return exc.kind
    if isinstance(exc, V20Error):
        code = int(exc.code)
        if code in RETRY_STATUS or code >= 500:
            return ErrorKind.RETRYABLE
        if code in (401, 403):
            return ErrorKind.NEEDS_HUMAN
        if 400 <= code < 500:
            return ErrorKind.BAD_REQUEST
        return ErrorKind.UNEXPECTED
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return ErrorKind.RETRYABLE
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return ErrorKind.RETRYABLE
    return ErrorKind.UNEXPECTED


def _describe(endpoint: Any) -> str:
    return f"{getattr(endpoint, 'method', '?')} /{endpoint}"


def to_oanda_error(
    exc: BaseException, endpoint: Any, *, environment: str = "", attempts: int = 1
) -> OandaError:
    """Wrap an exception from ``api.request`` in the matching :class:`OandaError` subclass."""
    kind = classify_error(exc)
    what = _describe(endpoint)
    env = f" ({environment})" if environment else ""
    method = str(getattr(endpoint, "method", "GET")).upper()
    if isinstance(exc, V20Error):
        code = int(exc.code)
        body, message = _body(exc.msg)
        if code == 401:
            text = (
                f"{what}{env}: the server refused the access token (HTTP 401). Check "
                "OANDA_API_KEY, and that a practice token is used with practice and a live "
                "token with live."
            )
            return AuthError(text, code=code, kind=kind, message=message, body=body,
                             attempts=attempts)
        if code == 403:
            text = (
                f"{what}{env}: access forbidden (HTTP 403): the account is not one the token "
                "may use. Check OANDA_ACCOUNT_ID."
            )
            return AuthError(text, code=code, kind=kind, message=message, body=body,
                             attempts=attempts)
        text = f"{what}{env}: HTTP {code}: {message or '(no message)'}"
        if kind is ErrorKind.RETRYABLE:
            # A 5xx on a write may come from a gateway after the server acted on it; a 429
            # is a refusal before any work.
            maybe = method != "GET" and code != 429
            text += f" (after {attempts} attempt(s))"
            if maybe:
                text += " -- the request may have been executed; reconcile before retrying"
            return TemporaryError(text, code=code, kind=kind, message=message, body=body,
                                  attempts=attempts, may_have_executed=maybe)
        return RequestError(text, code=code, kind=kind, message=message, body=body,
                            attempts=attempts)
    if kind is ErrorKind.RETRYABLE:
        # A request that never got an answer may still have been executed by the server.
        maybe = method != "GET"
        text = (
            f"{what}{env}: {type(exc).__name__} after {attempts} attempt(s): {exc}"
            + (" -- the request may have been executed; reconcile before retrying"
               if maybe else "")
        )
        return TemporaryError(text, kind=kind, message=str(exc), may_have_executed=maybe,
                              attempts=attempts)
    return OandaError(f"{what}{env}: {type(exc).__name__}: {exc}", kind=kind,
                      message=str(exc), attempts=attempts)


# --------------------------------------------------------------------------- retries


def backoff_delays(
    retries: int, *, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None
) -> Iterable[float]:
    """Jittered exponential backoff: ``uniform(0.5, 1.0) * min(cap, base * 2**i)``."""
    rng = rng or random.Random()  # noqa: S311 - backoff jitter, not a secret
    for i in range(retries):
        yield min(cap, base * 2**i) * rng.uniform(0.5, 1.0)


def request_with_retry(
    api: API,
    endpoint: Any,
    *,
    retries: int = 5,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
    idempotent: bool | None = None,
    limiter: RateLimiter | None = None,
    connection_limiter: RateLimiter | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[int, OandaError, float], None] | None = None,
) -> Any:
    """``api.request(endpoint)`` under the rate limit, retrying retryable failures.

    Retries (429, 5xx, connection errors, timeouts) happen only for idempotent requests:
    GET always; PUT only with ``idempotent=True``; **POST never** (order creation must not be
    repeated blindly; passing ``idempotent=True`` with a POST is refused). Failures are raised
    as :class:`AuthError` (401/403), :class:`RequestError` (other 4xx) or
    :class:`TemporaryError` (retries used up, or a non-idempotent request that failed
    retryably: then ``may_have_executed`` tells whether the server may have acted on it).
    ``on_retry(attempt, error, delay)`` is called before each retry sleep.
    """
    method = str(getattr(endpoint, "method", "GET")).upper()
    if getattr(endpoint, "STREAM", False):
        raise ValueError("request_with_retry: use sep_research.oanda.stream for streams")
    if method == "POST" and idempotent:
        raise ValueError(
            "request_with_retry: a POST (e.g. order creation) is never retried automatically; "
            "the caller must reconcile and decide"
        )
    if idempotent is None:
        idempotent = method == "GET"
    attempts_allowed = 1 + (max(0, retries) if idempotent else 0)
    limiter = limiter or default_request_limiter()
    connection_limiter = connection_limiter or default_connection_limiter()
    delays = iter(backoff_delays(attempts_allowed - 1, base=backoff, cap=max_backoff, rng=rng))
    environment = getattr(api, "environment", "")
    attempt = 0
    while True:
        attempt += 1
        limiter.acquire()
        try:
            return api.request(endpoint)
        except (V20Error, requests.RequestException) as exc:
            err = to_oanda_error(exc, endpoint, environment=environment, attempts=attempt)
            if not err.retryable or attempt >= attempts_allowed:
                raise err from None
            delay = next(delays)
            log.warning("%s: %s; retry %d in %.2fs", _describe(endpoint),
                        err.message or type(exc).__name__, attempt, delay)
            if on_retry is not None:
                on_retry(attempt, err, delay)
            sleep(delay)
            if isinstance(exc, requests.RequestException):
                connection_limiter.acquire()  # the next attempt opens a new connection
