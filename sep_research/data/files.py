"""Import candle files: OANDA candle JSON (both forms) and CSV.

Supported inputs:

- OANDA candle JSON: ``{"candles": [{"time", "volume", "complete", "mid": {"o","h","l","c"},
  "bid": {...}, "ask": {...}}]}`` (``instrument``/``granularity`` keys are used when present);
- a JSON list of ``{"time", "open", "high", "low", "close", "volume"}`` (mid prices);
- CSV with a time column (``time``, ``timestamp``, ``date``, ``datetime`` or an unnamed first
  column) and ``open, high, low, close`` (any case), optional ``volume``, ``complete`` and
  ``bid_open .. ask_close``.

Times without an offset are read in ``tz`` (UTC by default) and the provenance says so.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sep_research import fx
from sep_research._util import JsonInputError, loads_json
from sep_research.data.candles import (
    ASK,
    BID,
    MID,
    CandleError,
    check_granularity,
    check_instrument,
    finish_frame,
)

#: Candle JSON is four levels deep ({"candles": [{"mid": {...}}]}); deeper input is refused.
_JSON_DEPTH = 16
_TIME_NAMES = ("time", "timestamp", "date", "datetime", "unnamed: 0", "")


def _parse_times(values: Any, *, name: str, tz: str) -> tuple[pd.DatetimeIndex, bool]:
    """Parse times; returns the UTC index and whether naive times were localised."""
    raw = pd.Series(values)
    if raw.isna().any():
        pos = int(raw.isna().to_numpy().nonzero()[0][0])
        raise CandleError(f"{name}: missing time at row {pos}")
    numeric = pd.to_numeric(raw, errors="coerce")
    try:
        if numeric.notna().all():  # UNIX seconds (OANDA's Accept-Datetime-Format: UNIX)
            idx = pd.to_datetime(numeric.astype("float64"), unit="s", utc=True)
            return pd.DatetimeIndex(idx), False
        parsed = pd.to_datetime(raw.astype(str), format="ISO8601", errors="raise")
    except (ValueError, TypeError, OverflowError) as exc:
        raise CandleError(f"{name}: bad time value ({exc})") from None
    idx = pd.DatetimeIndex(parsed)
    localised = idx.tz is None
    try:
        idx = idx.tz_localize(tz) if localised else idx
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a DST gap in ``tz``
        raise CandleError(f"{name}: bad time value ({exc})") from None
    idx = idx.tz_convert("UTC")
    # the one range (sep_research.fx), checked before converting to nanoseconds, which
    # pandas cannot hold for years past 2262
    lo = pd.Timestamp(fx.MIN_TIME_NS, tz="UTC")
    hi = pd.Timestamp(fx.MAX_TIME_NS, tz="UTC")
    outside = np.asarray((idx < lo) | (idx >= hi))
    if outside.any():
        pos = int(np.flatnonzero(outside)[0])
        raise CandleError(f"{name}: time {str(raw.iloc[pos])[:40]!r} at row {pos} is outside "
                          "1970-01-01 .. 2100-01-01")
    return idx.as_unit("ns"), localised


def _read_bytes(path: Path, name: str) -> bytes:
    """The file's bytes; a NUL byte means a binary (or corrupt) file, never candles."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CandleError(f"{name}: cannot read the file ({exc.strerror})") from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise CandleError(f"{name}: NUL byte at offset {nul}: a binary or corrupt file, "
                          "not a text candle file")
    return data


