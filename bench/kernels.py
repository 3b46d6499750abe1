"""Benchmark of the QFH kernels: per-candle features and the fused sweep. Prints a table.

Data: the packaged REAL EUR_USD H1 sample (5000 candles) tiled to ``--candles`` candles
(default one million); tiling repeats real data, so the arithmetic is that of real data.
``--npz`` reads the same sample from an .npz (open/high/low/close/volume) where the
``backtesting`` package is not installed (the GPU machine).

Features (candles per second, causal, seed preset, W = 11):
  naive      tests/naive.py, plain Python lists (measured on a slice, rate extrapolated)
  python     the scalar bodies run uncompiled (the live runner's path; on a slice)
  numpy      a straightforward vectorised numpy version written here (window metrics,
             coherence, stability, phase; full windows only), checked against the kernels
  cpu        numba, all cores;  cuda  numba-cuda (when a GPU is present)

Sweep (configuration-candles per second): the fused kernel over a grid of seed-rule
configurations on the tiled series; CPU on a smaller grid, GPU on a large one. The GPU's
ceiling is computed from the FP64 operations per configuration-candle (counted below) and
the device's SM count and clock, and the fraction reached is reported.

``--check`` also compares GPU and CPU kernels on real data (the seed-reference files when
``--seed-dir`` holds them, and the sample): counts exactly, floats within 1e-12 relative.

Run: ``python bench/kernels.py [--engine cpu|cuda|all] [--candles N] [--check]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sep_research.kernels import engine as eng
from sep_research.kernels import qfh
from sep_research.signals.grid import ConfigGrid, product_grid
from sep_research.signals.seed import SEED
from sep_research.signals.sweep import sweep_seed

# FP64 instructions per configuration-candle of qfh.sweep_partial (branch-free body), counted
# from the source with contraction off (each add, mul, compare, int->float one instruction):
#   candle checks: has == 0, isnan(move)                                                =  2
#   scores: buy 2 sub + 3 mul + 2 add, sell 1 sub + 3 mul + 2 add, 4 mul by vf and tf  = 17
#   decision: bt*vm, st*vm (2 mul), 2 compares; labels: -mm (1), 2 compares              =  7
#   HC: 2 compares; pips: int->float, mul, 2 sub (4); flags to float (2)                 =  8
#   sums: pips*fn + add, pips*pips, *fn + add, pips*fh + add, *fh + add                  =  9
FP64_OPS_PER_CONFIG_CANDLE = 2 + 17 + 7 + 8 + 9  # = 43
FP64_LANES_PER_SM = 64  # Hopper (H100/H200): 64 FP64 units per SM, 1 op each per clock


def load_sample(npz: str | None) -> dict[str, np.ndarray]:
    if npz:
        z = np.load(npz)
        return {k: np.asarray(z[k], dtype=np.float64) for k in
                ("open", "high", "low", "close", "volume")}
    from sep_research.data import load_sample as ls
    from sep_research.signals.seed import ohlcv

    return ohlcv(ls())


def tile(x: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {k: np.resize(v, n) for k, v in x.items()}


def read_seed_json(path: Path) -> dict[str, np.ndarray]:
    """The seed-reference files, read without pandas (OANDA {'candles': [...]} or a list)."""
    raw = json.loads(path.read_text())
    rows = raw["candles"] if isinstance(raw, dict) else raw
    out: dict[str, list] = {k: [] for k in ("open", "high", "low", "close", "volume")}
    for r in rows:
        m = r.get("mid", r)
        for k, s in (("open", "o"), ("high", "h"), ("low", "l"), ("close", "c")):
            out[k].append(float(m[s] if s in m else m[k]))
        out["volume"].append(float(r["volume"]))
    return {k: np.array(v) for k, v in out.items()}


def timed(f, reps: int = 3) -> float:
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


# ---- a straightforward numpy version of the features (for the comparison) -------------------

def _entropy_np(n0, n1, n2):
    npairs = n0 + n1 + n2
    t = np.zeros(n0.shape)
    for c in (n0, n1, n2):
        p = c / npairs
        with np.errstate(divide="ignore", invalid="ignore"):
            t = t + np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    return np.clip(-t / 1.585, 0.05, 1.0)


def _cos_np(a, b):
    dot = (a * b).sum(1)
    na = (a * a).sum(1)
    nb = (b * b).sum(1)
    ok = (na > 0) & (nb > 0)
    return np.where(ok, dot / np.sqrt(np.where(ok, na * nb, 1.0)), 0.0)


def numpy_features(x: dict[str, np.ndarray], w: int) -> dict[str, np.ndarray]:
    """Causal seed features of candles i >= w (full windows), vectorised over candles."""
    from numpy.lib.stride_tricks import sliding_window_view as swv

    c = x["close"]
    bits = (c[1:] > c[:-1]).astype(np.float64)
    b = swv(bits, w)  # row r: bits[r .. r+w-1], the window of candle r + w
    a0, a1 = b[:, :-1], b[:, 1:]
    n0 = ((a0 == 0) & (a1 == 0)).sum(1)
    n2 = ((a0 == 1) & (a1 == 1)).sum(1)
    n1 = (w - 1) - n0 - n2
    h = _entropy_np(n0, n1, n2)
    r = n2 / (w - 1)
    f = n1 / (w - 1)
    raw = 0.6 * (1 - h) + 0.33 * (1 - r) + 0.21 * (1 - f)
    coh0 = np.clip(1.1 * raw * raw, 0, 1)
    coh = coh0
    if w > 10:
        k = min(20, w)
        h0 = ((b[:, : k - 1] == 0) & (b[:, 1:k] == 0)).sum(1)
        h2c = ((b[:, : k - 1] == 1) & (b[:, 1:k] == 1)).sum(1)
        h2 = _entropy_np(h0, (k - 1) - h0 - h2c, h2c)
        lam = np.clip(0.5 * h2, 0.01, 1.0)
        j = np.arange(w)
        steps = (b - b[:, :1]) * np.exp(-lam[:, None] * j[None, :])
        p = np.cumsum(steps, axis=1)
        p[:, 0] = b[:, 0]
        p0, pl = p[:, :1], p[:, -1:]
        dec = p0 * np.exp(-0.1 * j)[None, :]
        line = p0 + (pl - p0) * j[None, :] / (w - 1)
        wave = (pl + p0) / 2 + (pl - p0) / 2 * np.sin(2 * np.pi * j / w)[None, :]
        t = np.clip(np.maximum.reduce([np.zeros(len(b)), _cos_np(p, dec), _cos_np(p, line),
                                       _cos_np(p, wave)]), 0, 1)
        v = pl[:, 0]
        coh = 0.7 * coh0 + 0.3 * t
        coh = np.where(np.abs(v) < 2, coh / (1 + 0.1 * np.abs(v)), coh)
        coh = np.clip(coh, 0, 1)
    i = np.arange(w, len(c))
    rng = (x["high"] - x["low"]) * 1e4
    cs = np.concatenate([[0.0], np.cumsum(rng)])
    vol = np.where(i < 20, 0.5, (cs[i] - cs[np.maximum(i - 20, 0)]) / 20)
    return {"index": i, "coherence": 0.7 * coh + 0.15,
            "stability": np.minimum(1, (1 - r) + 0.2 * vol / 20), "phase": h / 2}


# ---- sections ---------------------------------------------------------------------------------

def bench_features(x: dict[str, np.ndarray], engines: list[str], rows: list, notes: list) -> None:
    n = len(x["close"])
    prm = SEED.to_vector(1e-4)
    w = SEED.window
    small = {k: v[:20_000] for k, v in x.items()}
    tiny = {k: v[:3_000] for k, v in x.items()}

    sys.path.insert(0, str(ROOT / "tests"))
    import naive  # tests/naive.py

    lists = [list(tiny[k]) for k in ("open", "high", "low", "close", "volume")]
    t = timed(lambda: naive.seed_signals(*lists, alignment="causal"), reps=1)
    rows.append(("features", "naive (tests/naive.py)", len(tiny["close"]), t,
                 len(tiny["close"]) / t, "plain Python lists, W=11"))

    def run_python():
        eng.compute_features(tiny["close"], tiny["high"], tiny["low"], tiny["volume"], [w], prm,
                             engine="python")
    t = timed(run_python, reps=1)
    rows.append(("features", "python (scalar bodies)", len(tiny["close"]), t,
                 len(tiny["close"]) / t, "uncompiled, the live path"))

    numpy_features(small, w)
    t = timed(lambda: numpy_features(x, w), reps=3)
    rows.append(("features", "numpy (vectorised)", n, t, n / t, "window metrics+coh/stab/phase"))

    cpu_out = None
    if "cpu" in engines:
        def run_cpu():
            return eng.compute_features(x["close"], x["high"], x["low"], x["volume"], [w], prm,
                                        engine="cpu")
        eng.compute_features(small["close"], small["high"], small["low"], small["volume"],
                             [w], prm, engine="cpu")  # compile
        t = timed(run_cpu, reps=3)
        cpu_out = run_cpu()
        threads = _numba_threads()
        rows.append(("features", f"cpu numba ({threads} threads)", n, t, n / t,
                     "all 20 features, W=11"))
        windows = list(range(8, 40, 4))
        t = timed(lambda: eng.compute_features(x["close"], x["high"], x["low"], x["volume"],
                                               windows, prm, engine="cpu"), reps=1)
        rows.append(("features", f"cpu numba, {len(windows)} windows", n * len(windows), t,
                     n * len(windows) / t, "W = 8..36 (candle-windows/s)"))
        # the numpy version computes the same function
        ref = numpy_features(x, w)
        i = ref["index"]
        for name in ("coherence", "stability", "phase"):
            q = qfh.FEATURE_NAMES.index(name)
            got = cpu_out[q, i, 0]
            err = np.max(np.abs(got - ref[name]) / np.maximum(np.abs(got), 1e-300))
            notes.append(f"numpy vs cpu kernel, {name}: max relative difference {err:.1e}")
    if "cuda" in engines:
        from numba import cuda

        eng.compute_features(small["close"], small["high"], small["low"], small["volume"],
                             [w], prm, engine="cuda")  # compile

        def run_cuda():
            eng.compute_features(x["close"], x["high"], x["low"], x["volume"], [w], prm,
                                 engine="cuda")
            cuda.synchronize()
        t = timed(run_cuda, reps=3)
        rows.append(("features", "cuda (incl. transfers)", n, t, n / t, "all 20 features, W=11"))
        windows = list(range(8, 40, 4))
        t = timed(lambda: eng.compute_features(x["close"], x["high"], x["low"], x["volume"],
                                               windows, prm, engine="cuda"), reps=3)
        rows.append(("features", f"cuda, {len(windows)} windows", n * len(windows), t,
                     n * len(windows) / t, "W = 8..36 (candle-windows/s)"))


def _numba_threads() -> int:
    try:
        import numba

        return numba.get_num_threads()
    except ImportError:
        return 0


def bench_grid(n_configs: int) -> ConfigGrid:
    """A seed-rule grid of about n_configs rows (window-major, so blocks share a window)."""
    if n_configs >= 65536:
        return product_grid(window=[9, 11, 13, 15], buy_threshold=np.linspace(0.42, 0.58, 16),
                            sell_threshold=np.linspace(0.44, 0.6, 8),
                            conf_threshold=np.linspace(0.55, 0.75, 8),
                            coh_threshold=[0.2, 0.3, 0.4, 0.5], w_s=[0.3, 0.35, 0.4, 0.45])
    return product_grid(window=[11], buy_threshold=np.linspace(0.42, 0.58, 16),
                        conf_threshold=np.linspace(0.55, 0.75, 4), w_s=[0.3, 0.4, 0.45, 0.5])


def _sweep_inputs(x, grid):
    """Device-independent arrays of the sweep, as sweep_seed prepares them (EUR_USD, a
    0.8-pip spread), rows in the kernel's order."""
    from sep_research.signals.sweep import prepare_sweep

    si = prepare_sweep(x, grid, instrument="EUR_USD", half_spread_pips=0.4, engine="cpu")
    return np.ascontiguousarray(si.g[si.order]), si.fw, si.cv


