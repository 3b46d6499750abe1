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
    si = prepare_sweep(frame, grid, instrument="EUR_USD", half_spread_pips=None, engine="cpu")
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
    from sep_research.training.summary import build_payload

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


def test_cli_train_prints_direction_first_and_charges_financing(tmp_path: Path, capsys,
                                                                cache_dir: Path) -> None:
    """The printed table leads with direction right / decided and the same candles with random
    directions, labels the seed's metric, shows financing as its own column; the artifact
    carries the financing it was judged with (rates fetched into the cache win over the
    default table; --financing off is explicit)."""
    from sep_research import financing as fin
    from sep_research.cli import main

    fetched = fin.FinancingRates(long_rate=-0.05, short_rate=0.02, source="oanda:practice")
    fin.save_fetched(cache_dir, "EUR_USD", fetched, obtained="2026-01-05T00:00:00Z")
    out = tmp_path / "model.json"
    args = ["train", "--grid", "small", "--folds", "3", "--random", "40", "--no-progress"]
    assert main([*args, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    text = captured.out
    first = text.index("direction (out of sample): right / decided")
    assert first < text.index("the seed's metric") < text.index("trading (the verdict rests")
    assert "same candles, random dir." in text and "p(dir)" in text
    assert "rewards firing on volatile candles" in text
    assert "financing long -5.00 %/yr, short +2.00 %/yr" in captured.err
    art = json.loads(out.read_text())
    assert art["schema"] == "sep-model/3"
    assert art["costs"]["financing"]["long_rate"] == -0.05
    assert "oanda:practice" in art["costs"]["financing"]["source"]
    tuned = art["metrics"]["tuned"]
    assert tuned["trading"]["financing_pips"] < 0  # longs pay 5 %, shorts earn only 2 %
    assert tuned["signals"]["hc_direction_rate_ci95"] is not None
    assert art["baselines"]["tuned"]["random_direction"]["hc"]["n_draws"] == 40
    assert "after the spread and financing" in art["verdict"]["tuned"]
    assert art["objective"]["financing_in_selection"] is False
    assert main([*args, "--financing", "off", "--out", str(out)]) == 0
    assert "financing: off" in capsys.readouterr().err
    art = json.loads(out.read_text())
    assert art["costs"]["financing"] is None
    assert art["metrics"]["tuned"]["trading"]["financing_pips"] is None


def _varying_spread(frame, seed: int = 11):
    """The candles with a bid/ask spread that varies from candle to candle (0.2 to 3 pips)."""
    out = frame.copy()
    rng = np.random.default_rng(seed)
    half = rng.uniform(0.1, 1.5, size=(len(out), 4)) * 1e-4
    for j, col in enumerate(("open", "high", "low", "close")):
        out[f"bid_{col}"] = (out[col] - half[:, j]).round(5)
        out[f"ask_{col}"] = (out[col] + half[:, j]).round(5)
    return out


def _parity(frame, instrument: str, ranges, *, varying: bool = True) -> None:
    from sep_research.signals.sweep import sweep_seed

    grid = small_grid()
    si = prepare_sweep(frame, grid, instrument=instrument, half_spread_pips=None, engine="cpu")
    cols = grid.columns()
    spread = si.spread[np.isfinite(si.spread)]
    if varying:
        assert spread.std() > 0.1, "the spread must vary for this test to mean anything"
    for lo, hi in ranges:
        mine = sweep(si, lo, hi, engine="cpu")
        theirs = sweep_seed(frame, cols, score_start=lo, score_end=hi, engine="cpu")
        for key in ("n_non_hold", "n_correct", "n_hc", "n_hc_correct", "n_hc_buy"):
            assert np.array_equal(mine[key], theirs[key]), key
        for key in ("sum_pips_net", "sum_pips_net_sq", "hc_sum_pips_net", "hc_sum_pips_net_sq"):
            assert np.array_equal(mine[key], theirs[key]), key  # one sweep: the same bits


def test_training_sweep_and_sweep_seed_charge_the_same_varying_spread(frame) -> None:
    """One sweep, one spread: training's sweep (features once, sub-ranges) and sweep_seed
    (what sep batch spreads over GPUs; cuts the data at each range's end) give identical net
    pips on bid/ask data whose spread varies: the real sample's candles with a bid/ask spread
    varying from 0.2 to 3 pips, and synthetic candles. (Before, one charged the spread at
    candle i's close and the other at the next open, and the parity test forced them equal.)"""
    from sep_research.data import load_sample

    real = _varying_spread(load_sample().iloc[:2500])
    _parity(real, "EUR_USD", ((40, 900), (900, 2499)))
    _parity(_varying_spread(frame), "EUR_USD", ((40, 700), (900, 1799)))


def test_sweep_spread_parity_on_real_bid_ask(seed_o_test) -> None:
    from sep_research.data import read_candle_file

    real = read_candle_file(seed_o_test, instrument="EUR_USD", granularity="M1",
                            check_grid=False)
    _parity(real, "EUR_USD", ((60, 700), (700, 1439)), varying=False)  # its spread is 1.5


def test_the_sweep_charges_the_backtests_entry_spread(frame) -> None:
    """The spread the sweep charges a signal of candle i is the full spread at the open of
    candle i + 1, where the backtest's entry for it fills (bid/ask), or twice the half-spread
    (mid-only data)."""
    from sep_research.signals.sweep import sweep_spread_pips

    f = _varying_spread(frame)
    got = sweep_spread_pips(f, pip=1e-4)
    want = (f["ask_open"].to_numpy() - f["bid_open"].to_numpy()) * 1e4
    np.testing.assert_array_equal(got[:-1], want[1:])
    assert np.isnan(got[-1])  # the last candle has no label, so no trade
    mid = f[["open", "high", "low", "close", "volume"]]
    np.testing.assert_array_equal(sweep_spread_pips(mid, pip=1e-4, half_spread_pips=0.4)[:-1],
                                  0.8)
    with pytest.raises(ValueError, match="half_spread_pips"):
        sweep_spread_pips(mid, pip=1e-4)


def test_walk_forward_on_dask_workers_is_bit_identical(frame) -> None:
    """The walk-forward's sweeps through sep_research.sweeps on Dask workers (inputs prepared
    once, sent once) give the same result as in-process."""
    from distributed import Client, LocalCluster

    kw = {"instrument": "EUR_USD", "granularity": "H1", "grid": small_grid(), "n_folds": 2,
          "min_hc": 10, "n_random": 10, "spa_reps": 20, "pbo_splits": 4,
          "allow_synthetic": True, "progress": False, "engine": "cpu"}
    local = walk_forward(frame, **kw)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        remote = walk_forward(frame, client=client, **kw)
    assert [f.to_dict() for f in local.folds] == [f.to_dict() for f in remote.folds]
    assert local.final == remote.final
    assert local.overfitting["pbo"] == remote.overfitting["pbo"]


def test_period_net_pips_equal_sweeps_of_each_period(frame) -> None:
    """The overfitting statistics' one pass over consecutive periods gives each period's
    traded net pips as a sweep of that period does (float sums in candle order against the
    exact fixed-point sums: equal within rounding), for HC and for all signals, and for a
    list of ranges that is not one run."""
    from sep_research.signals.sweep import period_net_pips, run_prepared

    si = prepare_sweep(frame, small_grid(), instrument="EUR_USD", half_spread_pips=None,
                       engine="cpu")
    edges = list(range(40, 1760, 43))
    ranges = [*list(itertools.pairwise(edges)), (100, 130), (1500, 1700)]
    for trade_on, key in (("hc", "hc_sum_pips_net"), ("all", "sum_pips_net")):
        got = period_net_pips(si, ranges, trade_on=trade_on, engine="cpu")
        assert set(got) == set(ranges)
        for r in ranges:
            want = run_prepared(si, *r, engine="cpu")[key]
            np.testing.assert_allclose(got[r], want, rtol=0, atol=1e-9)
        assert any(np.abs(v).sum() > 0 for v in got.values())  # something was traded
    with pytest.raises(ValueError, match="outside"):
        period_net_pips(si, [(0, 10**6)])
