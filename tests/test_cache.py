"""The Parquet cache: round trips, merging, atomic writes, corruption, verify and gaps."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from sep_research.data.cache import CacheError, CandleCache, find_gaps
from sep_research.data.candles import CandleError, get_provenance, synthetic_candles
from sep_research.data.load import load_candles
from sep_research.data.sample import load_sample


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != ".lock"}


def test_round_trip_keeps_content_and_provenance(tmp_path: Path) -> None:
    cache = CandleCache(tmp_path)
    sample = load_sample()
    prov = cache.write(sample)
    assert prov.sha256 == get_provenance(sample).sha256
    back = cache.load("EUR_USD", "H1")
    pd.testing.assert_frame_equal(back, sample, check_freq=False)
    assert get_provenance(back).source == get_provenance(sample).source
    files = sorted(p.name for p in (cache.dataset_dir(prov.source, "EUR_USD", "H1")).glob("*.parquet"))
    assert files == ["2017.parquet", "2018.parquet"]
    md = pq.read_schema(cache.dataset_dir(prov.source, "EUR_USD", "H1") / "2018.parquet").metadata
    assert b"sep.provenance" in md


def test_range_load_and_merge(tmp_path: Path) -> None:
    cache = CandleCache(tmp_path)
    f = synthetic_candles(3000, granularity="M1", start="2024-01-31T00:00:00Z")
    cache.write(f.iloc[:1000])
    cache.write(f.iloc[800:])  # overlaps: merged, no duplicates
    back = cache.load("EUR_USD", "M1", allow_synthetic=True)
    assert len(back) == 3000 and back.index.is_unique
    part = cache.load("EUR_USD", "M1", "2024-02-01", "2024-02-01T01:00", allow_synthetic=True)
    assert len(part) == 60 and part.index[0] == pd.Timestamp("2024-02-01T00:00Z")
    assert get_provenance(part).rows == 60
    with pytest.raises(CandleError, match="start: .not-a-date. is not"):
        cache.load("EUR_USD", "M1", "not-a-date", allow_synthetic=True)


def test_synthetic_in_cache_is_invisible_to_research_by_default(tmp_path: Path) -> None:
    cache = CandleCache(tmp_path)
    cache.write(synthetic_candles(100, granularity="M1"))
    with pytest.raises(CacheError, match="no cached candles"):
        cache.load("EUR_USD", "M1")
    with pytest.raises(CacheError):
        load_candles("cache", "EUR_USD", "M1", cache_dir=tmp_path)


def test_incomplete_candles_are_never_stored(tmp_path: Path) -> None:
    cache = CandleCache(tmp_path)
    f = synthetic_candles(10, granularity="M1")
    f.loc[f.index[-1], "complete"] = False
    cache.write(f)
    assert len(cache.load("EUR_USD", "M1", allow_synthetic=True)) == 9


def test_failed_write_leaves_the_cache_unchanged(tmp_path: Path, monkeypatch) -> None:
    cache = CandleCache(tmp_path)
    cache.write(synthetic_candles(2000, granularity="M1", start="2024-01-31T00:00:00Z"))
    before = snapshot(tmp_path)

    def boom(*a, **k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr("sep_research.data.cache.pq.write_table", boom)
    more = synthetic_candles(2000, granularity="M1", start="2024-02-01T10:00:00Z", seed=3)
    with pytest.raises(OSError, match="disk full"):
        cache.write(more)
    assert snapshot(tmp_path) == before  # no temp files left, nothing half-written


def test_column_mismatch_is_refused_before_writing(tmp_path: Path) -> None:
    cache = CandleCache(tmp_path)
    f = synthetic_candles(100, granularity="M1")
    cache.write(f)
    before = snapshot(tmp_path)
    mid_only = f.drop(columns=[c for c in f.columns if c.startswith(("bid_", "ask_"))])
    with pytest.raises(CacheError, match="price columns"):
        cache.write(mid_only)
    assert snapshot(tmp_path) == before


def test_corrupt_file_gets_a_clear_error_and_verify_fails(tmp_path: Path) -> None:
    cache = CandleCache(tmp_path)
    prov = cache.write(load_sample())
    path = cache.dataset_dir(prov.source, "EUR_USD", "H1") / "2017.parquet"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CacheError, match="2017.parquet: corrupt cache file"):
        cache.load("EUR_USD", "H1")
    (rep,) = cache.verify()
    assert not rep.ok and "corrupt" in rep.problems[0]


def test_verify_detects_changed_content(tmp_path: Path) -> None:
    cache = CandleCache(tmp_path)
    prov = cache.write(load_sample())
    path = cache.dataset_dir(prov.source, "EUR_USD", "H1") / "2018.parquet"
    t = pq.read_table(path)
    df = t.to_pandas()
    df.iloc[5, df.columns.get_loc("volume")] += 1
    import pyarrow as pa

    pq.write_table(pa.Table.from_pandas(df).replace_schema_metadata(t.schema.metadata), path)
    (rep,) = cache.verify()
    assert not rep.ok and "content hash" in rep.problems[0]


def test_corrupt_metadata(tmp_path: Path) -> None:
    cache = CandleCache(tmp_path)
    prov = cache.write(load_sample())
    (cache.dataset_dir(prov.source, "EUR_USD", "H1") / "meta.json").write_text("{oops")
    with pytest.raises(CacheError, match="corrupt cache metadata"):
        cache.list()


def test_gaps_skip_weekends_but_not_holidays() -> None:
    sample = load_sample()
    gaps = find_gaps(sample.index, "H1")
    # 37+ weekends in the sample are not gaps; the two Christmas/New Year closures are.
    assert [g[0][:10] for g in gaps] == ["2017-12-22", "2017-12-29"]
    idx = pd.date_range("2024-01-03T00:00Z", periods=10, freq="1min").delete([4, 5])
    assert find_gaps(idx, "M1") == [("2024-01-03T00:03:00Z", "2024-01-03T00:06:00Z", 2)]


def test_covered_ranges_are_recorded(tmp_path: Path) -> None:
    cache = CandleCache(tmp_path)
    f = synthetic_candles(60, granularity="M1", start="2024-01-05T20:00:00Z")
    cache.write(f, covered=("2024-01-05T20:00:00Z", "2024-01-08T00:00:00Z"))
    (rng,) = cache.covered("EUR_USD", "M1", "synthetic")
    assert rng == (pd.Timestamp("2024-01-05T20:00Z"), pd.Timestamp("2024-01-08T00:00Z"))


def test_coverage_of_an_empty_range_is_recorded_without_a_dataset(tmp_path: Path) -> None:
    cache = CandleCache(tmp_path)
    cache.record_covered("oanda:practice", "EUR_USD", "M1", "2024-01-06", "2024-01-07")
    assert cache.list() == []  # no candles: not a dataset yet
    assert cache.covered("EUR_USD", "M1", "oanda:practice") == [
        (pd.Timestamp("2024-01-06T00:00Z"), pd.Timestamp("2024-01-07T00:00Z"))
    ]
    empty = synthetic_candles(5, granularity="M1").iloc[:0]
    empty.attrs = synthetic_candles(5, granularity="M1").attrs
    cache.write(empty, covered=("2024-01-13", "2024-01-14"))
    assert len(cache.covered("EUR_USD", "M1", "synthetic")) == 1


def test_gaps_follow_the_one_market_hours_rule(tmp_path: Path) -> None:
    """The gap check asks fx.market_open: weekends in summer and winter, and daily candles at
    17:00 New York, are not gaps; a weekday hole is; `sep data verify` on the sample lists only
    the two holiday closures."""
    from sep_research import fx

    # M1 around a winter weekend (close Fri 22:00Z, open Sun 22:00Z) and a summer one (21:00Z)
    for fri, close_h in (("2024-01-05", 22), ("2024-07-05", 21)):
        close = pd.Timestamp(f"{fri}T{close_h:02d}:00Z")
        before = pd.date_range(close - pd.Timedelta(minutes=5), periods=5, freq="1min")
        after = pd.date_range(close + pd.Timedelta(days=2), periods=5, freq="1min")
        assert not fx.market_open(close.to_pydatetime())
        assert fx.market_open((close - pd.Timedelta(minutes=1)).to_pydatetime())
        assert find_gaps(before.append(after), "M1") == []
        # one minute short on either side is a gap
        assert len(find_gaps(before[:-1].append(after), "M1")) == 1
        assert len(find_gaps(before.append(after[1:]), "M1")) == 1
    # OANDA daily candles start at 17:00 New York: Sun..Thu; no Friday candle is expected
    days = pd.DatetimeIndex(["2024-01-07T22:00Z", "2024-01-08T22:00Z", "2024-01-09T22:00Z",
                             "2024-01-10T22:00Z", "2024-01-11T22:00Z", "2024-01-14T22:00Z"])
    assert find_gaps(days, "D") == []
    assert find_gaps(days.delete(2), "D") == [("2024-01-08T22:00:00Z", "2024-01-10T22:00:00Z", 1)]
    cache = CandleCache(tmp_path)
    cache.write(load_sample())
    (rep,) = cache.verify()
    assert rep.ok and [g[0][:10] for g in rep.gaps] == ["2017-12-22", "2017-12-29"]
