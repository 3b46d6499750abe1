"""The paper adapter of the broker port: simulated fills with the backtest's rules, in memory.

:class:`PaperBroker` fills market orders at the current quote with the backtest's fill rules
(:mod:`sep_research.backtest.fills`): a buy at the ask, a sell at the bid, refused
(``BOUNDS_VIOLATION``) when that is worse than the order's price bound; stop-loss and
take-profit are checked on each completed candle's bid/ask range with the backtest's
conservative rule. It needs no credentials and no network.

Financing: the broker charges the models' financing rates itself (:meth:`PaperBroker.set_financing`,
from each artifact's cost model; none where it is null), with the rule of
:mod:`sep_research.financing` as the backtest applies it: on each completed candle, after its
stops and take-profits, every rollover (17:00 New York) after the candle's open and up to its
close charges the trades opened before the rollover and still open,
:meth:`~sep_research.financing.FinancingRates.amount` of their units at the candle's mid close
(``(bid + ask) / 2``) for the days of that rollover; a rollover that falls in a gap between two
candles (a weekend, a hole in the data) is charged, at the earlier candle's mid close, when the
next candle arrives, before its stops. Each charge is a numbered transaction
(:class:`~sep_research.live.port.FinancingEvent`, one share per trade) in the broker's
activity, into the balance at once.

Its state lives in memory and survives restarts through the runner's journal: on start
:meth:`PaperBroker.resume` rebuilds balance, open trades, known orders and the transaction
counter from it. Every fill is numbered like a transaction, so :meth:`PaperBroker.activity_since`
answers as a real broker's transaction history would (the most recent
:data:`ACTIVITY_KEPT` fills are kept; older ones are in the journal).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta

from sep_research.backtest import fills
from sep_research.financing import FinancingRates, rollovers
from sep_research.live.port import (
    Account,
    Activity,
    Broker,
    BrokerError,
    BrokerRecords,
    FillEvent,
    FinancingEvent,
    OrderRequest,
    OrderResult,
    TradeInfo,
)
from sep_research.live.risk import currency_to_account
from sep_research.live.types import Candle, InstrumentInfo, Quote

ACTIVITY_KEPT = 10_000


class PaperBroker(Broker):
    """Simulated fills with the backtest's rules (see the module docstring)."""

    name = "paper"

    def __init__(self, *, balance: float, currency: str = "USD", half_spread_pips: float = 0.5,
                 quote_to_account: dict[str, float] | None = None) -> None:
        self.initial_balance = float(balance)
        self.balance = float(balance)
        self.currency = currency
        self.half_spread_pips = float(half_spread_pips)
        self.q2a = dict(quote_to_account or {})
        self._quotes: dict[str, Quote] = {}
        self._trades: dict[str, TradeInfo] = {}
        self._activity: deque[tuple[int, FillEvent | FinancingEvent]] = deque(
            maxlen=ACTIVITY_KEPT)
        self._orders: dict[str, OrderResult] = {}
        self._txid = 0
        self._lock = threading.Lock()
        self._rates: dict[str, FinancingRates | None] = {}
        self._gran: timedelta | None = None
        self._fin_through: dict[str, datetime] = {}  # per instrument: charged up to here
        self._last_close: dict[str, tuple[datetime, float]] = {}  # end, mid close

    # --------------------------------------------------------------- state
    def identity(self) -> tuple[str, str]:
        return "paper", f"paper-{self.currency}"

    def resume(self, records: BrokerRecords) -> None:
        """Rebuild from the journal: the initial balance plus realised P&L, the open trades,
        the orders with a known outcome (a repeat is answered, not filled again) and the
        transaction counter (new IDs never collide with journalled ones)."""
        with self._lock:
            self.balance = self.initial_balance + float(records.realized_pl)
            self._trades = {t.trade_id: t for t in records.open_trades}
            self._orders = dict(records.orders)
            self._txid = max(self._txid, int(records.last_transaction_id or 0))
            self._fin_through = dict(records.financing_through)
            self._activity.clear()

    def set_financing(self, rates: Mapping[str, FinancingRates | None], *,
                      granularity_seconds: int) -> None:
        """The rates charged per instrument (None: none) and the candles' length."""
        with self._lock:
            self._rates = dict(rates)
            self._gran = timedelta(seconds=int(granularity_seconds))

    def _next_id(self) -> str:
        self._txid += 1
        return str(self._txid)

    def _q2a(self, quote_currency: str) -> float:
        rate = currency_to_account(quote_currency, self.currency, self._quotes, self.q2a)
        if rate is None:
            raise BrokerError(f"paper broker: no conversion of {quote_currency} to "
                              f"{self.currency}")
        return rate

    def _log(self, ev: FillEvent | FinancingEvent) -> FillEvent | FinancingEvent:
        self._activity.append((int(ev.transaction_id), ev))
        return ev

    # --------------------------------------------------------------- the port
    def instrument_info(self, names: list[str]) -> dict[str, InstrumentInfo]:
        return {n: InstrumentInfo.default(n) for n in names}

    def price_text(self, info: InstrumentInfo, value: float) -> str:
        # exact, as the backtest computes its levels (the paper fills compare one for one)
        if not math.isfinite(value):
            raise ValueError(f"{info.name}: price {value!r} is not finite")
        return repr(float(value))

    def exits_pending(self, candle: Candle, positions: list[dict]) -> bool:
        return True  # in-process: asking costs nothing

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
                res = OrderResult(req.client_id, "rejected", reason="UNITS_INVALID",
                                  instrument=req.instrument)
                self._orders[req.client_id] = res
                return res
            oid = self._next_id()
            d = 1 if req.units > 0 else -1
            px = fills.entry_price(d, q.bid, q.ask)
            if req.price_bound is not None and (px - float(req.price_bound)) * d > 0:
                res = OrderResult(req.client_id, "cancelled", order_id=oid,
                                  reason="BOUNDS_VIOLATION", instrument=req.instrument,
                                  units=req.units)
                self._orders[req.client_id] = res
                return res
            tid = self._next_id()
            trade = TradeInfo(
                trade_id=tid, instrument=req.instrument, units=req.units, price=px,
                open_time=q.time, client_id=req.client_id,
                stop_loss=float(req.stop_loss) if req.stop_loss else None,
                take_profit=float(req.take_profit) if req.take_profit else None)
            self._trades[tid] = trade
            ev = self._log(FillEvent(transaction_id=tid, time=q.time, instrument=req.instrument,
                                     reason="MARKET_ORDER", price=px, units=req.units,
                                     client_id=req.client_id, opened=trade))
            res = OrderResult(req.client_id, "filled", order_id=oid, fill=ev,
                              instrument=req.instrument, units=req.units)
            self._orders[req.client_id] = res
            return res

    def _close(self, trade: TradeInfo, px: float, reason: str, time: datetime,
               client: str | None) -> FillEvent:
        d = 1 if trade.units > 0 else -1
        pl = (px - trade.price) * d * abs(trade.units) * self._q2a(trade.instrument.split("_")[1])
        self.balance += pl
        del self._trades[trade.trade_id]
        return self._log(FillEvent(transaction_id=self._next_id(), time=time,
                                   instrument=trade.instrument, reason=reason, price=px,
                                   units=-trade.units, client_id=client,
                                   closed=[(trade.trade_id, -trade.units, px, pl)]))

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
        """Stop-loss / take-profit on the candle's bid/ask range (the backtest's rule), and
        financing at the rollovers up to its close (see the module docstring)."""
        with self._lock:
            info = InstrumentInfo.default(candle.instrument)
            bid, ask = candle.quotes(self.half_spread_pips * info.pip)
            last = self._last_close.get(candle.instrument)
            if last is not None and last[0] < candle.time:  # a gap: held through it
                self._finance(candle.instrument, last[0], candle.time, last[1])
            self._stops(candle, bid, ask)
            if self._gran is not None:
                end = candle.time + self._gran
                mid = 0.5 * (bid[3] + ask[3])
                self._finance(candle.instrument, candle.time, end, mid)
                self._last_close[candle.instrument] = (end, mid)

    def _finance(self, instrument: str, start: datetime, end: datetime, price: float) -> None:
        """Charge the rollovers in ``(start, end]`` on the trades opened before each and still
        open, valued at ``price`` (see the module docstring)."""
        rates = self._rates.get(instrument)
        if rates is None:
            return
        done = self._fin_through.get(instrument)
        for r in rollovers(start, end):
            if done is not None and r <= done:
                continue
            days = rates.days_charged(r)
            held = [t for t in self._trades.values()
                    if t.instrument == instrument and t.open_time < r]
            if days == 0 or not held:
                continue
            conv = self._q2a(instrument.split("_")[1])
            shares = [(t.trade_id, instrument,
                       rates.amount(t.units, price, days, quote_to_account=conv)) for t in held]
            total = sum(a for _, _, a in shares)
            self.balance += total
            self._log(FinancingEvent(transaction_id=self._next_id(), time=r, amount=total,
                                     trades=shares))
            self._fin_through[instrument] = r

    def _stops(self, candle: Candle, bid: tuple[float, ...], ask: tuple[float, ...]) -> None:
        """Stop-loss / take-profit of the trades held through the candle."""
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
            self._close(trade, px, kind, candle.time, None)

    def open_trades(self) -> list[TradeInfo]:
        with self._lock:
            return list(self._trades.values())

    def activity_since(self, transaction_id: str) -> Activity:
        after = int(transaction_id or 0)
        with self._lock:
            evs = [ev for tid, ev in self._activity if tid > after]
            orders = {cid: r for cid, r in self._orders.items()
                      if r.fill is not None and int(r.fill.transaction_id) > after}
            return Activity(last_transaction_id=str(self._txid),
                            fills=[e for e in evs if isinstance(e, FillEvent)], orders=orders,
                            financing=[e for e in evs if isinstance(e, FinancingEvent)])

    def find_order(self, client_id: str, since_transaction_id: str | None
                   ) -> OrderResult | None:
        with self._lock:
            return self._orders.get(client_id)
