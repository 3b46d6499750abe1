"""The runner's journal: one SQLite file in WAL mode, the runner's memory across restarts.

Tables
------
``meta``        key/value: schema version, the broker's environment and account ID (the journal
                belongs to one account), the transaction cursor, halt state, peak equity...
``candles``     last completed candle handled per instrument (so a restart neither repeats nor
                skips a decision).
``signals``     every decision of the signal path, one per instrument and candle.
``decisions``   every trading decision, taken or refused, with its rule and reason (risk
                events, reconciliation and reloads too); reasons are bounded to 500 characters.
``orders``      every order the runner meant to place, by client ID. The row is committed with
                state ``intent`` **before** the POST, so a crash between the two is visible on
                restart; states: intent, filled, cancelled, rejected, abandoned, unknown.
                Purpose ``open``, ``close``, or ``adopted`` (found at the broker on import).
``fills``       fills seen (ours, and stop-loss / take-profit / closing fills of our trades).
``positions``   trades held: ours, adopted ones, and foreign ones (flagged, never touched);
                ``pl`` is a closed trade's price P&L as the broker realised it.
``financing``   daily financing (OANDA's ``DAILY_FINANCING``; the paper broker's own), one row
                per transaction and trade: the trade's share, negative when paid. A trade's
                rows add up to its ``financing`` in :meth:`Journal.positions` and
                :meth:`Journal.closed_trades`, whose ``net_pl`` is ``pl + financing``: the
                trade's realised P&L with its financing. The table was added after schema 1's
                first release without changing it: a journal from before gets it, empty, on
                opening.
``equity``      equity snapshots.

Durability. Each write is its own transaction, in WAL mode. A committed row survives the
process being killed (``kill -9``) at any moment. What a power cut may lose: with
``synchronous=NORMAL`` the WAL is synced only at checkpoints, so the journal is checkpointed
(copied into the database file and synced) right after it is created and after every order
outcome, fill, position change and cursor move, and an order's ``intent`` is committed with
``synchronous=FULL`` before the order is sent. A power cut can therefore lose only the newest
signals, decisions, candle marks and equity rows (the next candle is decided again, and a
repeated decision has the same client ID, so it is recognised, never sent twice); an order,
its outcome and the fills survive. A journal that is lost entirely is rebuilt: an empty
journal on an account with history imports the account's transactions (fills, positions and
the runner's orders by their ``sep-`` client IDs; :mod:`sep_research.live.reconcile`).

Opening. An existing file is checked before anything is written to it
(:func:`check_journal_file`): a file that is not a runner journal, a damaged one
(``integrity_check``) or one with a row the runner cannot rely on (checked with its type)
raises :class:`JournalCorrupt` and is left exactly as it was. A full disk raises
:class:`JournalFull` ("disk full", the journal is intact) at any write.
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

from sep_research.live.journal_file import (
    APP_ID,
    OPEN_ORDER_STATES,
    ORDER_PURPOSES,
    ORDER_STATES,
    ORIGINS,
    SCHEMA_VERSION,
    JournalCorrupt,
    JournalError,
    JournalFull,
    check_journal_file,
    corrupt_error,
    full_error,
    is_full,
    open_error,
)
from sep_research.live.types import bounded, fmt_time, parse_time, utc_now

__all__ = ["OPEN_ORDER_STATES", "ORDER_PURPOSES", "ORDER_STATES", "ORIGINS", "SCHEMA_VERSION",
           "Journal", "JournalCorrupt", "JournalError", "JournalFull", "check_journal_file"]


def _ts(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return fmt_time(value)



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
CREATE TABLE IF NOT EXISTS financing (
    id INTEGER PRIMARY KEY, transaction_id TEXT NOT NULL, trade_id TEXT NOT NULL,
    instrument TEXT NOT NULL, amount REAL NOT NULL, time TEXT NOT NULL,
    UNIQUE (transaction_id, trade_id));
CREATE INDEX IF NOT EXISTS financing_trade ON financing (trade_id);
CREATE TABLE IF NOT EXISTS equity (
    id INTEGER PRIMARY KEY, time TEXT NOT NULL, balance REAL NOT NULL, nav REAL NOT NULL,
    unrealized REAL NOT NULL);
CREATE INDEX IF NOT EXISTS orders_state ON orders (state);
CREATE INDEX IF NOT EXISTS positions_state ON positions (state);
"""

