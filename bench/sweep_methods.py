"""Brute force against the threshold-space sweep, side by side in one run; cold and warm.

::

    python bench/sweep_methods.py                              # CPU, the packaged sample
    python bench/sweep_methods.py --engine cuda --candles 1000000 --npz sample.npz

Data: the packaged REAL EUR_USD H1 sample (5000 candles; ``--npz`` reads it from an .npz where
the ``backtesting`` package is missing), tiled to ``--candles`` candles when that is larger
(tiling repeats real candles with a jump at each seam: real prices, not a real history).

Grids (``--sizes``, default ``1e4 1e5 1e6``):

- ``1e4``: the training grid (``sep_research.training.grid.make_grid()``, 10 000 rows: 100
  groups of window and weights, each 5 buy x 5 sell x 4 confidence thresholds);
- ``1e5``: 131 072 rows = 4 windows x 4 w_s x 16 buy x 8 sell x 8 confidence x 4 coherence x
  2 minimum moves (16 groups of 8192);
- ``1e6``: 1 048 576 rows = the 1e5 grid x 4 extra spreads x 2 (16 groups of 65 536).

Methods: ``brute`` (the float brute force, ``run_sweep(method="brute")``, the reference)
and ``auto`` (the default: threshold-space sweep per group, exact sums). Two levels:

- ``kernel``: ``kernels.engine.run_sweep`` on prepared arrays (planning included);
- ``sweep_seed``: end to end (features, labels, planning, sweep, result in grid order).

``warm`` is the best of ``--reps`` calls after one untimed call (this machine may be shared:
the best run is the least disturbed); ``cold`` is the first ``sweep_seed`` call in a fresh
process (``--no-cold`` skips it), with the disk cache of the CPU kernels as it is (warm after
the first-ever run; ``SEP_NUMBA_CACHE_DIR`` set to an empty folder measures a first-ever run);
the CUDA kernels are cached the same way (since fae6869; before, every process compiled
them). Effective configuration-candles per second =
configurations x scored candles / seconds.

Checks (printed): counts of ``auto`` equal to ``brute`` exactly; sums within the rounding bound
of ``sep_research.kernels.fixed`` (largest error / bound); with ``--check-cpu`` (GPU runs) the
GPU's ``auto`` bit-identical to the CPU's.

The ceiling section states the bytes read and the operations per (group, candle) of the
threshold sweep's one pass, and on a GPU measures the device's copy bandwidth and int64
atomic rate to put a floor under the sweep's time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZES = ("1e4", "1e5", "1e6")

from bench.kernels import _sweep_inputs, load_sample, tile


def data(npz: str | None, candles: int | None) -> dict[str, np.ndarray]:
    x = load_sample(npz)
    return tile(x, candles) if candles and candles != len(x["close"]) else x


def make_grid(size: str) -> Any:
    from sep_research.signals.grid import ConfigGrid, product_grid

    if size == "smoke":  # a check of this script's code paths (e.g. in the CUDA simulator)
        return product_grid(window=[5, 11], buy_threshold=np.linspace(0.4, 0.6, 6),
                            conf_threshold=[0.55, 0.6, 0.65, 0.7],
                            sell_threshold=[0.45, 0.5, 0.52], spread=[0.0, 0.5])
    if size == "1e4":
        from sep_research.training.grid import make_grid as training_grid

        return training_grid()
    spreads = [0.0, 0.5, 1.0, 2.0] if size == "1e6" else [0.0]
    g = product_grid(window=[9, 11, 13, 15], w_s=[0.3, 0.35, 0.4, 0.45],
                     buy_threshold=np.linspace(0.42, 0.58, 16),
                     sell_threshold=np.linspace(0.44, 0.6, 8),
                     conf_threshold=np.linspace(0.55, 0.75, 8),
                     coh_threshold=[0.2, 0.3, 0.4, 0.5], min_move=[0.0, 0.5], spread=spreads)
    if size == "1e6":  # x 2: the same rows twice (1 048 576), the second with other minimum moves
        cols = {k: np.concatenate([v, v + (0.25 if k == "min_move" else 0.0)])
                for k, v in g.columns().items()}
        g = ConfigGrid.from_columns(cols)
    return g


def prepared(x, grid, spread: float):
    """(g, fw, cv) as sweep_seed builds them (causal, its row order), ``spread`` pips."""
    g, fw, cv = _sweep_inputs(x, grid)
    cv[3] = np.where(np.isnan(cv[3]), np.nan, spread)
    return g, fw, cv


def sum_bound_ratio(g, cv, lo, hi, sb, sx) -> float:
    """Largest |exact - brute| / bound over all rows and sums (bound: kernels.fixed)."""
    from sep_research.kernels import fixed, qfh

    mv = cv[2, lo:hi]
    lab = ~np.isnan(mv)
    mv, sp = mv[lab], cv[3, lo:hi][lab]
    worst = 0.0
    extra = g[:, qfh.G_SPREAD]
    for e in np.unique(extra):
        rows = extra == e
        t = np.maximum(np.abs((mv - sp) - e), np.abs((-mv - sp) - e))
        for q, (a, sq) in enumerate(((t.sum(), False), ((t * t).sum(), True)) * 2):
            b = fixed.sum_bound(float(a), int(lab.sum()), hi - lo, sq)
            worst = max(worst, float(np.max(np.abs(sx[q, rows] - sb[q, rows])) / b))
    return worst


def timed(f, reps: int, sync=None) -> float:
    f()
    if sync:
        sync()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f()
        if sync:
            sync()
        best = min(best, time.perf_counter() - t)
    return best


def child(args) -> None:
    """Cold: the first sweep_seed call of this process (numba imported inside it)."""
    x = data(args.npz, args.candles)
    grid = make_grid(args.child_size)
    n = len(x["close"])
    from sep_research.signals.sweep import sweep_seed

    kw = {"instrument": "EUR_USD", "half_spread_pips": args.spread / 2.0,
          "engine": args.engine, "method": args.child_method}
    t = time.perf_counter()
    sweep_seed(x, grid, score_start=0, score_end=n - 1, **kw)
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    sweep_seed(x, grid, score_start=0, score_end=n - 1, **kw)
    t2 = time.perf_counter() - t
    print(json.dumps({"cold": t1, "second": t2}))


def cold(args, size: str, method: str) -> dict:
    cmd = [sys.executable, __file__, "--child-size", size, "--child-method", method,
           "--engine", args.engine, "--spread", str(args.spread)]
    if args.npz:
        cmd += ["--npz", args.npz]
    if args.candles:
        cmd += ["--candles", str(args.candles)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                           [str(ROOT)] + [q for q in [os.environ.get("PYTHONPATH")] if q])))
    if r.returncode != 0:
        return {"error": r.stderr[-800:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def event_median(f, reps: int = 5) -> float:
    """Median device time of f() in seconds (CUDA events, after one untimed call)."""
    from numba import cuda

    f()
    cuda.synchronize()
    ts = []
    for _ in range(reps):
        e0, e1 = cuda.event(), cuda.event()
        e0.record()
        f()
        e1.record()
        e1.synchronize()
        ts.append(e0.elapsed_time(e1) / 1e3)
    return float(np.median(ts))


def gpu_ceilings(rows_out: list, notes: list, smoke: bool = False) -> dict:
    """Measured device copy bandwidth and int64 atomic rates (hot and spread addresses)."""
    from numba import cuda

    @cuda.jit
    def atomics(h, n_cells, reps):
        i = cuda.grid(1)
        for r in range(reps):
            cuda.atomic.add(h, (i * 7 + r * 13) % n_cells, 1)

    size = 1 << (12 if smoke else 27)  # 1 GiB
    a = cuda.to_device(np.ones(size))
    b = cuda.device_array(size, dtype=np.float64)

    def copy():
        b.copy_to_device(a)

    t = event_median(copy)
    if t <= 0:  # the simulator's events
        return {}
    bw = 2 * a.nbytes / t
    out = {"copy_bytes_per_s": bw}
    from sep_research.kernels import cu

    host = np.random.default_rng(0).random(1 << (12 if smoke else 26))  # 512 MiB
    for name, f in (("h2d_pageable", lambda: cuda.to_device(host)),
                    ("h2d_staged", lambda: cu._to_device(host))):
        t = timed(f, 2, cuda.synchronize)
        out[f"{name}_bytes_per_s"] = host.nbytes / t
    dh = cuda.to_device(host)
    for name, f in (("d2h_pageable", dh.copy_to_host), ("d2h_staged", lambda: cu._to_host(dh))):
        t = timed(f, 2, cuda.synchronize)
        out[f"{name}_bytes_per_s"] = host.nbytes / t
    notes.append("host<->device, 512 MiB: " + ", ".join(
        f"{k}: {out[f'{k}_bytes_per_s'] / 1e9:.1f} GB/s"
        for k in ("h2d_pageable", "h2d_staged", "d2h_pageable", "d2h_staged")))
    threads, reps = (1 << 9, 2) if smoke else (1 << 22, 16)
    for cells in (256, 4096, 1 << 20):
        h = cuda.device_array(cells, dtype=np.int64)
        t = event_median(lambda h=h, cells=cells: atomics[threads // 256, 256](h, cells, reps))
        out[f"atomics_per_s_{cells}_cells"] = threads * reps / t
    notes.append(f"GPU device-to-device copy: {bw / 1e12:.2f} TB/s (read + write, 1 GiB); "
                 "int64 atomicAdd: " + ", ".join(
                     f"{out[f'atomics_per_s_{c}_cells'] / 1e9:.0f}e9/s over {c} cells"
                     for c in (256, 4096, 1 << 20)))
    return out


def gpu_kernel_times(p, g, fw, cv, n) -> dict:
    """Device time of the threshold sweep's kernels alone (inputs already on the device),
    and of its scatter kernel alone, for both thread mappings (events, median of 5)."""
    from numba import cuda

    from sep_research.kernels import cu

    d_fw, d_cv = cu._to_device(fw), cu._to_device(cv)
    k = g.shape[0]
    d_c = cuda.device_array((7, k), dtype=np.int64)
    d_s = cuda.device_array((4, k), dtype=np.float64)
    b = p.batches[0]
    d_h = cuda.device_array(b.cells, dtype=np.int64)
    d_t = [cu._to_device(a) for a in (b.tg, b.tw, b.tv, b.td)]
    out = {}
    ev = event_median
    nq = b.tg.shape[0]
    for qfast in (False, True):
        out[f"tsweep_device_s_qfast_{qfast}"] = ev(lambda q=qfast: [
            cu.tsweep_device(bb, d_fw, d_cv, 0, n - 1, d_c, d_s, 128, q) for bb in p.batches])
        with cu.no_fma():
            out[f"scatter_s_qfast_{qfast}"] = ev(lambda q=qfast: cu.tscatter_kernel[
                cu._blocks(nq * (n - 1), 128), 128](d_h, *d_t, d_fw, d_cv, 0, n - 1, q))
    return out


def breakdown(args, x, size: str, notes: list) -> dict:
    """Where sweep_seed's time goes on the largest grid (auto): features, planning, the
    sweep on prepared arrays, and the whole call (best of --reps each)."""
    from sep_research.kernels import engine as eng
    from sep_research.kernels import plan
    from sep_research.signals.seed import SEED
    from sep_research.signals.sweep import sweep_seed

    grid = make_grid(size)
    n = len(x["close"])
    g, fw, cv = prepared(x, grid, args.spread)
    windows = grid.windows
    sync = None
    if args.engine == "cuda":
        from numba import cuda

        sync = cuda.synchronize
    out = {
        "features_s": timed(lambda: eng.compute_features(
            x["close"], x["high"], x["low"], x["volume"], windows, SEED.to_vector(1e-4),
            engine=args.engine), args.reps, sync),
        "plan_s": timed(lambda: (plan._RECENT.clear(), plan.plan_sweep(g, cv, 0, n - 1)),
                        args.reps),
        "run_sweep_s": timed(lambda: eng.run_sweep(g, fw, cv, 0, n - 1, engine=args.engine),
                             args.reps, sync),
        "sweep_seed_s": timed(lambda: sweep_seed(x, grid, score_start=0, score_end=n - 1,
                                                 instrument="EUR_USD",
                                                 half_spread_pips=args.spread / 2.0,
                                                 engine=args.engine),
                              args.reps, sync),
    }
    notes.append(f"breakdown of sweep_seed on the {size} grid ({args.engine}): " + ", ".join(
        f"{k[:-2]} {v:.3f} s" for k, v in out.items()))
    return out


def ops_per_group_candle(p) -> tuple[float, float]:
    """(FP64 operations, bytes read) per (group, candle) of the threshold pass, counted from
    thresholds.candle_bins and the scatter (contraction off; a comparison or a conversion
    counts one): scores 17 (as the brute force); per threshold value a comparison (x2 with the
    product x vm for buy and sell; confidence twice, BUY and SELL; min move twice);
    xb, xs 2; per extra spread and side: x - E, (x - E)^2 and two fixed_limbs of 10 each."""
    tg = p.batches[0].tg
    from sep_research.kernels import thresholds as t

    nb, ns, nc, nh, nm, ne = (float(np.mean(tg[:, c])) for c in (
        t.TG_B_N, t.TG_S_N, t.TG_C_N, t.TG_H_N, t.TG_M_N, t.TG_E_N))
    ops = 17 + 2 * nb + 2 * ns + 2 * nc + nh + 2 * nm + 2 + ne * 2 * (2 + 20)
    return ops, 72.0  # fw: has, stability, coherence, phase, tf; cv: vf, vm, move, spread


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--candles", type=int, default=None, help="tile the sample to N candles")
    ap.add_argument("--npz")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), help="1e4 1e5 1e6 (or smoke)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--brute-reps-1e6", type=int, default=1)
    ap.add_argument("--spread", type=float, default=1.0, help="per-candle spread, pips")
    ap.add_argument("--no-cold", action="store_true")
    ap.add_argument("--check-cpu", action="store_true", help="GPU: compare with the CPU")
    ap.add_argument("--commit", default=None)
    ap.add_argument("--json-out")
    ap.add_argument("--child-size", help=argparse.SUPPRESS)
    ap.add_argument("--child-method", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_size:
        child(args)
        return 0
    from sep_research.kernels import engine as eng
    from sep_research.kernels import plan
    from sep_research.signals.sweep import sweep_seed

    eng.resolve_engine(args.engine)
    x = data(args.npz, args.candles)
    n = len(x["close"])
    sync = None
    info = {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "engine": args.engine, "candles": n,
            "commit": args.commit, "load_avg_start": os.getloadavg()}
    import numba

    info["numba"] = numba.__version__
    info["numba_threads"] = numba.get_num_threads()
    if args.engine == "cuda":
        from numba import cuda

        sync = cuda.synchronize
        if not eng.cuda_simulated():
            dev = cuda.get_current_device()
            name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
            info.update(gpu=name, sms=dev.MULTIPROCESSOR_COUNT, clock_hz=dev.CLOCK_RATE * 1e3)
    print(json.dumps(info))
    rows, notes = [], []
    results = {}
    for size in args.sizes:
        grid = make_grid(size)
        k = len(grid)
        g, fw, cv = prepared(x, grid, args.spread)
        cc = k * (n - 1)
        p = plan.plan_sweep(g, cv, 0, n - 1)
        notes.append(f"{size}: {k} configurations, {p.n_groups} threshold groups "
                     f"({p.n_threshold_rows} rows), {p.exact.size} exact brute-force rows, "
                     f"{sum(b.cells for b in p.batches)} histogram cells")
        res = {}
        for method in ("brute", "auto"):
            reps = args.brute_reps_1e6 if (method == "brute" and size == "1e6") else args.reps
            out = {}

            def kern(method=method, out=out, g=g, fw=fw, cv=cv):
                out["r"] = eng.run_sweep(g, fw, cv, 0, n - 1, engine=args.engine, method=method)

            def e2e(grid=grid, method=method):
                sweep_seed(x, grid, score_start=0, score_end=n - 1, instrument="EUR_USD",
                           half_spread_pips=args.spread / 2.0, engine=args.engine,
                           method=method)

            tk = timed(kern, reps, sync)
            te = timed(e2e, reps, sync)
            c = {} if args.no_cold else cold(args, size, method)
            res[method] = out["r"]
            rows.append((size, k, method, c.get("cold"), tk, te, cc))
            results[f"{size}/{method}"] = {"configs": k, "candles": n - 1,
                                           "kernel_s": tk, "sweep_seed_s": te, **c}
            print(f"{size} {method}: kernel {tk:.4f} s, sweep_seed {te:.4f} s, cold "
                  f"{c.get('cold')}", flush=True)
        (cb, sb), (ca, sa) = res["brute"], res["auto"]
        same = bool(np.array_equal(cb, ca))
        ratio = sum_bound_ratio(g, cv, 0, n - 1, sb, sa)
        notes.append(f"{size}: auto counts == brute counts: {same}; sums |auto - brute| / "
                     f"bound <= {ratio:.2e}")
        results[f"{size}/check"] = {"counts_equal": same, "sum_error_over_bound": ratio}
        if args.check_cpu and args.engine == "cuda":
            c2, s2 = eng.run_sweep(g, fw, cv, 0, n - 1, engine="cpu")
            ok = bool(np.array_equal(c2, ca) and np.array_equal(s2, sa))
            notes.append(f"{size}: GPU auto bit-identical to CPU auto: {ok}")
            results[f"{size}/cpu_equal"] = ok
        if p.batches:
            ops, nbytes = ops_per_group_candle(p)
            results[f"{size}/ops"] = {"fp64_ops_per_group_candle": ops,
                                      "bytes_per_group_candle": nbytes,
                                      "group_candles": p.n_groups * (n - 1)}
            if args.engine == "cuda":
                results[f"{size}/gpu_kernels"] = gpu_kernel_times(p, g, fw, cv, n)
    if args.engine == "cuda":
        results["gpu_ceilings"] = gpu_ceilings(rows, notes, smoke=args.sizes == ["smoke"])
    results["breakdown"] = breakdown(args, x, args.sizes[-1], notes)
    hdr = (f"{'grid':5s} {'configs':>9s} {'method':7s} {'cold s':>8s} {'kernel s':>9s} "
           f"{'kernel cc/s':>11s} {'e2e s':>8s} {'e2e cc/s':>10s} {'e2e x brute':>11s}")
    print()
    print(f"candles scored: {n - 1}; engine {args.engine}; effective configuration-candles/s")
    print(hdr)
    base = {}
    for size, k, method, c, tk, te, cc in rows:
        if method == "brute":
            base[size] = te
        sp = base[size] / te if size in base else float("nan")
        cs = f"{c:8.3f}" if c is not None else f"{'-':>8s}"
        print(f"{size:5s} {k:9d} {method:7s} {cs} {tk:9.4f} {cc / tk:11.3g} {te:8.4f} "
              f"{cc / te:10.3g} {sp:11.1f}")
    print()
    for line in notes:
        print("- " + line)
    info["load_avg_end"] = os.getloadavg()
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"info": info, "results": results,
                                                   "notes": notes}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
