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

from sep_research.live.types import fmt_time, utc_now

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


class JournalError(RuntimeError):
    """The journal cannot be opened or is corrupt (the message names the file)."""


def _ts(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return fmt_time(value)


class Journal:
    """Thread-safe access to the journal file (one connection, a lock around it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        if self.path != ":memory:":
            p = Path(self.path)
            if p.exists() and p.is_dir():
                raise JournalError(f"journal {p} is a directory")
            p.parent.mkdir(parents=True, exist_ok=True)
            existed = p.exists() and p.stat().st_size > 0
        else:
            existed = False
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False,
                                         isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            if existed:
                self._check_existing()
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._conn.executescript(_DDL)
            self._conn.execute(f"PRAGMA application_id={_APP_ID}")
            if self.get_meta("schema_version") is None:
                self.set_meta("schema_version", SCHEMA_VERSION)
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(Exception):
                self._conn.close()
            raise JournalError(
                f"journal {self.path} is corrupt or not a runner journal ({exc}); it was left "
                "untouched: move it aside (and keep it for inspection) to start a new one"
            ) from None

    def _check_existing(self) -> None:
        row = self._conn.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {row[0] if row else '?'}")
        app = self._conn.execute("PRAGMA application_id").fetchone()[0]
        if app not in (0, _APP_ID):
            raise sqlite3.DatabaseError(f"application_id {app:#x} is not a runner journal")
        tables = {r[0] for r in self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "meta" not in tables:
            raise sqlite3.DatabaseError("it has tables but no 'meta' table")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._conn.execute(sql, args).fetchall()]

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
        cur = self.last_transaction_id
        if cur is None or int(txid) > int(cur):
            self.set_meta("last_transaction_id", str(txid))

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
                (_ts(utc_now()), instrument, _ts(candle_time), kind, int(taken), rule, reason,
                 json.dumps(detail or {}, default=str)))

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
        with self._tx() as c:
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
                (state, order_id, trade_id, reason, _ts(utc_now()), client_id))

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
            return cur.rowcount == 1

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
            return cur.rowcount == 1

    def fills(self, limit: int = 1000) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM fills ORDER BY id LIMIT ?", (limit,))

    def open_position(self, *, trade_id: str, instrument: str, units: int, entry_price: float,
                      stop_loss: float | None, take_profit: float | None,
                      client_id: str | None, origin: str, opened_at: datetime | str) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO positions(trade_id, instrument, units, entry_price,"
                " stop_loss, take_profit, client_id, origin, state, opened_at)"
                " VALUES(?,?,?,?,?,?,?,?,'open',?)",
                (trade_id, instrument, int(units), float(entry_price), stop_loss, take_profit,
                 client_id, origin, _ts(opened_at)))

    def close_position(self, trade_id: str, *, exit_price: float, pl: float, reason: str,
                       closed_at: datetime | str) -> bool:
        with self._tx() as c:
            cur = c.execute(
                "UPDATE positions SET state='closed', exit_price=?, pl=?, exit_reason=?,"
                " closed_at=? WHERE trade_id=? AND state='open'",
                (float(exit_price), float(pl), reason, _ts(closed_at), trade_id))
            return cur.rowcount == 1

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
