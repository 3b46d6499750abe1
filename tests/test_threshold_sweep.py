"""The threshold-space sweep and the exact sums against the brute force (the reference).

Counts must equal the float brute force exactly, on real data (the packaged EUR/USD H1 sample)
and on constructed ties (a score exactly equal to threshold x vm, a move exactly equal to
the minimum move), for every grid field; sums must lie within the bound derived in
``sep_research.kernels.fixed`` (asserted, not a loose tolerance), and every exact path
(threshold sweep, exact brute force; CPU, plain Python, the CUDA simulator, a real GPU) must
give the same bits, whatever else is in the grid and however it is split.

The simulator runs in a fresh interpreter (``NUMBA_ENABLE_CUDASIM=1`` must be set before
numba is imported): ``python -m tests.test_threshold_sweep``.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sep_research.kernels import engine as eng
from sep_research.kernels import fixed, plan, qfh

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("w_s", "w_c", "w_e", "buy_threshold", "sell_threshold", "conf_threshold",
          "coh_threshold", "window", "min_move", "spread")


def sweep_arrays(x: dict, grid, *, spread: float = 0.8):
    """(g, fw, cv) as ``sweep_seed`` prepares them (causal, EUR_USD, mid +/- spread / 2)."""
    from sep_research.signals.sweep import prepare_sweep

    si = prepare_sweep(x, grid, instrument="EUR_USD", half_spread_pips=spread / 2.0,
                       engine="python" if len(x["close"]) < 400 else "cpu")
    return si.g, si.fw, si.cv


def every_field_grid():
    """A product grid that varies every grid field (2 x ... x 2 values, 1536 rows)."""
    from sep_research.signals.grid import product_grid

    return product_grid(window=[5, 11, 20], w_s=[0.3, 0.4], w_c=[0.1, 0.2], w_e=[0.5],
                        buy_threshold=[0.45, 0.5, 0.55, 0.6], sell_threshold=[0.47, 0.52],
                        conf_threshold=[0.6, 0.7], coh_threshold=[0.2, 0.3],
                        min_move=[0.0, 0.5], spread=[0.0, 0.7])


def term_bounds(g: np.ndarray, cv: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Per row and sum (4, K): the largest |exact - brute| that fixed.sum_bound allows, from
    upper bounds of the terms (every labelled candle, the larger of its BUY and SELL term)."""
    mv = cv[2, lo:hi]
    lab = ~np.isnan(mv)
    mv, sp = mv[lab], cv[3, lo:hi][lab]
    out = np.empty((4, g.shape[0]))
    for k in range(g.shape[0]):
        e = g[k, qfh.G_SPREAD]
        t = np.maximum(np.abs((mv - sp) - e), np.abs((-mv - sp) - e))
        a1, a2 = float(t.sum()), float((t * t).sum())
        for q, (a, sq) in enumerate(((a1, False), (a2, True), (a1, False), (a2, True))):
            out[q, k] = fixed.sum_bound(a, int(lab.sum()), hi - lo, sq)
    return out


def check_against_brute(g, fw, cv, lo, hi, engine, methods=("threshold", "auto")):
    """Counts equal to the float brute force, sums within the bound, exact methods equal
    bit for bit. Returns the exact result."""
    cb, sb = eng.run_sweep(g, fw, cv, lo, hi, engine=engine, method="brute")
    bound = term_bounds(g, cv, lo, hi)
    first = None
    for m in methods:
        c, s = eng.run_sweep(g, fw, cv, lo, hi, engine=engine, method=m)
        for q, name in enumerate(qfh.SWEEP_COUNTS):
            assert np.array_equal(c[q], cb[q]), (m, name)
        err = np.abs(s - sb)
        assert np.all(err <= bound), (m, float((err / bound).max()))
        if first is None:
            first = (c, s)
        else:
            assert np.array_equal(s, first[1]), m  # threshold and auto: the same bits
    return first


@pytest.fixture(scope="module")
def sample():
    from sep_research.data import load_sample
    from sep_research.signals.seed import ohlcv

    return ohlcv(load_sample())


# ---- real data --------------------------------------------------------------------------------

def test_threshold_sweep_equals_brute_force_on_the_sample_for_every_field(sample):
    g, fw, cv = sweep_arrays(sample, every_field_grid())
    n = len(sample["close"])
    c, _ = check_against_brute(g, fw, cv, 30, n - 1, "cpu")
    assert c[4].max() > 0 and c[3].max() > 0 and c[1].min() >= 0  # HC and SELL signals occur
    p = plan.plan_sweep(g, cv, 30, n - 1, "auto")
    assert p.n_threshold_rows == len(g) and p.exact.size == 0 and p.brute.size == 0
    # every field changes some result: the grid really exercises them
    base = c[:, 0]
    assert (c != base[:, None]).any(axis=0).sum() > len(g) // 2


