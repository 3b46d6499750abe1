"""The packaged real samples (issue 14): provenance, price labelling, times, the CLI."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pandas as pd
import pytest

from sep_research import fx
from sep_research.cli import main as sep
from sep_research.data.cache import CandleCache
from sep_research.data.candles import CandleError, get_provenance
from sep_research.data.load import load_candles
from sep_research.data.sample import DEFAULT_SAMPLE, SAMPLES, load_sample
from sep_research.data.summary import summarise

ASK = "anytrading-eurusd-h1-ask"


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_anytrading = pytest.mark.skipif(
    not _installed("gym-anytrading"),
    reason="gym-anytrading is not installed (pip install 'sep-research[research]')")


def test_default_sample_is_unchanged() -> None:
    prov = get_provenance(load_sample())
    assert DEFAULT_SAMPLE == "backtesting-eurusd-h1"
    assert prov.source.startswith("package:backtesting==") and prov.price == "M"
    assert prov.extra["file"] == "backtesting/test/EURUSD.csv"
    assert prov.extra["licence"].startswith("AGPL")
    assert get_provenance(load_candles("sample")).sha256 == prov.sha256


def test_unknown_sample_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(CandleError, match="unknown sample 'nope'.*" + ASK):
        load_sample("nope")
    with pytest.raises(CandleError, match="is EUR_USD H1, not USD_JPY H1"):
        load_candles(f"sample:{ASK}", "USD_JPY", "H1")


@needs_anytrading
def test_anytrading_sample_is_real_eurusd_h1_ask_with_full_provenance() -> None:
    f = load_sample(ASK)
    prov = get_provenance(f)
    version = importlib.metadata.version("gym-anytrading")
    assert prov.source == f"package:gym-anytrading=={version}"
    assert (prov.instrument, prov.granularity, prov.rows) == ("EUR_USD", "H1", 6225)
    assert prov.price == "A" and prov.extra["ohlc_price"] == "ask"  # ask, never called mid
    assert prov.extra["file"] == "gym_anytrading/datasets/data/FOREX_EURUSD_1H_ASK.csv"
    assert prov.extra["package"] == f"gym-anytrading=={version}"
    assert prov.extra["licence"].startswith("MIT")
    assert "ASK" in prov.note and "UTC" in prov.extra["times"]
    assert (prov.start, prov.end) == ("2017-01-01T22:00:00Z", "2017-12-29T21:00:00Z")
    assert not any(c.startswith(("bid_", "ask_")) for c in f.columns)
    assert (f["volume"] == 0).all()  # the file's Volume is not a tick count: not kept
    assert 1.03 < f["close"].min() < f["close"].max() < 1.21
    # read as UTC, every candle lies inside the FX week, the first and last on its edges
    assert all(fx.market_open(t.to_pydatetime()) for t in f.index)
    assert not fx.market_open((f.index[0] - pd.Timedelta(hours=1)).to_pydatetime())
    assert "open .. close are ASK prices" in summarise(f)
    assert "gym_anytrading" not in sys.modules  # read from the package, never imported


@needs_anytrading
def test_anytrading_sample_through_the_cache_and_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "c"
    assert sep(["data", "sample", "--name", ASK, "--cache-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "package:gym-anytrading==" in out and "price A" in out and "MIT" in out
    back = CandleCache(root).load("EUR_USD", "H1")
    assert get_provenance(back).price == "A"
    assert get_provenance(back).sha256 == get_provenance(load_sample(ASK)).sha256
    (rep,) = CandleCache(root).verify()
    assert rep.ok and [g[0][:10] for g in rep.gaps] == ["2017-12-22", "2017-12-25"]
    assert sep(["data", "sample", "--list"]) == 0
    listed = capsys.readouterr().out
    for name in SAMPLES:
        assert name in listed
    assert "ASK prices" in listed
