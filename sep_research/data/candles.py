"""The one candle frame type used everywhere, its validation and its provenance.

A *candle frame* is a :class:`pandas.DataFrame` with

- index ``time``: a tz-aware UTC :class:`~pandas.DatetimeIndex` of candle **start** times,
  strictly increasing;
- mid prices ``open, high, low, close`` (float64), always present;
- where known, ``bid_open .. bid_close`` and ``ask_open .. ask_close`` (float64);
- ``volume`` (int64, tick volume) and ``complete`` (bool);
- ``frame.attrs["provenance"]``: a :class:`Provenance` as a plain ``dict``
  (plain so that pandas can copy it).

Every loader ends with :func:`validate`, so a frame that exists has passed it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from sep_research import fx

MID = ("open", "high", "low", "close")
BID = ("bid_open", "bid_high", "bid_low", "bid_close")
ASK = ("ask_open", "ask_high", "ask_low", "ask_close")
COLUMN_ORDER = (*MID, *BID, *ASK, "volume", "complete")

#: OANDA granularities and their nominal length in seconds: the one table, in :mod:`sep_research.fx`
#: (re-exported here because other modules import it from the data layer).
GRANULARITY_SECONDS = fx.GRANULARITY_SECONDS

SOURCE_KINDS = ("oanda:practice", "oanda:live", "file:", "package:", "synthetic", "emulator:")


class CandleError(ValueError):
    """A candle frame or file is invalid; the message names the file or argument."""


class SyntheticDataError(CandleError):
    """Synthetic data was handed to a research entry point that did not ask for it."""


def check_granularity(granularity: Any) -> str:
    """:func:`sep_research.fx.check_granularity`, raising :class:`CandleError`."""
    try:
        return fx.check_granularity(granularity)
    except fx.FxError as exc:
        raise CandleError(str(exc)) from None


def check_instrument(instrument: Any) -> str:
    """:func:`sep_research.fx.check_instrument` (two codes joined by '_', e.g. EUR_USD),
    raising :class:`CandleError`."""
    try:
        return fx.check_instrument(instrument)
    except fx.FxError as exc:
        raise CandleError(f"unknown {exc}") from None


#: Price per pip (0.0001 for EUR_USD, 0.01 for USD_JPY): :func:`sep_research.fx.pip_size`.
pip_size = fx.pip_size
#: The current time, tz-aware UTC: :func:`sep_research.fx.utc_now`.
utc_now = fx.utc_now


#: ``Provenance.extra`` key saying which price the ``open .. close`` columns hold when it is not
#: mid: ``"ask"`` or ``"bid"`` (a file that has only one side). Such a frame's ``price`` is
#: ``"A"`` or ``"B"``, never ``"M"``.
OHLC_PRICE_KEY = "ohlc_price"
_OHLC_PRICES = {"mid": "M", "bid": "B", "ask": "A"}


def price_components(frame: pd.DataFrame, extra: dict[str, Any] | None = None) -> str:
    """'M', 'MB', 'MA' or 'MBA' according to the columns present; 'A' (or 'B') for a frame whose
    ``open .. close`` hold ask (or bid) prices and no mid, as its provenance ``extra`` (or
    ``extra`` given here) says under :data:`OHLC_PRICE_KEY`."""
    if extra is None:
        extra = (frame.attrs.get("provenance") or {}).get("extra") or {}
    ohlc = extra.get(OHLC_PRICE_KEY, "mid")
    if ohlc not in _OHLC_PRICES:
        raise CandleError(f"provenance extra {OHLC_PRICE_KEY!r}: {ohlc!r} is not mid, bid or ask")
    comp = _OHLC_PRICES[ohlc]
    if ohlc != "mid":
        if any(c in frame.columns for c in (*BID, *ASK)):
            raise CandleError(f"open .. close hold {ohlc} prices: a frame with separate bid/ask "
                              "columns must have mid in open .. close")
        return comp
    if all(c in frame.columns for c in BID):
        comp += "B"
    if all(c in frame.columns for c in ASK):
        comp += "A"
    return comp


def isoformat(ts: Any) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def to_timestamp(value: Any, name: str) -> pd.Timestamp:
    """One time argument (a date or time string, UNIX seconds, a datetime or Timestamp; naive
    means UTC) as a UTC :class:`pandas.Timestamp`, read by the one parser
    :func:`sep_research.fx.parse_time_ns` (1970..2100, finite); :class:`CandleError` naming
    ``name`` otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise CandleError(f"{name}: a date is required (e.g. 2024-01-01)")
    try:
        return pd.Timestamp(fx.parse_time_ns(value, name=name), tz="UTC")
    except fx.FxError as exc:
        raise CandleError(str(exc)) from None


