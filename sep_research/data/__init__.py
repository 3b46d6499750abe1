"""Candles with provenance: the schema, validation, the Parquet cache, loaders and downloads.

Public API (imports are lazy so that ``import sep_research.data`` stays cheap)::

    from sep_research.data import load_sample, read_candle_file, CandleCache, load_candles
"""

from __future__ import annotations

from sep_research._util import lazy_getattr

_LAZY = {
    "load_sample": "sep_research.data.sample",
    "sample_path": "sep_research.data.sample",
    "read_candle_file": "sep_research.data.files",
    "CandleCache": "sep_research.data.cache",
    "default_cache_dir": "sep_research.data.cache",
    "load_candles": "sep_research.data.load",
    "Provenance": "sep_research.data.candles",
    "CandleError": "sep_research.data.candles",
    "validate": "sep_research.data.candles",
    "get_provenance": "sep_research.data.candles",
    "synthetic_candles": "sep_research.data.candles",
    "require_authentic": "sep_research.data.candles",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = list(_LAZY)
