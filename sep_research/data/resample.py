"""Resampling of candles to a higher granularity, causally: the project's one definition.

**Buckets.** A higher-timeframe (HTF) candle of step ``s`` seconds is the bucket of base candles
whose start times ``t`` satisfy ``b <= t < b + s`` with ``b = t - t mod s`` (Unix seconds): the
buckets are aligned to 00:00 UTC, so H4 candles start at 00, 04, 08 ... UTC and D candles at
midnight UTC (not at OANDA's 17:00 New York daily alignment). Open is the first base open,
close the last base close, high the largest high, low the smallest low, volume the sum of the
volumes added in base order; only base candles that exist count (a bucket cut by a weekend or
a gap holds fewer candles). HTF granularities are those of :data:`sep_research.fx.
GRANULARITY_SECONDS` whose length is a multiple of the base's and divides a day (``W`` and
``M`` are nominal lengths and are refused).

**When an HTF candle may be used (causality).** An HTF candle closes at its end ``b + s``. Base
candle ``i`` (start ``t_i``, length ``d`` seconds) closes at ``t_i + d``; the HTF candles that
exist at that close are those with ``b + s <= t_i + d`` (:func:`closed_index`). Every base
candle in such a bucket started before ``t_i + d``, so, as base candles never overlap
(``t[i+1] - t[i] >= d``, checked), at or before candle ``i``: nothing later can change them.
The bucket that holds candle ``i`` but ends after its close is *unfinished* and is never used
(the seed's multi-timeframe system read unfinished ones: look-ahead). The same rule, one
candle at a time, is :class:`CandleResampler` (pure Python, for the live runner); a test
checks that both give the same candles at the same base candles.

Public API::

    htf_step(base, htf, *, name="htf") -> (base seconds, htf seconds)     # checked
    resample_arrays(times, open, high, low, close, volume, *, base_seconds, step)
        -> dict of arrays: start, end, open, high, low, close, volume, first, last, complete
    closed_index(times, ends, *, base_seconds) -> int64 (n,): latest closed HTF candle, -1
    CandleResampler(base_seconds, step).update(t, o, h, l, c, v) -> list of closed candles
    resample_frame(frame, granularity) -> candle frame (pandas) with provenance

Only numpy (and :mod:`sep_research.fx`) at import time: the live runner imports this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sep_research import fx

DAY = 86400


def htf_step(base: str, htf: str, *, name: str = "htf") -> tuple[int, int]:
    """(base seconds, HTF seconds) of two granularities, or a ValueError naming ``name``."""
    for g in (base, htf):
        if g not in fx.GRANULARITY_SECONDS:
            raise ValueError(f"{name}: unknown granularity {g!r} (known: "
                             f"{', '.join(fx.GRANULARITY_SECONDS)})")
    d = fx.GRANULARITY_SECONDS[base]
    s = fx.GRANULARITY_SECONDS[htf]
    if s > DAY or DAY % s:
        raise ValueError(f"{name}: {htf} cannot be resampled to (its length must divide a day: "
                         "S5 .. D)")
    if s <= d or s % d:
        raise ValueError(f"{name}: {htf} is not a higher granularity than {base} (its length must "
                         f"be a multiple of {base}'s {d} s)")
    return d, s


def _check_times(times: np.ndarray, base_seconds: int) -> np.ndarray:
    t = np.asarray(times, dtype=np.int64)
    if t.ndim != 1:
        raise ValueError(f"times must be 1-D, got shape {t.shape}")
    if t.size > 1 and np.any(np.diff(t) < base_seconds):
        j = int(np.flatnonzero(np.diff(t) < base_seconds)[0])
        raise ValueError(f"times: candle {j + 1} starts {int(t[j + 1] - t[j])} s after candle {j}, "
                         f"less than the base length {base_seconds} s (candles must not overlap)")
    return t


def resample_arrays(times: Any, open: Any, high: Any, low: Any, close: Any, volume: Any, *,
                    base_seconds: int, step: int) -> dict[str, np.ndarray]:
    """HTF candles of step ``step`` seconds from base candles (see the module docstring).

    ``times``: base candle starts in Unix seconds (int64, increasing, at least
    ``base_seconds`` apart). Returns arrays over the HTF candles: ``start``, ``end``
    (``start + step``), ``open``, ``high``, ``low``, ``close``, ``volume`` (float64),
    ``first`` and ``last`` (index of their first and last base candle) and ``complete``
    (closed by the close of the last base candle)."""
    t = _check_times(times, base_seconds)
    cols = [np.asarray(a, dtype=np.float64) for a in (open, high, low, close, volume)]
    for a in cols:
        if a.shape != t.shape:
            raise ValueError(f"price and volume arrays must have the shape of times {t.shape}, "
                             f"got {a.shape}")
    n = t.size
    if n == 0:
        e = np.zeros(0, dtype=np.int64)
        f = np.zeros(0)
        return {"start": e, "end": e, "open": f, "high": f, "low": f, "close": f, "volume": f,
                "first": e, "last": e, "complete": np.zeros(0, dtype=bool)}
    b = t - np.mod(t, step)
    new = np.ones(n, dtype=bool)
    new[1:] = b[1:] != b[:-1]
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, n - 1]
    o, h, lo, c, v = cols
    vol = np.empty(first.size)
    for j in range(first.size):  # summed in base order, as the stream adds them
        s = 0.0
        for x in v[first[j]:last[j] + 1]:
            s = s + float(x)
        vol[j] = s
    start = b[first]
    end = start + step
    return {"start": start, "end": end, "open": o[first], "high": np.maximum.reduceat(h, first),
            "low": np.minimum.reduceat(lo, first), "close": c[last], "volume": vol,
            "first": first.astype(np.int64), "last": last.astype(np.int64),
            "complete": end <= t[-1] + base_seconds}


def closed_index(times: Any, ends: Any, *, base_seconds: int) -> np.ndarray:
    """For each base candle, the index of the latest HTF candle closed by its close
    (``end <= t_i + base_seconds``), or -1 when none has closed yet."""
    t = _check_times(times, base_seconds)
    e = np.asarray(ends, dtype=np.int64)
    return (np.searchsorted(e, t + base_seconds, side="right") - 1).astype(np.int64)


class CandleResampler:
    """The HTF candles of :func:`resample_arrays`, one base candle at a time (pure Python).

    ``update`` takes the newest completed base candle and returns the HTF candles that closed
    by its close, oldest first, each as ``(start, open, high, low, close, volume)``: the bucket
    before when this candle starts a new one (a gap), and this candle's bucket when it is the
    last of it. An unfinished bucket is never returned."""

    def __init__(self, base_seconds: int, step: int) -> None:
        if base_seconds <= 0 or step <= base_seconds or step % base_seconds:
            raise ValueError(f"step {step} s must be a multiple of the base {base_seconds} s")
        self.base = int(base_seconds)
        self.step = int(step)
        self._cur: list | None = None
        self._last_t: int | None = None

    def update(self, t: int, o: float, h: float, lo: float, c: float, v: float) -> list[tuple]:
        t = int(t)
        if self._last_t is not None and t - self._last_t < self.base:
            raise ValueError(f"times: candle at {t} starts {t - self._last_t} s after the "
                             f"previous one, less than the base length {self.base} s")
        self._last_t = t
        out = []
        b = t - t % self.step
        cur = self._cur
        if cur is not None and cur[0] != b:
            out.append(tuple(cur))
            cur = None
        if cur is None:
            cur = [b, float(o), float(h), float(lo), float(c), 0.0 + float(v)]
        else:
            cur[2] = max(cur[2], float(h))
            cur[3] = min(cur[3], float(lo))
            cur[4] = float(c)
            cur[5] = cur[5] + float(v)
        if t + self.base >= b + self.step:
            out.append(tuple(cur))
            cur = None
        self._cur = cur
        return out


def frame_seconds(frame: Any) -> np.ndarray:
    """Start times of a candle frame (its UTC DatetimeIndex) or of a mapping's ``time``
    column (Unix seconds, or numpy datetime64) as int64 Unix seconds."""
    idx = getattr(frame, "index", None)
    if idx is not None and hasattr(idx, "tz"):
        vals = np.asarray(idx.tz_convert("UTC").tz_localize(None) if idx.tz is not None
                          else idx, dtype="datetime64[ns]")
        return (vals.astype(np.int64) // fx.NS).astype(np.int64)
    try:
        t = np.asarray(frame["time"])
    except (KeyError, IndexError, TypeError, ValueError):
        raise ValueError("the candles carry no times (a frame's DatetimeIndex or a 'time' "
                         "column of Unix seconds)") from None
    if t.dtype.kind == "M":
        return (t.astype("datetime64[s]").astype(np.int64)).astype(np.int64)
    return t.astype(np.int64)


def resample_frame(frame: Any, granularity: str) -> Any:
    """A candle frame resampled to ``granularity`` (see the module docstring), with provenance
    (the base's source, ``resampled_from`` in its extra) and a ``complete`` column (False for
    a last bucket that had not closed by the last base candle's close). Bid/ask columns, when
    present, are resampled like the mid ones."""
    import pandas as pd

    from sep_research.data.candles import attach_provenance, get_provenance, make_provenance

    prov = get_provenance(frame)
    d, s = htf_step(prov.granularity, granularity, name="granularity")
    t = frame_seconds(frame)
    cols: dict[str, np.ndarray] = {}
    res = None
    parts = [""] + [p for p in ("bid_", "ask_") if f"{p}open" in frame.columns]
    for p in parts:
        r = resample_arrays(t, *(frame[f"{p}{k}"] for k in ("open", "high", "low", "close")),
                            frame["volume"], base_seconds=d, step=s)
        res = res or r
        for k in ("open", "high", "low", "close"):
            cols[f"{p}{k}"] = r[k]
    assert res is not None
    cols["volume"] = res["volume"]
    cols["complete"] = res["complete"]
    out = pd.DataFrame(cols, index=pd.to_datetime(res["start"], unit="s", utc=True))
    out.index.name = frame.index.name
    extra = {**prov.extra, "resampled_from": prov.granularity, "base_sha256": prov.sha256}
    return attach_provenance(out, make_provenance(
        out, source=prov.source, instrument=prov.instrument, granularity=granularity,
        obtained_at=prov.obtained_at, note=f"resampled from {prov.granularity} candles "
        "(sep_research.data.resample: buckets aligned to 00:00 UTC)", extra=extra))
