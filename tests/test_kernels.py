"""QFH kernels (plain Python, numba CPU) against the naive reference (tests/naive.py).

Real data: the packaged sample and the seed-reference files (skipped when absent); random
bit strings for the window metrics. Counts must agree exactly, features bit for bit (same
machine, same libm), pip sums to rounding (the sweep sums in chunks).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sep_research.kernels import engine as eng
from sep_research.kernels import qfh
from sep_research.signals.grid import product_grid
from sep_research.signals.seed import SEED, label_moves, ohlcv, seed_features, seed_signals
from sep_research.signals.sweep import config_signals, sweep_seed, sweep_spread_pips
from tests import naive
from tests.conftest import SEED_EURUSD_M1, SEED_O_TEST, seed_file


def _frame(path):
    from sep_research.data import read_candle_file

    return read_candle_file(seed_file(path), instrument="EUR_USD", granularity="M1",
                            check_grid=False)


@pytest.fixture(scope="module")
def o_test():
    return _frame(SEED_O_TEST)


@pytest.fixture(scope="module")
def eurusd():
    return _frame(SEED_EURUSD_M1)


@pytest.fixture(scope="module")
def sample():
    from sep_research.data import load_sample

    return load_sample()


def _lists(frame, n=None):
    x = ohlcv(frame)
    return [list(x[k][:n]) for k in ("open", "high", "low", "close", "volume")]


def _same(a, b) -> bool:
    return np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float), equal_nan=True)


# ---- window metrics on random bit strings -----------------------------------------------------

@pytest.mark.parametrize("engine", ["python", "cpu"])
def test_window_metrics_match_naive_on_random_bits(engine):
    if engine == "cpu":
        from sep_research.kernels import nb

        wm = nb.window_metrics_nb
    else:
        wm = qfh.window_metrics
    rng = np.random.default_rng(12345)
    checked = 0
    for length in [2, 3, 5, 10, 11, 12, 19, 20, 21, 33, 64]:
        for p in (0.1, 0.5, 0.9):
            for _ in range(6):
                w = (rng.random(length + 3) < p).astype(np.int8)
                start = 3
                ref = naive.window_metrics(list(w[start:]), 0.3)
                got = wm(w, start, length, 0.3)
                n0, n1, n2, h, coh0, t, v, coh, collapsed = got
                assert (n0, n1, n2) == (ref["n_null"], ref["n_flip"], ref["n_rupture"])
                assert h == ref["entropy"] and coh0 == ref["coh0"] and coh == ref["coherence"]
                assert _same(t, ref["template"]) and _same(v, ref["damping"])
                assert bool(collapsed) == ref["collapse"]
                assert 0.05 <= h <= 1.0 and 0.0 <= coh <= 1.0
                checked += 1
    assert checked == 11 * 3 * 6


def test_window_metrics_edge_cases():
    # all zeros: only null pairs -> entropy floor, coherence from the formula
    w = np.zeros(12, dtype=np.int8)
    n0, n1, n2, h, _coh0, _t, v, _coh, col = qfh.window_metrics(w, 0, 12, 0.3)
    assert (n0, n1, n2) == (11, 0, 0) and h == 0.05 and v == 0.0 and not col
    # all ones: only ruptures -> collapse
    w = np.ones(12, dtype=np.int8)
    assert qfh.window_metrics(w, 0, 12, 0.3)[8]
    # alternating: only flips
    w = np.array([0, 1] * 6, dtype=np.int8)
    assert qfh.window_metrics(w, 0, 12, 0.3)[:3] == (0, 11, 0)


# ---- seed features and signals on real data ---------------------------------------------------

@pytest.mark.parametrize("alignment", ["legacy", "causal"])
@pytest.mark.parametrize("engine", ["python", "cpu"])
def test_seed_signals_match_naive_on_o_test(o_test, alignment, engine):
    ref = naive.seed_signals(*_lists(o_test), alignment=alignment)
    got = seed_signals(o_test, alignment=alignment, engine=engine)
    for k in ("coherence", "stability", "phase", "rupture", "entropy", "vm", "tf", "vf"):
        assert _same(got.features[k], ref[k]), k
    assert np.array_equal(got.has, ref["has"])
    assert np.array_equal(got.action, ref["action"])
    assert np.array_equal(got.hc, ref["hc"])
    assert _same(got.confidence, ref["confidence"])


@pytest.mark.parametrize("which", ["eurusd", "sample"])
def test_seed_signals_match_naive_on_real_data(which, request):
    frame = request.getfixturevalue(which)
    n = 2000
    ref = naive.seed_signals(*_lists(frame, n), alignment="causal")
    x = {k: v[:n] for k, v in ohlcv(frame).items()}
    got = seed_signals(x, instrument="EUR_USD", engine="cpu")
    assert np.array_equal(got.action, ref["action"]) and np.array_equal(got.hc, ref["hc"])
    assert _same(got.confidence, ref["confidence"])
    assert (got.action != 0).sum() > 100  # the data produce signals at all


def test_features_batch_many_series_and_windows(sample, eurusd):
    n = 700
    xs = [ohlcv(sample), ohlcv(eurusd)]
    cols = {k: np.stack([x[k][:n] for x in xs]) for k in ("close", "high", "low", "volume")}
    windows = [3, 11, 24]
    prm = SEED.to_vector(1e-4)
    outs = {}
    for engine in ("python", "cpu"):
        outs[engine] = eng.compute_features(cols["close"], cols["high"], cols["low"],
                                            cols["volume"], windows, prm, engine=engine)
    assert outs["cpu"].shape == (qfh.N_FEATURES, n, 2 * 3)
    assert _same(outs["cpu"], outs["python"])
    for s, x in enumerate(xs):
        for j, w in enumerate(windows):
            ref = naive.seed_signals(*[list(x[k][:n]) for k in
                                       ("open", "high", "low", "close", "volume")],
                                     alignment="causal", prm={"window": w})
            col = s * len(windows) + j
            for name in ("coherence", "stability", "phase", "tf", "vm"):
                q = qfh.FEATURE_NAMES.index(name)
                assert _same(outs["cpu"][q, :, col], ref[name]), (s, w, name)

    # the sweep's table of some of them: the same values, column-major, in the order asked
    rows = (qfh.F_TF, qfh.F_HAS, qfh.F_VM)
    for engine in ("python", "cpu"):
        tab = eng.compute_feature_table(cols["close"], cols["high"], cols["low"],
                                        cols["volume"], windows, prm, rows, engine=engine)
        assert tab.shape == (3, 2 * 3, n) and tab.flags.c_contiguous
        assert _same(tab, outs["cpu"][list(rows)].transpose(0, 2, 1))
    with pytest.raises(ValueError, match="features must be indices"):
        eng.compute_feature_table(cols["close"], cols["high"], cols["low"], cols["volume"],
                                  windows, prm, (qfh.N_FEATURES,), engine="cpu")


# ---- the fused sweep -----------------------------------------------------------------------

def _naive_grid(grid):
    return [grid.row_dict(k) for k in range(len(grid))]


def _check_sweep(res, ref):
    for name in qfh.SWEEP_COUNTS:
        assert np.array_equal(res[name], [r[name] for r in ref]), name
    for name in qfh.SWEEP_SUMS:
        np.testing.assert_allclose(res[name], [r[name] for r in ref], rtol=1e-10, atol=1e-8,
                                   err_msg=name)


@pytest.mark.parametrize("alignment", ["causal", "legacy"])
def test_sweep_matches_naive_on_o_test(o_test, alignment):
    grid = product_grid(window=[9, 11, 14], buy_threshold=[0.45, 0.5], w_s=[0.4, 0.2],
                        conf_threshold=[0.6, 0.65])
    x = ohlcv(o_test)
    # the sweep charges candle i's signal the spread at the open of t + 1 (t: its label's
    # start); the naive sweep indexes its spread list by t
    by_candle = sweep_spread_pips(o_test, pip=1e-4, alignment=alignment)
    t = np.arange(len(by_candle)) - (alignment == "legacy")
    spread = np.full(len(by_candle), np.nan)
    ok = (t >= 0) & np.isfinite(by_candle)
    spread[t[ok]] = by_candle[ok]
    assert np.nanmean(spread) > 0  # the file has bid/ask
    s0, s1 = 150, 1200
    ref = naive.sweep(*_lists(o_test), _naive_grid(grid), s0, s1, list(spread), alignment)
    for engine in ("cpu", "python"):
        res = sweep_seed(o_test, grid, score_start=s0, score_end=s1, alignment=alignment,
                         engine=engine, chunk=100)
        _check_sweep(res, ref)
    assert res["n_hc"].max() > 0 and res["n_non_hold"].min() > 0
    # the first configuration is the seed preset: its counts equal the scoring of its signals
    seed_row = grid.row_dict(0)
    sig = config_signals(x, seed_row, instrument="EUR_USD", alignment=alignment, engine="cpu")
    mv = label_moves(x["close"], pip=1e-4, alignment=alignment)
    sl = slice(s0, s1)
    nh = (sig.action[sl] != 0) & ~np.isnan(mv[sl])
    assert res["n_non_hold"][0] == nh.sum()
    assert res["n_hc"][0] == (nh & sig.hc[sl]).sum()


def test_sweep_matches_naive_on_sample_with_extra_spread(sample):
    n = 1500
    x = {k: v[:n] for k, v in ohlcv(sample).items()}
    grid = {"window": np.array([11, 11, 20, 6]), "sell_threshold": np.array([0.52, 0.4, 0.5, 0.6]),
            "min_move": np.array([0.5, 0.0, 2.0, 0.5]), "spread": np.array([0.0, 1.0, 0.5, 0.0]),
            "coh_threshold": np.array([0.3, 0.2, 0.4, 0.3])}
    spread = np.full(n, 0.8)
    ref_grid = [{k: (int(v[i]) if k == "window" else float(v[i])) for k, v in grid.items()}
                for i in range(4)]
    ref = naive.sweep(*[list(x[k]) for k in ("open", "high", "low", "close", "volume")],
                      ref_grid, 30, n - 1, list(spread), "causal")
    res = sweep_seed(x, grid, score_start=30, score_end=n - 1, half_spread_pips=0.4,
                     instrument="EUR_USD", engine="cpu", chunk=256)
    _check_sweep(res, ref)


def test_sweep_ignores_data_after_score_end(sample):
    x = ohlcv(sample)
    grid = product_grid(window=[7, 11], buy_threshold=[0.45, 0.5, 0.55])
    a = sweep_seed(x, grid, score_start=100, score_end=3000, half_spread_pips=0.25,
                   instrument="EUR_USD", engine="cpu")
    y = {k: v.copy() for k, v in x.items()}
    for k in ("open", "high", "low", "close"):
        y[k][3001:] *= 1.05  # everything after the last label changes
    b = sweep_seed(y, grid, score_start=100, score_end=3000, half_spread_pips=0.25,
                   instrument="EUR_USD", engine="cpu")
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_sweep_rejects_bad_input(sample):
    x = ohlcv(sample)
    n = len(x["close"])
    kw = {"instrument": "EUR_USD", "half_spread_pips": 0.5}
    with pytest.raises(ValueError, match="score range"):
        sweep_seed(x, {"window": [11]}, score_start=0, score_end=n, **kw)  # needs the next close
    with pytest.raises(ValueError, match="unknown grid fields"):
        sweep_seed(x, {"windw": [11]}, score_start=0, score_end=10, **kw)
    with pytest.raises(ValueError, match="one length"):
        sweep_seed(x, {"window": [11, 12], "w_s": [0.4]}, score_start=0, score_end=10, **kw)
    with pytest.raises(ValueError, match="integers >= 2"):
        sweep_seed(x, {"window": [1.5]}, score_start=0, score_end=10, **kw)
    with pytest.raises(ValueError, match="chunk"):
        sweep_seed(x, {"window": [11]}, score_start=0, score_end=10, chunk=0, **kw)
    with pytest.raises(ValueError, match="instrument"):  # arrays name no instrument: no pip
        sweep_seed(x, {"window": [11]}, score_start=0, score_end=10, half_spread_pips=0.5)
    with pytest.raises(ValueError, match="half_spread_pips"):  # mid only: the spread is paid
        sweep_seed(x, {"window": [11]}, score_start=0, score_end=10, instrument="EUR_USD")


# ---- engine switch ---------------------------------------------------------------------------

def test_engine_switch():
    assert eng.resolve_engine("cpu") == "cpu"
    assert eng.resolve_engine("python") == "python"
    assert eng.resolve_engine("auto") in ("cpu", "cuda")
    with pytest.raises(eng.EngineError, match="unknown"):
        eng.resolve_engine("gpu")


@pytest.mark.skipif(eng.cuda_available(), reason="a CUDA GPU (or the simulator) is present")
def test_forcing_cuda_without_gpu_is_a_clear_error(o_test):
    with pytest.raises(eng.EngineError, match="no CUDA GPU"):
        seed_features(o_test, engine="cuda")
    from sep_research.cli import main

    assert main(["reproduce-seed", "--data", str(SEED_O_TEST), "--engine", "cuda"]) == 2


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="alignment"):
        seed_signals({"close": [1.0, 2.0, 3.0], "high": [1, 2, 3], "low": [1, 2, 3],
                      "volume": [1, 1, 1]}, instrument="EUR_USD", alignment="future")
    with pytest.raises(ValueError, match="close holds NaN"):
        seed_signals({"close": [1.0, math.nan, 3.0], "high": [1, 2, 3], "low": [1, 2, 3],
                      "volume": [1, 1, 1]}, instrument="EUR_USD")
    with pytest.raises(ValueError, match="no 'volume'"):
        seed_signals({"close": [1.0, 2.0], "high": [1, 2], "low": [1, 2]}, instrument="EUR_USD")
    with pytest.raises(ValueError, match="instrument"):
        seed_signals({"close": [1.0, 2.0], "high": [1, 2], "low": [1, 2], "volume": [1, 1]})
    with pytest.raises(ValueError, match="window"):
        SEED.with_(window=1)
