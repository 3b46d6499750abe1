"""Benchmark: walk-forward on the packaged real sample (5000 EUR_USD H1 candles), full grid.

Target (issue 4): 10^4 configurations per fold, 5 folds, at most 30 s on the 2-core
development machine, compile time included. Runs in a child process with an empty numba
cache folder, so that the compile time is a cold compile; prints the split between imports,
compile (every kernel JIT-compiled on a tiny synthetic input), and the run itself (feature
table, sweeps, out-of-sample evaluation with 1000 random baselines, PBO and SPA).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time


def compile_kernels(engine: str = "auto") -> dict[str, float]:
    """Compile (JIT) every kernel the walk-forward uses on a tiny synthetic input (labelled
    synthetic; nothing of it is kept). Seconds per step (``features``, ``sweep``,
    ``signals``, ``backtest``, ``total``), so that the benchmark reports compile time apart
    from run time."""
    from sep_research.backtest.simulation import run_backtest
    from sep_research.data.candles import synthetic_candles
    from sep_research.signals.seed import seed_signals
    from sep_research.training.grid import small_grid
    from sep_research.training.walkforward import prepare_sweep, sweep

    out: dict[str, float] = {}
    t0 = time.perf_counter()
    frame = synthetic_candles(300, granularity="H1", seed=0)
    grid = small_grid()
    t = time.perf_counter()
    si = prepare_sweep(frame, grid, instrument="EUR_USD", half_spread_pips=None, engine=engine)
    out["features"] = time.perf_counter() - t
    t = time.perf_counter()
    sweep(si, 20, 200, engine=engine)
    out["sweep"] = time.perf_counter() - t
    t = time.perf_counter()
    sig = seed_signals(frame, grid.params(0), engine=engine)
    out["signals"] = time.perf_counter() - t
    t = time.perf_counter()
    run_backtest(frame, sig.action, instrument="EUR_USD")
    out["backtest"] = time.perf_counter() - t
    out["total"] = time.perf_counter() - t0
    return out


def child() -> None:
    t0 = time.perf_counter()
    from sep_research.data import load_sample
    from sep_research.training.grid import make_grid
    from sep_research.training.walkforward import walk_forward

    frame = load_sample()
    t_import = time.perf_counter() - t0
    comp = compile_kernels("cpu")
    t_compile = comp["total"]
    grid = make_grid()
    t1 = time.perf_counter()
    res = walk_forward(frame, instrument="EUR_USD", granularity="H1", grid=grid, n_folds=5,
                       half_spread_pips=0.5, engine="cpu", progress=False)
    t_run = time.perf_counter() - t1
    total = time.perf_counter() - t0
    tm = res.timings
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'step':<52}{'seconds':>10}")
    print(f"{'imports + load the sample (5000 candles)':<52}{t_import:>10.2f}")
    print(f"{'compile (cold numba cache)':<52}{t_compile:>10.2f}")
    for key in ("features", "sweep", "signals", "backtest"):
        print(f"{'  compile: ' + key:<52}{comp[key]:>10.2f}")
    print(f"{'  run: feature table, ' + str(len(grid.windows)) + ' windows':<52}"
          f"{tm['features_s']:>10.2f}")
    print(f"{'  run: sweeps, 5 folds x 2 ranges x ' + str(len(grid)) + ' configs':<52}"
          f"{tm['sweeps_s']:>10.2f}")
    print(f"{'  run: OOS evaluation (2 rules, 1000 random each)':<52}"
          f"{tm['evaluation_s']:>10.2f}")
    print(f"{'  run: PBO (16 blocks) + SPA (500 reps)':<52}{tm['overfitting_s']:>10.2f}")
    print(f"{'run total (walk_forward)':<52}{t_run:>10.2f}")
    print(f"{'TOTAL incl. imports and compile (target 30)':<52}{total:>10.2f}")


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        subprocess.run([sys.executable, __file__, "--child"], env=env, check=True)


if __name__ == "__main__":
    if "--child" in sys.argv:
        child()
    else:
        main()
