"""Replayed market data: stored candles, the deterministic price path inside each candle,
aggregation to coarser granularities and the candles answer.

The price path. Inside one stored candle of length ``d`` starting at ``s`` each price component
(mid, bid, ask) walks through four vertices at ``s``, ``s + d/3``, ``s + 2d/3`` and ``s + d``:
open, then the low and the high (low first when the candle closes at or above its open, high
first otherwise), then the close; linearly in between. The next candle starts at its own open
(gaps are jumps). A candle still forming at clock time ``t`` has the open, the highest and
lowest price of the path so far, the price at ``t`` as its close, and ``floor(volume * f)``
volume where ``f`` is the fraction of the candle elapsed. Prices are rounded to the
instrument's display precision. Bid and ask come from the data where present, else mid minus or
plus a configured half-spread.

The market is *halted* (``tradeable: false``) where the clock is in a gap of at least 12 hours
between stored candles (weekends, holidays: the FX week ends on Friday and opens on Sunday), and
before the first or after the last stored candle.

Aggregates to coarser granularities are built on first use and kept in a least-recently-used
cache of :data:`MAX_AGGREGATES` per instrument (a client may ask for every daily alignment in
every time zone).
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from sep_research import fx
from sep_research.data.candles import ASK, BID, MID, validate
from sep_research.emulator.wire import NS, fmt_time
from sep_research.fx import GRANULARITY_SECONDS

HALT_GAP_NS = 12 * 3600 * NS
#: Aggregates kept per instrument (least recently used dropped first).
MAX_AGGREGATES = 32
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_FIXED = {g for g in GRANULARITY_SECONDS if g[0] in "SM" and g != "M"}


@dataclass(frozen=True)
class InstrumentSpec:
    name: str
    display_precision: int
    pip_location: int
    margin_rate: str

    @property
    def base(self) -> str:
        return self.name.split("_")[0]

    @property
    def quote(self) -> str:
        return self.name.split("_")[1]

    def describe(self) -> dict[str, Any]:
        prec = self.display_precision
        return {
            "name": self.name,
            "type": "CURRENCY",
            "displayName": self.name.replace("_", "/"),
            "pipLocation": self.pip_location,
            "displayPrecision": prec,
            "tradeUnitsPrecision": 0,
            "minimumTradeSize": "1",
            "maximumTrailingStopDistance": f"{1.0:.{prec}f}",
            "minimumTrailingStopDistance": f"{5 * 10.0 ** self.pip_location:.{prec}f}",
            "maximumPositionSize": "0",
            "maximumOrderUnits": "100000000",
            "marginRate": self.margin_rate,
        }


def make_spec(name: str, margin_rate: str) -> InstrumentSpec:
    fx.check_instrument(name)
    return InstrumentSpec(name, fx.display_precision(name), fx.pip_location(name), margin_rate)


class Series:
    """One instrument's stored candles and the price path through them."""

    def __init__(self, spec: InstrumentSpec, frame: Any, granularity: str, half_spread: float):
        validate(frame, granularity, name=f"candles for {spec.name}")
        if len(frame) == 0:
            raise ValueError(f"candles for {spec.name}: the frame is empty")
        self.spec = spec
        self.granularity = granularity
        self.dur = GRANULARITY_SECONDS[granularity] * NS
        self.t = np.asarray(frame.index.asi8, dtype=np.int64)
        self.tl = self.t.tolist()
        self.volume = frame["volume"].to_numpy(dtype=np.int64)
        prec = spec.display_precision
        mid = np.stack([frame[c].to_numpy(dtype=float) for c in MID])
        comps = {"M": mid}
        self.from_data = "M"
        for key, cols in (("B", BID), ("A", ASK)):
            if all(c in frame.columns for c in cols):
                comps[key] = np.stack([frame[c].to_numpy(dtype=float) for c in cols])
                self.from_data += key
            else:
                comps[key] = mid + (half_spread if key == "A" else -half_spread)
        self.ohlc = {k: np.round(v, prec) for k, v in comps.items()}
        # the same as Python lists, for the forming candle of every candles request
        self.ohlc_l = {k: tuple(col.tolist() for col in v) for k, v in self.ohlc.items()}
        self.volume_l: list[int] = self.volume.tolist()
        # vertices per component: shape (4, n): open, first extreme, second extreme, close
        self.vert: dict[str, list[list[float]]] = {}
        for k, (o, h, lo, c) in self.ohlc.items():
            up = c >= o
            v1 = np.where(up, lo, h)
            v2 = np.where(up, h, lo)
            self.vert[k] = [o.tolist(), v1.tolist(), v2.tolist(), c.tolist()]
        self.first = int(self.t[0])
        self.end = int(self.t[-1]) + self.dur
        self._aggs: OrderedDict[tuple[Any, ...], Aggregate] = OrderedDict()

    # -- the path -------------------------------------------------------------------------
    def locate(self, t: int) -> int:
        """Index of the last candle starting at or before ``t`` (-1 before the data)."""
        return bisect.bisect_right(self.tl, t) - 1

    def inside(self, i: int, t: int) -> bool:
        return i >= 0 and t < self.tl[i] + self.dur

    def vertices(self, i: int, comp: str) -> list[tuple[int, float]]:
        s = self.tl[i]
        d = self.dur
        v = self.vert[comp]
        return [(s, v[0][i]), (s + d // 3, v[1][i]), (s + 2 * d // 3, v[2][i]), (s + d, v[3][i])]

    def value_at(self, comp: str, t: int) -> float | None:
        i = self.locate(t)
        if i < 0:
            return None
        if not self.inside(i, t):
            return self.vert[comp][3][i]
        return self._interp(i, comp, t)

    def _interp(self, i: int, comp: str, t: int) -> float:
        pts = self.vertices(i, comp)
        for (ta, va), (tb, vb) in pairwise(pts):
            if t < tb:
                return round(va + (vb - va) * (t - ta) / (tb - ta), self.spec.display_precision)
        return pts[-1][1]

    def partial(self, i: int, comp: str, t: int) -> tuple[float, float, float, float]:
        """OHLC of candle ``i`` formed up to ``t`` (``t`` inside the candle)."""
        pts = self.vertices(i, comp)
        cur = self._interp(i, comp, t)
        seen = [p[1] for p in pts if p[0] <= t] + [cur]
        return pts[0][1], max(seen), min(seen), cur

    def halted(self, t: int) -> bool:
        i = self.locate(t)
        if i < 0 or t >= self.end:
            return True
        if self.inside(i, t):
            return False
        return self.tl[i + 1] - (self.tl[i] + self.dur) >= HALT_GAP_NS

    def quote_time(self, t: int) -> int:
        """Time of the newest price at ``t``: ``t`` inside a candle, else the last close."""
        i = self.locate(t)
        if i < 0:
            return t
        return t if self.inside(i, t) else self.tl[i] + self.dur

    def segments(self, comp: str, t0: int, t1: int) -> Iterator[tuple[int, float, int, float]]:
        """The path's linear pieces ``(ta, va, tb, vb)`` covering ``[t0, t1]`` in time order.

        Between candles the price stands still at the last close; the next candle's open is
        reached by a jump (a zero-length piece at the next candle's start).
        """
        i = max(self.locate(t0), 0)
        n = len(self.tl)
        while i < n and self.tl[i] <= t1:
            pts = self.vertices(i, comp)
            for (ta, va), (tb, vb) in pairwise(pts):
                if tb <= t0 or ta > t1:
                    continue
                a, b = max(ta, t0), min(tb, t1)
                fa = va + (vb - va) * (a - ta) / (tb - ta)
                fb = va + (vb - va) * (b - ta) / (tb - ta)
                yield a, fa, b, fb
            i += 1

    # -- aggregation ----------------------------------------------------------------------
    def aggregate(self, gran: str, align: int, tz: str, weekly: str) -> Aggregate:
        """The ``gran`` candles for this alignment (callers hold the venue's lock)."""
        if gran in _FIXED or gran == "H1":
            key: tuple[Any, ...] = (gran,)
        else:
            key = (gran, align, tz, weekly)
        agg = self._aggs.get(key)
        if agg is None:
            agg = Aggregate(self, gran, align, tz, weekly)
            self._aggs[key] = agg
            while len(self._aggs) > MAX_AGGREGATES:
                self._aggs.popitem(last=False)
        else:
            self._aggs.move_to_end(key)
        return agg

    @property
    def cached_aggregates(self) -> int:
        """How many aggregates are cached now (at most :data:`MAX_AGGREGATES`)."""
        return len(self._aggs)

    def supports(self, gran: str) -> bool:
        base = GRANULARITY_SECONDS[self.granularity]
        g = GRANULARITY_SECONDS[gran]
        if gran in ("D", "W", "M"):
            return 86400 % base == 0 and base <= 3600
        return g >= base and g % base == 0


def _bucket_starts(series: Series, gran: str, align: int, tz: str, weekly: str) -> list[int]:
    """Start (ns) of the ``gran`` candle holding each stored candle."""
    t = series.t
    g = GRANULARITY_SECONDS[gran] * NS
    if gran in _FIXED or gran == "H1":
        return (t - t % g).tolist()
    zone = ZoneInfo(tz)
    hours = GRANULARITY_SECONDS[gran] // 3600
    wday = WEEKDAYS.index(weekly)
    out: list[int] = []
    cache: dict[int, int] = {}
    for ns in series.tl:
        hour_key = ns // (3600 * NS)
        if hour_key in cache:
            out.append(cache[hour_key])
            continue
        local = datetime.fromtimestamp(hour_key * 3600, tz=UTC).astimezone(zone)
        wall = local.replace(tzinfo=None)
        day0 = (wall - timedelta(hours=align)).replace(hour=0, minute=0, second=0)
        day0 = day0 + timedelta(hours=align)  # trading-day start, local wall time
        if gran == "D":
            start = day0
        elif gran == "W":
            start = day0 - timedelta(days=(day0.weekday() - wday) % 7)
        elif gran == "M":
            label = day0 + timedelta(days=1)
            first = label.replace(day=1)
            start = first - timedelta(days=1)
            start = start.replace(hour=align)
        else:
            k = int((wall - day0).total_seconds() // 3600) // hours
            start = day0 + timedelta(hours=k * hours)
        utc = start.replace(tzinfo=zone).astimezone(UTC)
        v = int(utc.timestamp()) * NS
        cache[hour_key] = v
        out.append(v)
    return out


def _bucket_end(start: int, gran: str, tz: str, align: int) -> int:
    if gran not in ("D", "W", "M"):
        return start + GRANULARITY_SECONDS[gran] * NS
    zone = ZoneInfo(tz)
    wall = datetime.fromtimestamp(start // NS, tz=UTC).astimezone(zone).replace(tzinfo=None)
    if gran == "D":
        nxt = wall + timedelta(days=1)
    elif gran == "W":
        nxt = wall + timedelta(days=7)
    else:
        label = wall + timedelta(days=1)
        y, m = (label.year + 1, 1) if label.month == 12 else (label.year, label.month + 1)
        nxt = datetime(y, m, 1, align) - timedelta(days=1)  # noqa: DTZ001 - wall time in `zone`, attached below
    return int(nxt.replace(tzinfo=zone).astimezone(UTC).timestamp()) * NS


class Aggregate:
    """Candles of one granularity built from the stored ones, with cached JSON pieces."""

    def __init__(self, series: Series, gran: str, align: int, tz: str, weekly: str):
        self.series = series
        self.gran = gran
        starts = np.asarray(_bucket_starts(series, gran, align, tz, weekly), dtype=np.int64)
        brk = np.r_[0, np.flatnonzero(np.diff(starts)) + 1]
        self.first_idx = brk.tolist()  # first stored candle of each bucket
        self.bounds = [*self.first_idx[1:], len(series.tl)]
        self.start = starts[brk].tolist()
        self.first_times = [series.tl[i] for i in self.first_idx]
        self.bend = [_bucket_end(s, gran, tz, align) for s in self.start]
        self.volume = np.add.reduceat(series.volume, brk).tolist()
        prec = series.spec.display_precision
        self.ohlc: dict[str, list[tuple[float, float, float, float]]] = {}
        for k, (o, h, lo, c) in series.ohlc.items():
            oo = o[brk]
            hh = np.maximum.reduceat(h, brk)
            ll = np.minimum.reduceat(lo, brk)
            cc = c[np.r_[brk[1:] - 1, len(c) - 1]]
            self.ohlc[k] = list(zip(oo.tolist(), hh.tolist(), ll.tolist(), cc.tolist(),
                                     strict=True))
        self._fmt = f"{{:.{prec}f}}"
        self._pieces: dict[str, list[str]] = {}
        self._times: dict[bool, list[str]] = {}
        self._rendered: dict[tuple[str, bool], list[str]] = {}

    def times(self, unix: bool) -> list[str]:
        out = self._times.get(unix)
        if out is None:
            out = [fmt_time(s, unix) for s in self.start]
            self._times[unix] = out
        return out

    def _piece(self, comp: str, ohlc: tuple[float, float, float, float]) -> str:
        f = self._fmt
        o, h, lo, c = ohlc
        return (f'{{"o":"{f.format(o)}","h":"{f.format(h)}","l":"{f.format(lo)}",'
                f'"c":"{f.format(c)}"}}')

    def pieces(self, comp: str) -> list[str]:
        out = self._pieces.get(comp)
        if out is None:
            out = [self._piece(comp, x) for x in self.ohlc[comp]]
            self._pieces[comp] = out
        return out

    def visible(self, now: int) -> int:
        """Number of candles that exist at clock ``now`` (their first stored candle began)."""
        return bisect.bisect_right(self.first_times, now)

    def rendered(self, comps: str, unix: bool) -> list[str]:
        """JSON text of every candle as a complete one (cached per price set and time form)."""
        key = (comps, unix)
        out = self._rendered.get(key)
        if out is None:
            names = {"M": "mid", "B": "bid", "A": "ask"}
            times = self.times(unix)
            parts_by = [(names[c], self.pieces(c)) for c in comps]
            out = [
                f'{{"complete":true,"volume":{self.volume[j]},"time":"{times[j]}",'
                + ",".join(f'"{n}":{p[j]}' for n, p in parts_by) + "}"
                for j in range(len(self.start))
            ]
            self._rendered[key] = out
        return out

    def render(self, lo: int, hi: int, comps: str, now: int, unix: bool) -> str:
        """JSON array body for candles ``lo..hi-1`` as seen at clock ``now``."""
        if hi <= lo:
            return ""
        full = self.rendered(comps, unix)
        last = hi - 1
        if now >= self.bend[last]:
            return ",".join(full[lo:hi])
        names = {"M": "mid", "B": "bid", "A": "ask"}
        vol, body = self._forming(last, comps, now, names)
        forming = (f'{{"complete":false,"volume":{vol},"time":"{self.times(unix)[last]}",'
                   f"{body}}}")
        return ",".join([*full[lo:last], forming])

    def _forming(self, j: int, comps: str, now: int, names: dict[str, str]) -> tuple[int, str]:
        s = self.series
        a, b = self.first_idx[j], self.bounds[j]
        k = bisect.bisect_right(s.tl, now, a, b) - 1  # last stored candle begun
        volume = s.volume_l
        vol = sum(volume[a:k])
        fpart = s.inside(k, now)
        if fpart:  # as int64 times int, then float64 division (the values numpy gave)
            vol += math.floor(float(volume[k] * (now - s.tl[k])) / float(s.dur))
        else:
            vol += volume[k]
        bodies = []
        for c in comps:
            o_, h_, l_, c_ = s.ohlc_l[c]
            o = o_[a]
            hi = max(h_[a:k]) if k > a else -math.inf
            lo = min(l_[a:k]) if k > a else math.inf
            if fpart:
                _, ph, pl, pc = s.partial(k, c, now)
            else:
                ph, pl, pc = h_[k], l_[k], c_[k]
            bodies.append(f'"{names[c]}":{self._piece(c, (o, max(hi, ph), min(lo, pl), pc))}')
        return vol, ",".join(bodies)

