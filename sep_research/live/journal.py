"""The runner's journal: one SQLite file in WAL mode, the runner's memory across restarts.

Tables
------
``meta``        key/value: schema version, last transaction ID seen, halt state, peak equity...
``candles``     last completed candle handled per instrument (so a restart neither repeats nor
                skips a decision).
``signals``     every decision of the signal path, one per instrument and candle.
``decisions``   every trading decision, taken or refused, with its reason (risk events too).
``orders``      every order the runner meant to place, by client ID. The row is committed with
                state ``intent`` **before** the POST, so a crash between the two is visible on
                restart; states: intent, filled, cancelled, rejected, abandoned, unknown.
``fills``       fills seen (ours, and stop-loss / take-profit / closing fills of our trades).
``positions``   trades held: ours, adopted ones, and foreign ones (flagged, never touched).
``equity``      equity snapshots.

Each write is its own transaction. WAL with ``synchronous=NORMAL``: a committed row survives
the process being killed (``kill -9``) at any moment; after a power cut the last few commits may
be lost, which reconciliation handles (an order whose intent was lost is found in the
account's transactions by its ``sep-`` client ID and adopted, never sent again). Opening a file that is not a journal, or a corrupt one, raises
:class:`JournalError` and leaves the file as it was.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sep_research.live.types import bounded, fmt_time, parse_time, utc_now

SCHEMA_VERSION = "1"
_APP_ID = 0x53455052  # "SEPR"

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candles (
    instrument TEXT PRIMARY KEY, time TEXT NOT NULL, close REAL NOT NULL, seen_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS signals (
    id INTEGER PRIMARY KEY, instrument TEXT NOT NULL, candle_time TEXT NOT NULL,
    model_id TEXT NOT NULL, action TEXT NOT NULL, target INTEGER NOT NULL, confidence REAL,
    extra TEXT, decided_at TEXT NOT NULL, UNIQUE (instrument, candle_time, model_id));
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY, time TEXT NOT NULL, instrument TEXT, candle_time TEXT,
    kind TEXT NOT NULL, taken INTEGER NOT NULL, rule TEXT, reason TEXT NOT NULL, detail TEXT);
CREATE TABLE IF NOT EXISTS orders (
    client_id TEXT PRIMARY KEY, instrument TEXT NOT NULL, candle_time TEXT NOT NULL,
    purpose TEXT NOT NULL, units INTEGER NOT NULL, stop_loss TEXT, take_profit TEXT,
    state TEXT NOT NULL, order_id TEXT, trade_id TEXT, reason TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fills (
    id INTEGER PRIMARY KEY, transaction_id TEXT UNIQUE, client_id TEXT, instrument TEXT NOT NULL,
    trade_id TEXT, units INTEGER NOT NULL, price REAL NOT NULL, pl REAL, reason TEXT,
    time TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (
    trade_id TEXT PRIMARY KEY, instrument TEXT NOT NULL, units INTEGER NOT NULL,
    entry_price REAL NOT NULL, stop_loss REAL, take_profit REAL, client_id TEXT,
    origin TEXT NOT NULL, state TEXT NOT NULL, opened_at TEXT NOT NULL, closed_at TEXT,
    exit_price REAL, pl REAL, exit_reason TEXT);
CREATE TABLE IF NOT EXISTS equity (
    id INTEGER PRIMARY KEY, time TEXT NOT NULL, balance REAL NOT NULL, nav REAL NOT NULL,
    unrealized REAL NOT NULL);
CREATE INDEX IF NOT EXISTS orders_state ON orders (state);
CREATE INDEX IF NOT EXISTS positions_state ON positions (state);
"""

ORDER_STATES = ("intent", "filled", "cancelled", "rejected", "abandoned", "unknown")
OPEN_ORDER_STATES = ("intent", "unknown")
ORDER_PURPOSES = ("open", "close", "adopted")
ORIGINS = ("runner", "adopted", "foreign")
_TABLES = {"meta", "candles", "signals", "decisions", "orders", "fills", "positions", "equity"}
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


def _ts(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return fmt_time(value)


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _is_full(exc: BaseException) -> bool:
    return _code(exc) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)


def _is_corrupt(exc: BaseException) -> bool:
    return _code(exc) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or any(
        w in str(exc) for w in ("malformed", "not a database", "decode", "integrity"))


def _is_busy(exc: BaseException) -> bool:
    return _code(exc) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(exc)


def _full(path: str, exc: BaseException) -> JournalFull:
    return JournalFull(
        f"journal {path}: disk full ({exc}); the journal itself is intact (not corrupt, keep "
        "it): free space on its file system and the runner goes on")


