"""Hostile and edge-case candle files: the review's findings 5, 18 and 20 (data part).

Every bad file gets a clear error that names the file (and the row where there is one), no
traceback, and never changes what is stored. Every test names its finding in its docstring.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sep_research.cli import main as sep
from sep_research.data.cache import CacheError, CandleCache
from sep_research.data.candles import CandleError, validate
from sep_research.data.files import read_candle_file
from sep_research.data.sample import load_sample

HEAD = "time,open,high,low,close,volume"


def csv(tmp_path: Path, *rows: str, name: str = "in.csv", head: str = HEAD) -> Path:
    p = tmp_path / name
    p.write_text("\n".join((head, *rows)) + "\n")
    return p


def oanda_json(tmp_path: Path, candles: list[dict], name: str = "in.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps({"candles": candles}))
    return p


def candle(t: str, o: object = "1.1", complete: object = True, volume: object = 5) -> dict:
    return {"time": t, "volume": volume, "complete": complete,
            "mid": {"o": o, "h": "1.2", "l": "1.0", "c": "1.1"}}


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != ".lock"}


def refused(path: Path, match: str, granularity: str = "M1") -> str:
    with pytest.raises(CandleError, match=match) as err:
        read_candle_file(path, instrument="EUR_USD", granularity=granularity)
    assert path.name in str(err.value), str(err.value)
    return str(err.value)


# ------------------------------------------------------------------------------ finding 5


@pytest.mark.parametrize("bad", ["inf", "-inf", "+inf", "Infinity", "1e300", "1e308"])
def test_non_finite_and_absurd_prices_are_refused_on_import(tmp_path: Path, bad: str) -> None:
    """Finding 5: +inf (and 1e300) prices passed import; now refused, naming file and row."""
    p = csv(tmp_path, "2024-01-02T00:00:00Z,1.1,1.2,1.0,1.1,3",
            f"2024-01-02T00:01:00Z,1.1,{bad},1.0,1.1,3")
    msg = refused(p, "finite|too large")
    assert "row 1" in msg


def test_all_inf_row_and_json_infinity_are_refused(tmp_path: Path) -> None:
    """Finding 5: an all-inf row and JSON's Infinity literal passed import."""
    refused(csv(tmp_path, "2024-01-02T00:00:00Z,inf,inf,inf,inf,1"), "finite")
    p = tmp_path / "inf.json"
    p.write_text('{"candles": [{"time": "2024-01-02T00:00:00Z", "volume": 1, '
                 '"mid": {"o": Infinity, "h": Infinity, "l": 1.0, "c": 1.0}}]}')
    refused(p, "Infinity|finite")
    refused(oanda_json(tmp_path, [candle("2024-01-02T00:00:00Z", o="inf")], "s.json"), "finite")


def test_validate_refuses_infinite_prices_in_every_component() -> None:
    """Finding 5: validate() checked NaN but not infinity."""
    from sep_research.data.candles import synthetic_candles

    for col in ("high", "bid_high", "ask_high"):
        f = synthetic_candles(5, seed=2)
        f.iloc[2, f.columns.get_loc(col)] = np.inf
        with pytest.raises(CandleError, match="finite") as err:
            validate(f, "M1", name="frame-x")
        assert "frame-x" in str(err.value) and "row 2" in str(err.value)


