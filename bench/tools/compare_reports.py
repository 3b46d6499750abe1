"""Compare two ``sep batch`` report folders: every ``results.npz`` array, bit for bit.

::

    python bench/tools/compare_reports.py REPORTS_A REPORTS_B     # exit 0: all bit-identical

Used to check that a sweep batch gives the same results on 1 and N GPUs (or GPU and CPU
workers): the run folders must be the same and each array equal in dtype, shape and bytes.
With ``--write-sample-npz FILE`` it instead writes the packaged REAL EUR_USD H1 sample as the
``.npz`` (open, high, low, close, volume) that ``bench/sweep_methods.py --npz`` and
``bench/multigpu.py --npz`` read on a machine without the ``backtesting`` package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def compare(a: Path, b: Path) -> bool:
    ra = sorted(a.glob("runs/*/results.npz"))
    rb = sorted(b.glob("runs/*/results.npz"))
    names_a, names_b = [p.parent.name for p in ra], [p.parent.name for p in rb]
    print("runs:", names_a, names_b)
    if not ra or names_a != names_b:
        print("DIFFERENT run folders (or none)")
        return False
    ok = True
    for pa, pb in zip(ra, rb, strict=True):
        za, zb = np.load(pa), np.load(pb)
        if sorted(za.files) != sorted(zb.files):
            print("DIFFERENT arrays", pa.parent.name, sorted(za.files), sorted(zb.files))
            ok = False
            continue
        same_run = True
        for k in za.files:
            x, y = za[k], zb[k]
            if not (x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()):
                print("DIFFERENT", pa.parent.name, k)
                same_run = False
        ok &= same_run
        print(pa.parent.name, len(za.files), "arrays:",
              "bit-identical" if same_run else "DIFFERENT")
    print("ALL BIT-IDENTICAL" if ok else "DIFFERENCES FOUND")
    return ok


def write_sample_npz(path: Path) -> None:
    from sep_research.data import load_sample
    from sep_research.signals.seed import ohlcv

    x = ohlcv(load_sample())
    np.savez(path, **{k: x[k] for k in ("open", "high", "low", "close", "volume")})
    print(f"wrote {path}: {len(x['close'])} candles of the packaged REAL EUR_USD H1 sample")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="*", type=Path, help="two report folders")
    ap.add_argument("--write-sample-npz", type=Path, metavar="FILE")
    args = ap.parse_args(argv)
    if args.write_sample_npz:
        write_sample_npz(args.write_sample_npz)
        return 0
    if len(args.folders) != 2:
        ap.error("give two report folders (or --write-sample-npz FILE)")
    return 0 if compare(*args.folders) else 1


if __name__ == "__main__":
    sys.exit(main())