@dataclass(frozen=True)
class Provenance:
    """Where a candle frame came from. Stored with every frame and every cached file."""

    source: str  # oanda:practice | oanda:live | file:NAME | package:NAME==VERSION | synthetic
    instrument: str
    granularity: str
    price: str  # M, MB, MA or MBA; A (or B): open..close are ask (or bid) prices, no mid
    start: str  # first candle start, ISO UTC
    end: str  # last candle start, ISO UTC
    rows: int
    sha256: str  # content hash, see content_sha256()
    obtained_at: str  # ISO UTC time the data was obtained
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_synthetic(self) -> bool:
        return self.source == "synthetic"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(data) - {"note", "extra"}
        if missing:
            raise CandleError(f"provenance is missing fields: {sorted(missing)}")
        return cls(**{k: v for k, v in data.items() if k in names})


def _check_source(source: str) -> str:
    if source in ("oanda:practice", "oanda:live", "synthetic"):
        return source
    for prefix in ("file:", "package:", "emulator:"):
        if source.startswith(prefix) and len(source) > len(prefix):
            return source
    raise CandleError(
        f"unknown provenance source {source!r}: expected oanda:practice, oanda:live, "
        "file:NAME, package:NAME==VERSION or synthetic"
    )


def _column_bytes(frame: pd.DataFrame, col: str) -> bytes:
    values = frame[col].to_numpy()
    if col == "complete":
        values = values.astype("u1")
    elif col == "volume":
        values = values.astype("<i8")
    else:
        values = values.astype("<f8", copy=False)
    return np.ascontiguousarray(values).data  # type: ignore[return-value]


def content_sha256(frame: pd.DataFrame) -> str:
    """A hash of the candle content (times and every price, volume, complete column).

    Independent of how the frame is stored: two frames with the same candles hash the same.
    It is the sha256 of the concatenated sha256 digests of the times and of each column (in
    the canonical column order, each digest preceded by the column's name), so that the
    columns can be hashed in parallel threads (hashlib releases the GIL on large buffers).
    """
    from concurrent.futures import ThreadPoolExecutor

    cols = [c for c in COLUMN_ORDER if c in frame.columns]
    buffers = [np.ascontiguousarray(frame.index.as_unit("ns").asi8, dtype="<i8").data]
    buffers += [_column_bytes(frame, c) for c in cols]
    if len(frame) > 100_000:
        with ThreadPoolExecutor(max_workers=4) as pool:
            digests = list(pool.map(lambda b: hashlib.sha256(b).digest(), buffers))
    else:
        digests = [hashlib.sha256(b).digest() for b in buffers]
    h = hashlib.sha256()
    for name, digest in zip(["time", *cols], digests, strict=True):
        h.update(name.encode())
        h.update(digest)
    return h.hexdigest()


def make_provenance(
    frame: pd.DataFrame,
    *,
    source: str,
    instrument: str,
    granularity: str,
    obtained_at: datetime | str | None = None,
    note: str = "",
    extra: dict[str, Any] | None = None,
) -> Provenance:
    if obtained_at is None:
        obtained_at = utc_now()
    if isinstance(obtained_at, datetime):
        obtained_at = isoformat(obtained_at)
    return Provenance(
        source=_check_source(source),
        instrument=instrument,
        granularity=granularity,
        price=price_components(frame, dict(extra or {})),
        start=isoformat(frame.index[0]) if len(frame) else "",
        end=isoformat(frame.index[-1]) if len(frame) else "",
        rows=len(frame),
        sha256=content_sha256(frame),
        obtained_at=obtained_at,
        note=note,
        extra=dict(extra or {}),
    )