def _corrupt(path: str, why: str) -> JournalCorrupt:
    return JournalCorrupt(
        f"journal {path} is corrupt or not a runner journal ({why}); it was left untouched: "
        "move it aside (and keep it for inspection) to start a new one; the new journal "
        "reconciles with the account and re-imports its history")


def _open_error(path: str, exc: BaseException) -> JournalError:
    if _is_full(exc):
        return _full(path, exc)
    if _is_corrupt(exc):
        return _corrupt(path, str(exc))
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
        raise _corrupt(path, "not an SQLite database")
    app = int.from_bytes(head[68:72], "big")
    if app not in (0, _APP_ID):
        raise _corrupt(path, f"application_id {app:#x} is not a runner journal's")
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
            if app == 0 and not (tables <= _TABLES and "meta" in tables):
                raise _corrupt(path, "an SQLite file with other tables: "
                               + ", ".join(sorted(tables - _TABLES)[:5] or ["no meta"]))
            missing = _TABLES - tables
            if missing:
                raise _corrupt(path, "tables missing: " + ", ".join(sorted(missing)))
            rows = conn.execute("PRAGMA integrity_check(20)").fetchall()
            if [tuple(r) for r in rows] != [("ok",)]:
                raise _corrupt(path, "integrity check: " + "; ".join(str(r[0]) for r in rows))
            _check_rows(conn)
            ok = True
            return True
        finally:
            conn.close()
    except JournalError:
        raise
    except _BadRow as exc:
        raise _corrupt(path, str(exc)) from None
    except sqlite3.Error as exc:
        raise _open_error(path, exc) from None
    finally:
        if not ok:  # leave no trace next to a refused file
            for f, had in zip(side, existed, strict=True):
                if not had and f.exists() and f.stat().st_size == 0:
                    with contextlib.suppress(OSError):
                        f.unlink()


