"""One entry point for research code to get candles: the sample, the cache or a file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from sep_research.data.candles import CandleError, require_authentic


def load_candles(
    source: str | os.PathLike[str] = "sample",
    instrument: str = "EUR_USD",
    granularity: str = "H1",
    *,
    start: Any = None,
    end: Any = None,
    cache_dir: str | os.PathLike[str] | None = None,
    cache_source: str | None = None,
    allow_synthetic: bool = False,
) -> pd.DataFrame:
    """Candles for research, refusing synthetic data unless ``allow_synthetic``.

    ``source``: ``"sample"`` (the default packaged EUR_USD H1 sample), ``"sample:NAME"`` (a
    packaged sample by name, see :data:`sep_research.data.sample.SAMPLES`), ``"cache"`` (the
    Parquet cache,
    optionally a specific ``cache_source`` such as ``oanda:practice``), or a path to a JSON/CSV
    candle file. ``start``/``end`` bound the candle start times (``start <= t < end``).
    """
    from sep_research.data.cache import CandleCache, _to_utc

    if str(source) == "sample" or str(source).startswith("sample:"):
        from sep_research.data.sample import DEFAULT_SAMPLE, SAMPLES, load_sample, sample_spec

        name = str(source).partition(":")[2] or DEFAULT_SAMPLE
        spec = sample_spec(name)
        if (instrument, granularity) != (spec.instrument, spec.granularity):
            raise CandleError(
                f"the packaged sample {name} is {spec.instrument} {spec.granularity}, "
                f"not {instrument} {granularity}: use source='cache' or a file "
                f"(samples: {', '.join(SAMPLES)})"
            )
        frame = load_sample(name)
    elif str(source) == "cache":
        frame = CandleCache(cache_dir).load(
            instrument, granularity, source=cache_source, allow_synthetic=allow_synthetic,
            start=start, end=end,
        )
    else:
        from sep_research.data.files import read_candle_file

        if not Path(source).exists():
            raise CandleError(
                f"unknown data source {str(source)!r}: expected 'sample', 'cache' or a file path"
            )
        frame = read_candle_file(source, instrument=instrument, granularity=granularity)
    require_authentic(frame, allow_synthetic=allow_synthetic, what="load_candles")
    t0, t1 = _to_utc(start, "start"), _to_utc(end, "end")
    if t0 is not None or t1 is not None:
        from sep_research.data.candles import attach_provenance, get_provenance, make_provenance

        prov = get_provenance(frame)
        lo = frame.index.searchsorted(t0) if t0 is not None else 0
        hi = frame.index.searchsorted(t1) if t1 is not None else len(frame)
        frame = frame.iloc[lo:hi].copy()
        if frame.empty:
            raise CandleError(f"no {instrument} {granularity} candles between {start} and {end}")
        attach_provenance(frame, make_provenance(
            frame, source=prov.source, instrument=prov.instrument, granularity=prov.granularity,
            obtained_at=prov.obtained_at, note=prov.note, extra=prov.extra,
        ))
    return frame