def get_provenance(frame: pd.DataFrame) -> Provenance:
    data = frame.attrs.get("provenance")
    if data is None:
        raise CandleError("candle frame has no provenance (frame.attrs['provenance'])")
    return data if isinstance(data, Provenance) else Provenance.from_dict(data)


def attach_provenance(frame: pd.DataFrame, prov: Provenance) -> pd.DataFrame:
    frame.attrs["provenance"] = prov.to_dict()
    return frame


def require_authentic(frame: pd.DataFrame, *, allow_synthetic: bool = False,
                      what: str = "") -> None:
    """Research entry points call this: synthetic data only when explicitly allowed."""
    prov = get_provenance(frame)
    if prov.is_synthetic and not allow_synthetic:
        raise SyntheticDataError(
            f"{what or 'this research entry point'} refuses synthetic data "
            "(research runs on authentic market data; pass allow_synthetic=True to override, "
            "e.g. in unit tests and benchmarks)"
        )


def normalise(frame: pd.DataFrame, *, name: str = "frame") -> pd.DataFrame:
    """Bring a frame built from parsed input to the canonical dtypes and column order.

    Does not sort or deduplicate: :func:`validate` rejects unsorted or duplicate times, since
    silently reordering input would hide a broken file.
    """
    missing = [c for c in MID if c not in frame.columns]
    if missing:
        raise CandleError(f"{name}: missing price columns {missing}")
    idx = frame.index
    if not isinstance(idx, pd.DatetimeIndex):
        raise CandleError(f"{name}: index must be a DatetimeIndex of candle start times")
    if idx.tz is None:
        raise CandleError(f"{name}: times must be timezone-aware UTC (naive times are bugs)")
    idx = idx.tz_convert("UTC").as_unit("ns").rename("time")
    out = pd.DataFrame(index=idx)
    for col in (*MID, *BID, *ASK):
        if col in frame.columns:
            try:
                out[col] = pd.to_numeric(frame[col].to_numpy(), errors="raise").astype("float64")
            except (TypeError, ValueError, OverflowError) as exc:
                raise CandleError(f"{name}: column {col!r} is not numeric ({exc})") from None
    if "volume" in frame.columns:
        out["volume"] = _volume(frame["volume"].to_numpy(), idx, name)
    else:
        out["volume"] = np.zeros(len(frame), dtype="int64")
    if "complete" in frame.columns:
        out["complete"] = _complete(frame["complete"].to_numpy(), idx, name)
    else:
        out["complete"] = np.ones(len(frame), dtype=bool)
    out.attrs = dict(frame.attrs)
    return out


#: Tick volumes above this are refused (it is far above any real count, and below 2**53, so
#: every accepted value is exact in a float64 and fits an int64).
MAX_VOLUME = 10**15
#: Prices at or above this are refused as absurd (no OANDA instrument quotes near it; 1e300
#: would overflow squared returns); NaN and infinities are refused as not finite.
MAX_PRICE = 1e7

_TRUE = frozenset(("true", "1"))
_FALSE = frozenset(("false", "0"))


def _volume(values: np.ndarray, index: pd.DatetimeIndex, name: str) -> np.ndarray:
    """Tick volume as int64: numbers that are whole, finite, ``0 <= v <= MAX_VOLUME``."""
    if values.dtype.kind in "iu":
        vol = values.astype("float64")  # int64 values beyond 2**53 only matter above the cap
    else:
        try:
            vol = pd.to_numeric(values, errors="coerce").astype("float64")
        except (TypeError, ValueError, OverflowError):
            vol = np.array([_float_or_nan(v) for v in values], dtype="float64")
    vol = np.asarray(vol, dtype="float64")
    for mask, what in (
        (np.isnan(vol), "missing or non-numeric volume"),
        (np.isinf(vol) | (vol > MAX_VOLUME), f"volume too large (above {MAX_VOLUME:.0e})"),
        (vol < 0, "negative volume"),
        (np.isfinite(vol) & (vol != np.floor(vol)), "volume not a whole number of ticks"),
    ):
        if mask.any():
            pos = int(np.flatnonzero(mask)[0])
            raise CandleError(f"{name}: {what}: {_first_bad(mask, index)}: {_shown(values[pos])}")
    if values.dtype.kind in "iu":
        return values.astype("int64")
    return vol.astype("int64")


