"""The candle frame type: validation of every bad input, provenance and the synthetic guard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sep_research.data.candles import (
    CandleError,
    SyntheticDataError,
    content_sha256,
    finish_frame,
    get_provenance,
    require_authentic,
    synthetic_candles,
    validate,
)


def frame(n: int = 5, gran: str = "M1") -> pd.DataFrame:
    return synthetic_candles(n, granularity=gran, seed=1)


def test_synthetic_frame_is_valid_and_labelled() -> None:
    f = frame(100)
    prov = get_provenance(f)
    assert prov.source == "synthetic" and prov.rows == 100 and prov.price == "MBA"
    assert str(f.index.tz) == "UTC" and f.index.name == "time"
    assert list(f.columns)[:4] == ["open", "high", "low", "close"]


def test_content_hash_depends_on_content_only() -> None:
    a, b = frame(50), frame(50)
    assert content_sha256(a) == content_sha256(b)
    b.iloc[10, b.columns.get_loc("close")] += 1e-5
    assert content_sha256(a) != content_sha256(b)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda f: f.iloc[[1, 0, 2, 3, 4]], "not sorted"),
        (lambda f: f.iloc[[0, 1, 1, 2, 3]], "duplicate"),
        (lambda f: f.assign(close=[np.nan, *f["close"].iloc[1:]]), "NaN"),
        (lambda f: f.assign(low=f["high"] + 0.001), "low <= open"),
        (lambda f: f.assign(bid_close=f["ask_close"] + 0.001), "low <= open|bid above ask"),
        (lambda f: f.assign(bid_open=f["ask_open"] + 0.0001, bid_high=f["ask_high"] + 0.0001,
                            bid_low=f["ask_low"] + 0.0001, bid_close=f["ask_close"] + 0.0001),
         "bid above ask"),
        (lambda f: f.set_axis(f.index + pd.Timedelta(seconds=33)), "off the M1 grid"),
    ],
)
def test_validation_names_the_problem_and_the_candle(mutate, message) -> None:
    bad = mutate(frame())
    with pytest.raises(CandleError, match=message) as err:
        validate(bad, "M1", name="input.csv")
    assert "input.csv" in str(err.value)


def test_unknown_granularity_and_instrument() -> None:
    with pytest.raises(CandleError, match="unknown granularity 'H5'"):
        validate(frame(), "H5")
    f = frame()
    with pytest.raises(CandleError, match="'EURUSD' is not an OANDA instrument"):
        finish_frame(f, source="file:x", instrument="EURUSD", granularity="M1", name="x")


def test_naive_times_are_rejected() -> None:
    f = frame()
    f.index = f.index.tz_localize(None)
    with pytest.raises(CandleError, match="timezone-aware"):
        finish_frame(f, source="file:x", instrument="EUR_USD", granularity="M1", name="x")


def test_off_grid_allowed_only_when_asked() -> None:
    f = frame().set_axis(frame().index + pd.Timedelta(seconds=33))
    out = finish_frame(f, source="file:x", instrument="EUR_USD", granularity="M1", name="x",
                       check_grid=False)
    assert get_provenance(out).rows == 5


def test_research_refuses_synthetic_unless_asked() -> None:
    f = frame()
    with pytest.raises(SyntheticDataError, match="refuses synthetic"):
        require_authentic(f)
    require_authentic(f, allow_synthetic=True)


def test_unknown_source_kind_is_refused() -> None:
    f = frame()
    with pytest.raises(CandleError, match="unknown provenance source"):
        finish_frame(f, source="made-up", instrument="EUR_USD", granularity="M1", name="x")
