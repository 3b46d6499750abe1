"""Real FX candles that registry packages ship, read from the installed package at run time.

Never synthetic, never copied into this repository. Each sample's provenance names the package
and version (``package:NAME==VERSION``), the file inside it, the package's licence, the price
the candles quote (mid or ask: an ask-only file is labelled ask, never mid) and how its times
were read.

``backtesting-eurusd-h1`` (the default)
    ``backtesting/test/EURUSD.csv`` from ``backtesting`` (PyPI, the backtesting.py project,
    AGPL-3.0): 5000 hourly EUR/USD candles from 2017-04-19 to 2018-02-07, mid OHLC and tick
    volume, no bid/ask. Its docstring calls it "hourly EUR/USD forex data". The times carry no
    zone; the weekly pattern (last candle Friday 20:00 or 21:00, first Sunday 21:00 or 22:00,
    as New York's daylight saving moves the FX week in UTC) fits UTC, so they are read as UTC.
``anytrading-eurusd-h1-ask``
    ``gym_anytrading/datasets/data/FOREX_EURUSD_1H_ASK.csv`` from ``gym-anytrading`` (PyPI,
    MIT): 6225 hourly EUR/USD **ask** candles from 2017-01-01 22:00 to 2017-12-29 21:00 (no mid,
    no bid): ``open .. close`` hold ask prices and the provenance's ``price`` is ``A``. Times
    are written ``DD.MM.YYYY HH:MM:SS.mmm`` with no zone; read as UTC, no candle falls outside
    the FX week (Sunday 17:00 to Friday 17:00 New York) and the week's first and last candles
    sit on its edges in summer and winter. The file's ``Volume`` column is not a tick count
    (fractional values up to 1.6e11, units not stated), so it is not kept: volume is 0. The
    package does not say where the data came from. It is read without importing
    ``gym_anytrading`` (which imports gymnasium).

A package's licence is its own statement (``License`` in its metadata); neither package states
separate terms for its data files.
"""

from __future__ import annotations

import importlib.metadata
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sep_research.data.candles import OHLC_PRICE_KEY, CandleError, finish_frame

SAMPLE_INSTRUMENT = "EUR_USD"
SAMPLE_GRANULARITY = "H1"


@dataclass(frozen=True)
class SampleSpec:
    """One packaged data file and what is known about it."""

    name: str
    distribution: str  # the PyPI name
    file: str  # path inside the installed distribution
    instrument: str
    granularity: str
    price: str  # what open..close hold: "mid" or "ask"
    times: str  # how the times are written and read
    note: str
    time_format: str | None = None  # strptime format; None: ISO 8601
    keep_volume: bool = True


SAMPLES: dict[str, SampleSpec] = {
    spec.name: spec for spec in (
        SampleSpec(
            name="backtesting-eurusd-h1",
            distribution="backtesting",
            file="backtesting/test/EURUSD.csv",
            instrument="EUR_USD", granularity="H1", price="mid",
            times="no zone in the file ('2017-04-19 09:00:00'); read as UTC, which the FX "
                  "week's Friday close and Sunday open fit",
            note="backtesting.py's EURUSD.csv, hourly EUR/USD mid candles; the file has no time "
                 "zone, times read as UTC (the FX week's Friday close and Sunday open fit UTC)",
        ),
        SampleSpec(
            name="anytrading-eurusd-h1-ask",
            distribution="gym-anytrading",
            file="gym_anytrading/datasets/data/FOREX_EURUSD_1H_ASK.csv",
            instrument="EUR_USD", granularity="H1", price="ask",
            times="no zone in the file ('01.01.2017 22:00:00.000', day first); read as UTC, "
                  "which puts every candle inside the FX week (Sunday 17:00 to Friday 17:00 "
                  "New York) with the first and last on its edges",
            note="gym-anytrading's FOREX_EURUSD_1H_ASK.csv, hourly EUR/USD ASK candles (open.."
                 "close are ask prices, there is no mid or bid); times read as UTC (the file "
                 "has no zone); the file's Volume (fractional, not a tick count) is not kept, "
                 "volume is 0; the package does not state where the data came from",
            time_format="%d.%m.%Y %H:%M:%S.%f",
            keep_volume=False,
        ),
    )
}
DEFAULT_SAMPLE = "backtesting-eurusd-h1"


def sample_spec(name: str) -> SampleSpec:
    """The :class:`SampleSpec` of a packaged sample, or CandleError listing the known ones."""
    try:
        return SAMPLES[name]
    except KeyError:
        raise CandleError(f"unknown sample {name!r}: known samples are "
                          f"{', '.join(SAMPLES)}") from None


def _distribution(spec: SampleSpec) -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise CandleError(
            f"the sample {spec.name!r} needs the {spec.distribution!r} package: "
            f"pip install 'sep-research[research]' (or: pip install {spec.distribution})"
        ) from None


def sample_path(name: str = DEFAULT_SAMPLE) -> Path:
    """Path of a sample's file inside its installed package (the package is not imported)."""
    spec = sample_spec(name)
    path = Path(str(_distribution(spec).locate_file(spec.file)))
    if not path.is_file():
        raise CandleError(f"the installed {spec.distribution} package has no {spec.file} "
                          f"(looked at {path})")
    return path


def sample_source(name: str = DEFAULT_SAMPLE) -> str:
    """``package:NAME==VERSION`` of the installed package that ships the sample."""
    spec = sample_spec(name)
    return f"package:{spec.distribution}=={_distribution(spec).version}"


def sample_licence(name: str = DEFAULT_SAMPLE) -> str:
    """The licence the package declares in its metadata (``License``, else a classifier)."""
    md = _distribution(sample_spec(name)).metadata
    text = (md.get("License-Expression") or md.get("License") or "").strip()
    if text and "\n" not in text and len(text) <= 40:
        return text
    for c in md.get_all("Classifier") or []:
        if c.startswith("License ::"):
            return c.split("::")[-1].strip()
    return "not stated"


def load_sample(name: str = DEFAULT_SAMPLE) -> pd.DataFrame:
    """A packaged sample as a validated candle frame with full provenance (see the module
    docstring): real candles from ``package:NAME==VERSION``."""
    spec = sample_spec(name)
    path = sample_path(name)
    source = sample_source(name)
    extra: dict[str, str] = {
        "sample": spec.name,
        "package": source.removeprefix("package:"),
        "file": spec.file,
        "licence": f"{sample_licence(name)} (the package's licence; no separate terms are "
                   "stated for the data)",
        "price": spec.price,
        "times": spec.times,
    }
    if spec.price != "mid":
        extra[OHLC_PRICE_KEY] = spec.price
    if spec.time_format is None and spec.keep_volume:
        from sep_research.data.files import read_candle_file

        frame = read_candle_file(path, instrument=spec.instrument, granularity=spec.granularity,
                                 source=source)
        frame.attrs["provenance"]["note"] = spec.note
        frame.attrs["provenance"]["extra"] = extra
        return frame
    raw = pd.read_csv(io.BytesIO(path.read_bytes()))
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    try:
        times = pd.to_datetime(raw.pop("time"), format=spec.time_format, utc=True)
    except (KeyError, ValueError) as exc:
        raise CandleError(f"{path}: times not in the expected form {spec.time_format!r} "
                          f"({exc})") from None
    if not spec.keep_volume:
        raw = raw.drop(columns=["volume"], errors="ignore")
    raw.index = pd.DatetimeIndex(times, name="time")
    return finish_frame(raw, source=source, instrument=spec.instrument,
                        granularity=spec.granularity, name=str(path), note=spec.note,
                        extra=extra)
