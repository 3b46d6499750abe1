"""Feeds: how the runner learns of each newly completed candle and of the latest prices.

:class:`OandaFeed` (OANDA or the emulator):

- polls the candles endpoint of each instrument only when a candle is due (the end of the
  candle after the last one seen), then every ``poll_interval_s`` until it appears, so the
  request rate stays far below OANDA's limit (all calls go through the shared rate limiter);
- asks ``from=<last candle>`` so that candles missed during an outage or a restart are
  **backfilled** in order (up to ``backfill_max`` per request, paged);
- never hands out an incomplete candle (``complete: false`` is dropped);
- reads prices from the pricing stream (:class:`sep_research.oanda.stream.ResilientStream`,
  which detects a stall when no heartbeat arrives for ``stall_timeout_s`` and reconnects with
  jittered backoff through the connection limiter), or polls the pricing endpoint when the
  stream is off or its prices are older than the stall timeout;
- keeps the server's clock (the ``time`` of price responses and heartbeats) for a runner that
  follows the server's clock (the emulator's replay clock).

:class:`FileFeed` replays OANDA JSON candle files for a dry run without network or
credentials: each step hands out the next candle of every instrument, with the price at that
moment (the next candle's open) as the quote.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sep_research.live.types import Candle, Quote, fmt_time, parse_time, utc_now

log = logging.getLogger(__name__)


class FeedError(RuntimeError):
    pass


class Feed:
    """Interface: :meth:`poll` returns newly completed candles (oldest first) and quotes."""

    def start(self, last_seen: dict[str, datetime | None]) -> dict[str, list[Candle]]:
        """Begin; return the warm-up history per instrument (complete candles, oldest first)."""
        raise NotImplementedError

    def poll(self) -> tuple[list[Candle], list[Quote]]:
        raise NotImplementedError

    def fresh_quotes(self, not_before: datetime) -> list[Quote]:
        """Quotes at least as new as ``not_before``, fetched now if the cached ones are older
        (a feed without a quote source returns none)."""
        return []

    def batches(self) -> Iterator[tuple[list[Candle], list[Quote], float]]:
        """What :meth:`poll` returns, in batches the runner handles as each arrives:
        ``(candles, quotes, seen_at)`` with ``seen_at`` the ``perf_counter()`` when the batch
        became visible."""
        candles, quotes = self.poll()
        yield candles, quotes, time.perf_counter()

    def now(self, *, refresh: bool = True) -> datetime:
        """The feed's clock; ``refresh=False`` never makes a request (status readers)."""
        raise NotImplementedError

    def checked_through(self) -> dict[str, datetime]:
        """Per instrument, the feed time up to which every completed candle has been handed
        out *and handled* (the batch that carried it was taken back by the runner)."""
        return dict(getattr(self, "_checked", {}))

    def stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        pass

    @property
    def exhausted(self) -> bool:
        return False


# ====================================================================== OANDA


