"""Brokers behind one interface: OANDA (through ``oandapyV20``) and a paper broker.

The runner talks to a :class:`Broker`:

- :meth:`Broker.account` -> :class:`Account` (balance, NAV, unrealised P/L, last transaction ID);
- :meth:`Broker.market_order` places a market order with stop-loss / take-profit on fill, named
  by a client ID; it returns an :class:`OrderResult` or raises :class:`AmbiguousOrder` when the
  outcome is unknown (timeout, dropped response, 5xx): the caller must then call
  :meth:`Broker.find_order` (which reads the account's transactions) before doing anything else;
- :meth:`Broker.close_trade` closes one trade at market;
- :meth:`Broker.open_trades` -> the account's open trades (:class:`TradeInfo`);
- :meth:`Broker.events` -> fills and closures (:class:`FillEvent`) since the last call, e.g. a
  stop-loss hit: the runner journals them and keeps its positions in step.

Client IDs: :func:`client_id` derives one from model, instrument, candle time and purpose, so
that the same decision always has the same ID and a repeat is recognisable.

:class:`PaperBroker` fills market orders at the current quote with the backtest's fill rules
(:mod:`sep_research.backtest.fills`): a buy at the ask, a sell at the bid; stop-loss and
take-profit are checked on each completed candle's bid/ask range with the backtest's
conservative rule. It needs no credentials and no network.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sep_research.backtest import fills
from sep_research.live.types import Candle, InstrumentInfo, Quote, fmt_time, parse_time

log = logging.getLogger(__name__)


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
class OrderResult:
    client_id: str
    state: str  # "filled", "cancelled", "rejected"
    order_id: str | None = None
    fill: FillEvent | None = None
    reason: str = ""


@dataclass
class OrderRequest:
    client_id: str
    instrument: str
    units: int  # signed
    stop_loss: str | None = None  # price strings at the instrument's precision
    take_profit: str | None = None
    price_bound: str | None = None
    tag: str = "sep-runner"


def client_id(model_id: str, instrument: str, candle_time: datetime, purpose: str) -> str:
    """A client ID that is the same for the same decision: ``sep-<hash>`` (OANDA allows 128
    characters; we keep it short and free of characters OANDA forbids)."""
    key = f"{model_id}|{instrument}|{fmt_time(candle_time)}|{purpose}"
    return "sep-" + hashlib.sha256(key.encode()).hexdigest()[:24]


class Broker(ABC):
    name: str = "broker"

    @abstractmethod
    def instrument_info(self, names: list[str]) -> dict[str, InstrumentInfo]: ...

    @abstractmethod
    def account(self) -> Account: ...

    @abstractmethod
    def market_order(self, req: OrderRequest) -> OrderResult: ...

    @abstractmethod
    def close_trade(self, trade_id: str, *, client_id: str | None = None) -> FillEvent | None: ...

    @abstractmethod
    def open_trades(self) -> list[TradeInfo]: ...

    @abstractmethod
    def events(self) -> list[FillEvent]: ...

    @abstractmethod
    def find_order(self, client_id: str, since_transaction_id: str | None
                   ) -> OrderResult | None: ...

    def on_candle(self, candle: Candle) -> None:
        """Called with each completed candle (the paper broker checks stops on it)."""

    def on_quote(self, quote: Quote) -> None:
        """Called with each new price."""

    def close(self) -> None:
        """Release connections."""


# ====================================================================== paper


class PaperBroker(Broker):
    """Simulated fills with the backtest's rules; state lives in memory and, through the
    runner's journal, survives restarts (the runner restores open trades with :meth:`restore`).
    """

    name = "paper"

    def __init__(self, *, balance: float, currency: str = "USD", half_spread_pips: float = 0.5,
                 quote_to_account: dict[str, float] | None = None) -> None:
        self.balance = float(balance)
        self.currency = currency
        self.half_spread_pips = float(half_spread_pips)
        self.q2a = dict(quote_to_account or {})
        self._quotes: dict[str, Quote] = {}
        self._trades: dict[str, TradeInfo] = {}
        self._entry_cost: dict[str, float] = {}
        self._events: list[FillEvent] = []
        self._orders: dict[str, OrderResult] = {}
        self._txid = 0
        self._lock = threading.Lock()

    # --------------------------------------------------------------- state
    def restore(self, *, balance: float, trades: list[TradeInfo], last_transaction_id: int,
                orders: dict[str, OrderResult] | None = None) -> None:
        with self._lock:
            self.balance = float(balance)
            self._trades = {t.trade_id: t for t in trades}
            self._txid = int(last_transaction_id)
            self._orders = dict(orders or {})

    def _next_id(self) -> str:
        self._txid += 1
        return str(self._txid)

    def _q2a(self, info_quote: str) -> float:
        if info_quote == self.currency:
            return 1.0
        if info_quote in self.q2a:
            return self.q2a[info_quote]
        direct = self._quotes.get(f"{info_quote}_{self.currency}")
        if direct:
            return (direct.bid + direct.ask) / 2
        inverse = self._quotes.get(f"{self.currency}_{info_quote}")
        if inverse:
            return 2 / (inverse.bid + inverse.ask)
        raise BrokerError(f"paper broker: no conversion of {info_quote} to {self.currency}")

    # --------------------------------------------------------------- interface
    def instrument_info(self, names: list[str]) -> dict[str, InstrumentInfo]:
        return {n: InstrumentInfo.default(n) for n in names}

    def on_quote(self, quote: Quote) -> None:
        with self._lock:
            self._quotes[quote.instrument] = quote

    def _unrealized(self) -> float:
        total = 0.0
        for t in self._trades.values():
            q = self._quotes.get(t.instrument)
            if q is None:
                continue
            d = 1 if t.units > 0 else -1
            px = fills.exit_price(d, q.bid, q.ask)
            total += (px - t.price) * t.units * self._q2a(t.instrument.split("_")[1])
        return total

    def account(self) -> Account:
        with self._lock:
            upl = self._unrealized()
            return Account(self.balance, self.balance + upl, upl, self.currency,
                           str(self._txid), len(self._trades))

    def market_order(self, req: OrderRequest) -> OrderResult:
        with self._lock:
            if req.client_id in self._orders:
                return self._orders[req.client_id]
            q = self._quotes.get(req.instrument)
            if q is None:
                raise BrokerError(f"paper broker: no price for {req.instrument} yet")
            if req.units == 0:
                res = OrderResult(req.client_id, "rejected", reason="UNITS_INVALID")
                self._orders[req.client_id] = res
                return res
            oid = self._next_id()
            d = 1 if req.units > 0 else -1
            px = fills.entry_price(d, q.bid, q.ask)
            tid = self._next_id()
            trade = TradeInfo(
                trade_id=tid, instrument=req.instrument, units=req.units, price=px,
                open_time=q.time, client_id=req.client_id,
                stop_loss=float(req.stop_loss) if req.stop_loss else None,
                take_profit=float(req.take_profit) if req.take_profit else None)
            self._trades[tid] = trade
            self._entry_cost[tid] = fills.fill_cost(q.bid, q.ask)
            ev = FillEvent(transaction_id=tid, time=q.time, instrument=req.instrument,
                           reason="MARKET_ORDER", price=px, units=req.units,
                           client_id=req.client_id, opened=trade)
            res = OrderResult(req.client_id, "filled", order_id=oid, fill=ev)
            self._orders[req.client_id] = res
            return res

    def _close(self, trade: TradeInfo, px: float, reason: str, time: datetime,
               client: str | None) -> FillEvent:
        d = 1 if trade.units > 0 else -1
        pl = (px - trade.price) * d * abs(trade.units) * self._q2a(trade.instrument.split("_")[1])
        self.balance += pl
        del self._trades[trade.trade_id]
        self._entry_cost.pop(trade.trade_id, None)
        return FillEvent(transaction_id=self._next_id(), time=time, instrument=trade.instrument,
                         reason=reason, price=px, units=-trade.units, client_id=client,
                         closed=[(trade.trade_id, -trade.units, px, pl)])

    def close_trade(self, trade_id: str, *, client_id: str | None = None) -> FillEvent | None:
        with self._lock:
            trade = self._trades.get(trade_id)
            if trade is None:
                return None
            q = self._quotes.get(trade.instrument)
            if q is None:
                raise BrokerError(f"paper broker: no price for {trade.instrument}")
            d = 1 if trade.units > 0 else -1
            return self._close(trade, fills.exit_price(d, q.bid, q.ask),
                               "MARKET_ORDER_TRADE_CLOSE", q.time, client_id)

    def on_candle(self, candle: Candle) -> None:
        """Stop-loss / take-profit on the candle's bid/ask range (the backtest's rule)."""
        with self._lock:
            info = InstrumentInfo.default(candle.instrument)
            bid, ask = candle.quotes(self.half_spread_pips * info.pip)
            for trade in [t for t in self._trades.values() if t.instrument == candle.instrument]:
                if trade.open_time > candle.time:
                    continue  # opened after this candle started: its range is not known
                d = 1 if trade.units > 0 else -1
                stop = trade.stop_loss if trade.stop_loss is not None else math.nan
                take = trade.take_profit if trade.take_profit is not None else math.nan
                reason, px, _ = fills.check_stop_take(d, stop, take, bid[0], bid[1], bid[2],
                                                      ask[0], ask[1], ask[2])
                if reason == fills.EXIT_NONE:
                    continue
                kind = "STOP_LOSS_ORDER" if reason == fills.EXIT_STOP else "TAKE_PROFIT_ORDER"
                self._events.append(self._close(trade, px, kind, candle.time, None))

    def open_trades(self) -> list[TradeInfo]:
        with self._lock:
            return list(self._trades.values())

    def events(self) -> list[FillEvent]:
        with self._lock:
            out, self._events = self._events, []
            return out

    def find_order(self, client_id: str, since_transaction_id: str | None
                   ) -> OrderResult | None:
        with self._lock:
            return self._orders.get(client_id)


# ====================================================================== OANDA


def _f(x: Any, default: float = 0.0) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return default


def trade_from_oanda(d: dict[str, Any]) -> TradeInfo:
    sl = (d.get("stopLossOrder") or {}).get("price")
    tp = (d.get("takeProfitOrder") or {}).get("price")
    return TradeInfo(
        trade_id=str(d["id"]), instrument=d["instrument"],
        units=int(float(d.get("currentUnits", d.get("initialUnits", 0)))),
        price=_f(d.get("price")), open_time=parse_time(d["openTime"]),
        client_id=(d.get("clientExtensions") or {}).get("id"),
        stop_loss=_f(sl) if sl else None, take_profit=_f(tp) if tp else None,
        unrealized=_f(d.get("unrealizedPL")))


def fills_from_transactions(txs: list[dict[str, Any]]) -> list[FillEvent]:
    """ORDER_FILL transactions as :class:`FillEvent` (client IDs looked up from the order
    transactions in the same list, or from ``tradeOpened.clientExtensions``)."""
    order_client: dict[str, str] = {}
    for tx in txs:
        ext = tx.get("clientExtensions") or {}
        if tx.get("type", "").endswith("_ORDER") and ext.get("id"):
            order_client[str(tx["id"])] = ext["id"]
    out: list[FillEvent] = []
    for tx in txs:
        if tx.get("type") != "ORDER_FILL":
            continue
        opened = None
        to = tx.get("tradeOpened")
        cid = order_client.get(str(tx.get("orderID")))
        if to:
            tcid = (to.get("clientExtensions") or {}).get("id")
            cid = cid or tcid
            opened = TradeInfo(trade_id=str(to["tradeID"]), instrument=tx["instrument"],
                               units=int(float(to["units"])), price=_f(to.get("price",
                                                                          tx.get("price"))),
                               open_time=parse_time(tx["time"]), client_id=tcid or cid)
        closed = []
        for c in (tx.get("tradesClosed") or []) + ([tx["tradeReduced"]]
                                                  if tx.get("tradeReduced") else []):
            closed.append((str(c["tradeID"]), int(float(c["units"])),
                           _f(c.get("price", tx.get("price"))), _f(c.get("realizedPL"))))
        out.append(FillEvent(
            transaction_id=str(tx["id"]), time=parse_time(tx["time"]),
            instrument=tx["instrument"], reason=str(tx.get("reason", "")),
            price=_f(tx.get("price")), units=int(float(tx.get("units", 0))), client_id=cid,
            opened=opened, closed=closed))
    return out


class OandaBroker(Broker):
    """OANDA v20 through :mod:`sep_research.oanda.client` (rate limit, retry rules).

    Reads are retried on 429/5xx/network errors; an order POST never is: a POST that fails
    ambiguously raises :class:`AmbiguousOrder` and :meth:`find_order` then reads the
    account's transactions to learn whether it was executed.
    """

    name = "oanda"

    def __init__(self, api: Any, account_id: str, *, limiter: Any = None,
                 on_retry: Any = None, retries: int = 5) -> None:
        from sep_research.oanda import client as oc

        self._oc = oc
        self.api = api
        self.account_id = account_id
        self.limiter = limiter
        self.on_retry = on_retry
        self.retries = retries
        self._last_txid: str | None = None
        self._currency = "USD"

    def _get(self, endpoint: Any) -> Any:
        return self._oc.request_with_retry(self.api, endpoint, limiter=self.limiter,
                                           retries=self.retries, on_retry=self.on_retry)

    def instrument_info(self, names: list[str]) -> dict[str, InstrumentInfo]:
        from oandapyV20.endpoints import accounts

        r = self._get(accounts.AccountInstruments(self.account_id,
                                                  params={"instruments": ",".join(names)}))
        got = {d["name"]: InstrumentInfo.from_oanda(d) for d in r.get("instruments", [])}
        missing = [n for n in names if n not in got]
        if missing:
            raise BrokerError(f"the account cannot trade {', '.join(missing)}")
        return got

    def account(self) -> Account:
        from oandapyV20.endpoints import accounts

        r = self._get(accounts.AccountSummary(self.account_id))
        a = r["account"]
        self._currency = a.get("currency", self._currency)
        return Account(balance=_f(a.get("balance")), nav=_f(a.get("NAV")),
                       unrealized=_f(a.get("unrealizedPL")), currency=self._currency,
                       last_transaction_id=str(r.get("lastTransactionID")
                                               or a.get("lastTransactionID")),
                       open_trade_count=int(a.get("openTradeCount", 0)))

    def set_last_transaction_id(self, txid: str | None) -> None:
        self._last_txid = txid

    def market_order(self, req: OrderRequest) -> OrderResult:
        from oandapyV20.endpoints import orders

        order: dict[str, Any] = {
            "type": "MARKET", "instrument": req.instrument, "units": str(int(req.units)),
            "timeInForce": "FOK", "positionFill": "DEFAULT",
            "clientExtensions": {"id": req.client_id, "tag": req.tag},
            "tradeClientExtensions": {"id": req.client_id, "tag": req.tag},
        }
        if req.stop_loss:
            order["stopLossOnFill"] = {"price": req.stop_loss, "timeInForce": "GTC"}
        if req.take_profit:
            order["takeProfitOnFill"] = {"price": req.take_profit, "timeInForce": "GTC"}
        if req.price_bound:
            order["priceBound"] = req.price_bound
        ep = orders.OrderCreate(self.account_id, data={"order": order})
        try:
            r = self._oc.request_with_retry(self.api, ep, limiter=self.limiter, retries=0)
        except self._oc.OandaError as exc:
            if exc.code == 400 and isinstance(exc.body, dict):
                rej = exc.body.get("orderRejectTransaction") or {}
                return OrderResult(req.client_id, "rejected", order_id=rej.get("id"),
                                   reason=str(rej.get("rejectReason")
                                              or exc.body.get("errorCode") or exc.message))
            if isinstance(exc, self._oc.AuthError) or exc.kind is self._oc.ErrorKind.BAD_REQUEST:
                raise BrokerError(str(exc)) from None
            raise AmbiguousOrder(f"order {req.client_id}: {exc}") from None
        except ValueError as exc:  # unexpected success status
            raise AmbiguousOrder(f"order {req.client_id}: {exc}") from None
        return self._result(req.client_id, r)

    def _result(self, cid: str, r: dict[str, Any]) -> OrderResult:
        create = r.get("orderCreateTransaction") or {}
        oid = str(create.get("id")) if create.get("id") else None
        if r.get("orderFillTransaction"):
            txs = [create, r["orderFillTransaction"]]
            ev = fills_from_transactions(txs)
            return OrderResult(cid, "filled", order_id=oid, fill=ev[0] if ev else None)
        if r.get("orderCancelTransaction"):
            return OrderResult(cid, "cancelled", order_id=oid,
                               reason=str(r["orderCancelTransaction"].get("reason", "")))
        if r.get("orderRejectTransaction"):
            return OrderResult(cid, "rejected",
                               reason=str(r["orderRejectTransaction"].get("rejectReason", "")))
        return OrderResult(cid, "cancelled", order_id=oid, reason="no fill in the response")

    def transactions_since(self, txid: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """Transactions after ``txid`` (all pages) and the account's last transaction ID."""
        from oandapyV20.endpoints import transactions

        if txid is None:
            acct = self.account()
            return [], acct.last_transaction_id
        out: list[dict[str, Any]] = []
        cur = txid
        while True:
            r = self._get(transactions.TransactionsSinceID(self.account_id,
                                                           params={"id": cur}))
            batch = r.get("transactions", [])
            out.extend(batch)
            last = str(r.get("lastTransactionID", cur))
            if not batch or int(batch[-1]["id"]) >= int(last):
                return out, last
            cur = str(batch[-1]["id"])

    def find_order(self, client_id: str, since_transaction_id: str | None
                   ) -> OrderResult | None:
        txs, _ = self.transactions_since(since_transaction_id)
        return result_from_transactions(client_id, txs)

    def close_trade(self, trade_id: str, *, client_id: str | None = None) -> FillEvent | None:
        from oandapyV20.endpoints import trades

        ep = trades.TradeClose(self.account_id, tradeID=trade_id)
        try:
            r = self._oc.request_with_retry(self.api, ep, limiter=self.limiter, retries=0)
        except self._oc.OandaError as exc:
            if exc.code == 404:
                return None  # already closed (e.g. by its stop)
            if exc.code == 400 and isinstance(exc.body, dict):
                raise BrokerError(f"close trade {trade_id}: {exc.message}") from None
            raise AmbiguousOrder(f"close trade {trade_id}: {exc}") from None
        fill = r.get("orderFillTransaction")
        if not fill:
            return None
        evs = fills_from_transactions([r.get("orderCreateTransaction") or {}, fill])
        if evs:
            evs[0].client_id = client_id
        return evs[0] if evs else None

    def open_trades(self) -> list[TradeInfo]:
        from oandapyV20.endpoints import trades

        r = self._get(trades.OpenTrades(self.account_id))
        return [trade_from_oanda(d) for d in r.get("trades", [])]

    def events(self) -> list[FillEvent]:
        txs, last = self.transactions_since(self._last_txid)
        self._last_txid = last
        return fills_from_transactions(txs)


def result_from_transactions(client_id: str, txs: list[dict[str, Any]]) -> OrderResult | None:
    """What became of the order named ``client_id``, from a list of transactions."""
    oid = None
    for tx in txs:
        if (tx.get("clientExtensions") or {}).get("id") == client_id and \
                tx.get("type", "").endswith("ORDER"):
            oid = str(tx["id"])
            break
        if tx.get("type", "").endswith("ORDER_REJECT") and \
                (tx.get("clientExtensions") or {}).get("id") == client_id:
            return OrderResult(client_id, "rejected", reason=str(tx.get("rejectReason", "")))
    if oid is None:
        return None
    for tx in txs:
        if tx.get("type") == "ORDER_FILL" and str(tx.get("orderID")) == oid:
            evs = fills_from_transactions([t for t in txs if str(t.get("id")) == oid] + [tx])
            return OrderResult(client_id, "filled", order_id=oid, fill=evs[0] if evs else None)
        if tx.get("type") == "ORDER_CANCEL" and str(tx.get("orderID")) == oid:
            return OrderResult(client_id, "cancelled", order_id=oid,
                               reason=str(tx.get("reason", "")))
    return OrderResult(client_id, "unknown", order_id=oid, reason="created, no fill seen yet")
