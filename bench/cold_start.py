"""Cold start: what a fresh process waits for, with an empty and with a warm kernel cache.

::

    python bench/cold_start.py [--baseline-root ../main --baseline-python ../main/.venv/bin/python]
                               [--engine cpu|cuda] [--cache-off-baseline] [--json-out FILE]

Each figure is measured in a fresh child process:

- ``sweep_seed 1000``: the first ``sweep_seed`` call (1 000 configurations: every tenth row of
  the training grid) on the packaged REAL EUR_USD H1 sample (5000 candles), on ``--engine``,
  timed inside the child after ``sep_research`` and the data are loaded (numba is imported
  inside the call); the second call beside it is the warm figure;
- ``sep train``: the wall time of ``python -m sep_research.cli train --instrument EUR_USD
  --granularity H1 --source sample`` (the full 10 000-configuration grid, 5 folds), the
  interpreter's start, every import and the artifact included.

``first-ever`` runs with empty cache folders (``SEP_NUMBA_CACHE_DIR`` for the kernels and
``NUMBA_CACHE_DIR`` for numba's own ``cache=True`` functions, such as the backtest kernel);
``second process`` reuses them. ``--baseline-root`` runs the same commands on another
checkout (for example ``main`` before this change) with its own empty caches;
``--cache-off-baseline`` runs them on this checkout with ``SEP_NUMBA_CACHE=0`` (every process
compiles the project's kernels, as before the disk cache; with ``--engine cuda`` that is how
the CUDA kernels started before they were cached).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys, time
ENGINE = sys.argv[1]
t0 = time.perf_counter()
from sep_research.data import load_sample
from sep_research.signals.sweep import sweep_seed
from sep_research.training.grid import make_grid
x = load_sample()
grid = make_grid().rows(slice(None, None, 10))
n = len(x)
t1 = time.perf_counter()
sweep_seed(x, grid, score_start=0, score_end=n - 1, half_spread_pips=0.5, engine=ENGINE)
t2 = time.perf_counter()
sweep_seed(x, grid, score_start=0, score_end=n - 1, half_spread_pips=0.5, engine=ENGINE)
t3 = time.perf_counter()
print(json.dumps({"imports_and_data": t1 - t0, "first_call": t2 - t1, "second_call": t3 - t2}))
"""


def _env(root: Path, cache: Path, cache_on: bool = True) -> dict:
    # every cache and artifact in the temporary folder: nothing is written to the checkout
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                   [str(root)] + [q for q in [os.environ.get("PYTHONPATH")] if q]),
               SEP_NUMBA_CACHE_DIR=str(cache / "sep"), NUMBA_CACHE_DIR=str(cache / "numba"),
               SEP_CACHE_DIR=str(cache / "data"), PYTHONDONTWRITEBYTECODE="1")
    env.pop("SEP_NUMBA_CACHE", None)
    if not cache_on:
        env["SEP_NUMBA_CACHE"] = "0"
    return env


def sweep_child(python: str, root: Path, cache: Path, engine: str = "cpu",
                cache_on: bool = True) -> dict:
    r = subprocess.run([python, "-c", _CHILD, engine], cwd=cache, env=_env(root, cache, cache_on),
                       capture_output=True, text=True, timeout=900, check=False)
    if r.returncode != 0:
        return {"error": r.stderr[-500:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def train_child(python: str, root: Path, cache: Path, out: Path, engine: str = "cpu",
                cache_on: bool = True) -> dict:
    t = time.perf_counter()
    r = subprocess.run([python, "-m", "sep_research.cli", "train", "--instrument", "EUR_USD",
                        "--granularity", "H1", "--source", "sample", "--engine", engine,
                        "--out", str(out)],
                       cwd=cache, env=_env(root, cache, cache_on), capture_output=True, text=True,
                       timeout=900, check=False)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        return {"error": r.stderr[-500:]}
    return {"wall": wall}


def measure(python: str, root: Path, label: str, engine: str = "cpu",
            cache_on: bool = True) -> list[tuple]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        for when in ("first-ever", "second process", "third process"):
            r = sweep_child(python, root, cache, engine, cache_on)
            rows.append((label, "sweep_seed 1000 (first call)", when, r.get("first_call"),
                         r.get("second_call"), r.get("imports_and_data"), r.get("error")))
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        for when in ("first-ever", "second process", "third process"):
            r = train_child(python, root, cache, cache / "m.json", engine, cache_on)
            rows.append((label, "sep train (wall)", when, r.get("wall"), None, None,
                         r.get("error")))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline-root")
    ap.add_argument("--baseline-python")
    ap.add_argument("--engine", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--cache-off-baseline", action="store_true",
                    help="also run this checkout with SEP_NUMBA_CACHE=0")
    ap.add_argument("--json-out")
    args = ap.parse_args(argv)
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} CPUs; "
          f"engine {args.engine}")
    rows = measure(sys.executable, ROOT, "this checkout", args.engine)
    if args.cache_off_baseline:
        rows += measure(sys.executable, ROOT, "cache off", args.engine, cache_on=False)
    if args.baseline_root:
        rows += measure(args.baseline_python or sys.executable, Path(args.baseline_root),
                        "baseline", args.engine)
    print(f"load average at end: {os.getloadavg()}")
    print(f"\n{'checkout':14s} {'what':30s} {'process':15s} {'seconds':>8s} {'warm call':>9s} "
          f"{'imports':>8s}")
    for label, what, when, s, w, imp, err in rows:
        def f(v):
            return f"{v:8.3f}" if isinstance(v, float) else f"{'-':>8s}"
        print(f"{label:14s} {what:30s} {when:15s} {f(s)} {f(w):>9s} {f(imp)}"
              + (f"  ERROR {err}" if err else ""))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            {"rows": rows, "cpus": os.cpu_count(), "engine": args.engine,
             "load_avg_end": os.getloadavg()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
