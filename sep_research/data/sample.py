"""The packaged real sample: EUR/USD hourly candles shipped inside the ``backtesting`` package.

``backtesting`` (PyPI, the backtesting.py project) ships ``backtesting/test/EURUSD.csv``: 5000
hourly EUR/USD candles from 2017-04-19 to 2018-02-07 (mid OHLC and tick volume, no bid/ask).
Its docstring describes it as "hourly EUR/USD forex data"; the file's times carry no zone. The
weekly pattern (last candle on Friday 20:00, first on Sunday 21:00 or 22:00) matches the FX
week in UTC, so the times are read as UTC, and the provenance note says so.

The file is read at run time from the installed package and never copied into this repository.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import pandas as pd

from sep_research.data.candles import CandleError

SAMPLE_INSTRUMENT = "EUR_USD"
SAMPLE_GRANULARITY = "H1"
_PACKAGE = "backtesting"
_RELATIVE = ("test", "EURUSD.csv")


def sample_path() -> Path:
    """Path of the sample CSV inside the installed ``backtesting`` package (not imported)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CandleError(
            "the packaged sample needs the 'backtesting' package: "
            "pip install 'sep-research[research]' (or: pip install backtesting)"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_RELATIVE)
    if not path.is_file():
        raise CandleError(f"the installed backtesting package has no {path}")
    return path


def sample_source() -> str:
    return f"package:{_PACKAGE}=={importlib.metadata.version(_PACKAGE)}"


def load_sample() -> pd.DataFrame:
    """Real EUR_USD H1 candles (mid + volume) with ``package:backtesting==VERSION`` provenance."""
    from sep_research.data.files import read_candle_file

    frame = read_candle_file(
        sample_path(),
        instrument=SAMPLE_INSTRUMENT,
        granularity=SAMPLE_GRANULARITY,
        source=sample_source(),
    )
    frame.attrs["provenance"]["note"] = (
        "backtesting.py's EURUSD.csv, hourly EUR/USD mid candles; the file has no time zone, "
        "times read as UTC (the FX week's Friday close and Sunday open fit UTC)"
    )
    frame.attrs["provenance"]["extra"] = {"file": "/".join((_PACKAGE, *_RELATIVE))}
    return frame