def _shown(value: Any) -> str:
    """A value for an error message, cut to 40 characters (as :mod:`sep_research.fx` does)."""
    return fx._shown(value.item() if isinstance(value, np.generic) else value)


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return np.nan


def complete_flag(value: Any) -> bool | None:
    """A candle's ``complete`` read strictly: a boolean, 1/0, or the strings true/false/1/0
    (any case); None for anything else (``"no"`` is not read as true)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    return None


def _complete(values: np.ndarray, index: pd.DatetimeIndex, name: str) -> np.ndarray:
    """The ``complete`` column through :func:`complete_flag`; CandleError names the row."""
    if values.dtype == bool:
        return values.astype(bool)
    out = np.empty(len(values), dtype=bool)
    for pos, v in enumerate(values):
        flag = complete_flag(v)
        if flag is None:
            raise CandleError(
                f"{name}: 'complete' must be true or false (or 1/0), got {_shown(v)} at "
                f"{isoformat(index[pos])} (row {pos})"
            )
        out[pos] = flag
    return out


def _first_bad(mask: np.ndarray, index: pd.DatetimeIndex) -> str:
    pos = int(np.flatnonzero(mask)[0])
    return f"{int(mask.sum())} candle(s), first at {isoformat(index[pos])} (row {pos})"


def validate(
    frame: pd.DataFrame,
    granularity: str,
    *,
    name: str = "frame",
    check_grid: bool = True,
) -> pd.DataFrame:
    """Check a candle frame; raise :class:`CandleError` naming ``name`` and the first bad candle.

    Checks: canonical columns, UTC index, times in 1970..2100, strictly increasing (monotonic,
    unique) times, finite prices below :data:`MAX_PRICE`, ``low <= open, close <= high`` for
    each price component, ``bid <= ask``, integer non-negative volume, a known granularity,
    and (``check_grid``) times on the granularity's grid.
    """
    check_granularity(granularity)
    idx = frame.index
    if not isinstance(idx, pd.DatetimeIndex) or idx.tz is None:
        raise CandleError(f"{name}: index must be a tz-aware UTC DatetimeIndex")
    if str(idx.tz) != "UTC":
        raise CandleError(f"{name}: index must be in UTC, got {idx.tz}")
    for col in MID:
        if col not in frame.columns:
            raise CandleError(f"{name}: missing column {col!r}")
    if len(frame) == 0:
        return frame
    ns = idx.as_unit("ns").asi8
    outside = (ns < fx.MIN_TIME_NS) | (ns >= fx.MAX_TIME_NS)
    if outside.any():
        raise CandleError(f"{name}: candle times outside 1970-01-01 .. 2100-01-01: "
                          f"{_first_bad(outside, idx)}")
    if idx.has_duplicates:
        dup = idx.duplicated(keep="first")
        raise CandleError(f"{name}: duplicate candle times: {_first_bad(dup, idx)}")
    if not idx.is_monotonic_increasing:
        d = np.diff(idx.as_unit("ns").asi8) < 0
        raise CandleError(
            f"{name}: candle times are not sorted: {_first_bad(np.r_[False, d], idx)}")
    for cols in (MID, BID, ASK):
        present = [c for c in cols if c in frame.columns]
        if not present:
            continue
        if len(present) != 4:
            raise CandleError(
                f"{name}: incomplete price columns {present}: need all of {list(cols)}")
        o, h, lo, c = (frame[col].to_numpy(dtype="float64") for col in cols)
        finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c)
        if not finite.all():
            raise CandleError(f"{name}: prices not finite (NaN or infinity) in {list(cols)}: "
                              f"{_first_bad(~finite, idx)}")
        huge = h >= MAX_PRICE
        if huge.any():
            raise CandleError(f"{name}: prices too large (at or above {MAX_PRICE:.0e}) in "
                              f"{list(cols)}: {_first_bad(huge, idx)}")
        bad = (lo > o) | (lo > c) | (o > h) | (c > h) | (lo > h)
        if bad.any():
            raise CandleError(
                f"{name}: prices violate low <= open, close <= high in {list(cols)}: "
                f"{_first_bad(bad, idx)}"
            )
        if (lo <= 0).any():
            raise CandleError(
                f"{name}: non-positive prices in {list(cols)}: {_first_bad(lo <= 0, idx)}")
    if all(c in frame.columns for c in (*BID, *ASK)):
        for b, a in zip(BID, ASK, strict=True):
            crossed = frame[b].to_numpy() > frame[a].to_numpy()
            if crossed.any():
                raise CandleError(f"{name}: bid above ask ({b} > {a}): {_first_bad(crossed, idx)}")
    if "volume" in frame.columns and frame["volume"].dtype.kind not in "iu":
        raise CandleError(f"{name}: volume must be integers, not {frame['volume'].dtype}")
    if "volume" in frame.columns and (frame["volume"].to_numpy() < 0).any():
        bad = frame["volume"].to_numpy() < 0
        raise CandleError(f"{name}: negative volume: {_first_bad(bad, idx)}")
    if check_grid:
        _check_grid(idx, granularity, name)
    return frame


def _check_grid(idx: pd.DatetimeIndex, granularity: str, name: str) -> None:
    ns = idx.as_unit("ns").asi8
    if granularity in ("D", "W", "M"):
        # Daily/weekly/monthly candles start at 17:00 New York: 21:00Z or 22:00Z. We require
        # whole hours, which every alignment OANDA offers satisfies.
        off = ns % (3600 * 10**9) != 0
    elif granularity.startswith("H"):
        # Hourly candles align to whole hours; H2..H12 align within the trading day, which in
        # UTC shifts with New York's daylight saving, so only the hour boundary is checked.
        off = ns % (3600 * 10**9) != 0
    else:
        step = GRANULARITY_SECONDS[granularity] * 10**9
        off = ns % step != 0
    if off.any():
        raise CandleError(
            f"{name}: candle times are off the {granularity} grid: {_first_bad(off, idx)}"
        )


def finish_frame(
    frame: pd.DataFrame,
    *,
    source: str,
    instrument: str,
    granularity: str,
    name: str,
    check_grid: bool = True,
    obtained_at: datetime | str | None = None,
    note: str = "",
    extra: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Normalise, validate and attach provenance: the last step of every loader."""
    check_instrument(instrument)
    check_granularity(granularity)
    out = normalise(frame, name=name)
    validate(out, granularity, name=name, check_grid=check_grid)
    prov = make_provenance(
        out, source=source, instrument=instrument, granularity=granularity,
        obtained_at=obtained_at, note=note, extra=extra,
    )
    return attach_provenance(out, prov)