class OandaFeed(Feed):
    def __init__(
        self,
        api: Any,
        account_id: str | None,
        instruments: list[str],
        granularity: str,
        granularity_seconds: int,
        *,
        poll_interval: float = 1.0,
        warmup: int = 200,
        backfill_max: int = 500,
        price: str = "MBA",
        use_stream: bool = True,
        stall_timeout: float = 10.0,
        reconnect_base: float = 0.5,
        reconnect_max: float = 30.0,
        limiter: Any = None,
        on_retry: Callable[..., None] | None = None,
        server_clock: bool = False,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        from sep_research.oanda import client as oc

        self._oc = oc
        self.api = api
        self.account_id = account_id
        self.instruments = list(instruments)
        self.granularity = granularity
        self.gran = timedelta(seconds=granularity_seconds)
        self.poll_interval = poll_interval
        self.warmup = warmup
        self.backfill_max = backfill_max
        self.price = price
        self.use_stream = use_stream and account_id is not None
        self.stall_timeout = stall_timeout
        self.reconnect_base = reconnect_base
        self.reconnect_max = reconnect_max
        self.limiter = limiter
        self.on_retry = on_retry
        self.server_clock = server_clock
        self._wall = wall
        self._last: dict[str, datetime | None] = dict.fromkeys(instruments)
        self._checked: dict[str, datetime] = {}
        self._next_poll: dict[str, float] = dict.fromkeys(instruments, 0.0)
        self._quotes: dict[str, Quote] = {}
        self._quote_lock = threading.Lock()
        self._server_time: datetime | None = None
        self._server_seen_at = 0.0
        self._stream: Any = None
        self._stream_thread: threading.Thread | None = None
        self._stats = {"candle_requests": 0, "pricing_requests": 0, "backfilled": 0,
                       "incomplete_dropped": 0}
        self._last_price_poll = 0.0

    # -------------------------------------------------------------- clock
    def _see_time(self, t: datetime) -> None:
        self._server_seen_at = self._wall()  # when the server's clock was last read
        if self._server_time is None or t > self._server_time:
            self._server_time = t

    def now(self, *, refresh: bool = True) -> datetime:
        """The wall clock, or with ``server_clock`` the server's: re-read (a price poll) when
        the last reading is older than the poll interval, so that it is never staler than
        that; ``refresh=False`` only returns the last reading (status readers)."""
        if self.server_clock:
            stale = self._server_time is None or \
                self._wall() - self._server_seen_at > self.poll_interval
            if stale and refresh:
                self._poll_prices()
            if self._server_time is not None:
                return self._server_time
        return utc_now()

    # -------------------------------------------------------------- requests
    def _get(self, endpoint: Any) -> Any:
        return self._oc.request_with_retry(self.api, endpoint, limiter=self.limiter,
                                           on_retry=self.on_retry)

    def _candles(self, instrument: str, params: dict[str, Any]) -> list[Candle]:
        from oandapyV20.endpoints import instruments as ep

        p = {"granularity": self.granularity, "price": self.price, **params}
        r = self._get(ep.InstrumentsCandles(instrument, params=p))
        self._stats["candle_requests"] += 1
        out = []
        for d in r.get("candles", []):
            if not d.get("complete", False):
                self._stats["incomplete_dropped"] += 1
                continue
            out.append(Candle.from_oanda(instrument, d))
        return out

    def _poll_prices(self) -> None:
        from oandapyV20.endpoints import pricing

        if self.account_id is None:
            return
        r = self._get(pricing.PricingInfo(self.account_id,
                                          params={"instruments": ",".join(self.instruments)}))
        self._stats["pricing_requests"] += 1
        self._last_price_poll = self._wall()
        if r.get("time"):
            self._see_time(parse_time(r["time"]))
        for p in r.get("prices", []):
            self._take_price(p)

    def _take_price(self, p: dict[str, Any]) -> None:
        try:
            q = Quote(p["instrument"], parse_time(p["time"]), float(p["bids"][0]["price"]),
                      float(p["asks"][0]["price"]), bool(p.get("tradeable", True)))
        except (KeyError, IndexError, ValueError, TypeError):
            log.warning("ignoring a malformed price message")
            return
        with self._quote_lock:
            old = self._quotes.get(q.instrument)
            if old is None or q.time >= old.time:
                self._quotes[q.instrument] = q

    # -------------------------------------------------------------- stream
    def _run_stream(self) -> None:
        from oandapyV20.endpoints import pricing

        from sep_research.oanda.stream import ResilientStream

        def factory() -> Any:
            return pricing.PricingStream(self.account_id,
                                         params={"instruments": ",".join(self.instruments)})

        try:
            self._stream = ResilientStream(
                self.api, factory, stall_timeout=self.stall_timeout,
                backoff=self.reconnect_base, max_backoff=self.reconnect_max)
        except TypeError:
            self._stream = ResilientStream(self.api, factory)
        try:
            for msg in self._stream:
                if msg.get("time") and msg.get("type") == "HEARTBEAT":
                    self._see_time(parse_time(msg["time"]))
                elif msg.get("type") == "PRICE" or "bids" in msg:
                    self._take_price(msg)
                    self._see_time(parse_time(msg["time"]))
        except Exception as exc:  # a dead stream falls back to polling
            log.error("price stream ended: %s; falling back to polling prices", exc)

    def stats(self) -> dict[str, float]:
        out = dict(self._stats)
        st = getattr(self._stream, "stats", None)
        if st is not None:
            for k in ("connects", "reconnects", "stalls", "messages", "heartbeats"):
                if hasattr(st, k):
                    out[f"stream_{k}"] = float(getattr(st, k))
        return out

    # -------------------------------------------------------------- interface
    def start(self, last_seen: dict[str, datetime | None]) -> dict[str, list[Candle]]:
        """Warm-up history ending now; candles after ``last_seen`` are left for :meth:`poll`."""
        history: dict[str, list[Candle]] = {}
        for inst in self.instruments:
            hist = self._candles(inst, {"count": min(5000, self.warmup)})
            seen = last_seen.get(inst)
            if seen is not None:
                history[inst] = [c for c in hist if c.time <= seen]
                self._last[inst] = seen
            else:
                # fresh start: the warm-up is history; the newest candle may still be acted on
                history[inst] = hist[:-1]
                self._last[inst] = hist[-2].time if len(hist) >= 2 else None
        if self.use_stream:
            self._stream_thread = threading.Thread(target=self._run_stream, name="price-stream",
                                                   daemon=True)
            self._stream_thread.start()
        self._poll_prices()
        return history

    def _due(self, inst: str, now: datetime) -> bool:
        last = self._last[inst]
        if last is None:
            return True
        return now >= last + 2 * self.gran  # the candle after `last` has ended

    def poll(self) -> tuple[list[Candle], list[Quote]]:
        self._refresh_prices()
        wall = self._wall()
        now = self.now()
        new: list[Candle] = []
        for inst in self.instruments:
            if not self._due(inst, now):
                self._checked[inst] = now  # nothing can have completed since the last one
                continue
            if wall < self._next_poll[inst]:
                continue
            got = self._fetch_after(inst)
            if got:
                new.extend(got)
                self._last[inst] = got[-1].time
                self._next_poll[inst] = 0.0
            else:
                self._next_poll[inst] = wall + self.poll_interval
            self._checked[inst] = now
        new.sort(key=lambda c: (c.time, c.instrument))
        with self._quote_lock:
            quotes = list(self._quotes.values())
        return new, quotes

    def batches(self) -> Iterator[tuple[list[Candle], list[Quote], float]]:
        """Prices first, then each due instrument's new candles as soon as they arrive, so the
        runner acts on one instrument before fetching the next."""
        self._refresh_prices()
        with self._quote_lock:
            quotes = list(self._quotes.values())
        yield [], quotes, time.perf_counter()
        now = self.now()
        wall = self._wall()
        for inst in self.instruments:
            if not self._due(inst, now):
                self._checked[inst] = now  # nothing can have completed since the last one
                continue
            if wall < self._next_poll[inst]:
                continue
            got = self._fetch_after(inst)  # asked after `now` was read: has all done by then
            seen = time.perf_counter()
            if got:
                self._last[inst] = got[-1].time
                self._next_poll[inst] = 0.0
                yield got, [], seen  # resumed only once the runner has handled them
            else:
                self._next_poll[inst] = wall + self.poll_interval
            self._checked[inst] = now

    def fresh_quotes(self, not_before: datetime) -> list[Quote]:
        with self._quote_lock:
            stale = any(q.time < not_before for q in self._quotes.values()) or not self._quotes
        if stale:
            self._poll_prices()
        with self._quote_lock:
            return list(self._quotes.values())

    def _refresh_prices(self) -> None:
        wall = self._wall()
        stream_ok = self.use_stream and self._stream is not None and \
            getattr(getattr(self._stream, "stats", None), "messages", 0) > 0
        with self._quote_lock:
            newest = max((q.time for q in self._quotes.values()), default=None)
        need = (not stream_ok or newest is None or self.server_clock
                or wall - self._last_price_poll > self.stall_timeout)
        if need and (self.server_clock
                     or wall - self._last_price_poll >= min(self.poll_interval, 1.0)):
            self._poll_prices()

    def _fetch_after(self, inst: str) -> list[Candle]:
        last = self._last[inst]
        if last is None:
            got = self._candles(inst, {"count": 2})
            return got[-1:]
        out: list[Candle] = []
        cursor = last
        while True:
            page = self._candles(inst, {"from": fmt_time(cursor), "includeFirst": False,
                                        "count": self.backfill_max})
            page = [c for c in page if c.time > cursor]
            out.extend(page)
            if len(page) < self.backfill_max - 1 or not page:
                break
            cursor = page[-1].time
        if len(out) > 1:
            self._stats["backfilled"] += len(out) - 1
        return out

    def quotes(self) -> dict[str, Quote]:
        with self._quote_lock:
            return dict(self._quotes)

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except Exception:
                log.debug("closing the price stream failed", exc_info=True)


# ====================================================================== file replay


def read_candle_json(path: str | Path, instrument: str) -> list[Candle]:
    """Complete candles from an OANDA candles JSON file (``{"candles": [...]}`` or a list)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FeedError(f"cannot read candle file {p}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise FeedError(f"candle file {p} is not valid JSON: {exc}") from None
    rows = data.get("candles") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise FeedError(f"candle file {p}: expected {{'candles': [...]}} or a list")
    out = []
    for i, d in enumerate(rows):
        try:
            c = Candle.from_oanda(instrument, d)
        except (KeyError, ValueError, TypeError) as exc:
            raise FeedError(f"candle file {p}: candle {i}: {exc}") from None
        if c.complete:
            out.append(c)
    for a, b in itertools.pairwise(out):
        if not b.time > a.time:
            raise FeedError(f"candle file {p}: times not increasing at {fmt_time(b.time)}")
    return out


class FileFeed(Feed):
    """Replay candles: each :meth:`poll` hands out the next candle time of all instruments.

    The quote at a candle's close is the next candle's open (bid/ask where the file has them,
    else mid -/+ ``half_spread``), which is the price an order decided at that close gets.
    """

    def __init__(self, candles: dict[str, list[Candle]], granularity_seconds: int, *,
                 half_spread: dict[str, float] | None = None) -> None:
        self.gran = timedelta(seconds=granularity_seconds)
        self.half_spread = half_spread or {}
        self._series = candles
        times = sorted({c.time for cs in candles.values() for c in cs})
        self._times = times
        self._by_time = {inst: {c.time: i for i, c in enumerate(cs)}
                         for inst, cs in candles.items()}
        self._pos = 0
        self._now = times[0] if times else None
        self._checked: dict[str, datetime] = {}

    @property
    def exhausted(self) -> bool:
        return self._pos >= len(self._times)

    def start(self, last_seen: dict[str, datetime | None]) -> dict[str, list[Candle]]:
        """Fresh start: no history (every candle is replayed). Restart: skip to after the
        last candle handled and return the earlier candles as history."""
        seen = [t for t in last_seen.values() if t is not None]
        if not seen:
            return {inst: [] for inst in self._series}
        cut = min(seen)
        while self._pos < len(self._times) and self._times[self._pos] <= cut:
            self._pos += 1
        self._now = cut + self.gran
        return {inst: [c for c in cs if c.time <= cut] for inst, cs in self._series.items()}

    def now(self, *, refresh: bool = True) -> datetime:
        assert self._now is not None
        return self._now

    def batches(self) -> Iterator[tuple[list[Candle], list[Quote], float]]:
        candles, quotes = self.poll()
        yield candles, quotes, time.perf_counter()
        if self._now is not None:
            self._checked = dict.fromkeys(self._series, self._now)

    def poll(self) -> tuple[list[Candle], list[Quote]]:
        if self.exhausted:
            return [], []
        t = self._times[self._pos]
        self._pos += 1
        self._now = t + self.gran
        out, quotes = [], []
        for inst, cs in self._series.items():
            i = self._by_time[inst].get(t)
            if i is None:
                continue
            out.append(cs[i])
            if i + 1 < len(cs):
                nxt = cs[i + 1]
                bid, ask = nxt.quotes(self.half_spread.get(inst, 0.0))
                quotes.append(Quote(inst, self._now, bid[0], ask[0], True))
        return out, quotes
