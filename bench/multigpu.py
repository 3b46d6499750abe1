"""Sweep throughput on 1 GPU and on all visible GPUs (one Dask worker per GPU), in one call.

::

    python bench/multigpu.py                       # GPUs if any, else CPU workers (says so)
    python bench/multigpu.py --candles 1000000 --configs 2097152 --series 2 --out-dir $OUT
    python bench/multigpu.py --npz sample.npz      # the sample without the backtesting package

Data: the packaged REAL EUR_USD H1 sample (5000 candles), tiled to ``--candles`` candles per
series; series ``s`` starts the tiling at candle ``s * 5000 / series`` (so the series differ).
Tiling repeats real candles with a jump at each seam: the data are real, the history is not.
Grid: a cartesian product of windows x weights x thresholds of about ``--configs`` rows.

What runs, each timed after a warm-up on every worker (compilation excluded):

1. ``direct``: one ``sweep_seed`` call per series in this process, no Dask (GPU 0, or CPU);
2. ``dask x1``: ``sweep_distributed`` on 1 worker (1 GPU, or 1 CPU worker);
3. ``dask xN``: on N workers, one per GPU (``--gpus``, default all visible), or
   ``--cpu-workers`` CPU workers without a GPU;

each for every sweep algorithm of ``--methods`` (default: ``auto``, which takes the
threshold-space sweep where the grid's shape pays, and ``brute``, the reference).

It checks that every run of one algorithm gives bit-identical arrays (and that the two
algorithms' counts are identical), prints configuration-candles per second
and the speed-up over ``dask x1`` as a table, and writes JSON to ``--out-dir`` (default
``$OUT`` when set, else nothing). With one GPU only the N-GPU row is not run (said so).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load_sample(npz: str | None) -> dict[str, np.ndarray]:
    if npz:
        z = np.load(npz)
        return {k: np.asarray(z[k], dtype=np.float64)
                for k in ("open", "high", "low", "close", "volume")}
    from sep_research.data import load_sample as ls
    from sep_research.signals.seed import ohlcv

    return ohlcv(ls())


def make_series(sample: dict[str, np.ndarray], candles: int, series: int) -> dict:
    n0 = sample["close"].shape[0]
    out = {}
    for s in range(series):
        off = (s * n0) // series
        out[f"EUR_USD_tiled_{s}"] = {k: np.resize(np.roll(v, -off), candles)
                                     for k, v in sample.items()}
    return out


def make_grid(configs: int) -> Any:
    """A product grid of about ``configs`` rows: windows x 16384 x conf thresholds (65,536
    configurations per window from 262,144 configurations up)."""
    from sep_research.signals.grid import product_grid

    base = {"w_s": np.linspace(0.2, 0.55, 8), "w_c": np.linspace(0.0, 0.3, 4),
            "w_e": np.linspace(0.3, 0.65, 8), "buy_threshold": np.linspace(0.45, 0.56, 8),
            "sell_threshold": np.linspace(0.46, 0.57, 8)}
    per = int(np.prod([len(v) for v in base.values()]))  # 16384
    conf = [0.6, 0.65, 0.7, 0.75] if configs >= 4 * per else [0.65]
    nwin = max(1, -(-configs // (per * len(conf))))
    windows = np.arange(5, 5 + nwin)
    return product_grid(window=windows, conf_threshold=conf, **base)


def identical(a: dict, b: dict) -> bool:
    return all(a[s].keys() == b[s].keys() and all(np.array_equal(a[s][k], b[s][k])
                                                  for k in a[s]) for s in a)


def warm_up(client, engine: str) -> list:
    """Compile the kernels in every worker on a tiny sweep (kept out of the timings)."""
    def _warm(engine: str) -> str:
        from sep_research.signals.grid import product_grid
        from sep_research.signals.sweep import sweep_seed

        rng = np.random.default_rng(0)
        close = 1.1 + np.cumsum(rng.normal(0, 1e-4, 400))  # synthetic: warm-up only
        data = {"high": close + 1e-4, "low": close - 1e-4, "close": close,
                "volume": np.full(400, 100.0)}
        sweep_seed(data, product_grid(window=[5, 6]), score_start=50, score_end=399,
                   instrument="EUR_USD", half_spread_pips=0.5, engine=engine)
        return os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return sorted(client.run(_warm, engine).values())


def run_dask(datasets, grid, *, n_workers: int, gpus: bool, block_configs: int,
             score_start: int, repeat: int, method: str) -> tuple[dict, dict]:
    from distributed import Client

    from sep_research.sweeps.cli import make_cluster
    from sep_research.sweeps.distributed import cpu_worker_env, gpu_worker_env, sweep_distributed

    env = gpu_worker_env(n_workers) if gpus else cpu_worker_env(n_workers)
    engine = "cuda" if gpus else "cpu"
    t0 = time.perf_counter()
    with make_cluster(n_workers, worker_env=env) as cluster, Client(cluster) as client:
        client.wait_for_workers(n_workers)
        t_start = time.perf_counter() - t0
        devices = warm_up(client, engine)
        t_warm = time.perf_counter() - t0 - t_start
        times, out = [], None
        for _ in range(repeat):
            out = sweep_distributed(datasets, grid, client=client, score_start=score_start,
                                    half_spread_pips=0.5, instrument="EUR_USD", engine=engine,
                                    method=method, block_configs=block_configs)
            times.append(out.seconds)
    busy = {}
    for t in out.tasks:
        busy[t["worker"]] = busy.get(t["worker"], 0.0) + t["seconds"]
    rec = {"what": f"dask x{n_workers}", "method": method, "workers": n_workers,
           "engine": engine,
           "devices": devices, "blocks_per_series": len(out.tasks) // len(datasets),
           "config_candles": out.config_candles, "seconds": float(np.median(times)),
           "seconds_all": times, "start_s": round(t_start, 2), "warm_up_s": round(t_warm, 2),
           "worker_busy_s": sorted(round(v, 3) for v in busy.values())}
    rec["rate"] = rec["config_candles"] / rec["seconds"]
    return rec, out.results


def run_direct(datasets, grid, *, engine: str, score_start: int, repeat: int,
               method: str) -> tuple:
    from sep_research.signals.sweep import sweep_seed

    small = {k: v[:400] for k, v in next(iter(datasets.values())).items()}
    sweep_seed(small, grid.rows(slice(0, 8)), score_start=50, score_end=399, instrument="EUR_USD",
               half_spread_pips=0.5, engine=engine, method=method)  # compile
    times, res = [], {}
    k = len(grid)
    scored = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        for name, data in datasets.items():
            n = data["close"].shape[0]
            res[name] = sweep_seed(data, grid, score_start=score_start, score_end=n - 1,
                                   instrument="EUR_USD", half_spread_pips=0.5, engine=engine,
                                   method=method)
        times.append(time.perf_counter() - t0)
    scored = sum(d["close"].shape[0] - 1 - score_start for d in datasets.values())
    rec = {"what": "direct (no Dask)", "method": method, "workers": 0, "engine": engine,
           "config_candles": k * scored, "seconds": float(np.median(times)),
           "seconds_all": times}
    rec["rate"] = rec["config_candles"] / rec["seconds"]
    return rec, res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--candles", type=int, default=None,
                    help="candles per series (default 1,000,000 on GPUs, 10,000 on CPUs)")
    ap.add_argument("--configs", type=int, default=None,
                    help="about this many configurations (default 2,097,152 on GPUs, "
                    "32,768 on CPUs)")
    ap.add_argument("--series", type=int, default=2, help="instruments (tiled series)")
    ap.add_argument("--gpus", type=int, default=None, help="GPUs for the N-worker run "
                    "(default: all visible)")
    ap.add_argument("--cpu-workers", type=int, default=2, help="workers without a GPU")
    ap.add_argument("--block-configs", type=int, default=None,
                    help="configurations per task (default: configs / 16, so 1 and N workers "
                    "run the same 16 blocks per series)")
    ap.add_argument("--repeat", type=int, default=1, help="timed repetitions (median)")
    ap.add_argument("--no-direct", action="store_true", help="skip the run without Dask")
    ap.add_argument("--methods", nargs="+", default=["auto", "brute"],
                    choices=("auto", "brute", "threshold"),
                    help="sweep algorithms to time (auto: the threshold-space sweep where the "
                    "grid's shape pays; brute: the reference brute force)")
    ap.add_argument("--npz", help="the sample as .npz (open, high, low, close, volume)")
    ap.add_argument("--out-dir", default=os.environ.get("OUT"), help="write multigpu.json here")
    args = ap.parse_args(argv)

    from sep_research.sweeps.distributed import visible_gpu_ids

    gpu_ids = visible_gpu_ids()
    use_gpu = bool(gpu_ids)
    n_many = (args.gpus or len(gpu_ids)) if use_gpu else args.cpu_workers
    candles = args.candles or (1_000_000 if use_gpu else 10_000)
    configs = args.configs or (2_097_152 if use_gpu else 32_768)
    sample = load_sample(args.npz)
    datasets = make_series(sample, candles, args.series)
    grid = make_grid(configs)
    block = args.block_configs or max(1, -(-len(grid) // 16))
    score_start = 200
    gpu_names = []
    if use_gpu:
        try:
            from numba import cuda

            gpu_names = [cuda.get_current_device().name.decode()
                         if isinstance(cuda.get_current_device().name, bytes)
                         else str(cuda.get_current_device().name)]
        except Exception as exc:
            gpu_names = [f"unknown ({exc.__class__.__name__})"]
    header = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "host": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, python "
                f"{platform.python_version()}, numpy {np.__version__}",
        "mode": "GPU workers" if use_gpu else "CPU ONLY: CPU workers stand in for GPUs",
        "gpus_visible": gpu_ids, "gpu_name": gpu_names,
        "data": f"real EUR_USD H1 sample ({sample['close'].shape[0]} candles) tiled to "
                f"{candles} candles x {args.series} series (rotated starts)",
        "grid": f"{len(grid)} configurations ({len(grid.windows)} windows), "
                f"{block} per task",
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
    }
    for k, v in header.items():
        print(f"{k}: {v}", flush=True)
    rows, results = [], {}
    engine = "cuda" if use_gpu else "cpu"
    counts = [1] if n_many <= 1 else [1, n_many]
    for method in args.methods:
        if not args.no_direct:
            rec, results[f"{method} direct"] = run_direct(
                datasets, grid, engine=engine, score_start=score_start, repeat=args.repeat,
                method=method)
            rows.append(rec)
            print(f"{method} direct: {rec['seconds']:.2f} s", flush=True)
        for n in counts:
            rec, results[f"{method} x{n}"] = run_dask(
                datasets, grid, n_workers=n, gpus=use_gpu, block_configs=block,
                score_start=score_start, repeat=args.repeat, method=method)
            rows.append(rec)
            print(f"{method} dask x{n}: {rec['seconds']:.2f} s", flush=True)
    same = {}
    for r in rows:
        base = next(b for b in rows if b["method"] == r["method"] and b["what"] == "dask x1")
        r["speedup_vs_x1"] = r["rate"] / base["rate"]
        r["efficiency"] = r["speedup_vs_x1"] / r["workers"] if r["workers"] else None
        key = r["what"].split()[-1] if r["what"].startswith("dask") else "direct"
        same[f"{r['method']} {key}"] = identical(results[f"{r['method']} x1"],
                                                 results[f"{r['method']} {key}"])
    print()
    unit = "GPU" if use_gpu else "CPU worker"
    print(f"{'run':<18}{'method':<10}{'workers':>8}  {'engine':<6}{'config-candles':>18}"
          f"{'seconds':>10}{'per second':>12}{'speed-up':>10}{'per ' + unit:>16}"
          "  identical to x1")
    for r in rows:
        eff = f"{r['efficiency']:.2f}" if r["efficiency"] is not None else "-"
        key = r["what"].split()[-1] if r["what"].startswith("dask") else "direct"
        print(f"{r['what']:<18}{r['method']:<10}{r['workers']:>8}  {r['engine']:<6}"
              f"{r['config_candles']:>18,}{r['seconds']:>10.3f}{r['rate']:>12.3g}"
              f"{r['speedup_vs_x1']:>10.2f}{eff:>16}  {same[r['method'] + ' ' + key]}")
    if {"auto", "brute"} <= set(args.methods):
        # the two algorithms' counts must agree exactly (their sums differ in rounding only)
        from sep_research.kernels import qfh

        a, b = results["auto x1"], results["brute x1"]
        same_counts = all(np.array_equal(a[s][k], b[s][k]) for s in a for k in qfh.SWEEP_COUNTS)
        print(f"auto and brute counts identical: {same_counts}")
        same["auto vs brute counts"] = same_counts
    notes = []
    if not use_gpu:
        notes.append("no GPU here: CPU workers stood in for GPUs; the figures are CPU figures")
    if use_gpu and n_many <= 1:
        notes.append(f"only {len(gpu_ids)} GPU visible: the N-GPU run was not made")
    for note in notes:
        print(f"NOTE: {note}")
    ok = all(same.values())
    print(f"all runs bit-identical: {ok}")
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "multigpu.json").write_text(json.dumps(
            {**header, "rows": rows, "identical": same, "notes": notes}, indent=1,
            default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