def test_plain_python_engine_gives_the_same_bits(sample):
    x = {k: v[:300] for k, v in sample.items()}
    from sep_research.signals.grid import product_grid

    grid = product_grid(window=[5, 11], buy_threshold=[0.45, 0.5, 0.55], sell_threshold=[0.5],
                        conf_threshold=[0.6, 0.65], min_move=[0.0, 0.5], spread=[0.0, 0.3])
    g, fw, cv = sweep_arrays(x, grid)
    cp, sp_ = check_against_brute(g, fw, cv, 25, 299, "python")
    cc, sc = eng.run_sweep(g, fw, cv, 25, 299, engine="cpu", method="threshold")
    ce, se = eng.run_sweep(g, fw, cv, 25, 299, engine="cpu", method="auto")
    assert np.array_equal(ce, cc)
    assert np.array_equal(cp, cc) and np.array_equal(sp_, sc) and np.array_equal(sc, se)


# ---- constructed ties -------------------------------------------------------------------------

def tie_case(seed: int = 0):
    """Synthetic per-candle scores (labelled synthetic: unit test only) and a grid whose
    thresholds hit them exactly: buy == bt * vm, sell == st * vm, conf == ct, coh == cht,
    |move| == min_move, for many candles; plus neighbours one ulp either side."""
    rng = np.random.default_rng(seed)
    n = 400
    # one window; features on a coarse lattice so that values repeat
    stab = rng.choice([0.25, 0.5, 0.75, 1.0], n)
    coh = rng.choice([0.2, 0.3, 0.35, 0.5], n)
    phase = rng.choice([0.25, 0.375, 0.5], n)
    vf = rng.choice([1.0, 1.25], n)
    tf = rng.choice([1.0, 1.08, 1.15], n)
    vm = rng.choice([0.5, 1.0, 1.25], n)
    mv = rng.choice([-1.5, -0.5, 0.0, 0.5, 1.0, 2.0], n)
    has = np.ones(n)
    has[:3] = 0.0
    mv[5] = np.nan
    fw = np.stack([has, stab, coh, phase, tf])[:, None, :].copy()
    fw[1:, 0, :3] = np.nan
    cv = np.stack([vf, vm, mv, rng.choice([0.0, 0.5, 1.0], n)])
    ws, wc, we = 0.4, 0.1, 0.5
    buy, sell = [], []
    for i in range(n):
        b, s = qfh.seed_scores(stab[i], coh[i], phase[i], vf[i], tf[i], ws, wc, we)
        buy.append(b)
        sell.append(s)
    buy, sell = np.array(buy), np.array(sell)
    # thresholds that equal score / vm where that division is exact (vm a power of two or 1)
    exact = (vm == 0.5) | (vm == 1.0)
    bt = np.unique((buy / vm)[exact & (has == 1)])[::7][:6]
    st = np.unique((sell / vm)[exact & (has == 1)])[::7][:5]
    assert np.all([np.any(buy[exact] == b * vm[exact]) for b in bt])
    bt = np.concatenate([bt, np.nextafter(bt[:2], np.inf), np.nextafter(bt[:2], -np.inf)])
    ct = np.unique(np.concatenate([buy[has == 1][::50], sell[has == 1][::60]]))[:5]
    cht = np.array([0.3, 0.35, np.nextafter(0.35, 1.0)])
    mm = np.array([0.0, 0.5, 1.0, np.nextafter(0.5, 0.0)])
    extra = np.array([0.0, 0.25])
    mesh = np.meshgrid(bt, st, ct, cht, mm, extra, indexing="ij")
    k = mesh[0].size
    g = np.zeros((k, qfh.N_GRID))
    g[:, qfh.G_WS], g[:, qfh.G_WC], g[:, qfh.G_WE] = ws, wc, we
    for col, m in zip((qfh.G_BUY, qfh.G_SELL, qfh.G_CONF, qfh.G_COH, qfh.G_MIN_MOVE,
                       qfh.G_SPREAD), mesh, strict=True):
        g[:, col] = m.ravel()
    return g, np.ascontiguousarray(fw), np.ascontiguousarray(cv), buy, sell


