"""Download OANDA candles (or an emulator's) into the candle cache, page by page, resumably.

:func:`fetch_candles` is what ``sep data fetch`` runs; :func:`fetch_financing` is what
``sep data rates`` runs (OANDA's financing rates of instruments, stored beside the candles).

Paging. OANDA returns at most 5000 candles per request, and refuses a from/to range holding
more. The requested range is cut into windows of ``page_size - 1`` candle lengths (90 % of
``page_size`` for the nominal D/W/M lengths), each asked for with ``from``/``to``. A window
that reaches past the present (by the local clock, or when the server answers "Time is in the
future", as an emulator with a replay clock does) is asked for with ``from``/``count`` instead,
and the answer ends the download: the server has nothing newer.

Incomplete candles. A candle with ``complete: false`` (the one still forming) is never stored,
and the range it starts is not marked as fetched, so the next run asks for it again.

Resumption. Every stored batch is written with the range it covers
(``CandleCache.write(frame, covered=(a, b))``). The cache remembers these ranges in the
dataset's ``meta.json``, so a range that held no candles (a weekend, a holiday) counts as
fetched and is not asked for again. Only these recorded ranges count (not the span of the
stored candles, which would hide a hole between two downloads). A run asks only for the parts
of ``[start, end)`` outside those ranges. A range counts
as covered only when every page of it was answered; a run that fails part-way keeps (and
records) the pages it finished.

Requests go through :func:`sep_research.oanda.client.request_with_retry` (rate limited,
429/5xx/connection errors retried with backoff). A refused token (401) stops at once with a
message saying so; a bad instrument or time (400) is reported against the argument.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sep_research import fx
from sep_research.data.candles import (
    ASK,
    BID,
    GRANULARITY_SECONDS,
    MID,
    CandleError,
    check_granularity,
    check_instrument,
    complete_flag,
    finish_frame,
    isoformat,
    to_timestamp,
    utc_now,
)

MAX_PAGE = 5000
_COMPONENTS = {"M": ("mid", MID), "B": ("bid", BID), "A": ("ask", ASK)}
_ONE_SECOND = pd.Timedelta(seconds=1)


@dataclass
class FetchReport:
    """What one :func:`fetch_candles` run did."""

    instrument: str
    granularity: str
    price: str
    source: str
    start: str
    end: str
    missing_ranges: list[tuple[str, str]] = field(default_factory=list)  # asked for
    covered_ranges: list[tuple[str, str]] = field(default_factory=list)  # newly recorded
    requests: int = 0
    retries: int = 0
    candles_received: int = 0
    incomplete_dropped: int = 0
    candles_written: int = 0
    seconds: float = 0.0
    cache_root: str = ""
    reached_present: bool = False  # the server had nothing newer than what was stored

    def __str__(self) -> str:
        if not self.missing_ranges:
            what = "nothing to fetch: the range is already in the cache"
        else:
            what = (
                f"{self.requests} request(s), {self.retries} retries, "
                f"{self.candles_received} candles received, {self.candles_written} stored, "
                f"{self.incomplete_dropped} incomplete dropped"
            )
        tail = " (stopped at the newest complete candle)" if self.reached_present else ""
        return (
            f"{self.instrument} {self.granularity} {self.price} from {self.source} "
            f"[{self.start}, {self.end}): {what} in {self.seconds:.1f}s{tail}; "
            f"cache {self.cache_root}"
        )


# --------------------------------------------------------------------------- arguments


def check_price(price: str) -> str:
    """'M', 'B', 'A' in any combination; mid is always fetched (the frame needs it).

    Returns the canonical order ('M', 'MB', 'MA' or 'MBA').
    """
    if not isinstance(price, str) or not price or set(price) - set("MBA") or (
        len(set(price)) != len(price)
    ):
        raise CandleError(f"price {price!r}: use one or more of M, B, A (e.g. MBA)")
    return "M" + "".join(c for c in "BA" if c in price)


def _api_time(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if ts.microsecond else isoformat(ts)


# --------------------------------------------------------------------------- ranges


def missing_ranges(
    start: pd.Timestamp, end: pd.Timestamp, covered: list[tuple[pd.Timestamp, pd.Timestamp]]
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Parts of ``[start, end)`` outside the (half-open) ``covered`` ranges."""
    out = []
    cursor = start
    for a, b in sorted(covered):
        if b <= cursor or a >= end:
            continue
        if a > cursor:
            out.append((cursor, min(a, end)))
        cursor = max(cursor, b)
        if cursor >= end:
            break
    if cursor < end:
        out.append((cursor, end))
    return out


