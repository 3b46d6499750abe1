"""The broker port: everything the runner asks of a broker, and the values it speaks in.

The runner talks to a :class:`Broker` only through the methods below; both adapters implement
all of them (:class:`~sep_research.live.paper.PaperBroker`, in-process fills with the
backtest's rules, and :class:`~sep_research.live.oanda_broker.OandaBroker`, OANDA v20 or the
emulator). Nothing in the runner checks which adapter it has or reaches past this port.

- :meth:`Broker.identity` -> ``(environment, account ID)``: the journal records it and refuses
  to be used with another account;
- :meth:`Broker.resume` hands the adapter what the runner's journal knows (open trades,
  realised P&L, orders, the last transaction ID) before reconciliation: an in-process broker
  rebuilds its state from it, a real broker keeps its own and ignores it;
- :meth:`Broker.account` -> :class:`Account` (balance, NAV, unrealised P&L, last transaction ID);
- :meth:`Broker.market_order` places a market order (stop-loss / take-profit on fill, a price
  bound, a client ID); it returns an :class:`OrderResult` or raises :class:`AmbiguousOrder` when
  the outcome is unknown (timeout, dropped answer, 5xx): the caller must then learn the outcome
  from :meth:`Broker.find_order`, never by sending again;
- :meth:`Broker.close_trade` closes one trade at market;
- :meth:`Broker.open_trades` -> the account's open trades (:class:`TradeInfo`);
- :meth:`Broker.activity_since` -> :class:`Activity`: the fills (ours, stops, take-profits),
  the daily financing (:class:`FinancingEvent`: OANDA's ``DAILY_FINANCING``, per trade) and
  order outcomes after a transaction ID, and the newest transaction ID read. The runner keeps
  the cursor (in its journal) and moves it only after it has applied the activity, so nothing
  is skipped by a crash in between;
- :meth:`Broker.set_financing` hands the adapter each instrument's financing rates from the
  models' cost models (:class:`sep_research.financing.FinancingRates`, or None): the paper
  broker charges them itself at each rollover, a real broker charges its own and ignores them;
- :meth:`Broker.exits_pending` says whether a stop or take-profit may have filled inside a
  candle (an in-process broker knows; a remote one is asked only when the candle's range
  reached a level, see :func:`exit_may_have_fired`);
- :meth:`Broker.price_text` writes a price the way the broker takes it (OANDA: at the
  instrument's display precision; paper: exactly, as the backtest computes it).

Client IDs: :func:`client_id` derives one from model, instrument, candle time and purpose, so
that the same decision always has the same ID and a repeat is recognisable.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sep_research.live.types import Candle, InstrumentInfo, Quote, fmt_time

if TYPE_CHECKING:
    from sep_research.financing import FinancingRates


class BrokerError(RuntimeError):
    """A broker call failed in a way that is not ambiguous (nothing was placed)."""


class AmbiguousOrder(BrokerError):
    """The order may or may not have been executed; reconcile before acting again."""


@dataclass
class Account:
    balance: float
    nav: float
    unrealized: float
    currency: str
    last_transaction_id: str | None = None
    open_trade_count: int = 0


@dataclass
class TradeInfo:
    trade_id: str
    instrument: str
    units: int  # signed
    price: float
    open_time: datetime
    client_id: str | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    unrealized: float = 0.0


@dataclass
class FillEvent:
    """A fill: a trade opened and/or trades closed by one order."""

    transaction_id: str
    time: datetime
    instrument: str
    reason: str  # MARKET_ORDER, STOP_LOSS_ORDER, TAKE_PROFIT_ORDER, MARKET_ORDER_TRADE_CLOSE...
    price: float
    units: int
    client_id: str | None = None  # of the order that filled
    opened: TradeInfo | None = None
    closed: list[tuple[str, int, float, float]] = field(default_factory=list)  # id, units, px, pl


@dataclass
class FinancingEvent:
    """Daily financing at a rollover (OANDA's ``DAILY_FINANCING``): ``amount`` in the account
    currency (negative: paid), and each open trade's share ``(trade_id, instrument, amount)``."""

    transaction_id: str
    time: datetime
    amount: float
    trades: list[tuple[str, str, float]] = field(default_factory=list)


@dataclass
class OrderResult:
    client_id: str
    state: str  # "filled", "cancelled", "rejected", "unknown"
    order_id: str | None = None
    fill: FillEvent | None = None
    reason: str = ""
    instrument: str | None = None
    units: int = 0


@dataclass
class OrderRequest:
    client_id: str
    instrument: str
    units: int  # signed
    stop_loss: str | None = None  # price strings, written by Broker.price_text
    take_profit: str | None = None
    price_bound: str | None = None  # worst acceptable fill price (None: any)
    tag: str = "sep-runner"


@dataclass
class Activity:
    """What happened at the broker after a transaction ID (see :meth:`Broker.activity_since`).

    ``fills`` and ``financing`` in transaction order; ``orders``: the outcome of each order
    named by a client ID in that range; ``closed_trade_ids``: trades closed in that range;
    ``last_transaction_id``: the newest transaction ID the read covered (the next cursor).
    """

    last_transaction_id: str | None
    fills: list[FillEvent] = field(default_factory=list)
    orders: dict[str, OrderResult] = field(default_factory=dict)
    financing: list[FinancingEvent] = field(default_factory=list)

    @property
    def closed_trade_ids(self) -> set[str]:
        return {c[0] for ev in self.fills for c in ev.closed}


@dataclass
class BrokerRecords:
    """What the runner's journal knows, handed to :meth:`Broker.resume` on start."""

    open_trades: list[TradeInfo]
    realized_pl: float  # closed trades' price P&L plus all financing journalled
    orders: dict[str, OrderResult]
    last_transaction_id: str | None
    #: per instrument, the newest rollover whose financing the journal holds
    financing_through: dict[str, datetime] = field(default_factory=dict)


def client_id(model_id: str, instrument: str, candle_time: datetime, purpose: str) -> str:
    """A client ID that is the same for the same decision: ``sep-<hash>`` (OANDA allows 128
    characters; we keep it short and free of characters OANDA forbids)."""
    key = f"{model_id}|{instrument}|{fmt_time(candle_time)}|{purpose}"
    return "sep-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def exit_may_have_fired(candle: Candle, positions: Iterable[dict[str, Any]]) -> bool:
    """Whether the candle's bid/ask range reached a stop-loss or take-profit of one of
    ``positions`` (journal rows of this instrument), or cannot tell (no bid/ask, no levels)."""
    held = list(positions)
    if not held:
        return False
    if candle.bid is None or candle.ask is None:
        return True  # no bid/ask range to judge by: ask the broker
    (_, bid_h, bid_l, _), (_, ask_h, ask_l, _) = candle.bid, candle.ask
    for p in held:
        sl, tp = p.get("stop_loss"), p.get("take_profit")
        if p["units"] > 0:  # a long closes at the bid
            if (sl is not None and bid_l <= sl) or (tp is not None and bid_h >= tp):
                return True
        elif (sl is not None and ask_h >= sl) or (tp is not None and ask_l <= tp):
            return True
        if sl is None and tp is None and p.get("origin") != "runner":
            return True
    return False


class Broker(ABC):
    """The broker port (see the module docstring)."""

    name: str = "broker"

    @abstractmethod
    def identity(self) -> tuple[str, str]:
        """``(environment, account ID)`` this broker trades, as the journal records them."""

    @abstractmethod
    def resume(self, records: BrokerRecords) -> None:
        """Called once on start, before reconciliation, with what the journal knows."""

    @abstractmethod
    def instrument_info(self, names: list[str]) -> dict[str, InstrumentInfo]: ...

    @abstractmethod
    def account(self) -> Account: ...

    @abstractmethod
    def market_order(self, req: OrderRequest) -> OrderResult: ...

    @abstractmethod
    def close_trade(self, trade_id: str, *, client_id: str | None = None) -> FillEvent | None:
        """Close a trade at market; None when it was already closed (e.g. by its stop)."""

    @abstractmethod
    def open_trades(self) -> list[TradeInfo]: ...

    @abstractmethod
    def activity_since(self, transaction_id: str) -> Activity:
        """Fills and order outcomes after ``transaction_id`` (``"0"``: the whole history)."""

    @abstractmethod
    def find_order(self, client_id: str, since_transaction_id: str | None
                   ) -> OrderResult | None:
        """What became of the order named ``client_id`` (None: the broker never saw it)."""

    @abstractmethod
    def price_text(self, info: InstrumentInfo, value: float) -> str:
        """``value`` written as this broker takes a price for ``info``."""

    def exits_pending(self, candle: Candle, positions: list[dict[str, Any]]) -> bool:
        """May a stop-loss or take-profit of ``positions`` have filled inside ``candle``?"""
        return exit_may_have_fired(candle, positions)

    def set_financing(self, rates: Mapping[str, FinancingRates | None], *,  # noqa: B027 - an optional hook, a no-op by default
                      granularity_seconds: int) -> None:
        """Called with each instrument's financing rates (the models' cost models) and the
        candles' length at start and after a reload; a real broker charges its own and
        ignores them."""

    def on_candle(self, candle: Candle) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Called with each completed candle (the paper broker checks stops and charges
        financing on it)."""

    def on_quote(self, quote: Quote) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Called with each new price."""

    def close(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Release connections."""