def test_constructed_ties_count_exactly_as_the_brute_force():
    g, fw, cv, buy, sell = tie_case()
    n = cv.shape[1]
    vm = cv[1]
    # the ties are really there: some candles sit exactly on a threshold
    assert np.any(buy[None, :] == g[:, qfh.G_BUY][:, None] * vm[None, :])
    assert np.any(sell[None, :] == g[:, qfh.G_SELL][:, None] * vm[None, :])
    assert np.any(np.abs(cv[2])[None, :] == g[:, qfh.G_MIN_MOVE][:, None])
    assert np.any(fw[2, 0][None, :] == g[:, qfh.G_COH][:, None])
    c, _ = check_against_brute(g, fw, cv, 0, n, "cpu")
    assert c[0].min() < c[0].max() and c[4].max() > 0
    small = g[:: max(1, len(g) // 60)]
    check_against_brute(small, fw, cv, 0, 120, "python")


# ---- determinism and the method choice ------------------------------------------------------

def test_results_do_not_depend_on_other_rows_or_splits(sample):
    g, fw, cv = sweep_arrays(sample, every_field_grid())
    lo, hi = 40, len(sample["close"]) - 1
    whole = eng.run_sweep(g, fw, cv, lo, hi, engine="cpu")
    rng = np.random.default_rng(3)
    perm = rng.permutation(len(g))
    # halves cut inside groups, a shuffled order, and single rows (exact brute force)
    for part in (perm[: len(g) // 2], perm[len(g) // 2:], np.arange(0, len(g), 97)):
        c, s = eng.run_sweep(g[part], fw, cv, lo, hi, engine="cpu")
        assert np.array_equal(c, whole[0][:, part]) and np.array_equal(s, whole[1][:, part])
    one = eng.run_sweep(g[5:6], fw, cv, lo, hi, engine="cpu")
    assert plan.plan_sweep(g[5:6], cv, lo, hi).exact.tolist() == [0]
    assert np.array_equal(one[1], whole[1][:, 5:6])
    # chunking changes the brute force's rounding only, never the exact sums
    assert np.array_equal(eng.run_sweep(g, fw, cv, lo, hi, engine="cpu", chunk=333)[1],
                          whole[1])


def test_random_rows_fall_back_to_the_brute_force(sample):
    rng = np.random.default_rng(7)
    k = 400
    grid = {"window": rng.choice([7, 11], k), "w_s": rng.uniform(0.2, 0.6, k),
            "buy_threshold": rng.uniform(0.4, 0.6, k), "sell_threshold": rng.uniform(0.4, 0.6, k),
            "conf_threshold": rng.uniform(0.5, 0.8, k), "coh_threshold": rng.uniform(0.1, 0.4, k),
            "min_move": rng.uniform(0, 1, k), "spread": rng.uniform(0, 1, k)}
    g, fw, cv = sweep_arrays(sample, grid)
    n = len(sample["close"])
    p = plan.plan_sweep(g, cv, 30, n - 1, "auto")
    assert p.n_threshold_rows == 0 and p.exact.size == k
    # random values in one group: every row its own threshold values -> too many cells
    g2 = g.copy()
    g2[:, [qfh.G_WINDOW_INDEX, qfh.G_WS]] = g2[0, [qfh.G_WINDOW_INDEX, qfh.G_WS]]
    p2 = plan.plan_sweep(g2, cv, 30, n - 1, "auto")
    assert p2.n_threshold_rows == 0 and p2.n_groups == 0
    with pytest.raises(ValueError, match="histogram cells"):
        plan.plan_sweep(g2, cv, 30, n - 1, "threshold")
    check_against_brute(g[:40], fw, cv, 30, n - 1, "cpu", methods=("auto",))


def test_rows_outside_the_exact_range_use_the_float_brute_force(sample):
    g, fw, cv = sweep_arrays({k: v[:1200] for k, v in sample.items()}, every_field_grid())
    g[::5, qfh.G_SPREAD] = 1e9  # sums of squares ~1e21 pip^2: beyond the fixed-point range
    p = plan.plan_sweep(g, cv, 30, 1199, "auto")
    assert np.array_equal(p.brute, np.arange(0, len(g), 5))
    cb, sb = eng.run_sweep(g, fw, cv, 30, 1199, engine="cpu", method="brute")
    c, s = eng.run_sweep(g, fw, cv, 30, 1199, engine="cpu")
    assert np.array_equal(c, cb) and np.array_equal(s[:, ::5], sb[:, ::5])
    with pytest.raises(ValueError, match="exact fixed-point range"):
        eng.run_sweep(g, fw, cv, 30, 1199, engine="cpu", method="threshold")
    cv2 = cv.copy()
    cv2[1, 100] = -0.5  # vm < 0: thresholds x vm are not ordered
    assert plan.plan_sweep(g[1:5], cv2, 30, 1199).n_threshold_rows == 0
    with pytest.raises(ValueError, match="vm < 0"):
        plan.plan_sweep(g[1:5], cv2, 30, 1199, "threshold")


def test_planning_cache_follows_a_grid_changed_in_place(sample):
    g, fw, cv = sweep_arrays({k: v[:800] for k, v in sample.items()}, every_field_grid())
    a = eng.run_sweep(g, fw, cv, 30, 799, engine="cpu")
    assert plan.plan_sweep(g, cv, 30, 799) is not plan.plan_sweep(g, cv, 30, 799)
    g[:, qfh.G_BUY] += 0.01  # same array object, new contents: a new plan
    b = eng.run_sweep(g, fw, cv, 30, 799, engine="cpu")
    ref = eng.run_sweep(g, fw, cv, 30, 799, engine="cpu", method="brute")
    assert np.array_equal(b[0], ref[0]) and not np.array_equal(a[0], b[0])


def test_planning_paths_agree(sample, monkeypatch):
    """Sorted or shuffled rows, dense or sorted distinct-value tables: the same results."""
    g, fw, cv = sweep_arrays({k: v[:900] for k, v in sample.items()}, every_field_grid())
    ref = eng.run_sweep(g, fw, cv, 30, 899, engine="cpu")
    perm = np.random.default_rng(5).permutation(len(g))
    monkeypatch.setattr(plan, "_DENSE_MAX", 0)
    monkeypatch.setattr(plan, "_RECENT", [])
    p = plan.plan_sweep(g[perm], cv, 30, 899)
    assert p.n_groups == 12 and p.n_threshold_rows == len(g)
    c, s = eng.run_sweep(g[perm], fw, cv, 30, 899, engine="cpu")
    assert np.array_equal(c, ref[0][:, perm]) and np.array_equal(s, ref[1][:, perm])


def test_method_argument_and_empty_ranges(sample):
    g, fw, cv = sweep_arrays({k: v[:500] for k, v in sample.items()}, every_field_grid())
    with pytest.raises(ValueError, match="method='fast' is unknown"):
        eng.run_sweep(g, fw, cv, 0, 10, engine="cpu", method="fast")
    for m in plan.METHODS:
        c, s = eng.run_sweep(g, fw, cv, 50, 50, engine="cpu", method=m)
        assert not c.any() and not s.any()


def test_fixed_point_limbs_round_trip():
    rng = np.random.default_rng(1)
    for t in np.concatenate([rng.normal(0, 50, 500), [0.0, -0.0, 1e-300, -3.25, 2.0**-44,
                                                      1e4, -1e4, 0.5 * 2.0**-44]]):
        for q in (fixed.Q_SUM, fixed.Q_SQ):
            hi, lo = fixed.fixed_limbs(float(t), 2.0**q)
            assert 0 <= lo <= 2**32
            v = fixed.fixed_value(hi, lo, 2.0**-q)
            assert abs(v - t) <= 2.0**-q + fixed.U * abs(t)
            assert v == (hi * 2**32 + lo) * 2.0**-q  # correctly rounded from the integer
    assert fixed.exact_range_ok(10**6, 1000.0) and not fixed.exact_range_ok(10**6, 1e5)
    assert not fixed.exact_range_ok(10, math.inf) and not fixed.exact_range_ok(2**30, 1.0)


# ---- CUDA simulator and real GPU --------------------------------------------------------------

def _simulated_checks() -> None:
    """Runs inside the simulator: every exact GPU path against the CPU, bit for bit."""
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    from sep_research.data import load_sample
    from sep_research.kernels import cu
    from sep_research.signals.seed import SEED, ohlcv

    x = {k: v[:140] for k, v in ohlcv(load_sample()).items()}
    from sep_research.signals.grid import product_grid

    grid = product_grid(window=[5, 11], w_s=[0.3, 0.4], buy_threshold=[0.45, 0.5, 0.55],
                        sell_threshold=[0.47, 0.52], conf_threshold=[0.55, 0.65],
                        coh_threshold=[0.25, 0.35], min_move=[0.0, 0.5], spread=[0.0, 0.4])
    g, fw, cv = sweep_arrays(x, grid)
    lo, hi = 22, 139
    ref_c, ref_s = eng.run_sweep(g, fw, cv, lo, hi, engine="python", method="threshold")
    cb, _ = eng.run_sweep(g, fw, cv, lo, hi, engine="python", method="brute")
    assert np.array_equal(ref_c, cb)
    for m in ("threshold", "auto"):
        for qfast in (False, True):
            p = plan.plan_sweep(g, cv, lo, hi, m)
            c, s = cu.sweep_planned_cu(p, g, fw, cv, lo, hi, 40, 32, qfast)  # several blocks
            assert np.array_equal(c, ref_c) and np.array_equal(s, ref_s), (m, qfast)
    a = np.arange(10.0)
    assert cu._canonical(a.reshape(2, 5)) and not cu._canonical(a[None, :][:, ::2])
    z = np.lib.stride_tricks.as_strided(a, shape=(1, 10), strides=(0, 8))
    assert not cu._canonical(z) and np.array_equal(cu._to_device(z).copy_to_host(), z)
    # large copies to the host through the pinned staging buffer (made small here)
    old = cu.STAGED_COPY_MIN_BYTES, cu.STAGE_BYTES
    cu.STAGED_COPY_MIN_BYTES, cu.STAGE_BYTES = 64, 4000
    try:
        c, s = eng.run_sweep(g, fw, cv, lo, hi, engine="cuda", block=64)
        f = eng.compute_features(x["close"], x["high"], x["low"], x["volume"], [5, 11],
                                 SEED.to_vector(1e-4), engine="cuda")
    finally:
        cu.STAGED_COPY_MIN_BYTES, cu.STAGE_BYTES = old
    assert np.array_equal(c, ref_c) and np.array_equal(s, ref_s)
    assert np.array_equal(f, eng.compute_features(x["close"], x["high"], x["low"], x["volume"],
                                                  [5, 11], SEED.to_vector(1e-4), engine="python"),
                          equal_nan=True)
    # the exact brute force on the GPU: 3 chunks, 2 blocks
    p = plan.plan_sweep(g[:50], cv, lo, hi, "auto")
    p = plan.SweepPlan(p.brute, np.arange(50), [])
    c, s = cu.sweep_planned_cu(p, g[:50], fw, cv, lo, hi, 40, 32)
    assert np.array_equal(c, ref_c[:, :50]) and np.array_equal(s, ref_s[:, :50])
    # ties, through the engine switch
    g2, fw2, cv2, _, _ = tie_case()
    sel = g2[:: max(1, len(g2) // 50)]
    a = eng.run_sweep(sel, fw2, cv2, 0, 150, engine="python", method="threshold")
    b = eng.run_sweep(sel, fw2, cv2, 0, 150, engine="cuda", method="threshold", block=16)
    bb = eng.run_sweep(sel, fw2, cv2, 0, 150, engine="python", method="brute")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.array_equal(a[0], bb[0])
    print("simulated threshold-sweep checks passed")


@pytest.mark.slow
def test_threshold_sweep_in_the_cuda_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "tests.test_threshold_sweep"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "simulated threshold-sweep checks passed" in r.stdout


def _real_gpu() -> bool:
    return eng.cuda_available() and not eng.cuda_simulated()


@pytest.mark.gpu
@pytest.mark.skipif(not _real_gpu(), reason="needs a real CUDA GPU")
def test_threshold_sweep_on_the_gpu_equals_the_cpu(sample):
    g, fw, cv = sweep_arrays(sample, every_field_grid())
    n = len(sample["close"])
    cpu = eng.run_sweep(g, fw, cv, 30, n - 1, engine="cpu")
    cb, _ = eng.run_sweep(g, fw, cv, 30, n - 1, engine="cuda", method="brute")
    for m in ("auto", "threshold"):
        c, s = eng.run_sweep(g, fw, cv, 30, n - 1, engine="cuda", method=m)
        assert np.array_equal(c, cpu[0]) and np.array_equal(s, cpu[1]), m
        assert np.array_equal(c, cb), m
    from sep_research.kernels import cu

    p = plan.plan_sweep(g, cv, 30, n - 1, "auto")
    for qfast in (False, True):
        c, s = cu.sweep_planned_cu(p, g, fw, cv, 30, n - 1, 8192, 128, qfast)
        assert np.array_equal(c, cpu[0]) and np.array_equal(s, cpu[1]), qfast
    p = plan.SweepPlan(np.zeros(0, dtype=np.int64), np.arange(len(g)), [])
    c, s = cu.sweep_planned_cu(p, g, fw, cv, 30, n - 1, 1000, 64)
    assert np.array_equal(c, cpu[0]) and np.array_equal(s, cpu[1])
    g2, fw2, cv2, _, _ = tie_case()
    a = eng.run_sweep(g2, fw2, cv2, 0, cv2.shape[1], engine="cpu", method="brute")
    b = eng.run_sweep(g2, fw2, cv2, 0, cv2.shape[1], engine="cuda", method="threshold")
    assert np.array_equal(a[0], b[0])


if __name__ == "__main__":
    _simulated_checks()