# --------------------------------------------------------------------------- conversion


def candles_to_records(
    candles: list[dict[str, Any]], price: str, *, where: str
) -> tuple[dict[str, list[Any]], int]:
    """OANDA candle dicts -> column lists (complete candles only) and the incomplete count."""
    cols: dict[str, list[Any]] = {"time": [], "volume": [], "complete": []}
    for comp in price:
        for name in _COMPONENTS[comp][1]:
            cols[name] = []
    dropped = 0
    for c in candles:
        if not _is_complete(c, where):
            dropped += 1
            continue
        try:
            cols["time"].append(c["time"])
            cols["volume"].append(c.get("volume", 0))  # checked by normalise()
            cols["complete"].append(True)
            for comp in price:
                key, names = _COMPONENTS[comp]
                ohlc = c[key]
                for name, k in zip(names, ("o", "h", "l", "c"), strict=True):
                    cols[name].append(float(ohlc[k]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CandleError(
                f"{where}: malformed candle at {c.get('time', '?')}: missing or bad {exc}"
            ) from None
    return cols, dropped


def _is_complete(candle: Any, where: str) -> bool:
    """A candle's ``complete`` flag, strictly (missing means false: not stored)."""
    flag = complete_flag(candle.get("complete", False)) if isinstance(candle, dict) else None
    if flag is None:
        at = candle.get("time", "?") if isinstance(candle, dict) else "?"
        raise CandleError(f"{where}: malformed candle at {str(at)[:40]}: 'complete' must be "
                          "true or false")
    return flag


def records_to_frame(cols: dict[str, list[Any]], *, where: str = "candles") -> pd.DataFrame:
    try:
        ns = [fx.parse_time_ns(t, name=f"{where}: candle time") for t in cols["time"]]
    except fx.FxError as exc:
        raise CandleError(str(exc)) from None
    idx = pd.DatetimeIndex(np.asarray(ns, dtype="datetime64[ns]"), name="time").tz_localize("UTC")
    data = {k: v for k, v in cols.items() if k != "time"}
    return pd.DataFrame(data, index=idx)


# --------------------------------------------------------------------------- download


class _Batch:
    """Candles received but not yet stored, and the contiguous range they cover."""

    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []
        self.rows = 0
        self.lo: pd.Timestamp | None = None
        self.hi: pd.Timestamp | None = None

    def add(self, frame: pd.DataFrame, lo: pd.Timestamp, hi: pd.Timestamp) -> None:
        if len(frame):
            self.frames.append(frame)
            self.rows += len(frame)
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)


def fetch_candles(
    instrument: str,
    granularity: str,
    start: Any,
    end: Any,
    *,
    price: str = "MBA",
    environment: str | None = None,
    credentials: Any = None,
    env_file: Any = None,
    cache: Any = None,
    progress: bool = True,
    page_size: int = MAX_PAGE,
    flush_rows: int = 50_000,
    retries: int = 6,
    backoff: float = 0.5,
    api: Any = None,
) -> FetchReport:
    """Download ``instrument`` ``granularity`` candles with start times in ``[start, end)``.

    Parameters
    ----------
    start, end:
        UTC dates or times (strings, datetimes or Timestamps; naive values are UTC). ``end`` is
        exclusive and may lie in the future: the download then stops at the newest complete
        candle.
    price:
        Components to fetch, any of ``M`` (mid), ``B`` (bid), ``A`` (ask); mid is always
        included. Default ``MBA``.
    environment:
        ``practice``, ``live`` or a base URL (emulator / test server). ``None``: the
        credentials' environment (``OANDA_ENVIRONMENT``, else practice). A URL's data is
        labelled ``emulator:URL`` in provenance, never ``oanda:...``.
    credentials:
        A :class:`sep_research.oanda.credentials.Credentials`; ``None`` loads them
        (``load_credentials(env_file)``). The account ID, if any, must match the environment.
    cache:
        A :class:`sep_research.data.cache.CandleCache` or a folder; ``None``: the default.
    progress:
        Show a tqdm progress bar (on stderr).
    page_size:
        Candles per request, at most 5000.
    flush_rows:
        Store to the cache (with the covered range) whenever this many candles are pending.
    retries, backoff:
        Per request: retries of 429/5xx/connection errors, and the first backoff in seconds.
    api:
        An existing ``oandapyV20.API`` to use (its environment must be ``environment``'s).

    Arguments are checked before anything is downloaded or stored; a failed run leaves what
    was stored before it unchanged, plus the complete pages it stored itself.
    """
    from sep_research.data.cache import CacheError, CandleCache
    from sep_research.oanda.client import (
        OandaError,
        RequestError,
        environment_key,
        make_api,
        request_with_retry,
        source_label,
    )
    t_start = time.monotonic()
    # ---- arguments, all before any network or disk access
    try:
        check_instrument(instrument)
    except CandleError as exc:
        raise CandleError(f"instrument (--instrument): {exc}") from None
    try:
        check_granularity(granularity)
    except CandleError as exc:
        raise CandleError(f"granularity (--granularity): {exc}") from None
    t0 = to_timestamp(start, "start (--start)")
    t1 = to_timestamp(end, "end (--end)")
    if t1 <= t0:
        raise CandleError(
            f"end (--end) {isoformat(t1)} must be after start (--start) {isoformat(t0)}"
        )
    try:
        price = check_price(price)
    except CandleError as exc:
        raise CandleError(f"price (--price): {exc}") from None
    if not isinstance(page_size, int) or not 2 <= page_size <= MAX_PAGE:
        raise CandleError(f"page_size {page_size!r}: must be an integer from 2 to {MAX_PAGE}")
    credentials, env = _credentials(environment, credentials, env_file)
    source = source_label(env)
    if not isinstance(cache, CandleCache):
        cache = CandleCache(cache)

    step = pd.Timedelta(seconds=GRANULARITY_SECONDS[granularity])
    if granularity in ("D", "W", "M"):
        span = step * int(page_size * 0.9)
    else:
        span = step * (page_size - 1)

    # ---- what is missing
    try:
        stored = cache.find(instrument, granularity, source)
    except CacheError:
        stored = None
    if stored is not None and stored.provenance.price != price:
        raise CandleError(
            f"price (--price) {price}: the cached {instrument} {granularity} from {source} has "
            f"price components {stored.provenance.price}; fetch with --price "
            f"{stored.provenance.price} or use another cache folder"
        )
    # Only the ranges recorded by earlier downloads count as fetched: the span of the stored
    # candles (which CandleCache.covered() adds) would hide a hole between two downloads.
    covered = [
        (to_timestamp(a, "cache coverage"), to_timestamp(b, "cache coverage"))
        for a, b in (stored.covered if stored is not None else [])
    ]
    todo = missing_ranges(t0, t1, covered)
    report = FetchReport(
        instrument=instrument, granularity=granularity, price=price, source=source,
        start=isoformat(t0), end=isoformat(t1),
        missing_ranges=[(isoformat(a), isoformat(b)) for a, b in todo],
        cache_root=str(cache.root),
    )
    if not todo:
        report.seconds = time.monotonic() - t_start
        return report

    if api is None:
        api = make_api(credentials.token, env)
    elif getattr(api, "environment", None) != environment_key(env):
        raise ValueError(f"api: its environment {api.environment!r} is not {env!r}")

    from oandapyV20.endpoints.instruments import InstrumentsCandles

    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = sum((b - a) / step for a, b in todo)
        bar = tqdm(total=round(total), unit="candle", desc=f"{instrument} {granularity}",
                   file=sys.stderr, dynamic_ncols=True, leave=True)

    def on_retry(attempt: int, err: OandaError, delay: float) -> None:
        report.retries += 1
        if bar is not None:
            bar.set_postfix_str(f"retry {attempt}: HTTP {err.code or err.message}")

    def request(params: dict[str, Any]) -> list[dict[str, Any]]:
        ep = InstrumentsCandles(instrument=instrument, params=params)
        report.requests += 1
        try:
            resp = request_with_retry(api, ep, retries=retries, backoff=backoff,
                                      on_retry=on_retry)
        except RequestError as exc:
            raise _argument_error(exc, instrument, granularity, price) from None
        candles = resp.get("candles") if isinstance(resp, dict) else None
        if not isinstance(candles, list):
            raise CandleError(f"{source}: candle response without a 'candles' list")
        return candles

    def flush(batch: _Batch) -> None:
        if batch.lo is None:
            return
        lo, hi, frames = batch.lo, min(batch.hi, t1), batch.frames
        batch.__init__()  # reset first: a failed write is not retried by the final flush
        if frames:
            frame = pd.concat(frames)
            frame = frame[~frame.index.duplicated(keep="last")].sort_index()
            frame = frame[(frame.index >= lo) & (frame.index < t1)]
        else:
            frame = records_to_frame(candles_to_records([], price, where=source)[0])
        if not len(frame) and not dataset_exists():
            # A range without candles and no dataset yet: nothing to store, and the cache
            # records coverage only for an existing dataset (asked for again next time).
            return
        frame = finish_frame(
            frame, source=source, instrument=instrument, granularity=granularity,
            name=f"{source} {instrument} {granularity} [{isoformat(lo)}, {isoformat(hi)})",
        )
        cache.write(frame, covered=(lo, hi))
        report.candles_written += len(frame)
        report.covered_ranges.append((isoformat(lo), isoformat(hi)))

    def dataset_exists() -> bool:
        return (cache.dataset_dir(source, instrument, granularity) / "meta.json").exists()

    batch = _Batch()
    try:
        for a, b in todo:
            cursor = a
            window = span
            while cursor < b:
                w_end = min(cursor + window, b)
                use_count = w_end > utc_now() - pd.Timedelta(seconds=5)
                params: dict[str, Any] = {
                    "price": price, "granularity": granularity,
                    "from": _api_time(cursor), "includeFirst": True,
                }
                if not use_count:
                    params["to"] = _api_time(w_end)
                    try:
                        candles = request(params)
                    except _FutureTime:
                        use_count = True
                    except _TooMany:
                        if window <= step:
                            raise
                        window = max(step, window / 2)
                        continue
                if use_count:
                    params.pop("to", None)
                    params["count"] = page_size
                    try:
                        candles = request(params)
                    except _FutureTime:
                        candles = []  # even 'from' is past the server's present
                cols, dropped = candles_to_records(
                    candles, price, where=f"{source} {instrument} {granularity}"
                )
                frame = records_to_frame(cols, where=f"{source} {instrument} {granularity}")
                report.candles_received += len(candles)
                report.incomplete_dropped += dropped
                stop = False
                if use_count:
                    # The server decided where the answer ends: cover up to the first
                    # incomplete candle, or just past the last complete one.
                    forming = [c["time"] for c in candles if not _is_complete(c, source)]
                    if forming:
                        hi = min(to_timestamp(forming[0], "candle time"), b)
                        stop = True
                    elif len(frame):
                        hi = min(frame.index[-1] + _ONE_SECOND, b)
                        stop = len(candles) < page_size
                    else:
                        hi = cursor
                        stop = True
                    frame = frame[frame.index < hi]
                else:
                    forming = [c["time"] for c in candles if not _is_complete(c, source)]
                    hi = w_end
                    if forming:
                        hi = min(to_timestamp(forming[0], "candle time"), w_end)
                        stop = True
                if hi > cursor:
                    batch.add(frame, cursor, hi)
                if bar is not None:
                    bar.update(round((max(hi, cursor) - cursor) / step))
                    bar.set_postfix_str(f"{report.candles_received} received", refresh=False)
                if batch.rows >= flush_rows:
                    flush(batch)
                if stop:
                    report.reached_present = True
                    break
                cursor = hi
            flush(batch)  # ranges are not contiguous with each other
            if report.reached_present:
                break
    finally:
        try:
            flush(batch)  # keep finished pages even when a later page failed
        finally:
            if bar is not None:
                bar.close()
            report.seconds = time.monotonic() - t_start
    return report


class _FutureTime(CandleError):
    """The server says a requested time is in its future."""


class _TooMany(CandleError):
    """The server says the range holds more than 5000 candles."""


def _argument_error(exc: Any, instrument: str, granularity: str, price: str) -> Exception:
    """Turn an OANDA 400 into an error naming our argument (or a paging signal)."""
    msg = exc.message or str(exc)
    low = msg.lower()
    if "future" in low:
        return _FutureTime(msg)
    if "maximum value for 'count'" in low:
        return _TooMany(msg)
    for param, arg, value in (
        ("instrument", "instrument (--instrument)", instrument),
        ("granularity", "granularity (--granularity)", granularity),
        ("price", "price (--price)", price),
    ):
        if f"'{param}'" in low:
            return CandleError(f"{arg} {value!r}: the server refused it: {msg}")
    return exc


def _credentials(environment: str | None, credentials: Any, env_file: Any) -> tuple[Any, str]:
    """(credentials, environment) of a download: the given or loaded credentials, the
    environment checked and its account allowed there."""
    from sep_research.oanda.credentials import (
        check_account_environment,
        check_environment,
        load_credentials,
    )

    if environment is not None:
        environment = check_environment(environment)
    if credentials is None:
        credentials = load_credentials(env_file, environment=environment)
    env = environment or credentials.environment
    check_account_environment(credentials.account_id, env)
    return credentials, env


def fetch_financing(
    instruments: list[str],
    *,
    environment: str | None = None,
    credentials: Any = None,
    env_file: Any = None,
    cache: Any = None,
    api: Any = None,
    retries: int = 6,
    backoff: float = 0.5,
) -> dict[str, Any]:
    """OANDA's financing rates of ``instruments`` from the account's instruments endpoint
    (``GET /v3/accounts/{id}/instruments?instruments=...``: each instrument's ``financing``
    object, ``longRate``, ``shortRate`` and ``financingDaysOfWeek``), stored with their source
    and the time obtained in the cache folder (:func:`sep_research.financing.save_fetched`),
    where ``sep train --financing auto`` finds them. Returns ``{instrument: FinancingRates}``.
    Needs an account (``OANDA_ACCOUNT_ID``)."""
    from oandapyV20.endpoints.accounts import AccountInstruments

    from sep_research import financing as fin
    from sep_research.data.cache import CandleCache
    from sep_research.oanda.client import (
        environment_key,
        make_api,
        request_with_retry,
        source_label,
    )

    if not instruments:
        raise CandleError("instrument (--instrument): name at least one")
    for inst in instruments:
        try:
            fx.check_instrument(inst, name="instrument (--instrument)")
        except fx.FxError as exc:
            raise CandleError(str(exc)) from None
    credentials, env = _credentials(environment, credentials, env_file)
    if not credentials.account_id:
        raise CandleError("OANDA_ACCOUNT_ID is needed: the financing rates come from the "
                          "account's instruments endpoint")
    if not isinstance(cache, CandleCache):
        cache = CandleCache(cache)
    if api is None:
        api = make_api(credentials.token, env)
    elif getattr(api, "environment", None) != environment_key(env):
        raise ValueError(f"api: its environment {api.environment!r} is not {env!r}")
    ep = AccountInstruments(accountID=credentials.account_id,
                            params={"instruments": ",".join(instruments)})
    resp = request_with_retry(api, ep, retries=retries, backoff=backoff)
    listed = resp.get("instruments") if isinstance(resp, dict) else None
    if not isinstance(listed, list):
        raise CandleError("instruments response without an 'instruments' list")
    by_name = {d.get("name"): d for d in listed if isinstance(d, dict)}
    source = source_label(env)
    obtained = isoformat(utc_now())
    out: dict[str, Any] = {}
    for inst in instruments:
        if inst not in by_name:
            raise CandleError(f"instrument (--instrument) {inst}: not in the account's "
                              "instruments")
        rates = fin.from_oanda(by_name[inst].get("financing"), source=source, instrument=inst)
        fin.save_fetched(cache.root, inst, rates, obtained=obtained)
        out[inst] = rates
    return out
