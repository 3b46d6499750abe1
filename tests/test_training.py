"""Walk-forward training: folds, purge, choice on training only, bad input, the CLI.

Unit tests use synthetic candles (labelled synthetic, allowed explicitly); the CLI test runs on
the packaged real sample.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from sep_research.data.candles import SyntheticDataError, synthetic_candles
from sep_research.training.grid import make_grid, small_grid
from sep_research.training.walkforward import (
    make_folds,
    per_candle_sharpe,
    prepare_sweep,
    sweep,
    walk_forward,
)


@pytest.fixture(scope="module")
def frame():
    return synthetic_candles(1800, granularity="H1", seed=3, spread_pips=0.6)


@pytest.fixture(scope="module")
def result(frame):
    return walk_forward(frame, instrument="EUR_USD", granularity="H1", grid=small_grid(),
                        n_folds=3, min_hc=10, n_random=50, spa_reps=50, pbo_splits=8,
                        allow_synthetic=True, progress=False, engine="cpu")


def test_folds_rolling_and_anchored_are_purged_and_ordered() -> None:
    for scheme in ("rolling", "anchored"):
        folds = make_folds(1000, 4, scheme=scheme, warmup=10, purge=2, min_train=100,
                           min_test=50)
        assert len(folds) == 4
        for a, b in itertools.pairwise(folds):
            assert a.test[1] == b.test[0]  # test folds tile the range
        for f in folds:
            assert f.train[1] + 2 == f.test[0]  # purge of 2 candles
            assert f.train[0] >= 10
        assert folds[-1].test[1] == 999  # the last candle has no label
        if scheme == "anchored":
            assert all(f.train[0] == 10 for f in folds)
        else:
            assert len({f.train[1] - f.train[0] for f in folds}) == 1
    with pytest.raises(ValueError, match="too few candles for 20 folds"):
        make_folds(1000, 20, warmup=10)


def test_choice_uses_training_only_and_stitches_test_signals(frame, result) -> None:
    from sep_research.signals.seed import seed_signals

    assert len(result.folds) == 3
    for f in result.folds:
        lo, hi = f.test
        assert result.oos_mask[lo:hi].all()
        assert f.chosen is not None and f.train_n_hc >= 10
        sig = seed_signals(frame, small_grid().params(f.chosen), engine="cpu")
        assert np.array_equal(result.oos_action[lo:hi], sig.action[lo:hi])
        # the sweep kernel's count on the test fold agrees with the per-candle signals
        hc = sig.hc[lo:hi] & (sig.action[lo:hi] != 0)
        assert f.test_n_hc == int(hc.sum())
    assert not result.oos_mask[: result.folds[0].test[0]].any()
    tuned = result.evaluation["tuned"]
    assert tuned["signals"]["n_candles"] == int(result.oos_mask[:-1].sum())
    for key in ("always_long", "always_short", "random"):
        assert key in tuned["baselines"]
    json.dumps({"e": result.evaluation, "o": result.overfitting, "s": result.stability},
               allow_nan=False, default=float)


def test_choice_is_the_best_eligible_on_the_training_fold(frame) -> None:
    grid = small_grid()
    res = walk_forward(frame, instrument="EUR_USD", granularity="H1", grid=grid, n_folds=2,
                       min_hc=10, n_random=10, spa_reps=20, pbo_splits=4,
                       allow_synthetic=True, progress=False, engine="cpu")
    si = prepare_sweep(frame, grid.__class__(grid.table, grid.base.with_(pip=1e4)), pip=1e-4,
                       half_spread_pips=None, engine="cpu")
    for f in res.folds:
        sw = sweep(si, *f.train, engine="cpu")
        ok = sw["n_hc"] >= 10
        best = np.flatnonzero(ok)[np.argmax(sw["hc_sum_pips_net"][ok])]
        assert f.chosen == best
        assert f.train_objective == pytest.approx(sw["hc_sum_pips_net"][best])


def test_per_candle_sharpe_from_sums_matches_direct() -> None:
    rng = np.random.default_rng(0)
    pnl = np.where(rng.random(300) < 0.2, rng.normal(0.1, 2.0, 300), 0.0)
    sw = {"n_candles": np.array([300]), "hc_sum_pips_net": np.array([pnl.sum()]),
          "hc_sum_pips_net_sq": np.array([(pnl**2).sum()])}
    assert per_candle_sharpe(sw)[0] == pytest.approx(pnl.mean() / pnl.std(ddof=1))


def test_unreachable_min_hc_abstains_with_a_label(frame) -> None:
    from sep_research.training.report import build_payload

    res = walk_forward(frame, instrument="EUR_USD", granularity="H1", grid=small_grid(),
                       n_folds=2, min_hc=10_000, n_random=10, spa_reps=20, pbo_splits=4,
                       allow_synthetic=True, progress=False, engine="cpu")
    assert all(f.chosen is None and f.note.startswith("abstained") for f in res.folds)
    assert res.evaluation["tuned"]["signals"]["n_hc"] == 0
    assert res.evaluation["tuned"]["signals"]["hc_hit_rate"] is None
    assert res.stability["folds_abstained"] == 2
    with pytest.raises(ValueError, match="no model to write"):
        build_payload(res, frame)


def test_bad_input_gives_clear_errors(frame) -> None:
    kw = {"instrument": "EUR_USD", "granularity": "H1", "grid": small_grid(), "progress": False}
    with pytest.raises(ValueError, match="legacy"):
        walk_forward(frame, alignment="legacy", allow_synthetic=True, **kw)
    with pytest.raises(SyntheticDataError):
        walk_forward(frame, **kw)
    with pytest.raises(ValueError, match="too few candles"):
        walk_forward(frame.iloc[:300], n_folds=5, allow_synthetic=True, **kw)
    with pytest.raises(ValueError, match="objective"):
        walk_forward(frame, objective="profit", allow_synthetic=True, **kw)
    with pytest.raises(ValueError, match="empty"):
        make_grid(windows=())


@pytest.mark.parametrize("objective", ["hc_accuracy", "sharpe"])
def test_other_objectives_run(frame, objective: str) -> None:
    res = walk_forward(frame, instrument="EUR_USD", granularity="H1", grid=small_grid(),
                       n_folds=2, min_hc=10, objective=objective, n_random=10, spa_reps=20,
                       pbo_splits=4, allow_synthetic=True, progress=False, engine="cpu")
    assert all(f.train_objective is not None for f in res.folds)


@pytest.mark.slow
def test_cli_train_on_sample_writes_an_artifact_that_verifies(tmp_path: Path, capsys) -> None:
    from sep_research.cli import main

    out = tmp_path / "model.json"
    rc = main(["train", "--grid", "small", "--folds", "3", "--random", "50", "--no-progress",
               "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "seed preset (untuned)" in text and "always long" in text and "verdict" in text
    assert main(["model", "verify", str(out)]) == 0
    art = json.loads(out.read_text())
    assert art["alignment"] == "causal" and art["instrument"] == "EUR_USD"
    assert art["data"]["provenance"]["source"].startswith("package:backtesting")
    assert set(art["signal_params"]) >= {"window", "w_s", "w_c", "w_e", "buy_threshold"}
    raw = bytearray(out.read_bytes())
    pos = raw.index(b'"window"')
    raw[pos + 1] = ord("W")
    out.write_bytes(bytes(raw))
    assert main(["model", "verify", str(out)]) == 1
    assert main(["train", "--instrument", "USD_JPY", "--out", str(out)]) == 2


def test_prepared_sweep_equals_the_signals_sweep_api(frame) -> None:
    """The walk-forward computes features once and sweeps sub-ranges; the signals package's
    sweep_seed cuts the data at each range's end first. Causal features make them equal."""
    from sep_research.signals.sweep import sweep_seed
    from sep_research.training.grid import COLUMNS

    grid = small_grid()
    si = prepare_sweep(frame, grid, pip=1e-4, half_spread_pips=None, engine="cpu")
    cols = {name: grid.table[:, j] for j, name in enumerate(COLUMNS)}
    for lo, hi in ((40, 700), (900, 1799)):
        mine = sweep(si, lo, hi, engine="cpu")
        theirs = sweep_seed(frame, cols, score_start=lo, score_end=hi, spread_pips=si.spread,
                            engine="cpu")
        for key in ("n_non_hold", "n_hc", "n_hc_correct", "n_hc_buy"):
            assert np.array_equal(mine[key], theirs[key]), key
        for key in ("sum_pips_net", "hc_sum_pips_net"):
            np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-12, atol=1e-9)