def synthetic_candles(
    n: int,
    *,
    instrument: str = "EUR_USD",
    granularity: str = "M1",
    start: str = "2024-01-01T00:00:00Z",
    seed: int = 0,
    spread_pips: float = 0.8,
    price: float = 1.10,
) -> pd.DataFrame:
    """A random-walk candle frame labelled ``synthetic``: for unit tests and benchmarks only."""
    rng = np.random.default_rng(seed)
    step = GRANULARITY_SECONDS[check_granularity(granularity)]
    idx = pd.date_range(pd.Timestamp(start), periods=n, freq=pd.Timedelta(seconds=step),
                        name="time")
    pip = pip_size(instrument)
    rets = rng.normal(0.0, 2.0 * pip, size=n)
    close = price + np.cumsum(rets)
    open_ = np.r_[price, close[:-1]]
    wick = np.abs(rng.normal(0.0, 1.5 * pip, size=(2, n)))
    high = np.maximum(open_, close) + wick[0]
    low = np.minimum(open_, close) - wick[1]
    half = spread_pips * pip / 2
    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close}, index=idx
    )
    for side, sign in (("bid", -1.0), ("ask", 1.0)):
        for col in MID:
            frame[f"{side}_{col}"] = frame[col] + sign * half
    frame["volume"] = rng.integers(1, 300, size=n)
    frame["complete"] = True
    return finish_frame(
        frame, source="synthetic", instrument=instrument, granularity=granularity,
        name="synthetic", note="random walk for tests and benchmarks; not market data",
        obtained_at="1970-01-01T00:00:00Z",
    )
