"""``sep demo``: the main job, end to end on real data, with no account or network."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the main job end to end on the real sample data")
    p.add_argument("--cache-dir", help="cache folder (default: $SEP_CACHE_DIR or ./data/cache)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from sep_research.data.cache import CandleCache
    from sep_research.data.sample import load_sample
    from sep_research.data.summary import summarise

    print("[1/2] loading the packaged real EUR_USD H1 sample into the cache")
    cache = CandleCache(args.cache_dir)
    cache.write(load_sample())
    frame = cache.load("EUR_USD", "H1")
    print(f"      cache: {cache.root}")
    print("[2/2] validating and summarising")
    print(summarise(frame))
    return 0