def _read_json(path: Path, name: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    try:
        data = loads_json(_read_bytes(path, name), what=name, max_depth=_JSON_DEPTH)
    except JsonInputError as exc:  # malformed, not UTF-8, NaN/Infinity, nested too deeply
        raise CandleError(str(exc)) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise CandleError(f"{name}: malformed JSON ({exc})") from None
    meta: dict[str, Any] = {}
    if isinstance(data, dict):
        if "candles" not in data or not isinstance(data["candles"], list):
            raise CandleError(f"{name}: JSON object has no 'candles' list")
        meta = {k: data[k] for k in ("instrument", "granularity") if k in data}
        rows = data["candles"]
        return _oanda_rows(rows, name), meta
    if isinstance(data, list):
        return _plain_rows(data, name), meta
    raise CandleError(f"{name}: expected a JSON object with 'candles' or a list of candles")


def _oanda_rows(rows: list[Any], name: str) -> pd.DataFrame:
    if not rows:
        raise CandleError(f"{name}: no candles")
    present = [k for k in ("mid", "bid", "ask") if isinstance(rows[0], dict) and k in rows[0]]
    if "mid" not in present and not {"bid", "ask"} <= set(present):
        raise CandleError(f"{name}: candles have no 'mid' (or 'bid' and 'ask') prices")
    cols: dict[str, list[Any]] = {"time": [], "volume": [], "complete": []}
    targets = {"mid": MID, "bid": BID, "ask": ASK}
    for comp in present:
        for col in targets[comp]:
            cols[col] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "time" not in row:
            raise CandleError(f"{name}: candle {i} is not an object with a 'time'")
        cols["time"].append(row["time"])
        cols["volume"].append(row.get("volume", 0))
        cols["complete"].append(row.get("complete", True))  # parsed strictly by normalise()
        for comp in present:
            ohlc = row.get(comp)
            if not isinstance(ohlc, dict):
                raise CandleError(f"{name}: candle {i} ({row['time']}) has no {comp!r} prices")
            for key, col in zip("ohlc", targets[comp], strict=True):
                if key not in ohlc:
                    raise CandleError(f"{name}: candle {i} ({row['time']}) misses {comp}.{key}")
                cols[col].append(ohlc[key])
    frame = pd.DataFrame(cols)
    if "mid" not in present:  # derive mid from bid/ask
        for m, b, a in zip(MID, BID, ASK, strict=True):
            frame[m] = (pd.to_numeric(frame[b]) + pd.to_numeric(frame[a])) / 2
    return frame


def _plain_rows(rows: list[Any], name: str) -> pd.DataFrame:
    if not rows:
        raise CandleError(f"{name}: no candles")
    if not all(isinstance(r, dict) for r in rows):
        raise CandleError(f"{name}: expected a list of candle objects")
    frame = pd.DataFrame(rows)
    frame.columns = [str(c).lower() for c in frame.columns]
    return frame


def _read_csv(path: Path, name: str) -> pd.DataFrame:
    data = _read_bytes(path, name)
    try:
        frame = pd.read_csv(io.BytesIO(data))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            ValueError, OverflowError) as exc:
        raise CandleError(f"{name}: malformed CSV ({exc})") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    time_col = next((c for c in frame.columns if c in _TIME_NAMES), None)
    if time_col is None:
        raise CandleError(
            f"{name}: no time column (expected one of time, timestamp, date, datetime)"
        )
    return frame.rename(columns={time_col: "time"})


def read_candle_file(
    path: str | os.PathLike[str],
    *,
    instrument: str,
    granularity: str,
    check_grid: bool = True,
    tz: str = "UTC",
    source: str | None = None,
) -> pd.DataFrame:
    """Read an OANDA JSON or CSV candle file into a validated candle frame.

    ``source`` defaults to ``file:<file name>``. ``check_grid=False`` accepts times off the
    granularity grid (only for reproducing files such as the seed's, never for research data).
    """
    p = Path(path)
    name = str(path)
    check_instrument(instrument)
    check_granularity(granularity)
    if not p.is_file():
        raise CandleError(f"{name}: no such file")
    suffix = p.suffix.lower()
    meta: dict[str, Any] = {}
    if suffix == ".json":
        frame, meta = _read_json(p, name)
    elif suffix in (".csv", ".txt"):
        frame = _read_csv(p, name)
    else:
        raise CandleError(f"{name}: unknown file type {suffix!r} (expected .json or .csv)")
    for key, given in (("instrument", instrument), ("granularity", granularity)):
        if key in meta and meta[key] != given:
            raise CandleError(f"{name}: file says {key} {meta[key]!r} but {given!r} was given")
    missing = [c for c in ("time", *MID) if c not in frame.columns]
    if missing:
        raise CandleError(f"{name}: missing columns {missing}")
    idx, localised = _parse_times(frame["time"].to_numpy(), name=name, tz=tz)
    frame = frame.drop(columns=["time"])
    frame.index = idx.rename("time")
    note = f"naive times read as {tz}" if localised else ""
    return finish_frame(
        frame,
        source=source or f"file:{p.name}",
        instrument=instrument,
        granularity=granularity,
        name=name,
        check_grid=check_grid,
        note=note,
    )
