"""Orders: placing them so that a crash at any point never duplicates one, and keeping the
journal's orders, fills and positions in step with what the broker did.

:class:`OrderDesk` owns the order-safety protocol:

1. the client ID is derived from model, instrument, candle time and purpose
   (:func:`~sep_research.live.port.client_id`);
2. if the journal already knows that client ID, nothing is sent (a repeat is recognised);
3. the order is committed to the journal as ``intent`` **before** it is sent;
4. after sending, the outcome is committed; an ambiguous failure (timeout, dropped answer,
   5xx) is resolved by reading the account's transactions (:meth:`OrderDesk.resolve`), never by
   sending again;
5. on start, reconciliation (:mod:`sep_research.live.reconcile`) looks up every order still
   ``intent``/``unknown``.

It also owns the levels an order carries (stop-loss and take-profit from the entry quote,
the price bound from ``price_bound_pips``), applying fills (positions opened and closed, the
loss streak, the re-entry block after a stop or take-profit) and daily financing (each trade's
share journalled, :meth:`OrderDesk.apply_financing`), and :meth:`OrderDesk.sync`: the broker's
activity since the journal's transaction cursor, applied, then the cursor moved (so a crash in
between only means the same activity is applied again, which changes nothing). The loss streak
counts a trade's price P&L (the broker's realised P/L at the close); financing reaches the risk
rules through the NAV (daily loss, drawdown).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sep_research.live.config import RunnerConfig
from sep_research.live.journal import Journal
from sep_research.live.port import (
    AmbiguousOrder,
    Broker,
    BrokerError,
    FillEvent,
    FinancingEvent,
    OrderRequest,
    OrderResult,
    client_id,
)
from sep_research.live.risk import RiskManager
from sep_research.live.state import Metrics, RunnerState
from sep_research.live.types import Decision, InstrumentInfo

log = logging.getLogger("sep_research.live")


class OrderDesk:
    def __init__(self, cfg: RunnerConfig, state: RunnerState, journal: Journal, broker: Broker,
                 risk: RiskManager, metrics: Metrics, clock: Callable[[], datetime],
                 persist: Callable[[], None], *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.cfg = cfg
        self.state = state
        self.journal = journal
        self.broker = broker
        self.risk = risk
        self.metrics = metrics
        self.clock = clock
        self.persist = persist
        self.sleep = sleep
        self._latency_mark = -1.0

    # ================================================================ outcomes and fills
    def apply_result(self, res: OrderResult, instrument: str) -> None:
        if res.state == "filled" and res.fill is not None:
            trade = res.fill.opened
            self.journal.update_order(res.client_id, "filled", order_id=res.order_id,
                                      trade_id=trade.trade_id if trade else None)
            self.apply_fill(res.fill)
            self.metrics.inc("orders_filled")
        elif res.state in ("cancelled", "rejected", "unknown"):
            self.journal.update_order(res.client_id, res.state, order_id=res.order_id,
                                      reason=res.reason)
            self.metrics.inc(f"orders_{res.state}")
            if res.state != "unknown":
                self.journal.record_decision("order", False, f"order {res.state}: "
                                             f"{res.reason}", instrument=instrument,
                                             rule="broker", detail={"client_id": res.client_id})

    def apply_fill(self, ev: FillEvent, *, history: bool = False) -> bool:
        """Journal a fill and the positions it opened or closed; False if already known.
        ``history``: an import of old activity (no loss streak, no re-entry block)."""
        new = self.journal.record_fill(
            transaction_id=ev.transaction_id, client_id=ev.client_id, instrument=ev.instrument,
            trade_id=ev.opened.trade_id if ev.opened else (ev.closed[0][0] if ev.closed
                                                           else None),
            units=ev.units, price=ev.price,
            pl=sum(c[3] for c in ev.closed) if ev.closed else None, reason=ev.reason,
            time=ev.time)
        if ev.opened is not None:
            t = ev.opened
            o = self.journal.order(t.client_id) if t.client_id is not None else None
            ours = o is not None
            origin = "runner" if ours else ("adopted" if (t.client_id or "").startswith("sep-")
                                            else "foreign")
            self.journal.open_position(
                trade_id=t.trade_id, instrument=t.instrument, units=t.units, entry_price=t.price,
                stop_loss=float(o["stop_loss"]) if o and o["stop_loss"] else t.stop_loss,
                take_profit=float(o["take_profit"]) if o and o["take_profit"] else t.take_profit,
                client_id=t.client_id, origin=origin, opened_at=t.open_time)
            if ours and o and o["state"] != "filled":
                self.journal.update_order(t.client_id, "filled", trade_id=t.trade_id)
        for tid, _units, px, pl in ev.closed:
            if self.journal.close_position(tid, exit_price=px, pl=pl, reason=ev.reason,
                                           closed_at=ev.time):
                if history:
                    continue
                if self.state.account is not None:
                    self.state.account.balance += pl  # until the next account read
                msg = self.risk.on_trade_closed(pl, self.clock())
                if ev.reason in ("STOP_LOSS_ORDER", "TAKE_PROFIT_ORDER"):
                    pos_dir = 1 if _units < 0 else -1
                    self.state.blocked[ev.instrument] = pos_dir
                if msg:
                    self.journal.record_decision("risk", False, msg, instrument=ev.instrument,
                                                 rule="cooldown")
        return new

    def apply_financing(self, ev: FinancingEvent) -> bool:
        """Journal a daily financing (each trade's share); False if already known."""
        if not ev.trades:
            return False
        new = self.journal.record_financing(transaction_id=ev.transaction_id, time=ev.time,
                                            trades=ev.trades)
        if new and self.state.account is not None:
            self.state.account.balance += ev.amount  # until the next account read
        return bool(new)

    def sync(self) -> int:
        """Apply the broker's activity since the journal's cursor (fills, financing, and the
        outcome of orders still open in the journal), then move the cursor. Returns the new
        fills."""
        act = self.broker.activity_since(self.journal.last_transaction_id or "0")
        n = 0
        for ev in act.fills:
            if self.apply_fill(ev):
                n += 1
        for fe in act.financing:
            if self.apply_financing(fe):
                self.metrics.inc("financing_seen")
        pending = {o["client_id"]: o for o in self.journal.orders(states=("intent", "unknown"))}
        for cid, res in act.orders.items():
            o = pending.get(cid)
            if o is not None and o["purpose"] != "close" and res.state != "unknown":
                self.apply_result(res, o["instrument"])
                self.journal.record_decision("order", True, f"outcome learnt from the account: "
                                             f"{res.state}", instrument=o["instrument"],
                                             detail={"client_id": cid})
        if n:
            self.metrics.inc("fills_seen", n)
        if act.last_transaction_id:
            self.journal.set_last_transaction_id(act.last_transaction_id)
        return n

    # ================================================================ opening
    def levels(self, info: InstrumentInfo, direction: int) -> tuple[str | None, str | None]:
        """Stop-loss and take-profit of the model's policy (the artifact's), from the quote."""
        q = self.state.quotes.get(info.name)
        if q is None:
            return None, None
        entry = q.ask if direction > 0 else q.bid
        from sep_research.backtest.fills import stop_take_levels

        pol = self.state.models[info.name].policy
        stop, take = stop_take_levels(direction, entry, info.pip, pol.stop_loss_pips,
                                      pol.take_profit_pips, info.display_precision)
        text = self.broker.price_text
        return (text(info, stop) if not math.isnan(stop) else None,
                text(info, take) if not math.isnan(take) else None)

    def price_bound(self, info: InstrumentInfo, direction: int) -> str | None:
        """The worst fill price accepted: the entry quote moved ``price_bound_pips`` against
        the order (None when the option is off or there is no quote)."""
        pips = self.cfg.price_bound_pips
        q = self.state.quotes.get(info.name)
        if pips is None or q is None:
            return None
        entry = q.ask if direction > 0 else q.bid
        return self.broker.price_text(info, entry + direction * pips * info.pip)

    def open(self, info: InstrumentInfo, units: int, d: Decision, seen_at: float) -> None:
        model = self.state.models[info.name]
        cid = client_id(model.model_id, info.name, d.candle_time, "open")
        direction = 1 if units > 0 else -1
        sl, tp = self.levels(info, direction)
        if not self.journal.add_order_intent(cid, info.name, d.candle_time, "open", units,
                                             sl, tp):
            self.metrics.inc("duplicates_prevented")
            self.journal.record_decision("open", False, "order for this candle already known "
                                         "(repeat recognised)", instrument=info.name,
                                         candle_time=d.candle_time, rule="duplicate",
                                         detail={"client_id": cid})
            return
        req = OrderRequest(cid, info.name, units, sl, tp,
                           price_bound=self.price_bound(info, direction))
        self._latency(seen_at)
        res = self.send(req)
        self.journal.record_decision("open", res is not None and res.state == "filled",
                                     f"open {units:+d} {info.name}: "
                                     f"{res.state if res else 'abandoned'}",
                                     instrument=info.name, candle_time=d.candle_time,
                                     rule=None if res is not None and res.state == "filled"
                                     else "broker",
                                     detail={"client_id": cid, "units": units,
                                             "stop_loss": req.stop_loss,
                                             "take_profit": req.take_profit,
                                             "price_bound": req.price_bound})

    def _latency(self, seen_at: float) -> None:
        """Record candle-visible -> order-sent for the first order of each candle."""
        self.metrics.inc("orders_sent")
        if seen_at != self._latency_mark:
            self._latency_mark = seen_at
            self.metrics.latencies_ms.append((time.perf_counter() - seen_at) * 1000.0)

    def send(self, req: OrderRequest) -> OrderResult | None:
        try:
            res = self.broker.market_order(req)
        except AmbiguousOrder as exc:
            self.metrics.inc("ambiguous_orders")
            log.warning("ambiguous order outcome, reading transactions: %s", exc)
            res = self.resolve(req.client_id)
            if res is None:
                self.journal.update_order(req.client_id, "abandoned",
                                          reason="not in the account's transactions after an "
                                          "ambiguous failure")
                return None
        except BrokerError as exc:
            self.journal.update_order(req.client_id, "rejected", reason=str(exc)[:300])
            self.metrics.inc("orders_rejected")
            return OrderResult(req.client_id, "rejected", reason=str(exc))
        self.apply_result(res, req.instrument)
        return res

    def resolve(self, cid: str) -> OrderResult | None:
        """After an ambiguous POST: read transactions (retrying reads) until the answer is
        known; the order is never re-sent."""
        delay = 0.2
        for _attempt in range(8):
            try:
                res = self.broker.find_order(cid, self.journal.last_transaction_id)
                if res is None or res.state != "unknown":
                    return res
            except Exception as exc:  # keep reading; never re-send
                log.warning("reading transactions failed: %s", exc)
            self.sleep(delay)
            delay = min(delay * 2, 5.0)
        self.journal.update_order(cid, "unknown", reason="outcome still unknown; will "
                                  "reconcile")
        return OrderResult(cid, "unknown")

    # ================================================================ closing
    def close(self, p: dict[str, Any], candle_time: datetime, seen_at: float) -> None:
        model = self.state.models.get(p["instrument"])
        cid = client_id(model.model_id if model else "unmanaged", p["instrument"], candle_time,
                        f"close-{p['trade_id']}")
        if not self.journal.add_order_intent(cid, p["instrument"], candle_time, "close",
                                             -int(p["units"]), None, None):
            self.metrics.inc("duplicates_prevented")
            return
        self.journal.update_order(cid, "intent", trade_id=p["trade_id"])
        self._latency(seen_at)
        try:
            ev = self.broker.close_trade(p["trade_id"], client_id=cid)
        except AmbiguousOrder as exc:
            self.metrics.inc("ambiguous_orders")
            log.warning("ambiguous close, reading transactions: %s", exc)
            ev = None
            self.sync()
        except BrokerError as exc:
            self.journal.update_order(cid, "rejected", reason=str(exc)[:300])
            self.journal.record_decision("close", False, str(exc)[:300],
                                         instrument=p["instrument"], candle_time=candle_time,
                                         rule="broker")
            return
        if ev is not None:
            self.apply_fill(ev)
        state = "filled" if ev is not None or self.closed(p["trade_id"]) else "abandoned"
        self.journal.update_order(cid, state, trade_id=p["trade_id"])
        self.journal.record_decision("close", state == "filled",
                                     f"close trade {p['trade_id']}: {state}",
                                     instrument=p["instrument"], candle_time=candle_time,
                                     rule=None if state == "filled" else "broker")

    def closed(self, trade_id: str) -> bool:
        return all(p["trade_id"] != trade_id for p in self.journal.positions("open"))
