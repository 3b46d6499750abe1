"""Everything that touches ``oandapyV20``: credentials, environments, rate limit, retries, streams.

No pandas, numpy or numba here (the headless live runner imports this package)::

    from sep_research.oanda import load_credentials, make_api, request_with_retry
    creds = load_credentials()                     # environment, else an OANDA.env file
    api = make_api(creds.token, creds.environment)  # 'practice', 'live' or a base URL
    resp = request_with_retry(api, InstrumentsCandles("EUR_USD", params={...}))

Modules: :mod:`.credentials` (the documented search, masked token, account/environment rule),
:mod:`.client` (environments, :class:`~.client.RateLimiter`, retries that never repeat a POST,
error classes), :mod:`.stream` (:class:`~.stream.ResilientStream`: heartbeat watchdog and
reconnects). The paged candle download is :func:`sep_research.data.fetch.fetch_candles`.
"""

from __future__ import annotations

from sep_research._util import lazy_getattr

_LAZY = {
    "Credentials": "sep_research.oanda.credentials",
    "CredentialsError": "sep_research.oanda.credentials",
    "load_credentials": "sep_research.oanda.credentials",
    "SEARCH_PATHS": "sep_research.oanda.credentials",
    "make_api": "sep_research.oanda.client",
    "request_with_retry": "sep_research.oanda.client",
    "RateLimiter": "sep_research.oanda.client",
    "OandaError": "sep_research.oanda.client",
    "AuthError": "sep_research.oanda.client",
    "RequestError": "sep_research.oanda.client",
    "TemporaryError": "sep_research.oanda.client",
    "ErrorKind": "sep_research.oanda.client",
    "classify_error": "sep_research.oanda.client",
    "source_label": "sep_research.oanda.client",
    "ResilientStream": "sep_research.oanda.stream",
    "StreamStats": "sep_research.oanda.stream",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "SEARCH_PATHS",
    "AuthError",
    "Credentials",
    "CredentialsError",
    "ErrorKind",
    "OandaError",
    "RateLimiter",
    "RequestError",
    "ResilientStream",
    "StreamStats",
    "TemporaryError",
    "classify_error",
    "load_credentials",
    "make_api",
    "request_with_retry",
    "source_label",
]