def test_sep_data_verify_fails_a_stored_infinite_price(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Finding 5: `sep data verify` said ok for a dataset holding inf (stored by an older
    version, whose hashes match)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sep_research.data.candles import content_sha256

    cache = CandleCache(tmp_path)
    prov = cache.write(load_sample())
    d = cache.dataset_dir(prov.source, "EUR_USD", "H1")
    meta = json.loads((d / "meta.json").read_text())
    name = next(iter(meta["files"]))
    path = d / name
    t = pq.read_table(path)
    df = t.to_pandas()
    df.iloc[3, df.columns.get_loc("high")] = np.inf
    pq.write_table(pa.Table.from_pandas(df).replace_schema_metadata(t.schema.metadata), path)
    meta["files"][name] = content_sha256(df)
    meta.get("sizes", {}).pop(name, None)
    (d / "meta.json").write_text(json.dumps(meta))
    assert sep(["data", "verify", "--cache-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "finite" in out


@pytest.mark.parametrize("value, stored", [
    (True, 1), (False, 0), ("true", 1), ("false", 0), ("FALSE", 0), (1, 1), (0, 0),
])
def test_complete_is_parsed_strictly(tmp_path: Path, value: object, stored: int) -> None:
    """Finding 5: `complete` as the string "false" was read as true (and stored)."""
    f = read_candle_file(oanda_json(tmp_path, [candle("2024-01-02T00:00:00Z", complete=value)]),
                         instrument="EUR_USD", granularity="M1")
    assert f["complete"].tolist() == [bool(stored)]


@pytest.mark.parametrize("value", ["no", "yes", "", "maybe", 2, 0.5, None, [1]])
def test_complete_other_values_are_refused(tmp_path: Path, value: object) -> None:
    """Finding 5: `complete` given as "no" was read as true; anything but true/false/1/0 is
    refused, naming the file and row."""
    p = oanda_json(tmp_path, [candle("2024-01-02T00:00:00Z"),
                              candle("2024-01-02T00:01:00Z", complete=value)])
    msg = refused(p, "complete")
    assert "row 1" in msg
    if value not in ("", None):  # an empty CSV field is a missing value, refused elsewhere
        refused(csv(tmp_path, f"2024-01-02T00:00:00Z,1.1,1.2,1.0,1.1,3,{value}", name="c.csv",
                    head=HEAD + ",complete"), "complete")


def test_fractional_volume_is_refused_not_truncated(tmp_path: Path) -> None:
    """Finding 5: volume 12.9 was silently truncated to 12."""
    msg = refused(csv(tmp_path, "2024-01-02T00:00:00Z,1.1,1.2,1.0,1.1,3",
                      "2024-01-02T00:01:00Z,1.1,1.2,1.0,1.1,12.9"), "volume.*whole")
    assert "row 1" in msg and "12.9" in msg
    # 12.0 is a whole number: kept as 12
    f = read_candle_file(csv(tmp_path, "2024-01-02T00:00:00Z,1.1,1.2,1.0,1.1,12.0", name="o.csv"),
                         instrument="EUR_USD", granularity="M1")
    assert f["volume"].tolist() == [12]


@pytest.mark.parametrize("when", ["1900-01-02T00:00:00Z", "1969-12-31T23:00:00Z",
                                  "2100-01-01T00:00:00Z", "2999-01-01T00:00:00Z"])
def test_times_outside_1970_2100_are_refused(tmp_path: Path, when: str) -> None:
    """Finding 5: year 1900 went through (the one range of sep_research.fx is 1970..2100)."""
    msg = refused(csv(tmp_path, f"{when},1.1,1.2,1.0,1.1,3"), "1970", granularity="H1")
    assert "row 0" in msg


def test_nul_bytes_are_refused(tmp_path: Path) -> None:
    """Finding 5: NUL bytes went through."""
    p = tmp_path / "nul.csv"
    p.write_bytes(b"time,open,high,low,close\n2024-01-02T00:00:00Z,1.1,1.2\x00,1.0,1.1\n")
    refused(p, "NUL")
    p = tmp_path / "nul.json"
    p.write_bytes(json.dumps({"candles": [candle("2024-01-02T00:00:00Z")]}).encode()
                  .replace(b'"1.2"', b'"1.2\\u0000"'))
    refused(p, "NUL|not numeric")


def test_load_refuses_an_ambiguous_pick_among_file_datasets(tmp_path: Path) -> None:
    """Finding 5: load() took the alphabetically first of several file: datasets."""
    cache = CandleCache(tmp_path)
    rows = [f"2024-01-02T{h:02d}:00:00Z,1.1,1.2,1.0,1.1,3" for h in range(20)]
    a = read_candle_file(csv(tmp_path, *rows[:5], name="a_small.csv"), instrument="EUR_USD",
                         granularity="H1")
    b = read_candle_file(csv(tmp_path, *rows, name="b_big.csv"), instrument="EUR_USD",
                         granularity="H1")
    cache.write(a)
    cache.write(b)
    with pytest.raises(CacheError, match="2 cached datasets") as err:
        cache.load("EUR_USD", "H1")
    msg = str(err.value)
    for piece in ("file:a_small.csv", "file:b_big.csv", "5 candles", "20 candles", "source="):
        assert piece in msg, piece
    assert len(cache.load("EUR_USD", "H1", source="file:b_big.csv")) == 20
    # one kind ranks above the other: that rule is documented and the pick is unambiguous
    cache.write(load_sample())
    with pytest.raises(CacheError, match="2 cached datasets"):
        cache.load("EUR_USD", "H1")


# ------------------------------------------------------------------------------ finding 18


def test_deeply_nested_json_gets_a_clear_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding 18: `sep data import json_deep.json` raised RecursionError with a traceback."""
    p = tmp_path / "json_deep.json"
    p.write_text("[" * 100_000 + "]" * 100_000)
    refused(p, "nested")
    assert sep(["data", "import", str(p), "--instrument", "EUR_USD", "--granularity", "M1",
                "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "json_deep.json" in err and "Traceback" not in err


# ------------------------------------------------------------------------------ finding 20


def test_import_says_when_nothing_was_stored(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Finding 20: import said "imported 20 candles" when all 20 were dropped as incomplete."""
    p = oanda_json(tmp_path, [candle(f"2024-01-02T00:{m:02d}:00Z", complete=False)
                              for m in range(20)])
    root = tmp_path / "c"
    assert sep(["data", "import", str(p), "--instrument", "EUR_USD", "--granularity", "M1",
                "--cache-dir", str(root)]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "imported 20" not in text
    assert "20 incomplete" in text and "nothing was stored" in text
    assert not root.exists() or snapshot(root) == {}
    # partly incomplete: the counts add up
    p = oanda_json(tmp_path, [candle(f"2024-01-02T00:{m:02d}:00Z", complete=m < 15)
                              for m in range(20)], name="part.json")
    assert sep(["data", "import", str(p), "--instrument", "EUR_USD", "--granularity", "M1",
                "--cache-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "stored 15 of 20 candles" in out and "5 incomplete" in out


def test_huge_volume_is_refused_as_too_large_not_negative(tmp_path: Path) -> None:
    """Finding 20: volume 1e30 was refused as "negative volume" (int64 wrap)."""
    msg = refused(csv(tmp_path, "2024-01-02T00:00:00Z,1.1,1.2,1.0,1.1,1e30"), "volume.*large")
    assert "negative" not in msg
    refused(csv(tmp_path, "2024-01-02T00:00:00Z,1.1,1.2,1.0,1.1,-3", name="n.csv"),
            "negative volume")


@pytest.mark.parametrize("case", ["huge_int_json", "huge_int_csv", "utf8_json", "utf8_csv",
                                  "oob_unix", "oob_unix_json", "oob_iso"])
def test_import_errors_name_the_file(tmp_path: Path, case: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Finding 20: errors for a huge integer, invalid UTF-8 and out-of-bounds timestamps did
    not name the file."""
    t = "2024-01-02T00:00:00Z"
    p = {
        "huge_int_json": lambda: _write(tmp_path / "huge.json", json.dumps(
            {"candles": [candle(t, volume=12345)]}).replace("12345", "9" * 5000).encode()),
        "huge_int_csv": lambda: _write(tmp_path / "huge.csv",
                                       f"{HEAD}\n{t},1,1,1,1,{'9' * 5000}\n".encode()),
        "utf8_json": lambda: _write(tmp_path / "bad8.json",
                                    b'{"candles": [{"time": "\xff\xfe", "mid": {}}]}'),
        "utf8_csv": lambda: _write(tmp_path / "bad8.csv",
                                   f"{HEAD}\n{t},1,1,1,1,3\n".encode() + b"\xff\xfe,1,1,1,1,1\n"),
        "oob_unix": lambda: _write(tmp_path / "oob.csv", f"{HEAD}\n1e20,1,1,1,1,3\n".encode()),
        "oob_unix_json": lambda: _write(tmp_path / "oob.json", json.dumps({"candles": [
            candle("99999999999999999999")]}).encode()),
        "oob_iso": lambda: _write(tmp_path / "oob2.csv",
                                  f"{HEAD}\n5000-01-01T00:00:00Z,1,1,1,1,3\n".encode()),
    }[case]()
    root = tmp_path / "c"
    assert sep(["data", "sample", "--cache-dir", str(root)]) == 0
    before = snapshot(root)
    capsys.readouterr()
    assert sep(["data", "import", str(p), "--instrument", "EUR_USD", "--granularity", "M1",
                "--cache-dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert p.name in err and "Traceback" not in err, err
    assert snapshot(root) == before


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_refused_files_never_change_the_cache(tmp_path: Path) -> None:
    """Findings 5, 18 and 20: a refused import leaves every stored byte as it was."""
    cache = CandleCache(tmp_path / "c")
    cache.write(load_sample())
    before = snapshot(tmp_path / "c")
    bad = [csv(tmp_path, "2017-05-01T00:00:00Z,1.1,inf,1.0,1.1,3", name="x1.csv"),
           csv(tmp_path, "2017-05-01T00:00:00Z,1.1,1e300,1.0,1.1,3", name="x1b.csv"),
           csv(tmp_path, "2017-05-01T00:00:00Z,1.1,1.2,1.0,1.1,2.5", name="x2.csv"),
           csv(tmp_path, "2017-05-01T00:00:00Z,1.1,1.2,1.0,1.1,1e30", name="x2b.csv"),
           csv(tmp_path, "1900-05-01T00:00:00Z,1.1,1.2,1.0,1.1,2", name="x3.csv"),
           oanda_json(tmp_path, [candle("2017-05-01T00:00:00Z", complete="no")], "x4.json"),
           _write(tmp_path / "x5.csv", b"time,open,high,low,close\n2017-05-01T00:00:00Z,1\x00,"
                  b"1,1,1\n"),
           _write(tmp_path / "x6.json", b"[" * 50_000 + b"]" * 50_000),
           _write(tmp_path / "x7.json", b'{"candles": [{"time": "2017-05-01T00:00:00Z", '
                  b'"mid": {"o": NaN, "h": 1, "l": 1, "c": 1}}]}')]
    for p in bad:
        with pytest.raises(CandleError):
            cache.write(read_candle_file(p, instrument="EUR_USD", granularity="H1"))
    assert snapshot(tmp_path / "c") == before
    assert len(cache.load("EUR_USD", "H1")) == 5000
    assert pd.api.types.is_integer_dtype(cache.load("EUR_USD", "H1")["volume"])


def test_fetched_complete_flag_is_parsed_strictly() -> None:
    """Finding 5: a server's "complete": "false" would have been stored as complete."""
    from sep_research.data.fetch import candles_to_records

    rows = [candle("2024-01-02T00:00:00Z"), candle("2024-01-02T00:01:00Z", complete="false")]
    cols, dropped = candles_to_records(rows, "M", where="server x")
    assert dropped == 1 and cols["time"] == ["2024-01-02T00:00:00Z"]
    with pytest.raises(CandleError, match=r"server x.*complete"):
        candles_to_records([candle("2024-01-02T00:00:00Z", complete="no")], "M", where="server x")