def bench_sweep(x, engines, rows, notes, gpu_configs: int, cpu_configs: int) -> dict:
    n = len(x["close"])
    info: dict = {}
    if "cpu" in engines:
        grid = bench_grid(cpu_configs)
        g, fw, cv = _sweep_inputs(x, grid)
        import numba

        eng.run_sweep(g[:2], fw, cv, 0, 1000, engine="cpu")  # compile
        cc = len(g) * (n - 1)
        threads = _numba_threads()
        # wall clock, best of 3 (this machine is shared: the best run is the least disturbed)
        ts = [timed(lambda: eng.run_sweep(g, fw, cv, 0, n - 1, engine="cpu"), reps=1)
              for _ in range(3)]
        t = min(ts)
        rows.append(("sweep", f"cpu numba ({threads} threads)", cc, t, cc / t,
                     f"{len(g)} configs x {n - 1} candles, wall clock, best of 3"))
        # one thread, CPU time: the per-core rate, whatever else runs on the machine
        numba.set_num_threads(1)
        c0 = time.process_time()
        eng.run_sweep(g, fw, cv, 0, n - 1, engine="cpu")
        c1 = time.process_time() - c0
        numba.set_num_threads(threads)
        rows.append(("sweep", "cpu numba (1 thread, CPU time)", cc, c1, cc / c1,
                     f"per core; x {threads} cores = {threads * cc / c1:.3g} if unshared"))
        info["cpu_rate"] = cc / t
        info["cpu_rate_per_core"] = cc / c1
    if "cuda" in engines:
        from numba import cuda

        from sep_research.kernels import cu

        grid = bench_grid(gpu_configs)
        g, fw, cv = _sweep_inputs(x, grid)
        dg, dfw, dcv = cuda.to_device(g), cuda.to_device(fw), cuda.to_device(cv)
        dev = cuda.get_current_device()
        sms = dev.MULTIPROCESSOR_COUNT
        clock_hz = dev.CLOCK_RATE * 1e3
        ceiling_ops = sms * FP64_LANES_PER_SM * clock_hz
        ceiling = ceiling_ops / FP64_OPS_PER_CONFIG_CANDLE
        cc = len(g) * (n - 1)
        best = None
        for block, chunk in ((64, 8192), (128, 8192), (256, 8192), (128, 32768)):
            if True:
                cu.sweep_device(dg[:block], dfw, dcv, 0, 2000, chunk, block)  # compile / warm
                cuda.synchronize()
                ts = []
                for _ in range(3):
                    e0, e1 = cuda.event(), cuda.event()
                    e0.record()
                    cu.sweep_device(dg, dfw, dcv, 0, n - 1, chunk, block)
                    e1.record()
                    e1.synchronize()
                    ts.append(cuda.event_elapsed_time(e0, e1) / 1e3)
                t = statistics.median(ts)
                spread = (max(ts) - min(ts)) / t
                rows.append(("sweep", f"cuda block={block} chunk={chunk}", cc, t, cc / t,
                             (f"{len(g)} configs; {100 * cc / t / ceiling:.1f}% of FP64 ceiling;"
                             f" run spread {100 * spread:.0f}%")))
                if best is None or t < best[0]:
                    best = (t, block, chunk)
        t, block, chunk = best
        uniq_bytes = (fw.nbytes + cv.nbytes + g.nbytes
                      + len(g) * 11 * 8 * (1 + (n - 1 + chunk - 1) // chunk))
        bw = 3.0e12  # device-to-device copy rate measured on this H100 kind (KINDS.md)
        info.update(gpu_rate=cc / t, block=block, chunk=chunk, sms=sms, clock_hz=clock_hz,
                    ceiling=ceiling, bytes=uniq_bytes, fraction=cc / t / ceiling,
                    mem_floor_s=uniq_bytes / bw, compute_floor_s=cc / ceiling, time_s=t)
        notes.append(
            f"GPU ceiling: {sms} SMs x {FP64_LANES_PER_SM} FP64 ops/clock x "
            f"{clock_hz / 1e9:.3f} GHz = {ceiling_ops / 1e12:.1f} T FP64 ops/s; / "
            f"{FP64_OPS_PER_CONFIG_CANDLE} FP64 ops per config-candle = {ceiling:.3g} "
            f"config-candles/s")
        notes.append(
            f"bytes that must move: {uniq_bytes / 1e6:.0f} MB (features, labels, grid, chunk "
            f"partials) -> memory floor {1e3 * uniq_bytes / bw:.2f} ms at 3.0 TB/s vs compute "
            f"floor {1e3 * cc / ceiling:.1f} ms: compute-bound; each block reads a candle's "
            f"72 bytes once for {block} configs ({72 / block:.2f} B per config-candle from L1/L2)")
        notes.append(f"best sweep: {cc / t:.3g} config-candles/s = {100 * cc / t / ceiling:.1f}% "
                     f"of the FP64 ceiling (block {block}, chunk {chunk})")
        # end to end through the public API (features on the GPU, transfers included)
        sub = dict(x.items())
        t0 = time.perf_counter()
        sweep_seed(sub, grid, score_start=0, score_end=n - 1, half_spread_pips=0.4,
                   instrument="EUR_USD", engine="cuda")
        t1 = time.perf_counter()
        rows.append(("sweep", "cuda sweep_seed end to end", cc, t1 - t0, cc / (t1 - t0),
                     "features on GPU + transfers + sweep"))
    return info


def check_gpu(seed_dir: Path | None, x_sample: dict[str, np.ndarray], notes: list,
              limit: int | None = None) -> bool:
    """GPU vs CPU on real data: counts exactly, floats within 1e-12 relative."""
    datasets = {"sample (EUR_USD H1, 5000)": x_sample}
    if seed_dir:
        for name in ("O-test-2.json", "eur_usd_m1_48h.json"):
            p = seed_dir / name
            if p.is_file():
                datasets[name] = read_seed_json(p)
    ok = True
    for name, x in datasets.items():
        if limit:
            x = {k: v[:limit] for k, v in x.items()}
        n = len(x["close"])
        for alignment in ("causal", "legacy"):
            a = eng.compute_features(x["close"], x["high"], x["low"], x["volume"],
                                     [2, 5, 11, 20, 33], SEED.to_vector(1e-4), alignment=alignment,
                                     engine="cpu")
            b = eng.compute_features(x["close"], x["high"], x["low"], x["volume"],
                                     [2, 5, 11, 20, 33], SEED.to_vector(1e-4), alignment=alignment,
                                     engine="cuda")
            same_nan = np.array_equal(np.isnan(a), np.isnan(b))
            good = same_nan
            worst = []
            for q, fname in enumerate(qfh.FEATURE_NAMES):
                fin = ~np.isnan(a[q])
                fa, fb = a[q][fin], b[q][fin]
                diff = np.abs(fa - fb)
                rel = diff / np.maximum(np.abs(fa), 1e-300)
                # pass: |gpu - cpu| <= 1e-12 |cpu| + 1e-15 (values near zero: rounding level)
                good &= bool(np.all(diff <= 1e-12 * np.abs(fa) + 1e-15))
                if rel.size and rel.max() > 0:
                    j = int(np.argmax(rel))
                    worst.append((float(rel.max()), fname, float(fa[j]), float(diff[j]),
                                  float(np.mean(fa == fb))))
            ok &= good
            worst.sort(reverse=True)
            desc = "; ".join(f"{f}: max rel {r:.1e} (at value {v:.2e}, abs {d:.1e}), "
                             f"{100 * e:.1f}% identical" for r, f, v, d, e in worst[:3])
            notes.append(f"check features {name} {alignment}: NaN pattern same: {same_nan}; "
                         f"largest differences: {desc or 'none, all bit-identical'} -> "
                         f"{'OK' if good else 'FAIL'}")
            grid = product_grid(window=[5, 9, 11, 14, 20], buy_threshold=np.linspace(0.4, 0.6, 9),
                                sell_threshold=[0.45, 0.52, 0.6], conf_threshold=[0.6, 0.65, 0.7],
                                min_move=[0.0, 0.5])
            kw = {"score_start": 25, "score_end": n - 1, "half_spread_pips": 0.35,
                  "instrument": "EUR_USD", "alignment": alignment}
            ra = sweep_seed(x, grid, engine="cpu", **kw)
            rb = sweep_seed(x, grid, engine="cuda", **kw)
            cnt = all(np.array_equal(ra[k], rb[k]) for k in qfh.SWEEP_COUNTS)
            rel = max(float(np.max(np.abs(ra[k] - rb[k]) / np.maximum(np.abs(ra[k]), 1e-300)))
                      for k in qfh.SWEEP_SUMS)
            good = cnt and rel <= 1e-12
            ok &= good
            notes.append(f"check sweep {name} {alignment}: {len(grid)} configs, counts equal: "
                         f"{cnt}, sums max rel diff {rel:.2e} -> {'OK' if good else 'FAIL'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", choices=("cpu", "cuda", "all"), default=None,
                    help="default: all when a GPU is present, else cpu")
    ap.add_argument("--candles", type=int, default=1_000_000)
    ap.add_argument("--cpu-configs", type=int, default=256)
    ap.add_argument("--gpu-configs", type=int, default=65536)
    ap.add_argument("--npz", help="the sample as .npz (open, high, low, close, volume)")
    ap.add_argument("--seed-dir", help="folder with the seed-reference JSON files (--check)")
    ap.add_argument("--check", action="store_true", help="GPU vs CPU agreement on real data")
    ap.add_argument("--skip-features", action="store_true")
    ap.add_argument("--check-only", action="store_true", help="only the agreement check")
    ap.add_argument("--check-limit", type=int, default=None,
                    help="check only the first N candles of each data set")
    ap.add_argument("--json-out", help="write the figures as JSON here")
    args = ap.parse_args(argv)
    has_gpu = eng.cuda_available() and not eng.cuda_simulated()
    which = args.engine or ("all" if has_gpu else "cpu")
    engines = ["cpu", "cuda"] if which == "all" else [which]
    if "cuda" in engines:
        eng.resolve_engine("cuda")
    sample = load_sample(args.npz)
    x = tile(sample, args.candles)
    rows: list = []
    notes: list = []
    print(f"host: {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, python {platform.python_version()}, numpy {np.__version__}")
    if has_gpu:
        from numba import cuda

        name = cuda.get_current_device().name
        print(f"gpu: {name.decode() if isinstance(name, bytes) else name}")
    print(f"data: real EUR_USD H1 sample ({len(sample['close'])} candles) tiled to "
          f"{args.candles} candles")
    ok = True
    if args.check and "cuda" in engines:
        ok = check_gpu(Path(args.seed_dir) if args.seed_dir else None, sample, notes,
                       args.check_limit)
    info: dict = {}
    if not args.check_only:
        if not args.skip_features:
            bench_features(x, engines, rows, notes)
        info = bench_sweep(x, engines, rows, notes, args.gpu_configs, args.cpu_configs)
    print()
    print(f"{'what':9s} {'implementation':34s} {'items':>14s} {'seconds':>9s} "
          f"{'per second':>11s}  note")
    for what, impl, items, t, rate, note in rows:
        print(f"{what:9s} {impl:34s} {items:14,d} {t:9.4f} {rate:11.3g}  {note}")
    print()
    for line in notes:
        print("- " + line)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            {"rows": rows, "notes": notes, "info": info, "check_ok": ok}, indent=1,
            default=float))
    if args.check and "cuda" in engines:
        print(f"\nGPU vs CPU agreement on real data: {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
