"""The venue's books: accounts, their orders and trades, and the transaction log.

This module owns the state records (:class:`VenueAccount`, :class:`VenueOrder`,
:class:`VenueTrade`) and :class:`TransactionLog`, the one writer of transactions: each account
has one increasing ID sequence (an order's ID is the ID of the transaction that created it, a
trade's the ID of the fill that opened it); the transactions written while serving one request
(or one market event) form a batch that shares ``batchID`` (its first ID) and ``requestID``,
and :meth:`TransactionLog.finish` links them into the answer (``relatedTransactionIDs``,
``lastTransactionID``). Times are replay-clock times, so runs are deterministic.

Nothing here decides anything; :mod:`~sep_research.emulator.venue` and
:mod:`~sep_research.emulator.accounting` change these records, under the venue's lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from sep_research.emulator.orders import Attached
from sep_research.emulator.wire import fmt_time

ZERO = Decimal(0)


class VenueOrder:
    """An order at the venue, pending or done; ``w`` is its wire form, kept current."""

    def __init__(self, oid: int, kind: str, created: int, wire: dict[str, Any]) -> None:
        self.id = oid
        self.kind = kind
        self.created = created
        self.w = wire
        self.instrument: str = ""
        self.units = 0
        self.trade_id: int | None = None
        self.price: Decimal | None = None
        self.distance: Decimal | None = None
        self.trigger = "DEFAULT"
        self.tif = "GTC"
        self.gtd: int | None = None
        self.position_fill = "DEFAULT"
        self.on_fill: dict[str, Attached] = {}
        self.trade_ext: dict[str, Any] | None = None
        self.peak: float | None = None  # trailing stop: best price so far
        self.peak_t = created

    @property
    def state(self) -> str:
        return self.w["state"]

    @property
    def client_id(self) -> str | None:
        return (self.w.get("clientExtensions") or {}).get("id")


class VenueTrade:
    """A trade: opened by a fill, reduced and closed by later fills."""

    def __init__(self, tid: int, instrument: str, units: int, price: Decimal, t: int) -> None:
        self.id = tid
        self.instrument = instrument
        self.initial = units
        self.units = units
        self.price = price
        self.open_t = t
        self.realized = ZERO
        self.financing = ZERO  # daily financing paid (-) or received (+) while open
        self.state = "OPEN"
        self.close_t: int | None = None
        self.closing: list[str] = []
        self.close_value = ZERO  # sum units*price of closings, for averageClosePrice
        self.closed_units = 0
        self.ext: dict[str, Any] | None = None
        self.dep: dict[str, int] = {}  # kind -> order id
        self.initial_margin = ZERO

    @property
    def client_id(self) -> str | None:
        return (self.ext or {}).get("id")


class VenueAccount:
    """One account: balance, orders, trades, realised P/L per position side, transactions."""

    def __init__(self, account_id: str, *, balance: Decimal, hedging: bool, margin_rate: str,
                 created: int, alias: str) -> None:
        self.id = account_id
        parts = account_id.split("-")
        self.user_id = int(parts[2]) if len(parts) == 4 and parts[2].isdigit() else 1
        self.alias = alias
        self.hedging = hedging
        self.margin_rate = Decimal(margin_rate)
        self.margin_rate_str = margin_rate
        self.balance = ZERO
        self.initial_balance = balance
        self.pl = ZERO  # realised P/L of fills (financing is apart, as at OANDA)
        self.financing = ZERO  # every DAILY_FINANCING of the account, summed
        self.created = created
        self.txs: list[dict[str, Any]] = []
        self.orders: dict[int, VenueOrder] = {}
        self.trades: dict[int, VenueTrade] = {}
        self.pos_pl: dict[str, dict[str, Decimal]] = {}
        self.pos_fin: dict[str, dict[str, Decimal]] = {}  # financing per position side
        self.last_fill_t: int | None = None
        self.cond = threading.Condition()  # notified when transactions are added

    @property
    def last_id(self) -> int:
        return len(self.txs)

    def open_trades(self, instrument: str | None = None) -> list[VenueTrade]:
        """Open trades, oldest first (optionally of one instrument)."""
        return sorted((tr for tr in self.trades.values() if tr.state == "OPEN"
                       and (instrument is None or tr.instrument == instrument)),
                      key=lambda tr: tr.id)

    def pending_orders(self) -> list[VenueOrder]:
        return sorted((o for o in self.orders.values() if o.state == "PENDING"),
                      key=lambda o: o.id)


class TransactionLog:
    """Writes transactions (see the module docstring). One request or market event at a time,
    under the venue's lock."""

    REQUEST_ID_BASE = 60_000_000_000_000_000

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.requests = 0
        self._batch: int | None = None
        self._at: int | None = None

    def now(self) -> int:
        """The time of the transactions being written: the event's, else the clock's."""
        return self._at if self._at is not None else self.clock.now_ns()

    def new_request(self) -> None:
        self.requests += 1

    def request_id(self) -> str:
        return str(self.REQUEST_ID_BASE + self.requests)

    def write(self, acct: VenueAccount, type_: str, **fields: Any) -> dict[str, Any]:
        """Append a transaction of ``type_`` (None-valued fields left out)."""
        tid = acct.last_id + 1
        if self._batch is None:
            self._batch = tid
        tx = {"id": str(tid), "time": fmt_time(self.now()), "userID": acct.user_id,
              "accountID": acct.id, "batchID": str(self._batch),
              "requestID": self.request_id(), "type": type_}
        tx.update({k: v for k, v in fields.items() if v is not None})
        acct.txs.append(tx)
        return tx

    def end_batch(self, acct: VenueAccount) -> None:
        """Close the batch and wake the account's transaction streams."""
        self._batch = None
        with acct.cond:
            acct.cond.notify_all()

    def finish(self, acct: VenueAccount, out: dict[str, Any]) -> dict[str, Any]:
        """Add ``relatedTransactionIDs`` and ``lastTransactionID`` to a write's answer."""
        first = self._batch if self._batch is not None else acct.last_id + 1
        out["relatedTransactionIDs"] = [str(i) for i in range(first, acct.last_id + 1)]
        out["lastTransactionID"] = str(acct.last_id)
        self.end_batch(acct)
        return out

    @contextmanager
    def event(self, acct: VenueAccount, t: int, *, new_request: bool = True
              ) -> Iterator[None]:
        """Write the transactions of a market event (a fill, an expiry) or of an account's
        opening at time ``t``, as a batch of its own (and a request ID of its own)."""
        self._at = t
        if new_request:
            self.requests += 1
        try:
            yield
        finally:
            self._at = None
            self.end_batch(acct)

    def reset_batch(self) -> None:
        """Start a request with no batch open (one left open by a failed request ends)."""
        self._batch = None
