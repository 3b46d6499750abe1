"""Signal scoring, trading figures and baselines (synthetic candles, labelled as such)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sep_research.data.candles import synthetic_candles
from sep_research.evaluation.metrics import evaluate_signals, score_signals, verdict

PIP = 1e-4


def _frame(closes: list[float]) -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=len(closes), freq="h", tz="UTC", name="time")
    c = np.asarray(closes)
    o = np.r_[c[0], c[:-1]]
    return pd.DataFrame({"open": o, "high": np.maximum(o, c), "low": np.minimum(o, c),
                         "close": c, "volume": 1, "complete": True}, index=idx)


def test_score_signals_hand_case() -> None:
    # moves in pips: +2, -0.3, -1, +0.6, (last candle: none)
    frame = _frame([1.1, 1.1002, 1.10017, 1.10007, 1.10013])
    actions = np.array([1, -1, -1, 1, 1])
    hc = np.array([True, True, False, False, True])
    s = score_signals(frame, actions, hc, instrument="EUR_USD")
    assert s["n_signals"] == 4  # the last candle is not scored
    assert s["hits"] == 3  # BUY +2 ok, SELL -0.3 wrong (inside half a pip), SELL -1 ok, BUY +0.6 ok
    assert s["n_hc"] == 2 and s["hc_hits"] == 1
    assert s["hit_rate"] == pytest.approx(0.75)
    assert s["signal_rate"] == pytest.approx(0.5)
    assert s["base_rate_up"] == pytest.approx(0.5) and s["base_rate_down"] == pytest.approx(0.25)
    lo, hi = s["hit_rate_ci95"]
    assert lo < 0.75 < hi


def test_no_signals_gives_labelled_none_not_nan() -> None:
    frame = synthetic_candles(200, granularity="H1", seed=2)
    out = evaluate_signals(frame, np.zeros(200), np.zeros(200, bool), instrument="EUR_USD",
                           granularity="H1", n_random=20)
    assert out["signals"]["hc_hit_rate"] is None and "hc_hit_rate_note" in out["signals"]
    assert out["trading"]["sharpe_annualised"] is None
    json.dumps(out, allow_nan=False)  # no NaN anywhere
    assert verdict(out).startswith("no edge")


def test_foresight_beats_random_and_random_does_not() -> None:
    frame = synthetic_candles(1500, granularity="H1", seed=7, spread_pips=0.2)
    move = np.r_[np.diff(frame["close"].to_numpy()), 0.0]
    cheat = np.where(move > 0, 1, -1)  # uses the future: must look like a huge edge
    rng = np.random.default_rng(0)
    hc = rng.random(1500) < 0.3
    mask = np.zeros(1500, bool)
    mask[500:] = True
    good = evaluate_signals(frame, cheat, hc, instrument="EUR_USD", granularity="H1",
                            mask=mask, n_random=200)
    assert good["signals"]["n_candles"] == 999
    # foresight is right on every move larger than half a pip, wrong on the rest
    big = np.abs(move / PIP) > 0.5
    ev = mask & hc
    ev[-1] = False
    assert good["signals"]["hc_hit_rate"] == pytest.approx(big[ev].mean())
    assert good["tests"]["pvalue_net_pips_vs_random"] == pytest.approx(1 / 201)
    assert verdict(good).startswith("edge")
    noise = evaluate_signals(frame, rng.choice([-1, 0, 1], 1500), hc, instrument="EUR_USD",
                             granularity="H1", mask=mask, n_random=200)
    assert noise["tests"]["pvalue_net_pips_vs_random"] > 0.01
    bl = noise["baselines"]
    assert bl["always_long"]["hit_rate"] == pytest.approx(noise["signals"]["base_rate_up"])
    lo, hi = bl["random"]["net_pips_95"]
    assert lo < bl["random"]["net_pips_mean"] < hi
    # trading figures are net of the spread: one-candle trades pay a spread each time
    assert noise["trading"]["costs_pips"] == pytest.approx(0.2 * noise["trading"]["n_trades"])
