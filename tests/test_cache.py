"""The Parquet cache: round trips, merging, atomic writes, corruption, verify and gaps."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from sep_research.data.cache import CacheError, CandleCache
from sep_research.data.candles import CandleError, get_provenance, synthetic_candles
from sep_research.data.gaps import find_gaps
from sep_research.data.load import load_candles
from sep_research.data.sample import load_sample


def period_file(directory: Path, period: str) -> Path:
    """The one candle file of ``period`` in a dataset folder (``2017.<hash>.parquet``)."""
    (path,) = directory.glob(f"{period}.*parquet")
    return path


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
    d = cache.dataset_dir(prov.source, "EUR_USD", "H1")
    files = sorted(p.name for p in d.glob("*.parquet"))
    assert [f.split(".")[0] for f in files] == ["2017", "2018"]
    md = pq.read_schema(period_file(d, "2018")).metadata
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
    with pytest.raises(CandleError, match=r"start: .not-a-date. is not"):
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
    path = period_file(cache.dataset_dir(prov.source, "EUR_USD", "H1"), "2017")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CacheError, match=r"2017\.\w+\.parquet (does not match|: corrupt)"):
        cache.load("EUR_USD", "H1")
    (rep,) = cache.verify()
    assert not rep.ok and "corrupt" in rep.problems[0]


def test_verify_detects_changed_content(tmp_path: Path) -> None:
    cache = CandleCache(tmp_path)
    prov = cache.write(load_sample())
    path = period_file(cache.dataset_dir(prov.source, "EUR_USD", "H1"), "2018")
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


# ------------------------------------------------------------------ finding 6: dataset switch


def _m1(start: str, n: int = 3 * 31 * 1440, seed: int = 0, price: float = 1.1) -> pd.DataFrame:
    return synthetic_candles(n, granularity="M1", start=start, seed=seed, price=price)


def test_load_refuses_files_that_do_not_match_meta(tmp_path: Path) -> None:
    """Finding 6: a half-updated dataset (new January beside old March, old meta.json, as an
    older version left it after kill -9) was served silently; load() now checks each file
    against meta.json and refuses a mismatch with a clear message."""
    import shutil

    cache = CandleCache(tmp_path)
    prov = cache.write(_m1("2024-01-01T00:00:00Z"))
    d = cache.dataset_dir(prov.source, "EUR_USD", "M1")
    jan = period_file(d, "2024-01")
    saved = jan.read_bytes()
    other = CandleCache(tmp_path / "other")
    p2 = other.write(_m1("2024-01-01T00:00:00Z", seed=5))
    # same name, other (valid) content: what an in-place rename of a new version leaves
    shutil.copy(period_file(other.dataset_dir(p2.source, "EUR_USD", "M1"), "2024-01"), jan)
    with pytest.raises(CacheError, match=r"does not match the dataset's meta.json") as err:
        cache.load("EUR_USD", "M1", allow_synthetic=True)
    assert "2024-01" in str(err.value) and "re-import" in str(err.value)
    # a truncated file is caught by its size before it is read
    jan.write_bytes(saved[:-10])
    with pytest.raises(CacheError, match=r"bytes where meta.json records"):
        cache.load("EUR_USD", "M1", allow_synthetic=True)
    jan.write_bytes(saved)
    assert len(cache.load("EUR_USD", "M1", allow_synthetic=True)) == 3 * 31 * 1440


def test_a_write_interrupted_before_the_switch_leaves_the_old_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 6: the new files go under new names and meta.json is switched last, so a write
    stopped before the switch leaves the old dataset, whole; the next write removes leftovers."""
    cache = CandleCache(tmp_path)
    old = _m1("2024-01-01T00:00:00Z")
    cache.write(old)
    want = cache.load("EUR_USD", "M1", allow_synthetic=True)
    before = snapshot(tmp_path)

    def crash(*a: object, **k: object) -> None:
        raise KeyboardInterrupt("stopped just before meta.json is switched")

    monkeypatch.setattr("sep_research.data.cache._write_meta", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.write(_m1("2024-01-15T00:00:00Z", seed=3, price=1.2))
    monkeypatch.undo()
    assert snapshot(tmp_path) == before
    pd.testing.assert_frame_equal(cache.load("EUR_USD", "M1", allow_synthetic=True), want)
    # files a killed write left (a new period file, a temporary file) are removed by the next
    d = cache.dataset_dir("synthetic", "EUR_USD", "M1")
    (d / "2024-02.0123456789abcdef.parquet").write_bytes(b"left by a killed write")
    (d / ".2024-03.parquet.xyz.tmp").write_bytes(b"half")
    assert len(cache.load("EUR_USD", "M1", allow_synthetic=True)) == len(want)
    cache.write(_m1("2024-01-15T00:00:00Z", seed=3, price=1.2))
    names = sorted(p.name for p in d.iterdir() if p.name != ".lock")
    assert len(names) == 5 and names[-1] == "meta.json"  # Jan..Apr files and meta.json
    assert not any(n.endswith(".tmp") or n.startswith("2024-02.0123") for n in names)
    (rep,) = cache.verify()
    assert rep.ok, rep.problems


def test_files_are_fsynced_before_the_switch_and_meta_is_switched_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 6: no fsync before rename; now each file is fsynced before its rename, the
    folder before meta.json is switched, and old files are deleted only after the switch."""
    import os

    cache = CandleCache(tmp_path)
    cache.write(_m1("2024-01-01T00:00:00Z"))
    events: list[str] = []
    real_fsync, real_replace, real_unlink = os.fsync, os.replace, Path.unlink

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def replace(src: object, dst: object) -> None:
        events.append(f"replace {Path(str(dst)).name}")
        real_replace(src, dst)

    def unlink(self: Path, missing_ok: bool = False) -> None:
        events.append(f"unlink {self.name}")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", unlink)
    cache.write(_m1("2024-01-15T00:00:00Z", seed=3, price=1.2))
    monkeypatch.undo()
    replaces = [i for i, e in enumerate(events) if e.startswith("replace")]
    meta_at = next(i for i in replaces if events[i] == "replace meta.json")
    assert all(events[i - 1] == "fsync" for i in replaces)  # data fsynced before each rename
    assert all(i < meta_at for i in replaces if events[i] != "replace meta.json")
    assert events[meta_at + 1] == "fsync"  # the folder, after the switch
    unlinks = [i for i, e in enumerate(events) if e.startswith("unlink")]
    assert unlinks and min(unlinks) > meta_at  # old files go only after the switch
