"""The Parquet candle cache, with provenance beside every file.

Layout under the cache root (``$SEP_CACHE_DIR``, else ``./data/cache``)::

    ROOT/<source-slug>/<INSTRUMENT>/<GRANULARITY>/<PERIOD>.parquet   candles of one period
    ROOT/<source-slug>/<INSTRUMENT>/<GRANULARITY>/meta.json          dataset metadata

A *dataset* is one (source, instrument, granularity). Periods are months for granularities up
to M30, years for H1..H12, and one file (``all``) for D, W and M. Each Parquet file carries its
own provenance (source, instrument, granularity, price components, range, rows, sha256 of the
content, obtained time) in its schema metadata under ``sep.provenance``; ``meta.json`` holds the
dataset's provenance, the per-file hashes and the ranges a downloader has covered (so that a
resumed download does not ask again for a range that held no candles, such as a weekend).

A write (under a lock file) validates the merged result first, so a bad frame never touches
what is stored. It then writes each changed period to a *new* file name
(``<PERIOD>.<hash>.parquet``: a temporary file, fsynced, renamed), fsyncs the folder, switches
the dataset by replacing ``meta.json`` in one atomic, fsynced rename, and only then deletes the
files the new ``meta.json`` no longer lists (and anything an interrupted write left). A crash or
``kill -9`` at any moment leaves the old dataset or the new one, never a mix
(``tests/test_cache_kill.py``). :meth:`CandleCache.load` serves only files that match
``meta.json`` (listed, the recorded size, the content hash each file carries) and refuses a
mismatch; ``sep data verify`` recomputes every hash.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sep_research._util import atomic_write_bytes
from sep_research.data.candles import (
    GRANULARITY_SECONDS,
    CandleError,
    Provenance,
    attach_provenance,
    check_granularity,
    check_instrument,
    content_sha256,
    get_provenance,
    isoformat,
    make_provenance,
    to_timestamp,
    utc_now,
    validate,
)
from sep_research.data.gaps import find_gaps

META_KEY = b"sep.provenance"
#: When a dataset exists under several sources, load() picks the first kind in this order;
#: two sources of the kind it would pick (two ``file:`` imports, say) are refused as ambiguous.
SOURCE_PREFERENCE = ("oanda:live", "oanda:practice", "emulator:", "file:", "package:", "synthetic")


class CacheError(CandleError):
    """A cache file is missing, corrupt or inconsistent with its metadata."""


def default_cache_dir() -> Path:
    env = os.environ.get("SEP_CACHE_DIR")
    return Path(env) if env else Path.cwd() / "data" / "cache"


def source_slug(source: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", source.replace("==", "-")).strip("-")
    return slug or "unknown"


def _period_of(granularity: str) -> str:
    secs = GRANULARITY_SECONDS[granularity]
    if secs <= 1800:
        return "month"
    if granularity.startswith("H"):
        return "year"
    return "all"


def _period_keys(index: pd.DatetimeIndex, period: str) -> np.ndarray:
    if period == "month":
        return np.asarray(index.strftime("%Y-%m"))
    if period == "year":
        return np.asarray(index.strftime("%Y"))
    return np.full(len(index), "all", dtype=object)


@dataclass
class DatasetInfo:
    """What ``sep data list`` shows for one cached dataset."""

    path: Path
    provenance: Provenance
    files: dict[str, str]  # period file name -> content sha256
    covered: list[list[str]] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)  # period file name -> bytes

    @property
    def key(self) -> tuple[str, str, str]:
        p = self.provenance
        return (p.source, p.instrument, p.granularity)


@dataclass
class VerifyReport:
    dataset: DatasetInfo
    problems: list[str]
    gaps: list[tuple[str, str, int]]  # (after candle, next candle, missing candle count)

    @property
    def ok(self) -> bool:
        return not self.problems


def _atomic_write_table(path: Path, table: pa.Table) -> None:
    """Write a Parquet file to a temporary name, fsync it, and rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="snappy")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _fsync_dir(directory: Path) -> None:
    """Make the renames and deletions in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_meta(directory: Path, meta: dict[str, Any]) -> None:
    """Switch the dataset to ``meta``: one atomic, fsynced rename of ``meta.json``."""
    atomic_write_bytes(directory / "meta.json", json.dumps(meta, indent=2).encode())
    _fsync_dir(directory)


def _period_key(fname: str) -> str:
    """``2024-01`` from ``2024-01.<hash>.parquet`` (and from the older ``2024-01.parquet``)."""
    return fname.split(".", 1)[0]


def _embedded_sha(table: pa.Table) -> str | None:
    raw = (table.schema.metadata or {}).get(META_KEY)
    try:
        return str(json.loads(raw)["sha256"]) if raw else None
    except (ValueError, KeyError, TypeError):
        return None


class CandleCache:
    """Parquet candle cache. ``CandleCache()`` uses :func:`default_cache_dir`."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    # -- paths and locking -------------------------------------------------------------
    def dataset_dir(self, source: str, instrument: str, granularity: str) -> Path:
        return self.root / source_slug(source) / instrument / granularity

    @contextlib.contextmanager
    def _lock(self, directory: Path) -> Iterator[None]:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- metadata ------------------------------------------------------------------------
    def _read_meta(self, directory: Path) -> dict[str, Any] | None:
        path = directory / "meta.json"
        if not path.exists():
            return None
        try:
            meta = json.loads(path.read_text())
            Provenance.from_dict(meta["provenance"])
            if not isinstance(meta.get("files"), dict):
                raise KeyError("files")
            return meta
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CacheError(f"{path}: corrupt cache metadata ({exc})") from None

    def datasets(self) -> list[DatasetInfo]:
        out = []
        if not self.root.exists():
            return out
        for meta_path in sorted(self.root.glob("*/*/*/meta.json")):
            meta = self._read_meta(meta_path.parent)
            assert meta is not None
            if not meta["files"]:  # only coverage recorded so far (e.g. a weekend), no candles
                continue
            out.append(
                DatasetInfo(
                    path=meta_path.parent,
                    provenance=Provenance.from_dict(meta["provenance"]),
                    files=dict(meta["files"]),
                    covered=list(meta.get("covered", [])),
                    sizes=dict(meta.get("sizes", {})),
                )
            )
        return out

    def list(self) -> list[DatasetInfo]:
        return self.datasets()

    def find(
        self, instrument: str, granularity: str, source: str | None = None,
        *, allow_synthetic: bool = False,
    ) -> DatasetInfo:
        check_instrument(instrument)
        check_granularity(granularity)
        found = [
            d for d in self.datasets()
            if d.provenance.instrument == instrument and d.provenance.granularity == granularity
        ]
        if source is not None:
            found = [d for d in found if d.provenance.source == source]
        if not allow_synthetic:
            found = [d for d in found if not d.provenance.is_synthetic]
        if not found:
            what = f"{instrument} {granularity}" + (f" from {source}" if source else "")
            raise CacheError(
                f"no cached candles for {what} in {self.root} "
                "(try 'sep data sample', 'sep data fetch' or 'sep data import')"
            )

        def rank(d: DatasetInfo) -> int:
            for i, prefix in enumerate(SOURCE_PREFERENCE):
                if d.provenance.source.startswith(prefix):
                    return i
            return len(SOURCE_PREFERENCE)

        best = min(rank(d) for d in found)
        tied = [d for d in found if rank(d) == best]
        if len(tied) > 1:
            listed = "\n".join(
                f"  - source={d.provenance.source!r}: {d.provenance.rows} candles, "
                f"{d.provenance.start} .. {d.provenance.end} ({d.path})" for d in tied
            )
            raise CacheError(
                f"{len(tied)} cached datasets for {instrument} {granularity} in {self.root}, "
                f"none preferred over the others:\n{listed}\n"
                "choose one: source=SOURCE (CandleCache.load, load_candles(cache_source=...), "
                "sep data summary --cache-source SOURCE), or keep one per cache folder "
                "(--cache-dir / SEP_CACHE_DIR)"
            )
        return tied[0]

    # -- write ---------------------------------------------------------------------------
    def write(self, frame: pd.DataFrame, *, covered: tuple[Any, Any] | None = None) -> Provenance:
        """Merge ``frame`` into its dataset; returns the dataset's new provenance.

        The frame must be a validated candle frame with provenance. Incomplete candles are never
        stored. Where stored and new candles share a time, the new one wins. ``covered`` is an
        optional ``(start, end)`` range the caller has fetched completely (for resumption).
        Nothing stored changes unless the merged result validates.
        """
        prov = get_provenance(frame)
        check_instrument(prov.instrument)
        check_granularity(prov.granularity)
        validate(frame, prov.granularity, name=f"frame for {prov.instrument} {prov.granularity}")
        if "complete" in frame.columns:
            frame = frame[frame["complete"].to_numpy(dtype=bool)]
        if len(frame) == 0:
            if covered is not None:
                self.record_covered(prov.source, prov.instrument, prov.granularity, *covered)
            return prov
        directory = self.dataset_dir(prov.source, prov.instrument, prov.granularity)
        period = _period_of(prov.granularity)
        with self._lock(directory):
            meta = self._read_meta(directory) or {"files": {}, "covered": []}
            stored = {_period_key(f): f for f in meta["files"]}
            new_tables: dict[str, pd.DataFrame] = {}
            keys = _period_keys(frame.index, period)
            for key in sorted(set(keys.tolist())):
                part = frame[keys == key]
                path = directory / f"{key}.parquet"
                if key in stored:
                    path = directory / stored[key]
                    old = self._load_dir(directory, prov.granularity, [stored[key]],
                                         expect=meta)
                    if list(old.columns) != list(part.columns):
                        raise CacheError(
                            f"{path}: stored price columns {list(old.columns)} differ from the "
                            f"new candles' {list(part.columns)}; nothing was changed"
                        )
                    part = pd.concat([old[~old.index.isin(part.index)], part]).sort_index()
                validate(part, prov.granularity, name=f"merged {path}")
                new_tables[key] = part
            # Everything validated. New content goes to new file names (fsynced); meta.json,
            # switched last in one atomic rename, decides which files make the dataset; the
            # files it no longer lists are deleted afterwards. A crash at any moment leaves the
            # old dataset or the new one, never a mix.
            files, sizes = dict(meta["files"]), dict(meta.get("sizes", {}))
            written: list[str] = []
            try:
                for key, part in new_tables.items():
                    part_prov = make_provenance(
                        part, source=prov.source, instrument=prov.instrument,
                        granularity=prov.granularity, obtained_at=prov.obtained_at,
                        note=prov.note, extra=prov.extra,
                    )
                    if key in stored and files.get(stored[key]) == part_prov.sha256:
                        continue  # the merged candles are the stored ones
                    fname = f"{key}.{part_prov.sha256[:16]}.parquet"
                    table = pa.Table.from_pandas(part, preserve_index=True)
                    md = dict(table.schema.metadata or {})
                    md[META_KEY] = json.dumps(part_prov.to_dict()).encode()
                    _atomic_write_table(directory / fname, table.replace_schema_metadata(md))
                    written.append(fname)
                    if key in stored:
                        files.pop(stored[key], None)
                        sizes.pop(stored[key], None)
                    files[fname] = part_prov.sha256
                    sizes[fname] = (directory / fname).stat().st_size
                _fsync_dir(directory)
                new_meta = dict(meta, files=dict(sorted(files.items())),
                                sizes=dict(sorted(sizes.items())))
                if covered is not None:
                    new_meta["covered"] = _merge_ranges(
                        [*meta.get("covered", []), [isoformat(covered[0]), isoformat(covered[1])]]
                    )
                full = self._load_dir(directory, prov.granularity, list(files), expect=new_meta)
                dataset_prov = make_provenance(
                    full, source=prov.source, instrument=prov.instrument,
                    granularity=prov.granularity, obtained_at=prov.obtained_at, note=prov.note,
                    extra=prov.extra,
                )
                new_meta["provenance"] = dataset_prov.to_dict()
                new_meta["updated_at"] = isoformat(utc_now())
                _write_meta(directory, new_meta)
            except BaseException:
                for fname in written:  # never listed by the meta.json in force
                    if fname not in meta["files"]:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(directory / fname)
                raise
            self._remove_unlisted(directory, set(files))
        return dataset_prov

    def _remove_unlisted(self, directory: Path, listed: set[str]) -> None:
        """Delete candle files and temporary files that meta.json does not list (replaced
        versions, and what an interrupted write left behind). Called under the lock."""
        removed = False
        for path in directory.iterdir():
            name = path.name
            if name in listed or not (name.endswith(".parquet") or (
                    name.startswith(".") and name.endswith(".tmp"))):
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed = True
        if removed:
            _fsync_dir(directory)

    # -- read ----------------------------------------------------------------------------
    def _read_file(self, path: Path, granularity: str) -> pd.DataFrame:
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise CacheError(f"{path}: corrupt cache file ({exc})") from None
        frame = table.to_pandas()
        frame.attrs = {}
        return frame

    def _load_dir(
        self, directory: Path, granularity: str, files: list[str],
        start: pd.Timestamp | None = None, end: pd.Timestamp | None = None,
        *, expect: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Read ``files`` in period order. With ``expect`` (a meta.json), each file must be
        listed there and match it: its size (where recorded) and the content hash it carries.
        A mismatch (a dataset left inconsistent, e.g. by a write that an older version did not
        finish) is refused with a message, never served."""
        tables = []
        listed = expect.get("files", {}) if expect is not None else {}
        sizes = expect.get("sizes", {}) if expect is not None else {}
        for fname in sorted(files, key=_period_key):
            path = directory / fname
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise CacheError(f"{path}: listed in meta.json but missing") from None
            if expect is not None and fname not in listed:
                raise CacheError(f"{path}: not listed in {directory / 'meta.json'}")
            if fname in sizes and sizes[fname] != size:
                raise CacheError(self._mismatch(path, f"{size} bytes where meta.json records "
                                                      f"{sizes[fname]}"))
            try:
                table = pq.read_table(path)
            except (OSError, pa.ArrowInvalid) as exc:
                raise CacheError(f"{path}: corrupt cache file ({exc})") from None
            if expect is not None and _embedded_sha(table) != listed[fname]:
                got = _embedded_sha(table) or "none"
                raise CacheError(self._mismatch(
                    path, f"it holds content {got[:12]}… where meta.json lists "
                          f"{str(listed[fname])[:12]}…"))
            tables.append(table)
        if not tables:
            raise CacheError(f"{directory}: no candle files")
        try:
            table = pa.concat_tables(tables)
        except pa.ArrowInvalid as exc:
            raise CacheError(
                f"{directory}: cache files disagree in their columns ({exc})") from None
        frame = table.to_pandas()
        frame.attrs = {}
        if start is not None or end is not None:
            lo = frame.index.searchsorted(start) if start is not None else 0
            hi = frame.index.searchsorted(end, side="left") if end is not None else len(frame)
            frame = frame.iloc[lo:hi]
        return frame

    @staticmethod
    def _mismatch(path: Path, what: str) -> str:
        return (f"{path} does not match the dataset's meta.json ({what}): the dataset is "
                "inconsistent (perhaps a write interrupted under an older version) and is not "
                "served; `sep data verify` lists the files; re-import or re-fetch the data")

    def load(
        self,
        instrument: str,
        granularity: str,
        start: Any = None,
        end: Any = None,
        *,
        source: str | None = None,
        allow_synthetic: bool = False,
    ) -> pd.DataFrame:
        """Load cached candles ``start <= time < end`` as a validated frame with provenance."""
        t0 = _to_utc(start, "start")
        t1 = _to_utc(end, "end")
        if t0 is not None and t1 is not None and t1 <= t0:
            raise CandleError(f"end {isoformat(t1)} is not after start {isoformat(t0)}")
        period = _period_of(granularity)
        for attempt in range(3):
            info = self.find(instrument, granularity, source, allow_synthetic=allow_synthetic)
            files = sorted(info.files)
            if t0 is not None or t1 is not None:
                files = [f for f in files if _file_overlaps(f, period, t0, t1)]
            if not files:
                raise CacheError(
                    f"no cached {instrument} {granularity} candles in the range asked")
            try:
                frame = self._load_dir(info.path, granularity, files, t0, t1,
                                       expect={"files": info.files, "sizes": info.sizes})
                break
            except CacheError:
                # a writer may have switched meta.json (and deleted replaced files) between
                # our reading it and the files: read it again; a real mismatch is raised
                now = self._read_meta(info.path) or {}
                if attempt == 2 or now.get("files") == info.files:
                    raise
        validate(frame, granularity, name=str(info.path))
        p = info.provenance
        prov = make_provenance(
            frame, source=p.source, instrument=instrument, granularity=granularity,
            obtained_at=p.obtained_at, note=p.note, extra=p.extra,
        )
        return attach_provenance(frame, prov)

    def covered(self, instrument: str, granularity: str, source: str
                ) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """Ranges a downloader recorded as fully fetched (not merely the stored candles' span,
        which would hide a hole between two downloads)."""
        directory = self.dataset_dir(source, instrument, granularity)
        meta = self._read_meta(directory)
        if meta is None:
            return []
        return [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in meta.get("covered", [])]

    def record_covered(
        self, source: str, instrument: str, granularity: str, start: Any, end: Any
    ) -> None:
        """Record ``[start, end)`` as fully fetched, also for a dataset with no candles yet
        (a first download of a weekend). Candles are unchanged."""
        check_instrument(instrument)
        check_granularity(granularity)
        t0, t1 = _to_utc(start, "start"), _to_utc(end, "end")
        if t0 is None or t1 is None or t1 <= t0:
            raise CandleError(f"bad covered range {start!r} .. {end!r}")
        directory = self.dataset_dir(source, instrument, granularity)
        with self._lock(directory):
            meta = self._read_meta(directory)
            if meta is None:
                meta = {"files": {}, "covered": [], "provenance": Provenance(
                    source=source, instrument=instrument, granularity=granularity, price="",
                    start="", end="", rows=0, sha256="", obtained_at=isoformat(utc_now()),
                ).to_dict()}
            meta["covered"] = _merge_ranges(
                [*meta.get("covered", []), [isoformat(t0), isoformat(t1)]]
            )
            meta["updated_at"] = isoformat(utc_now())
            _write_meta(directory, meta)

    # -- verify --------------------------------------------------------------------------
    def verify(self) -> list[VerifyReport]:
        """Recompute every file's hash against the metadata, and find gaps (weekends excepted)."""
        reports = []
        for info in self.datasets():
            problems: list[str] = []
            frames = []
            for fname, sha in sorted(info.files.items()):
                path = info.path / fname
                try:
                    part = self._read_file(path, info.provenance.granularity)
                    validate(part, info.provenance.granularity, name=str(path))
                except CandleError as exc:
                    problems.append(str(exc))
                    continue
                size = path.stat().st_size
                if fname in info.sizes and info.sizes[fname] != size:
                    problems.append(f"{path}: {size} bytes, meta.json records "
                                    f"{info.sizes[fname]}")
                got = content_sha256(part)
                if got != sha:
                    problems.append(f"{path}: content hash {got[:12]}… differs from {sha[:12]}…")
                frames.append(part)
            gaps: list[tuple[str, str, int]] = []
            if frames and not problems:
                full = pd.concat(frames).sort_index()
                if content_sha256(full) != info.provenance.sha256:
                    problems.append(f"{info.path}: dataset hash differs from meta.json")
                gaps = find_gaps(full.index, info.provenance.granularity)
            reports.append(VerifyReport(dataset=info, problems=problems, gaps=gaps))
        return reports


def _to_utc(value: Any, name: str) -> pd.Timestamp | None:
    return None if value is None else to_timestamp(value, name)


def _file_overlaps(fname: str, period: str, t0: pd.Timestamp | None,
                   t1: pd.Timestamp | None) -> bool:
    key = _period_key(fname)
    if period == "all":
        return True
    if period == "month":
        lo = pd.Timestamp(f"{key}-01", tz="UTC")
        hi = lo + pd.offsets.MonthBegin(1)
    else:
        lo = pd.Timestamp(f"{key}-01-01", tz="UTC")
        hi = lo + pd.offsets.YearBegin(1)
    return (t0 is None or hi > t0) and (t1 is None or lo < t1)


def _merge_ranges(ranges: list[list[str]]) -> list[list[str]]:
    parsed = sorted((pd.Timestamp(a), pd.Timestamp(b)) for a, b in ranges)
    out: list[list[pd.Timestamp]] = []
    for a, b in parsed:
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [[isoformat(a), isoformat(b)] for a, b in out]
