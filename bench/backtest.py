"""Benchmark: the numba backtest against its slow pure-Python reference.

SYNTHETIC candles (a random walk; only speed is measured). Prints a table: compile time, the
backtest of 10^6 M1 candles with stop-loss and take-profit, and the reference on 2*10^4.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from sep_research.backtest.simulation import quote_arrays, run_backtest
from sep_research.data.candles import synthetic_candles

N = 1_000_000
N_REF = 20_000


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the reference lives in tests/
    from tests.reference_backtest import reference_backtest

    frame = synthetic_candles(N, granularity="M1", start="2022-01-03T00:00:00Z")
    rng = np.random.default_rng(0)
    target = np.repeat(rng.choice([-1, 0, 1], size=N // 10), 10).astype(np.int8)
    kw = {"instrument": "EUR_USD", "stop_loss_pips": 4.0, "take_profit_pips": 6.0}
    t0 = time.perf_counter()
    run_backtest(frame.iloc[:100], target[:100], **kw)
    t_compile = time.perf_counter() - t0
    times = []
    for _ in range(3):
        s = time.perf_counter()
        res = run_backtest(frame, target, **kw)
        times.append(time.perf_counter() - s)
    bid, ask, _ = quote_arrays(frame.iloc[:N_REF], pip=1e-4)
    s = time.perf_counter()
    reference_backtest(target[:N_REF], np.ones(N_REF), bid.tolist(), ask.tolist(), 1e-4,
                       stop_loss_pips=4.0, take_profit_pips=6.0)
    t_ref = time.perf_counter() - s
    print(f"{'step':<52}{'seconds':>10}")
    print(f"{'compile (first call, 100 candles)':<52}{t_compile:>10.3f}")
    print(f"{'numba backtest, 1e6 candles, best of 3':<52}{min(times):>10.3f}")
    print(f"{'  trades':<52}{res.n_trades:>10d}")
    print(f"{'reference (pure Python), 2e4 candles':<52}{t_ref:>10.3f}")
    print(f"{'  reference extrapolated to 1e6 candles':<52}{t_ref * N / N_REF:>10.1f}")


if __name__ == "__main__":
    main()