class Journal:
    """Thread-safe access to the journal file (one connection, a lock around it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        fresh = True
        if self.path != ":memory:":
            p = Path(self.path)
            if p.exists() and p.is_dir():
                raise JournalError(f"journal {p} is a directory")
            if p.exists() and p.stat().st_size > 0:
                fresh = not check_journal_file(self.path)
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False,
                                         isolation_level=None)
        except sqlite3.Error as exc:
            raise _open_error(self.path, exc) from None
        try:
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_DDL)
            self._conn.execute(f"PRAGMA application_id={_APP_ID}")
            if self.get_meta("schema_version") is None:
                self.set_meta("schema_version", SCHEMA_VERSION)
            if fresh:
                # a new journal is on disk at once, not only in the WAL (a power cut before
                # the first checkpoint must not lose it)
                self.checkpoint()
        except (sqlite3.Error, JournalError) as exc:
            with contextlib.suppress(Exception):
                self._conn.close()
            if isinstance(exc, JournalError):
                raise
            raise _open_error(self.path, exc) from None

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and sync it (after each order outcome, so
        that losing the WAL in a power cut loses no order or fill)."""
        if self.path == ":memory:":
            return
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                if _is_full(exc):
                    raise _full(self.path, exc) from None
                raise

    @contextmanager
    def _tx(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``durable``: synced to disk at commit (``synchronous=FULL``),
        for what must survive a power cut (an order's intent, before it is sent). A full disk
        raises :class:`JournalFull`."""
        with self._lock:
            try:
                if durable:
                    self._conn.execute("PRAGMA synchronous=FULL")
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                    raise
                else:
                    self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if _is_full(exc):
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                    raise _full(self.path, exc) from None
                raise
            finally:
                if durable:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("PRAGMA synchronous=NORMAL")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            try:
                return [dict(r) for r in self._conn.execute(sql, args).fetchall()]
            except sqlite3.OperationalError as exc:
                if "decode" in str(exc):  # invalid UTF-8 written behind the runner's back
                    raise _corrupt(self.path, str(exc)) from None
                raise

    @property
    def journal_mode(self) -> str:
        """SQLite's journal mode of the file (``wal``)."""
        return str(self._query("PRAGMA journal_mode")[0]["journal_mode"])

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()

    # ---------------------------------------------------------------- meta
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0]["value"] if rows else default

    def set_meta(self, key: str, value: Any) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE "
                      "SET value=excluded.value", (key, str(value)))

    @property
    def last_transaction_id(self) -> str | None:
        return self.get_meta("last_transaction_id")

    def set_last_transaction_id(self, txid: str | int) -> None:
        """Move the transaction cursor forward (never back); synced to the database file."""
        cur = self.last_transaction_id
        if cur is None or int(txid) > int(cur):
            self.set_meta("last_transaction_id", str(txid))
            self.checkpoint()

    # ---------------------------------------------------------------- candles & signals
    def last_candle(self, instrument: str) -> str | None:
        rows = self._query("SELECT time FROM candles WHERE instrument=?", (instrument,))
        return rows[0]["time"] if rows else None

    def last_candles(self) -> dict[str, dict[str, Any]]:
        return {r["instrument"]: r for r in self._query("SELECT * FROM candles")}

    def record_candle(self, instrument: str, time: datetime, close: float) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO candles(instrument, time, close, seen_at) VALUES(?,?,?,?) "
                "ON CONFLICT(instrument) DO UPDATE SET time=excluded.time, close=excluded.close,"
                " seen_at=excluded.seen_at",
                (instrument, _ts(time), close, _ts(utc_now())))

    def record_signal(self, instrument: str, candle_time: datetime, model_id: str, action: str,
                      target: int, confidence: float | None, extra: dict[str, Any]) -> None:
        conf = None if confidence is None or math.isnan(confidence) else float(confidence)
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO signals(instrument, candle_time, model_id, action, target,"
                " confidence, extra, decided_at) VALUES(?,?,?,?,?,?,?,?)",
                (instrument, _ts(candle_time), model_id, action, int(target), conf,
                 json.dumps(extra, default=str), _ts(utc_now())))

    def signals(self, limit: int = 100, instrument: str | None = None, *,
                oldest_first: bool = False) -> list[dict[str, Any]]:
        """Recent signals, newest first; ``oldest_first``: in candle-time order."""
        where, args = ("WHERE instrument=? ", (instrument,)) if instrument else ("", ())
        order = "candle_time, id" if oldest_first else "id DESC"
        return self._query(f"SELECT * FROM signals {where}ORDER BY {order} LIMIT ?",
                           (*args, limit))

    # ---------------------------------------------------------------- decisions
    def record_decision(self, kind: str, taken: bool, reason: str, *, instrument: str | None = None,
                        candle_time: datetime | None = None, rule: str | None = None,
                        detail: dict[str, Any] | None = None) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO decisions(time, instrument, candle_time, kind, taken, rule, reason,"
                " detail) VALUES(?,?,?,?,?,?,?,?)",
                (_ts(utc_now()), instrument, _ts(candle_time), kind, int(taken), rule,
                 bounded(reason), json.dumps(detail or {}, default=str)))

    def decisions(self, limit: int = 100, *, kind: str | None = None,
                  taken: bool | None = None, rule: str | None = None
                  ) -> list[dict[str, Any]]:
        """Recent decisions, newest first, optionally of one ``kind``, outcome or ``rule``."""
        conds, args = [], []
        for col, val in (("kind", kind), ("taken", None if taken is None else int(taken)),
                         ("rule", rule)):
            if val is not None:
                conds.append(f"{col}=?")
                args.append(val)
        where = f"WHERE {' AND '.join(conds)} " if conds else ""
        return self._query(f"SELECT * FROM decisions {where}ORDER BY id DESC LIMIT ?",
                           (*args, limit))

    # ---------------------------------------------------------------- orders
    def order(self, client_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM orders WHERE client_id=?", (client_id,))
        return rows[0] if rows else None

    def add_order_intent(self, client_id: str, instrument: str, candle_time: datetime,
                         purpose: str, units: int, stop_loss: str | None,
                         take_profit: str | None) -> bool:
        """Record an order before it is sent. False if the client ID is already known."""
        now = _ts(utc_now())
        with self._tx(durable=True) as c:  # on disk before the order is sent
            cur = c.execute(
                "INSERT OR IGNORE INTO orders(client_id, instrument, candle_time, purpose, units,"
                " stop_loss, take_profit, state, created_at, updated_at)"
                " VALUES(?,?,?,?,?,?,?,'intent',?,?)",
                (client_id, instrument, _ts(candle_time), purpose, int(units), stop_loss,
                 take_profit, now, now))
            return cur.rowcount == 1

    def update_order(self, client_id: str, state: str, *, order_id: str | None = None,
                     trade_id: str | None = None, reason: str | None = None) -> None:
        if state not in ORDER_STATES:
            raise ValueError(f"unknown order state {state!r}")
        with self._tx() as c:
            c.execute(
                "UPDATE orders SET state=?, order_id=COALESCE(?, order_id),"
                " trade_id=COALESCE(?, trade_id), reason=COALESCE(?, reason), updated_at=?"
                " WHERE client_id=?",
                (state, order_id, trade_id, None if reason is None else bounded(reason),
                 _ts(utc_now()), client_id))
        if state not in OPEN_ORDER_STATES:
            self.checkpoint()  # an order's outcome survives losing the WAL

    def orders(self, states: tuple[str, ...] | None = None, limit: int = 1000
               ) -> list[dict[str, Any]]:
        if states:
            marks = ",".join("?" * len(states))
            return self._query(f"SELECT * FROM orders WHERE state IN ({marks}) "
                               "ORDER BY created_at LIMIT ?", (*states, limit))
        return self._query("SELECT * FROM orders ORDER BY created_at DESC LIMIT ?", (limit,))

    def adopt_order(self, client_id: str, *, instrument: str, units: int, state: str,
                    order_id: str | None, trade_id: str | None, time: datetime | None,
                    reason: str) -> bool:
        """Journal an order found at the broker that the journal lost (purpose ``adopted``).
        False if the client ID is already known."""
        if state not in ORDER_STATES:
            raise ValueError(f"unknown order state {state!r}")
        now = _ts(utc_now())
        with self._tx() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO orders(client_id, instrument, candle_time, purpose, units,"
                " state, order_id, trade_id, reason, created_at, updated_at)"
                " VALUES(?,?,?,'adopted',?,?,?,?,?,?,?)",
                (client_id, instrument, _ts(time) or now, int(units), state, order_id,
                 trade_id, reason, now, now))
            added = cur.rowcount == 1
        self.checkpoint()
        return added

    def max_transaction_id(self) -> str | None:
        """The highest broker transaction ID the journal mentions anywhere (cursor, fills,
        trades, orders), or None: an in-process broker numbers on from it."""
        best = int(self.last_transaction_id or 0)
        for sql in ("SELECT transaction_id AS v FROM fills", "SELECT trade_id AS v FROM positions",
                    "SELECT order_id AS v FROM orders WHERE order_id IS NOT NULL"):
            for r in self._query(sql):
                v = str(r["v"] or "")
                if v.isdigit():
                    best = max(best, int(v))
        return str(best) if best or self.last_transaction_id is not None else None

    def all_client_ids(self) -> set[str]:
        return {r["client_id"] for r in self._query("SELECT client_id FROM orders")}

    # ---------------------------------------------------------------- fills & positions
    def record_fill(self, *, transaction_id: str | None, client_id: str | None, instrument: str,
                    trade_id: str | None, units: int, price: float, pl: float | None,
                    reason: str, time: datetime | str) -> bool:
        with self._tx() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO fills(transaction_id, client_id, instrument, trade_id,"
                " units, price, pl, reason, time) VALUES(?,?,?,?,?,?,?,?,?)",
                (transaction_id, client_id, instrument, trade_id, int(units), float(price), pl,
                 reason, _ts(time)))
            added = cur.rowcount == 1
        if added:
            self.checkpoint()
        return added

    def fills(self, limit: int = 1000) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM fills ORDER BY id LIMIT ?", (limit,))

    def open_position(self, *, trade_id: str, instrument: str, units: int, entry_price: float,
                      stop_loss: float | None, take_profit: float | None,
                      client_id: str | None, origin: str, opened_at: datetime | str) -> None:
        with self._tx() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO positions(trade_id, instrument, units, entry_price,"
                " stop_loss, take_profit, client_id, origin, state, opened_at)"
                " VALUES(?,?,?,?,?,?,?,?,'open',?)",
                (trade_id, instrument, int(units), float(entry_price), stop_loss, take_profit,
                 client_id, origin, _ts(opened_at)))
            added = cur.rowcount == 1
        if added:
            self.checkpoint()

    def close_position(self, trade_id: str, *, exit_price: float, pl: float, reason: str,
                       closed_at: datetime | str) -> bool:
        with self._tx() as c:
            cur = c.execute(
                "UPDATE positions SET state='closed', exit_price=?, pl=?, exit_reason=?,"
                " closed_at=? WHERE trade_id=? AND state='open'",
                (float(exit_price), float(pl), reason, _ts(closed_at), trade_id))
            closed = cur.rowcount == 1
        if closed:
            self.checkpoint()
        return closed

    def positions(self, state: str | None = "open") -> list[dict[str, Any]]:
        if state:
            return self._query("SELECT * FROM positions WHERE state=? ORDER BY opened_at",
                               (state,))
        return self._query("SELECT * FROM positions ORDER BY opened_at")

    def closed_trades(self, limit: int = 1000, *, oldest_first: bool = False
                      ) -> list[dict[str, Any]]:
        """Closed positions, the latest closed first; ``oldest_first``: in order of opening."""
        order = "opened_at, trade_id" if oldest_first else "closed_at DESC"
        return self._query(f"SELECT * FROM positions WHERE state='closed' ORDER BY {order} "
                           "LIMIT ?", (limit,))

    # ---------------------------------------------------------------- equity
    def record_equity(self, balance: float, nav: float, unrealized: float,
                      time: datetime | None = None) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO equity(time, balance, nav, unrealized) VALUES(?,?,?,?)",
                      (_ts(time or utc_now()), balance, nav, unrealized))

    def equity(self, limit: int = 1000) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM equity ORDER BY id DESC LIMIT ?", (limit,))
