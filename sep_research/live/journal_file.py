"""The journal file: what it must be before the runner trusts it, and what its failures mean.

:func:`check_journal_file` refuses a file that is not a sound runner journal *without changing
it*: the SQLite header and ``application_id`` are read raw (a foreign file is never opened by
SQLite for writing), then a read-only connection runs ``PRAGMA integrity_check`` (not the
shallow ``quick_check``), checks the tables, and reads every row the runner relies on with its
type (``meta``: schema version, transaction cursor, ``risk_state``, ``blocked``; ``candles``,
``orders``, ``positions``, ``fills``, ``financing``; invalid UTF-8 included). Nothing is left
next to a refused file.

The errors say what happened and what to do: :class:`JournalCorrupt` (move the file aside and
keep it; the runner exits 2 and is not restarted), :class:`JournalFull` (disk full: the
journal is intact; free space), a locked journal (another runner uses it) or a file that
cannot be opened.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sep_research.live.types import bounded, parse_time

SCHEMA_VERSION = "1"
APP_ID = 0x53455052  # "SEPR"

ORDER_STATES = ("intent", "filled", "cancelled", "rejected", "abandoned", "unknown")
OPEN_ORDER_STATES = ("intent", "unknown")
ORDER_PURPOSES = ("open", "close", "adopted")
ORIGINS = ("runner", "adopted", "foreign")
_TABLES = {"meta", "candles", "signals", "decisions", "orders", "fills", "positions", "equity"}
#: tables added later, compatibly: a journal from before lacks them (they are created on opening)
_LATER_TABLES = {"financing"}
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: risk_state keys and the types the risk manager relies on
_RISK_TYPES: dict[str, tuple[type, ...]] = {
    "halted": (bool,), "halt_reason": (str,), "day": (str,), "day_start_equity": (int, float),
    "peak_equity": (int, float), "consecutive_losses": (int,), "cooldown_until": (str,)}


class JournalError(RuntimeError):
    """The journal cannot be opened or used (the message names the file and what to do)."""


class JournalCorrupt(JournalError):
    """The file is damaged or is not a runner journal; it was left as it was. A person must
    look at it: the runner exits with status 2 (systemd does not restart it)."""


class JournalFull(JournalError):
    """A write failed because the disk (or the file system's quota) is full. The journal is
    intact: free space and the runner goes on (it is not corrupt; do not discard it)."""


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_full(exc: BaseException) -> bool:
    return _code(exc) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)


def _is_corrupt(exc: BaseException) -> bool:
    return _code(exc) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or any(
        w in str(exc) for w in ("malformed", "not a database", "decode", "integrity"))


def _is_busy(exc: BaseException) -> bool:
    return _code(exc) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(exc)


def full_error(path: str, exc: BaseException) -> JournalFull:
    return JournalFull(
        f"journal {path}: disk full ({exc}); the journal itself is intact (not corrupt, keep "
        "it): free space on its file system and the runner goes on")


def corrupt_error(path: str, why: str) -> JournalCorrupt:
    return JournalCorrupt(
        f"journal {path} is corrupt or not a runner journal ({why}); it was left untouched: "
        "move it aside (and keep it for inspection) to start a new one; the new journal "
        "reconciles with the account and re-imports its history")


def open_error(path: str, exc: BaseException) -> JournalError:
    if is_full(exc):
        return full_error(path, exc)
    if _is_corrupt(exc):
        return corrupt_error(path, str(exc))
    if _is_busy(exc):
        return JournalError(f"journal {path} is locked ({exc}): is another runner using it? "
                            "One journal belongs to one runner")
    return JournalError(f"journal {path} cannot be opened: {exc}")


# ------------------------------------------------------------------ checks of an existing file


def _bad(table: str, key: Any, why: str) -> str:
    return f"table {table}, row {bounded(key, 60)!r}: {why}"


def _time_ok(v: Any) -> bool:
    try:
        parse_time(v)
    except (ValueError, TypeError):
        return False
    return isinstance(v, str)


def _num_ok(v: Any, *, none: bool = False) -> bool:
    if v is None:
        return none
    if isinstance(v, str):
        try:
            float(v)
        except ValueError:
            return False
        return True
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _BadRow(Exception):
    """A journal row the runner cannot rely on (the message names table and row)."""


def _rows(conn: sqlite3.Connection, table: str, sql: str) -> list[tuple]:
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError as exc:  # e.g. invalid UTF-8 in a text column
        raise _BadRow(f"table {table}: {exc}") from None


def _check_rows(conn: sqlite3.Connection) -> None:
    """Typed reads of every row the runner relies on; raises :class:`_BadRow` naming it."""
    meta = dict(_rows(conn, "meta", "SELECT key, value FROM meta"))
    for k, v in meta.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise _BadRow(_bad("meta", k, "key and value must be text"))
    if meta.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise _BadRow(_bad("meta", "schema_version",
                              f"{meta['schema_version']!r}, this runner reads "
                              f"{SCHEMA_VERSION!r}"))
    txid = meta.get("last_transaction_id")
    if txid is not None and not txid.isdigit():
        raise _BadRow(_bad("meta", "last_transaction_id", f"{bounded(txid, 40)!r} is not a "
                              "transaction ID"))
    if "risk_state" in meta:
        try:
            rs = json.loads(meta["risk_state"])
        except ValueError as exc:
            raise _BadRow(_bad("meta", "risk_state", f"not JSON ({exc})")) from None
        if not isinstance(rs, dict):
            raise _BadRow(_bad("meta", "risk_state", "not a JSON object"))
        for k, types in _RISK_TYPES.items():
            if k in rs and (not isinstance(rs[k], types) or
                            (bool not in types and isinstance(rs[k], bool))):
                raise _BadRow(_bad("meta", "risk_state", f"{k} is {rs[k]!r}"))
    if "blocked" in meta:
        try:
            bl = json.loads(meta["blocked"])
        except ValueError as exc:
            raise _BadRow(_bad("meta", "blocked", f"not JSON ({exc})")) from None
        if not isinstance(bl, dict) or any(not isinstance(k, str) or v not in (-1, 1) or
                                           isinstance(v, bool) for k, v in bl.items()):
            raise _BadRow(_bad("meta", "blocked", "must map instruments to -1 or 1"))
    for r in _rows(conn, "candles", "SELECT instrument, time, close FROM candles"):
        if not isinstance(r[0], str) or not _time_ok(r[1]) or not _num_ok(r[2]):
            raise _BadRow(_bad("candles", r[0], f"time {bounded(r[1], 40)!r}"))
    for r in _rows(conn, "orders", "SELECT client_id, instrument, candle_time, purpose, units, "
                   "stop_loss, take_profit, state, order_id, trade_id FROM orders"):
        cid, inst, ct, purpose, units, sl, tp, state, oid, tid = r
        if not isinstance(cid, str) or not isinstance(inst, str) or not _time_ok(ct):
            raise _BadRow(_bad("orders", cid, "client ID, instrument or time"))
        if purpose not in ORDER_PURPOSES or state not in ORDER_STATES:
            raise _BadRow(_bad("orders", cid, f"purpose {purpose!r}, state {state!r}"))
        if not isinstance(units, int) or not _num_ok(sl, none=True) or \
                not _num_ok(tp, none=True):
            raise _BadRow(_bad("orders", cid, "units or levels"))
        if not all(x is None or isinstance(x, str) for x in (oid, tid)):
            raise _BadRow(_bad("orders", cid, "order or trade ID"))
    for r in _rows(conn, "positions", "SELECT trade_id, instrument, units, entry_price, "
                   "stop_loss, take_profit, client_id, origin, state, opened_at, pl "
                   "FROM positions"):
        tid, inst, units, px, sl, tp, cid, origin, state, opened, pl = r
        if not isinstance(tid, str) or not isinstance(inst, str) or not isinstance(units, int):
            raise _BadRow(_bad("positions", tid, "trade ID, instrument or units"))
        if origin not in ORIGINS or state not in ("open", "closed") or not _time_ok(opened):
            raise _BadRow(_bad("positions", tid, f"origin {origin!r}, state {state!r}"))
        if not _num_ok(px) or not _num_ok(sl, none=True) or not _num_ok(tp, none=True) or \
                not _num_ok(pl, none=True) or not (cid is None or isinstance(cid, str)):
            raise _BadRow(_bad("positions", tid, "prices, P&L or client ID"))
    for r in _rows(conn, "fills", "SELECT transaction_id, units, price, pl FROM fills"):
        if not isinstance(r[0], str) or not isinstance(r[1], int) or not _num_ok(r[2]) or \
                not _num_ok(r[3], none=True):
            raise _BadRow(_bad("fills", r[0], "transaction ID, units, price or P&L"))
    if _has_table(conn, "financing"):
        for r in _rows(conn, "financing", "SELECT transaction_id, trade_id, amount, time "
                       "FROM financing"):
            if not isinstance(r[0], str) or not isinstance(r[1], str) or \
                    not _num_ok(r[2]) or not _time_ok(r[3]):
                raise _BadRow(_bad("financing", r[0], "transaction ID, trade ID, amount or "
                                   "time"))


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                        (name,)).fetchone() is not None


def check_journal_file(path: str) -> bool:
    """Refuse (:class:`JournalCorrupt`) a file that is not a sound runner journal, without
    changing it: the SQLite header and ``application_id`` are read raw; then a read-only
    connection runs ``PRAGMA integrity_check``, checks the tables, and reads every row the
    runner relies on with its type. Returns False for a file that holds no tables (a journal
    whose creation never completed), True for a journal."""
    p = Path(path)
    with p.open("rb") as fh:
        head = fh.read(100)
    if len(head) < 100 or not head.startswith(_SQLITE_MAGIC):
        raise corrupt_error(path, "not an SQLite database")
    app = int.from_bytes(head[68:72], "big")
    if app not in (0, APP_ID):
        raise corrupt_error(path, f"application_id {app:#x} is not a runner journal's")
    side = [Path(path + suffix) for suffix in ("-wal", "-shm")]
    existed = [f.exists() for f in side]
    ok = False
    try:
        conn = sqlite3.connect(f"file:{quote(str(p.resolve()))}?mode=ro", uri=True,
                               timeout=5)
        try:
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                ok = True
                return False
            known = _TABLES | _LATER_TABLES
            if app == 0 and not (tables <= known and "meta" in tables):
                raise corrupt_error(path, "an SQLite file with other tables: "
                               + ", ".join(sorted(tables - known)[:5] or ["no meta"]))
            missing = _TABLES - tables
            if missing:
                raise corrupt_error(path, "tables missing: " + ", ".join(sorted(missing)))
            rows = conn.execute("PRAGMA integrity_check(20)").fetchall()
            if [tuple(r) for r in rows] != [("ok",)]:
                raise corrupt_error(path, "integrity check: " + "; ".join(str(r[0]) for r in rows))
            _check_rows(conn)
            ok = True
            return True
        finally:
            conn.close()
    except JournalError:
        raise
    except _BadRow as exc:
        raise corrupt_error(path, str(exc)) from None
    except sqlite3.Error as exc:
        raise open_error(path, exc) from None
    finally:
        if not ok:  # leave no trace next to a refused file
            for f, had in zip(side, existed, strict=True):
                if not had and f.exists() and f.stat().st_size == 0:
                    with contextlib.suppress(OSError):
                        f.unlink()
