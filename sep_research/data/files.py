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

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from sep_research.data.candles import (
    ASK,
    BID,
    MID,
    CandleError,
    check_granularity,
    check_instrument,
    finish_frame,
)

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
    if idx.tz is None:
        return idx.tz_localize(tz).tz_convert("UTC"), True
    return idx.tz_convert("UTC"), False


def _read_json(path: Path, name: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    try:
        with path.open("rb") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
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
        cols["complete"].append(bool(row.get("complete", True)))
        for comp in present:
            ohlc = row.get(comp)
            if not isinstance(ohlc, dict):
                raise CandleError(f"{name}: candle {i} ({row['time']}) has no {comp!r} prices")
            for key, col in zip("ohlc", targets[comp]):
                if key not in ohlc:
                    raise CandleError(f"{name}: candle {i} ({row['time']}) misses {comp}.{key}")
                cols[col].append(ohlc[key])
    frame = pd.DataFrame(cols)
    if "mid" not in present:  # derive mid from bid/ask
        for m, b, a in zip(MID, BID, ASK):
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
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
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
