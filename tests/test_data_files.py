"""Importing candle files: both OANDA JSON forms, CSV, the packaged sample, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sep_research.data.candles import CandleError, get_provenance
from sep_research.data.files import read_candle_file
from sep_research.data.sample import load_sample


def test_packaged_sample_is_real_eurusd_h1() -> None:
    f = load_sample()
    prov = get_provenance(f)
    assert prov.source.startswith("package:backtesting==")
    assert (prov.instrument, prov.granularity, prov.rows) == ("EUR_USD", "H1", 5000)
    assert prov.start.startswith("2017-04") and prov.end.startswith("2018-02")
    assert 1.0 < f["close"].min() < f["close"].max() < 1.3


def test_oanda_json_with_bid_ask(seed_o_test: Path) -> None:
    f = read_candle_file(seed_o_test, instrument="EUR_USD", granularity="M1", check_grid=False)
    assert len(f) == 1440 and get_provenance(f).price == "MBA"
    assert (f["bid_close"] <= f["ask_close"]).all()
    with pytest.raises(CandleError, match="off the M1 grid"):
        read_candle_file(seed_o_test, instrument="EUR_USD", granularity="M1")


def test_plain_json_list(seed_eurusd_m1: Path) -> None:
    f = read_candle_file(seed_eurusd_m1, instrument="EUR_USD", granularity="M1")
    assert len(f) == 2880 and get_provenance(f).source == "file:eur_usd_m1_48h.json"


def _write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


def test_csv_import(tmp_path: Path) -> None:
    p = _write_csv(tmp_path / "c.csv", [
        "time,open,high,low,close,volume",
        "2024-01-02T00:00:00Z,1.1,1.2,1.0,1.15,10",
        "2024-01-02T00:01:00Z,1.15,1.16,1.14,1.15,3",
    ])
    f = read_candle_file(p, instrument="EUR_USD", granularity="M1")
    assert f.index[1] == pd.Timestamp("2024-01-02T00:01:00Z")
    assert f["volume"].tolist() == [10, 3]


def test_naive_csv_times_are_read_as_utc_and_noted(tmp_path: Path) -> None:
    p = _write_csv(tmp_path / "c.csv", ["Date,Open,High,Low,Close", "2024-01-02 05:00,1,1,1,1"])
    f = read_candle_file(p, instrument="EUR_USD", granularity="H1")
    assert f.index[0] == pd.Timestamp("2024-01-02T05:00Z")
    assert "naive times read as UTC" in get_provenance(f).note


@pytest.mark.parametrize(
    "content, message",
    [
        ("time,open,high,low\n2024-01-02T00:00:00Z,1,1,1\n", "missing columns \\['close'\\]"),
        ("open,high,low,close\n1,1,1,1\n", "no time column"),
        ("time,open,high,low,close\nyesterday,1,1,1,1\n", "bad time value"),
        ("time,open,high,low,close\n2024-01-02T00:00:00Z,1,x,1,1\n", "not numeric"),
        ("time,open,high,low,close\n2024-01-02T00:01:00Z,1,1,1,1\n2024-01-02T00:00:00Z,1,1,1,1\n",
         "not sorted"),
        ("time,open,high,low,close\n2024-01-02T00:01:00Z,1,1,1,1\n2024-01-02T00:01:00Z,1,1,1,1\n",
         "duplicate"),
        ("time,open,high,low,close\n2024-01-02T00:01:00Z,1,1,1,\n", "NaN"),
        ('time,open,"high\n', "malformed CSV|missing columns"),
        ("", "malformed CSV"),
    ],
)
def test_bad_csv(tmp_path: Path, content: str, message: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(CandleError, match=message) as err:
        read_candle_file(p, instrument="EUR_USD", granularity="M1")
    assert "bad.csv" in str(err.value)


@pytest.mark.parametrize(
    "payload, message",
    [
        ("{not json", "bad.json: not valid JSON"),
        (json.dumps({"prices": []}), "no 'candles' list"),
        (json.dumps({"candles": [{"time": "2024-01-02T00:00:00Z", "volume": 1}]}), "no 'mid'"),
        (json.dumps({"candles": [{"time": "2024-01-02T00:00:00Z", "mid": {"o": "1", "h": "1"}}]}),
         "misses mid.l"),
        (json.dumps({"instrument": "USD_JPY", "candles": [
            {"time": "2024-01-02T00:00:00Z", "mid": {"o": "1", "h": "1", "l": "1", "c": "1"}}]}),
         "file says instrument 'USD_JPY'"),
        (json.dumps([1, 2]), "list of candle objects"),
    ],
)
def test_bad_json(tmp_path: Path, payload: str, message: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(payload)
    with pytest.raises(CandleError, match=message):
        read_candle_file(p, instrument="EUR_USD", granularity="M1")


def test_missing_file_and_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(CandleError, match="no such file"):
        read_candle_file(tmp_path / "nope.csv", instrument="EUR_USD", granularity="M1")
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(CandleError, match="unknown file type"):
        read_candle_file(tmp_path / "x.xlsx", instrument="EUR_USD", granularity="M1")


def _sep(*args: str, env_cache: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = dict(os.environ, SEP_CACHE_DIR=str(env_cache))
    return subprocess.run([sys.executable, "-m", "sep_research.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def test_cli_sample_then_list_shows_provenance(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    r = _sep("data", "sample", env_cache=cache)
    assert r.returncode == 0, r.stderr
    r = _sep("data", "list", env_cache=cache)
    assert r.returncode == 0, r.stderr
    assert "EUR_USD H1" in r.stdout and "package:backtesting==" in r.stdout
    assert "5000 candles" in r.stdout and "sha256" in r.stdout


def test_cli_bad_import_names_file_and_leaves_cache_unchanged(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert _sep("data", "sample", env_cache=cache).returncode == 0
    before = {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()}
    bad = tmp_path / "broken.csv"
    bad.write_text("time,open,high,low,close\n2017-05-01T00:00:00Z,1,0.5,1,1\n")
    r = _sep("data", "import", str(bad), "--instrument", "EUR_USD", "--granularity", "H1",
             env_cache=cache)
    assert r.returncode == 2 and "broken.csv" in r.stderr and "Traceback" not in r.stderr
    after = {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()}
    assert before == after
    r = _sep("data", "import", str(bad), "--instrument", "EUR_USD", "--granularity", "H7",
             env_cache=cache)
    assert r.returncode == 2 and "unknown granularity 'H7'" in r.stderr
