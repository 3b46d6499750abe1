"""Benchmark: load one million M1 candles (bid, ask, mid) from the Parquet cache.

Target (issue 2): at most 0.5 s on the 2-core development machine. The candles are SYNTHETIC
(a random walk; only the loading speed is measured). Prints a table.
"""

from __future__ import annotations

import statistics
import tempfile
import time

from sep_research.data.cache import CandleCache
from sep_research.data.candles import synthetic_candles

N = 1_000_000


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        cache = CandleCache(root)
        t0 = time.perf_counter()
        frame = synthetic_candles(N, granularity="M1", start="2022-01-03T00:00:00Z")
        t1 = time.perf_counter()
        cache.write(frame)
        t2 = time.perf_counter()
        times = []
        for _ in range(5):
            s = time.perf_counter()
            out = cache.load("EUR_USD", "M1", allow_synthetic=True)
            times.append(time.perf_counter() - s)
        assert len(out) == N
        files = len(list(cache.root.rglob("*.parquet")))
        print(f"{'step':<44}{'seconds':>10}")
        print(f"{'make 1e6 synthetic M1 candles (MBA)':<44}{t1 - t0:>10.3f}")
        print(f"{'write to cache (' + str(files) + ' monthly files)':<44}{t2 - t1:>10.3f}")
        med = statistics.median(times)
        print(f"{'load 1e6 candles, median of 5 (target 0.5)':<44}{med:>10.3f}")
        print(f"{'load 1e6 candles, best of 5':<44}{min(times):>10.3f}")


if __name__ == "__main__":
    main()