#: a position row with its financing so far (the index on financing.trade_id serves it)
_POSITION_COLUMNS = ("p.*, (SELECT COALESCE(SUM(f.amount), 0.0) FROM financing f "
                     "WHERE f.trade_id = p.trade_id) AS financing")


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
            raise open_error(self.path, exc) from None
        try:
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_DDL)
            self._conn.execute(f"PRAGMA application_id={APP_ID}")
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
            raise open_error(self.path, exc) from None

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and sync it (after each order outcome, so
        that losing the WAL in a power cut loses no order or fill)."""
        if self.path == ":memory:":
            return
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                if is_full(exc):
                    raise full_error(self.path, exc) from None
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
                if is_full(exc):
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                    raise full_error(self.path, exc) from None
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
                    raise corrupt_error(self.path, str(exc)) from None
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
        return self._query(f"SELECT * FROM signals {where}ORDER BY {order} LIMIT ?",  # noqa: S608 - constant SQL, values bound
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
        return self._query(f"SELECT * FROM decisions {where}ORDER BY id DESC LIMIT ?",  # noqa: S608 - constant SQL, values bound
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
            return self._query(f"SELECT * FROM orders WHERE state IN ({marks}) "  # noqa: S608 - constant SQL, values bound
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
        """Positions (``state``: open, closed, or None for all) in order of opening, each with
        its ``financing`` so far and ``net_pl`` (``pl + financing`` once closed, else None)."""
        if state:
            return self._with_financing(self._query(
                f"SELECT {_POSITION_COLUMNS} FROM positions p WHERE state=? ORDER BY opened_at",  # noqa: S608 - constant SQL, values bound
                (state,)))
        return self._with_financing(self._query(
            f"SELECT {_POSITION_COLUMNS} FROM positions p ORDER BY opened_at"))  # noqa: S608 - constant SQL, values bound

    def closed_trades(self, limit: int = 1000, *, oldest_first: bool = False
                      ) -> list[dict[str, Any]]:
        """Closed positions, the latest closed first; ``oldest_first``: in order of opening;
        with ``financing`` and ``net_pl`` as in :meth:`positions`."""
        order = "opened_at, trade_id" if oldest_first else "closed_at DESC"
        return self._with_financing(self._query(
            f"SELECT {_POSITION_COLUMNS} FROM positions p WHERE state='closed' ORDER BY "  # noqa: S608 - constant SQL, values bound
            f"{order} LIMIT ?", (limit,)))

    @staticmethod
    def _with_financing(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for r in rows:
            r["net_pl"] = None if r["pl"] is None else r["pl"] + r["financing"]
        return rows

    # ---------------------------------------------------------------- financing
    def record_financing(self, *, transaction_id: str, time: datetime | str,
                         trades: list[tuple[str, str, float]]) -> int:
        """Journal one daily financing (each trade's share ``(trade_id, instrument,
        amount)``); returns how many shares were new (a repeat changes nothing)."""
        added = 0
        with self._tx() as c:
            for trade_id, instrument, amount in trades:
                cur = c.execute(
                    "INSERT OR IGNORE INTO financing(transaction_id, trade_id, instrument, amount,"
                    " time) VALUES(?,?,?,?,?)",
                    (str(transaction_id), str(trade_id), instrument, float(amount), _ts(time)))
                added += cur.rowcount
        if added:
            self.checkpoint()
        return added

    def financing(self, limit: int = 1000, *, trade_id: str | None = None
                  ) -> list[dict[str, Any]]:
        """Financing rows in transaction order (optionally of one trade)."""
        if trade_id is not None:
            return self._query("SELECT * FROM financing WHERE trade_id=? ORDER BY id LIMIT ?",
                               (trade_id, limit))
        return self._query("SELECT * FROM financing ORDER BY id LIMIT ?", (limit,))

    def financing_through(self) -> dict[str, datetime]:
        """Per instrument, the time of the newest financing journalled."""
        return {r["instrument"]: parse_time(r["t"]) for r in self._query(
            "SELECT instrument, max(time) AS t FROM financing GROUP BY instrument")}

    def financing_total(self) -> float:
        """All financing journalled (open and closed trades, foreign ones too), signed."""
        return float(self._query("SELECT COALESCE(SUM(amount), 0.0) AS s FROM financing")[0]["s"])

    def pnl(self) -> dict[str, float]:
        """Realised figures: ``trades`` (closed trades' price P&L), ``financing`` (all, open
        trades' too) and ``net`` (their sum: what they added to the balance)."""
        trades = float(self._query("SELECT COALESCE(SUM(pl), 0.0) AS s FROM positions "
                                   "WHERE state='closed'")[0]["s"])
        fin = self.financing_total()
        return {"trades": trades, "financing": fin, "net": trades + fin}

    # ---------------------------------------------------------------- equity
    def record_equity(self, balance: float, nav: float, unrealized: float,
                      time: datetime | None = None) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO equity(time, balance, nav, unrealized) VALUES(?,?,?,?)",
                      (_ts(time or utc_now()), balance, nav, unrealized))

    def equity(self, limit: int = 1000) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM equity ORDER BY id DESC LIMIT ?", (limit,))
