"""CUDA kernels against the reference: under the simulator here, on a real GPU when present.

CI has no GPU: the simulator must be switched on before numba is imported, so the checks
run in a fresh interpreter with ``NUMBA_ENABLE_CUDASIM=1`` (``python -m
tests.test_kernels_cuda``), with small blocks and chunks so that multi-block and
multi-chunk paths run. On a real GPU (marker ``gpu``) the kernels must agree with the CPU
kernels: counts exactly, floats within 1e-12 relative.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _seed_o_test():
    from sep_research.data import read_candle_file
    from tests.conftest import SEED_O_TEST

    if SEED_O_TEST.is_file():
        return read_candle_file(SEED_O_TEST, instrument="EUR_USD", granularity="M1",
                                check_grid=False)
    from sep_research.data import load_sample

    return load_sample()


def _simulated_checks() -> None:
    """Runs inside the simulator (see the test below); raises on any disagreement."""
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    from sep_research.kernels import cu, engine, loops, qfh
    from sep_research.signals.grid import product_grid
    from sep_research.signals.seed import SEED, ohlcv, seed_signals
    from sep_research.signals.sweep import sweep_seed, sweep_spread_pips
    from tests import naive

    frame = _seed_o_test()
    n = 130
    x = {k: v[:n] for k, v in ohlcv(frame).items()}
    inp = engine.prepare_inputs(x["close"], x["high"], x["low"], x["volume"])
    prm = SEED.to_vector(1e-4)
    windows = np.array([3, 11, 22], dtype=np.int64)
    for legacy in (False, True):
        lr = engine.legacy_ranges(inp["high"], inp["low"], prm)
        args = (inp["bits"], inp["high"], inp["low"], inp["volume"], windows, legacy, lr, prm)
        got = cu.features_cu(*args, block=32)  # 390 threads: 13 blocks
        ref = np.empty_like(got)
        loops.features_into(ref, *args)
        assert np.array_equal(got, ref, equal_nan=True), f"features legacy={legacy}"
        # the sweep's table of some features, gathered on the device: the same values
        rows = np.array([qfh.F_HAS, qfh.F_TF, qfh.F_VF, qfh.F_COHERENCE], dtype=np.int64)
        tab = cu.feature_table_cu(*args, rows, block=32)
        assert tab.shape == (4, 3, n) and tab.flags.c_contiguous
        assert np.array_equal(tab, ref[rows].transpose(0, 2, 1), equal_nan=True), "table"
    # the engine switch reaches the simulated GPU, and agrees with the naive reference
    lists = [list(x[k]) for k in ("open", "high", "low", "close", "volume")]
    sig = seed_signals(x, instrument="EUR_USD", engine="cuda")
    nref = naive.seed_signals(*lists, alignment="causal")
    assert np.array_equal(sig.action, nref["action"]) and np.array_equal(sig.hc, nref["hc"])
    # the fused sweep: 6 configurations in blocks of 4 (2 blocks), 4 chunks of 40 candles
    grid = product_grid(window=[5, 11], buy_threshold=[0.45, 0.5, 0.55])
    # a varying bid/ask spread at the opens; the sweep charges candle i the spread at the open
    # of i + 1 (its entry), which the naive sweep indexes by i
    half = np.linspace(0.2, 1.5, n) * 1e-4 / 2
    x = {**x, "bid_open": x["open"] - half, "ask_open": x["open"] + half}
    spread = np.r_[sweep_spread_pips(x, pip=1e-4)[:-1], 0.0]
    res = sweep_seed(x, grid, score_start=5, score_end=n - 1, instrument="EUR_USD",
                     engine="cuda", chunk=40, cuda_block=4)
    rows = [grid.row_dict(k) for k in range(len(grid))]
    nref = naive.sweep(*lists, rows, 5, n - 1, list(spread), "causal")
    for name in qfh.SWEEP_COUNTS:
        assert np.array_equal(res[name], [r[name] for r in nref]), name
    for name in qfh.SWEEP_SUMS:
        np.testing.assert_allclose(res[name], [r[name] for r in nref], rtol=1e-10, atol=1e-9)
    cpu = sweep_seed(x, grid, score_start=5, score_end=n - 1, instrument="EUR_USD",
                     engine="python", chunk=40)
    for k, v in cpu.items():  # same chunking: bit for bit
        assert np.array_equal(res[k], v), k
    # block smaller than the grid and an empty score range
    g2 = np.zeros((3, qfh.N_GRID))
    g2[:, qfh.G_WS] = 0.4
    fw = np.zeros((5, 1, 10))
    cv = np.zeros((4, 10))
    counts, sums = cu.sweep_cu(g2, fw, cv, 4, 4, 8, 2)
    assert not counts.any() and not sums.any()
    print("simulated CUDA checks passed")


@pytest.mark.slow
def test_cuda_kernels_in_simulator_match_reference():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "tests.test_kernels_cuda"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "simulated CUDA checks passed" in r.stdout


def _real_gpu() -> bool:
    from sep_research.kernels import engine

    return engine.cuda_available() and not engine.cuda_simulated()


@pytest.mark.gpu
@pytest.mark.skipif(not _real_gpu(), reason="needs a real CUDA GPU")
def test_real_gpu_matches_cpu_on_real_data():
    from sep_research.kernels import qfh
    from sep_research.signals.grid import product_grid
    from sep_research.signals.seed import ohlcv, qfh_features_batch
    from sep_research.signals.sweep import sweep_seed

    x = ohlcv(_seed_o_test())
    for alignment in ("causal", "legacy"):
        a = qfh_features_batch(x["close"], x["high"], x["low"], x["volume"], [5, 11, 30],
                               instrument="EUR_USD", alignment=alignment, engine="cpu")
        b = qfh_features_batch(x["close"], x["high"], x["low"], x["volume"], [5, 11, 30],
                               instrument="EUR_USD", alignment=alignment, engine="cuda")
        for k in a:
            np.testing.assert_allclose(b[k], a[k], rtol=1e-12, atol=0, equal_nan=True,
                                       err_msg=k)
    grid = product_grid(window=[9, 11, 13], buy_threshold=np.linspace(0.4, 0.6, 9),
                        conf_threshold=[0.6, 0.65, 0.7], w_s=[0.3, 0.4])
    n = len(x["close"])
    kw = {"score_start": 20, "score_end": n - 1, "half_spread_pips": 0.35,
          "instrument": "EUR_USD"}
    a = sweep_seed(x, grid, engine="cpu", **kw)
    b = sweep_seed(x, grid, engine="cuda", **kw)
    for k in qfh.SWEEP_COUNTS:
        assert np.array_equal(a[k], b[k]), k
    for k in qfh.SWEEP_SUMS:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-12, atol=1e-12, err_msg=k)


if __name__ == "__main__":
    _simulated_checks()
