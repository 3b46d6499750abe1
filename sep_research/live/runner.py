"""The runner's main loop: feed -> signal path -> risk -> broker, journalled, with a status API.

One :class:`Runner` per process. :meth:`Runner.start` reconciles the journal with the account,
warms the signal paths up and starts the status API; :meth:`Runner.step` handles whatever the
feed has (new completed candles, prices, fills); :meth:`Runner.run` loops until
:meth:`Runner.stop` (SIGTERM) and then finishes the step in flight, persists and returns.

Orders are placed so that a crash at any point never duplicates one:

1. the client ID is derived from model, instrument, candle time and purpose;
2. if the journal already knows that client ID, nothing is sent (a repeat is recognised);
3. the order is committed to the journal as ``intent`` before the POST;
4. after the POST the outcome is committed; an ambiguous failure (timeout, dropped response,
   5xx) is resolved by reading the account's transactions, never by sending again;
5. on start, every ``intent``/``unknown`` order is looked up in the transactions since the last
   transaction ID seen: found -> adopted with its real outcome, not found -> ``abandoned``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sep_research.live.brokers import (
    AmbiguousOrder,
    Broker,
    BrokerError,
    FillEvent,
    OrderRequest,
    OrderResult,
    PaperBroker,
    TradeInfo,
    client_id,
    result_from_transactions,
)
from sep_research.live.config import RunnerConfig
from sep_research.live.feed import Feed
from sep_research.live.journal import Journal
from sep_research.live.model import Model, SignalPath, check_policy, load_models
from sep_research.live.risk import RiskManager, market_open
from sep_research.live.status import prometheus
from sep_research.live.types import Candle, Decision, InstrumentInfo, Quote, fmt_time, parse_time

log = logging.getLogger("sep_research.live")

VERSION = "0.1.0"


@dataclass
class Metrics:
    counters: dict[str, float] = field(default_factory=dict)
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))

    def inc(self, name: str, n: float = 1.0) -> None:
        self.counters[name] = self.counters.get(name, 0.0) + n


class Runner:
    def __init__(self, cfg: RunnerConfig, models: dict[str, Model], broker: Broker, feed: Feed,
                 journal: Journal, *, mode: str, status_token: str | None = None,
                 model_paths: list[str] | None = None) -> None:
        self.cfg = cfg
        self.models = models
        self.model_paths = list(model_paths or [m.path for m in models.values()])
        self.broker = broker
        self.feed = feed
        self.journal = journal
        self.mode = mode
        self.status_token = status_token
        self.metrics = Metrics()
        self.risk = RiskManager(cfg.risk, granularity_seconds=cfg.granularity_seconds,
                                account_currency=cfg.account_currency)
        # the runner trades each artifact's policy; the config may only tighten risk
        for m in models.values():
            check_policy(m, cfg.risk)
        self.risk.set_stops({i: m.policy.stop_loss_pips for i, m in models.items()})
        self.paths: dict[str, SignalPath] = {}
        self.info: dict[str, InstrumentInfo] = {}
        self.quotes: dict[str, Quote] = {}
        self.last_candle: dict[str, dict[str, Any]] = {}
        self.last_signal: dict[str, Any] | None = None
        self.blocked: dict[str, int] = {}
        self.history: dict[str, deque] = {i: deque(maxlen=cfg.feed.warmup_candles)
                                          for i in cfg.instruments}
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._status: Any = None
        self.started_at = time.monotonic()
        self.first_poll_at: float | None = None
        self.process_started = process_start_time()  # epoch seconds
        self.first_poll_s: float | None = None
        self.last_loop_at = time.monotonic()
        self.account: Any = None
        self._last_events = 0.0
        self._reload_request: list[str] | None = None
        self._latency_mark = -1.0
        self._last_equity_row = -1e9

    # ================================================================ start-up
    def start(self, *, status: bool = True) -> None:
        self.info = self.broker.instrument_info(self.cfg.instruments)
        self.risk.restore(json.loads(self.journal.get_meta("risk_state") or "{}"))
        self.blocked = {k: int(v) for k, v in
                        json.loads(self.journal.get_meta("blocked") or "{}").items()}
        self.reconcile()
        last_seen = {i: (parse_time(t) if (t := self.journal.last_candle(i)) else None)
                     for i in self.cfg.instruments}
        self.last_candle = self.journal.last_candles()
        history = self.feed.start(last_seen)
        for inst in self.cfg.instruments:
            self.paths[inst] = self.models[inst].new_stream()
            for c in history.get(inst, [])[-self.cfg.feed.warmup_candles:]:
                self.paths[inst].update(c)
                self.history[inst].append(c)
        if status and self.cfg.status.enabled:
            from sep_research.live.status import StatusServer

            self._status = StatusServer(self, host=self.cfg.status.host,
                                        port=self.cfg.status.port,
                                        token=self.status_token).start()
            log.info("status API on %s:%d", self.cfg.status.host, self._status.port)
        self.journal.record_decision("start", True, f"runner started in {self.mode} mode",
                                     detail={"models": [m.model_id for m in
                                                        self.models.values()]})

    @property
    def status_port(self) -> int | None:
        return self._status.port if self._status else None

    def _persist_state(self) -> None:
        self.journal.set_meta("risk_state", json.dumps(self.risk.state()))
        self.journal.set_meta("blocked", json.dumps(self.blocked))

    # ================================================================ reconciliation
    def reconcile(self) -> None:
        """Bring the journal in line with the account (see the module docstring)."""
        if isinstance(self.broker, PaperBroker):
            self._restore_paper()
            return
        broker: Any = self.broker
        last = self.journal.last_transaction_id
        acct = broker.account()
        if last is None:
            txs: list[dict[str, Any]] = []
            new_last = acct.last_transaction_id
        else:
            txs, new_last = broker.transactions_since(last)
        # 1. orders whose outcome the journal does not know
        open_now = {t.trade_id for t in broker.open_trades()}
        closed_in_txs = {str(c["tradeID"]) for tx in txs if tx.get("type") == "ORDER_FILL"
                         for c in (tx.get("tradesClosed") or [])}
        for o in self.journal.orders(states=("intent", "unknown")):
            if o["purpose"] == "close":
                # a trade close carries no client ID: look at the trade itself
                gone = o["trade_id"] in closed_in_txs or (o["trade_id"] and
                                                          o["trade_id"] not in open_now)
                state = "filled" if gone else "abandoned"
                self.journal.update_order(o["client_id"], state, reason="reconciled")
                self.journal.record_decision(
                    "reconcile", True, "close confirmed in the account" if gone else
                    "close never reached the broker: abandoned", instrument=o["instrument"],
                    detail={"client_id": o["client_id"], "trade_id": o["trade_id"]})
                continue
            res = result_from_transactions(o["client_id"], txs)
            if res is None:
                self.journal.update_order(o["client_id"], "abandoned",
                                          reason="not found in the account's transactions")
                self.journal.record_decision("reconcile", True, "order never reached the "
                                             "broker: abandoned", instrument=o["instrument"],
                                             detail={"client_id": o["client_id"]})
            else:
                self._apply_result(res, o["instrument"])
                self.journal.record_decision("reconcile", True, f"order adopted: {res.state}",
                                             instrument=o["instrument"],
                                             detail={"client_id": o["client_id"]})
                self.metrics.inc("orders_adopted")
        # 2. fills since the last transaction (stops, take-profits, our own fills)
        from sep_research.live.brokers import fills_from_transactions

        for ev in fills_from_transactions(txs):
            self._apply_fill(ev)
        # 3. open trades: adopt ours, flag foreign ones, close what vanished
        known = {p["trade_id"]: p for p in self.journal.positions("open")}
        ours = self.journal.all_client_ids()
        live_ids = set()
        for t in broker.open_trades():
            live_ids.add(t.trade_id)
            if t.trade_id in known:
                continue
            if t.client_id and t.client_id in ours:
                origin, why = "runner", "adopted a trade the runner placed"
            elif t.client_id and t.client_id.startswith("sep-"):
                origin, why = "adopted", "adopted a runner trade the journal did not know"
            else:
                origin, why = "foreign", "flagged a trade the runner did not place (not managed)"
            self.journal.open_position(trade_id=t.trade_id, instrument=t.instrument,
                                       units=t.units, entry_price=t.price,
                                       stop_loss=t.stop_loss, take_profit=t.take_profit,
                                       client_id=t.client_id, origin=origin,
                                       opened_at=t.open_time)
            self.journal.record_decision("reconcile", True, why, instrument=t.instrument,
                                         rule=origin, detail={"trade_id": t.trade_id})
        for tid in known:
            if tid not in live_ids:
                self.journal.close_position(tid, exit_price=math.nan, pl=0.0,
                                            reason="closed while the runner was away",
                                            closed_at=fmt_time(self._now()))
        if new_last:
            self.journal.set_last_transaction_id(new_last)
            broker.set_last_transaction_id(self.journal.last_transaction_id)
        self.account = broker.account()

    def _restore_paper(self) -> None:
        broker: PaperBroker = self.broker  # type: ignore[assignment]
        closed = self.journal.positions("closed")
        balance = self.cfg.paper.initial_balance + sum(p["pl"] or 0.0 for p in closed)
        trades = [TradeInfo(trade_id=p["trade_id"], instrument=p["instrument"],
                            units=p["units"], price=p["entry_price"],
                            open_time=parse_time(p["opened_at"]), client_id=p["client_id"],
                            stop_loss=p["stop_loss"], take_profit=p["take_profit"])
                  for p in self.journal.positions("open")]
        done = {o["client_id"]: OrderResult(o["client_id"], o["state"], o["order_id"])
                for o in self.journal.orders() if o["state"] not in ("intent", "unknown")}
        for o in self.journal.orders(states=("intent", "unknown")):
            # a paper order is filled inside the same process: an intent without an outcome
            # never reached the (in-process) broker
            self.journal.update_order(o["client_id"], "abandoned",
                                      reason="runner stopped before the paper fill")
        broker.restore(balance=balance, trades=trades,
                       last_transaction_id=int(self.journal.last_transaction_id or 0),
                       orders=done)
        self.account = broker.account()

    # ================================================================ fills
    def _apply_result(self, res: OrderResult, instrument: str) -> None:
        if res.state == "filled" and res.fill is not None:
            trade = res.fill.opened
            self.journal.update_order(res.client_id, "filled", order_id=res.order_id,
                                      trade_id=trade.trade_id if trade else None)
            self._apply_fill(res.fill)
            self.metrics.inc("orders_filled")
        elif res.state in ("cancelled", "rejected", "unknown"):
            self.journal.update_order(res.client_id, res.state, order_id=res.order_id,
                                      reason=res.reason)
            self.metrics.inc(f"orders_{res.state}")
            if res.state != "unknown":
                self.journal.record_decision("order", False, f"order {res.state}: "
                                             f"{res.reason}", instrument=instrument,
                                             rule="broker", detail={"client_id": res.client_id})

    def _apply_fill(self, ev: FillEvent) -> None:
        self.journal.record_fill(transaction_id=ev.transaction_id, client_id=ev.client_id,
                                 instrument=ev.instrument,
                                 trade_id=ev.opened.trade_id if ev.opened else
                                 (ev.closed[0][0] if ev.closed else None),
                                 units=ev.units, price=ev.price,
                                 pl=sum(c[3] for c in ev.closed) if ev.closed else None,
                                 reason=ev.reason, time=ev.time)
        if ev.opened is not None:
            t = ev.opened
            ours = t.client_id is not None and self.journal.order(t.client_id) is not None
            origin = "runner" if ours else ("adopted" if (t.client_id or "").startswith("sep-")
                                            else "foreign")
            o = self.journal.order(t.client_id) if ours else None
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
                if self.account is not None:
                    self.account.balance += pl  # until the next account read
                msg = self.risk.on_trade_closed(pl, self._now())
                if ev.reason in ("STOP_LOSS_ORDER", "TAKE_PROFIT_ORDER"):
                    pos_dir = 1 if _units < 0 else -1
                    self.blocked[ev.instrument] = pos_dir
                if msg:
                    self.journal.record_decision("risk", False, msg, instrument=ev.instrument,
                                                 rule="cooldown")
        if ev.transaction_id.isdigit():
            self.journal.set_last_transaction_id(ev.transaction_id)

    def _poll_events(self) -> None:
        for ev in self.broker.events():
            self._apply_fill(ev)
            self.metrics.inc("fills_seen")
        last = getattr(self.broker, "_last_txid", None)
        if last:
            self.journal.set_last_transaction_id(last)

    # ================================================================ the loop
    def _now(self) -> datetime:
        return self.feed.now()

    def step(self) -> int:
        """Handle what the feed has now; returns the number of new candles."""
        n = 0
        for candles, quotes, seen_at in self.feed.batches():
            if self.first_poll_at is None:
                self.first_poll_at = time.monotonic()
                self.first_poll_s = time.time() - self.process_started
            for q in quotes:
                self.quotes[q.instrument] = q
                self.broker.on_quote(q)
            for c in candles:
                self._on_candle(c, seen_at)
            n += len(candles)
        wall = time.monotonic()
        if n or wall - self._last_events >= max(self.cfg.feed.poll_interval_s, 1.0):
            self._last_events = wall
            self._poll_events()
            self._update_equity()
        self.last_loop_at = time.monotonic()
        if self._reload_request is not None:
            paths, self._reload_request = self._reload_request, None
            self._do_reload(paths)
        return n

    def _on_candle(self, c: Candle, seen_at: float) -> None:
        """Signal, then act at once (the latency that matters), then journal the rest."""
        self.metrics.inc("candles")
        self.broker.on_candle(c)  # paper broker: stops and take-profits on this candle
        if isinstance(self.broker, PaperBroker) or self._exit_may_have_fired(c):
            # Learn of stops and take-profits that fired inside this candle before acting on
            # it (as the backtest does). At a real broker this costs a request, so it is made
            # only when the candle's bid/ask range reached a stop or take-profit level.
            self._poll_events()
        path = self.paths[c.instrument]
        d = path.update(c)
        self.history[c.instrument].append(c)
        self._act(d, c, seen_at)
        self.journal.record_signal(c.instrument, c.time, path.model.model_id, d.action,
                                   d.target, d.confidence, d.extra)
        self.last_signal = {"instrument": c.instrument, "candle_time": fmt_time(c.time),
                            "action": d.action, "target": d.target,
                            "confidence": None if math.isnan(d.confidence) else d.confidence}
        self.journal.record_candle(c.instrument, c.time, c.c)
        self.last_candle[c.instrument] = {"time": fmt_time(c.time), "close": c.c}

    def _exit_may_have_fired(self, c: Candle) -> bool:
        held = self._positions(c.instrument)
        if not held:
            return False
        if c.bid is None or c.ask is None:
            return True  # no bid/ask range to judge by: ask the broker
        (_, bid_h, bid_l, _), (_, ask_h, ask_l, _) = c.bid, c.ask
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

    def _positions(self, instrument: str | None = None, managed: bool = True
                   ) -> list[dict[str, Any]]:
        ps = self.journal.positions("open")
        if instrument:
            ps = [p for p in ps if p["instrument"] == instrument]
        if managed:
            ps = [p for p in ps if p["origin"] != "foreign"]
        return ps

    def _act(self, d: Decision, c: Candle, seen_at: float) -> None:
        inst = d.instrument
        now = self._now()
        mine = self._positions(inst)
        cur = 0
        if mine:
            net = sum(p["units"] for p in mine)
            cur = (net > 0) - (net < 0)
        desired = d.target
        blocked = self.blocked.get(inst, 0)
        if blocked:
            if desired == blocked:
                desired = 0
            else:
                self.blocked.pop(inst, None)
                self._persist_state()
        if desired == cur:
            self.journal.record_decision("target", True, "position already at target",
                                         instrument=inst, candle_time=d.candle_time,
                                         detail={"target": d.target, "held": cur})
            return
        # close what is held against the target
        if cur != 0:
            v = self.risk.check_close(d.candle_time, now)
            if not v.ok:
                self.journal.record_decision("close", False, v.reason, instrument=inst,
                                             candle_time=d.candle_time, rule=v.rule)
                self.metrics.inc(f"refused_{v.rule}")
                return
            for p in mine:
                self._close(p, d.candle_time, seen_at)
        if desired == 0:
            return
        info = self.info[inst]
        acct = self.account
        q = self.quotes.get(inst)
        if q is None or q.time < d.candle_time:
            # A quote older than the candle being acted on (its tradeable flag and prices from
            # before the candle) is refreshed rather than trusted; the stale-data guard below
            # still refuses if no fresh price arrives.
            for fq in self.feed.fresh_quotes(d.candle_time):
                self.quotes[fq.instrument] = fq
                self.broker.on_quote(fq)
        v = self.risk.check_open(info, desired, now=now, candle_time=d.candle_time,
                                 balance=acct.balance if acct else 0.0,
                                 quote=self.quotes.get(inst), quotes=self.quotes,
                                 open_positions=self._positions(managed=False))
        if not v.ok:
            self.journal.record_decision("open", False, v.reason, instrument=inst,
                                         candle_time=d.candle_time, rule=v.rule,
                                         detail={"target": desired})
            self.metrics.inc(f"refused_{v.rule}")
            return
        self._open(info, desired * v.units, d, seen_at)

    def _levels(self, info: InstrumentInfo, direction: int) -> tuple[str | None, str | None]:
        """Stop-loss and take-profit of the model's policy (the artifact's), from the quote."""
        q = self.quotes.get(info.name)
        if q is None:
            return None, None
        entry = q.ask if direction > 0 else q.bid
        from sep_research.backtest.fills import stop_take_levels

        pol = self.models[info.name].policy
        stop, take = stop_take_levels(direction, entry, info.pip, pol.stop_loss_pips,
                                      pol.take_profit_pips, info.display_precision)
        return (info.price(stop) if not math.isnan(stop) else None,
                info.price(take) if not math.isnan(take) else None)

    def _open(self, info: InstrumentInfo, units: int, d: Decision, seen_at: float) -> None:
        model = self.models[info.name]
        cid = client_id(model.model_id, info.name, d.candle_time, "open")
        direction = 1 if units > 0 else -1
        sl, tp = self._levels(info, direction)
        if isinstance(self.broker, PaperBroker):
            sl, tp = None, None  # the paper broker sets levels from its own fill price
        if not self.journal.add_order_intent(cid, info.name, d.candle_time, "open", units,
                                             sl, tp):
            self.metrics.inc("duplicates_prevented")
            self.journal.record_decision("open", False, "order for this candle already known "
                                         "(repeat recognised)", instrument=info.name,
                                         candle_time=d.candle_time, rule="duplicate",
                                         detail={"client_id": cid})
            return
        req = OrderRequest(cid, info.name, units, sl, tp)
        if isinstance(self.broker, PaperBroker):
            req = self._paper_levels(req, info, direction)
        self._latency(seen_at)
        res = self._send(req)
        self.journal.record_decision("open", res is not None and res.state == "filled",
                                     f"open {units:+d} {info.name}: "
                                     f"{res.state if res else 'abandoned'}",
                                     instrument=info.name, candle_time=d.candle_time,
                                     detail={"client_id": cid, "units": units,
                                             "stop_loss": req.stop_loss,
                                             "take_profit": req.take_profit})

    def _latency(self, seen_at: float) -> None:
        """Record candle-visible -> order-sent for the first order of each candle."""
        self.metrics.inc("orders_sent")
        if seen_at != self._latency_mark:
            self._latency_mark = seen_at
            self.metrics.latencies_ms.append((time.perf_counter() - seen_at) * 1000.0)

    def _paper_levels(self, req: OrderRequest, info: InstrumentInfo, direction: int
                      ) -> OrderRequest:
        q = self.quotes.get(info.name)
        if q is None:
            return req
        from sep_research.backtest.fills import entry_price, stop_take_levels

        pol = self.models[info.name].policy
        stop, take = stop_take_levels(direction, entry_price(direction, q.bid, q.ask), info.pip,
                                      pol.stop_loss_pips, pol.take_profit_pips,
                                      info.display_precision)
        req.stop_loss = repr(stop) if not math.isnan(stop) else None
        req.take_profit = repr(take) if not math.isnan(take) else None
        return req

    def _send(self, req: OrderRequest) -> OrderResult | None:
        try:
            res = self.broker.market_order(req)
        except AmbiguousOrder as exc:
            self.metrics.inc("ambiguous_orders")
            log.warning("ambiguous order outcome, reading transactions: %s", exc)
            res = self._resolve(req.client_id)
            if res is None:
                self.journal.update_order(req.client_id, "abandoned",
                                          reason="not in the account's transactions after an "
                                          "ambiguous failure")
                return None
        except BrokerError as exc:
            self.journal.update_order(req.client_id, "rejected", reason=str(exc)[:300])
            self.metrics.inc("orders_rejected")
            return OrderResult(req.client_id, "rejected", reason=str(exc))
        self._apply_result(res, req.instrument)
        return res

    def _resolve(self, cid: str) -> OrderResult | None:
        """After an ambiguous POST: read transactions (retrying reads) until the answer is
        known; the order is never re-sent."""
        delay = 0.2
        for _attempt in range(8):
            try:
                res = self.broker.find_order(cid, self.journal.last_transaction_id)
                if res is None or res.state != "unknown":
                    return res
            except Exception as exc:  # noqa: BLE001 - keep reading; never re-send
                log.warning("reading transactions failed: %s", exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        self.journal.update_order(cid, "unknown", reason="outcome still unknown; will "
                                  "reconcile")
        return OrderResult(cid, "unknown")

    def _close(self, p: dict[str, Any], candle_time: datetime, seen_at: float) -> None:
        cid = client_id(self.models[p["instrument"]].model_id, p["instrument"], candle_time,
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
            self._poll_events()
        except BrokerError as exc:
            self.journal.update_order(cid, "rejected", reason=str(exc)[:300])
            self.journal.record_decision("close", False, str(exc), instrument=p["instrument"],
                                         candle_time=candle_time, rule="broker")
            return
        if ev is not None:
            self._apply_fill(ev)
        state = "filled" if ev is not None or self._closed(p["trade_id"]) else "abandoned"
        self.journal.update_order(cid, state, trade_id=p["trade_id"])
        self.journal.record_decision("close", state == "filled",
                                     f"close trade {p['trade_id']}: {state}",
                                     instrument=p["instrument"], candle_time=candle_time)

    def _closed(self, trade_id: str) -> bool:
        return all(p["trade_id"] != trade_id for p in self.journal.positions("open"))

    def _update_equity(self) -> None:
        try:
            self.account = self.broker.account()
        except Exception as exc:  # noqa: BLE001 - a failed read is retried next loop
            self.metrics.inc("errors")
            log.warning("account read failed: %s", exc)
            return
        a = self.account
        wall = time.monotonic()
        if wall - self._last_equity_row >= 60.0:  # a snapshot a minute is plenty
            self._last_equity_row = wall
            self.journal.record_equity(a.balance, a.nav, a.unrealized, self._now())
        hit = self.risk.on_equity(a.nav, self._now())
        if hit:
            action, reason = hit
            self.journal.record_decision("risk", True, reason, rule=action)
            self.metrics.inc(f"risk_{action}")
            log.warning("risk limit: %s (%s)", reason, action)
            if action == "flatten_halt":
                self.flatten(reason)
        self._persist_state()

    def flatten(self, reason: str) -> None:
        now = self._now()
        for p in self._positions():
            self._close(p, now, time.perf_counter())
        self.journal.record_decision("flatten", True, reason)

    # ================================================================ run / stop
    def run(self, *, max_steps: int | None = None) -> None:
        watchdog = _Watchdog(self.cfg.watchdog_interval_s)
        watchdog.notify("READY=1")
        steps = 0
        while not self._stop.is_set():
            try:
                n = self.step()
            except Exception as exc:
                self.metrics.inc("loop_errors")
                code = getattr(exc, "code", None)
                if code == 429:
                    self.metrics.inc("http_429")
                log.error("loop error: %s: %s", type(exc).__name__, exc)
                if getattr(exc, "kind", None) is not None and \
                        getattr(exc.kind, "value", "") == "needs_human":
                    raise
                n = 0
            watchdog.ping()
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
            if self.feed.exhausted:
                break
            if n == 0:
                self._stop.wait(min(self.cfg.feed.poll_interval_s, 0.25))
        watchdog.notify("STOPPING=1")
        self.shutdown()

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        with self._lock:
            try:
                self._persist_state()
                self.journal.record_decision("stop", True, "runner stopped")
            except Exception:
                log.exception("persisting on shutdown failed")
            if self._status is not None:
                self._status.stop()
                self._status = None
            self.feed.close()
            self.broker.close()

    # ================================================================ status API
    def on_retry(self, attempt: int, err: Any, delay: float) -> None:
        code = getattr(err, "code", None)
        if code == 429:
            self.metrics.inc("http_429")
        elif code is not None and code >= 500:
            self.metrics.inc("http_5xx")
        else:
            self.metrics.inc("network_errors")
        self.metrics.inc("retries")

    def health(self) -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - self.last_loop_at
        ok = age < max(30.0, 10 * self.cfg.feed.poll_interval_s)
        return ok, {"ok": ok, "loop_age_s": round(age, 3), "halted": self.risk.s.halted}

    def _model_ids(self) -> dict[str, str]:
        return {i: m.model_id for i, m in self.models.items()}

    def status(self) -> dict[str, Any]:
        now = self._now()
        a = self.account
        day_start = self.risk.s.day_start_equity
        pnl_today = (a.nav - day_start) if a and not math.isnan(day_start) else 0.0
        return {
            "service": self.cfg.service, "version": VERSION, "mode": self.mode,
            "model_id": self._model_ids(), "instruments": self.cfg.instruments,
            "granularity": self.cfg.granularity, "now": fmt_time(now),
            "market_open": market_open(now), "last_candle": self.last_candle,
            "last_signal": self.last_signal, "open_positions": self.positions(),
            "pnl_today": pnl_today,
            "account": {"balance": a.balance, "nav": a.nav, "unrealized": a.unrealized,
                        "currency": a.currency} if a else None,
            "risk": {**self.risk.state(), "blocked": self.blocked},
            "policy": self._policies(),
        }

    def _policies(self) -> dict[str, Any]:
        """The policy in force per instrument: the artifact's, and how trades are sized."""
        r = self.cfg.risk
        out = {}
        for inst, m in self.models.items():
            pol = m.policy
            if r.fixed_units is not None:
                sizing = f"fixed {r.fixed_units} units"
            elif pol.stop_loss_pips is not None:
                sizing = (f"risk {r.risk_per_trade:g} of the balance over the "
                          f"{pol.stop_loss_pips:g}-pip stop")
            else:
                sizing = "none (risk-based sizing without a stop is refused)"
            out[inst] = {**pol.to_dict(), "source": m.path, "model_id": m.model_id,
                         "describe": pol.describe(), "sizing": sizing}
        return out

    def positions(self) -> list[dict[str, Any]]:
        return self.journal.positions("open")

    def signals(self, limit: int) -> list[dict[str, Any]]:
        return self.journal.signals(limit)

    def trades(self, limit: int) -> dict[str, Any]:
        return {"trades": self.journal.closed_trades(limit),
                "orders": self.journal.orders(limit=limit),
                "decisions": self.journal.decisions(limit)}

    def metrics_text(self) -> str:
        m = self.metrics
        feed = self.feed.stats()
        a = self.account
        lat = sorted(m.latencies_ms)
        rows: list[tuple[str, str, str, list[tuple[dict[str, str], float]]]] = [
            ("sep_runner_up", "gauge", "1 while the runner runs", [({}, 1.0)]),
            ("sep_runner_halted", "gauge", "1 when trading is halted",
             [({}, 1.0 if self.risk.s.halted else 0.0)]),
            ("sep_runner_events_total", "counter", "runner events by kind",
             [({"kind": k}, v) for k, v in sorted(m.counters.items())]),
            ("sep_runner_feed_total", "counter", "feed requests and stream events",
             [({"kind": k}, float(v)) for k, v in sorted(feed.items())]),
            ("sep_runner_open_positions", "gauge", "open positions managed by the runner",
             [({}, float(len(self._positions())))]),
            ("sep_runner_equity", "gauge", "account NAV",
             [({}, a.nav if a else math.nan)]),
            ("sep_runner_balance", "gauge", "account balance",
             [({}, a.balance if a else math.nan)]),
        ]
        if self.first_poll_s is not None:
            rows.append(("sep_runner_start_to_first_poll_seconds", "gauge",
                         "process start -> first poll answered", [({}, self.first_poll_s)]))
        rss = resident_memory_bytes()
        if rss:
            rows.append(("sep_runner_resident_memory_bytes", "gauge", "resident set size",
                         [({}, float(rss))]))
        if lat:
            q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))]
            rows.append(("sep_runner_order_latency_ms", "summary",
                         "completed candle seen -> order sent",
                         [({"quantile": "0.5"}, q(0.5)), ({"quantile": "0.99"}, q(0.99))]))
        for k in ("http_429", "http_5xx", "ambiguous_orders", "duplicates_prevented",
                  "loop_errors", "retries"):
            rows.append((f"sep_runner_{k}_total", "counter", k.replace("_", " "),
                         [({}, m.counters.get(k, 0.0))]))
        for k in ("stream_stalls", "stream_reconnects"):
            rows.append((f"sep_runner_{k}_total", "counter", k.replace("_", " "),
                         [({}, float(feed.get(k, 0.0)))]))
        return prometheus(rows)

    def command(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if name == "halt":
            reason = str(body.get("reason") or "halted through the status API")
            self.risk.halt(reason)
            self._persist_state()
            self.journal.record_decision("halt", True, reason, rule="api")
            return {"ok": True, "halted": True, "reason": reason}
        if name == "resume":
            self.risk.resume()
            self._persist_state()
            self.journal.record_decision("resume", True, "resumed through the status API",
                                         rule="api")
            return {"ok": True, "halted": False}
        if name == "reload":
            paths = body.get("models") or self.model_paths
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                return {"ok": False, "error": "models must be a list of artifact paths"}
            try:
                models = load_models(paths, self.cfg.instruments, self.cfg.granularity,
                                     risk=self.cfg.risk)
            except ValueError as exc:
                self.journal.record_decision("reload", False, str(exc), rule="api")
                return {"ok": False, "error": str(exc)}
            with self._lock:
                self._pending_models = models
                self._reload_request = paths
            return {"ok": True, "verified": {i: m.model_id for i, m in models.items()},
                    "note": "swapped in at the start of the next loop"}
        return {"ok": False, "error": f"unknown command {name}"}

    def _do_reload(self, paths: list[str]) -> None:
        models = getattr(self, "_pending_models", None)
        if not models:
            return
        old = self._model_ids()
        self.models = models
        self.model_paths = paths
        self.risk.set_stops({i: m.policy.stop_loss_pips for i, m in models.items()})
        for inst, m in models.items():
            # a new signal path, warmed up on the same recent candles the old one saw
            path = m.new_stream()
            for c in self.history[inst]:
                path.update(c)
            old_prev = self.paths[inst].previous if inst in self.paths else 0
            path.previous = old_prev if m.policy.hold == "keep" else path.previous
            self.paths[inst] = path
        self.journal.record_decision("reload", True, "models swapped",
                                     detail={"old": old, "new": self._model_ids()})
        log.info("models reloaded: %s", self._model_ids())


class _Watchdog:
    """systemd notify protocol (READY, WATCHDOG) over $NOTIFY_SOCKET; a no-op without it."""

    def __init__(self, interval: float) -> None:
        self.addr = os.environ.get("NOTIFY_SOCKET")
        self.interval = interval
        self._last = 0.0

    def notify(self, msg: str) -> None:
        if not self.addr:
            return
        addr = "\0" + self.addr[1:] if self.addr.startswith("@") else self.addr
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect(addr)
                s.sendall(msg.encode())
        except OSError as exc:
            log.debug("sd_notify failed: %s", exc)

    def ping(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.notify("WATCHDOG=1")


def process_start_time() -> float:
    """Epoch seconds at which this process started (Linux /proc; else now)."""
    try:
        with open("/proc/self/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22: starttime, in clock ticks since boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):
        return time.time()


def resident_memory_bytes(pid: int | str = "self") -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
