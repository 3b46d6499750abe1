"""The candle loop: each completed candle -> signal -> risk -> orders, at the right time.

:class:`CandleLoop` owns one :meth:`CandleLoop.step`: take what the feed has (prices, then each
instrument's new completed candles as soon as they arrive), and for each candle

1. learn of stops and take-profits that fired inside it (as the backtest does);
2. update the signal path and take its target position;
3. close what is held against the target, then ask the risk rules whether a new position may
   be opened and with how many units, and open it (:class:`~sep_research.live.orders.OrderDesk`);
4. journal the signal and the candle; at the end of the step, mark each instrument *handled
   through* the feed time at which its candles were asked for (every candle completed by then
   is decided and its orders answered: what a stepped rehearsal clock waits for, through
   ``handled_through`` in the status API).

**The clock.** Every decision and risk check on a candle uses :meth:`CandleLoop.decision_time`:
the feed's clock read at that moment (a server clock is re-read when its last reading is older
than the poll interval), and never earlier than the close of the candle being acted on. Market
hours are judged as the order is about to be sent, never at the time of a price poll that may
be stale (under load the poll can be from before the weekend's end). Quotes older than the
candle's close are refreshed before they set levels or sizes.

Between candles the loop reads the account (equity, daily loss and drawdown limits) and the
broker's activity (fills of stops and take-profits) at most once per poll interval.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sep_research.live.config import RunnerConfig
from sep_research.live.feed import Feed
from sep_research.live.journal import Journal
from sep_research.live.orders import OrderDesk
from sep_research.live.port import Broker
from sep_research.live.risk import RiskManager
from sep_research.live.state import Metrics, RunnerState
from sep_research.live.types import Candle, Decision, fmt_time

log = logging.getLogger("sep_research.live")


class CandleLoop:
    def __init__(self, cfg: RunnerConfig, state: RunnerState, feed: Feed, broker: Broker,
                 journal: Journal, risk: RiskManager, desk: OrderDesk, metrics: Metrics,
                 persist: Callable[[], None]) -> None:
        self.cfg = cfg
        self.state = state
        self.feed = feed
        self.broker = broker
        self.journal = journal
        self.risk = risk
        self.desk = desk
        self.metrics = metrics
        self.persist = persist
        self.gran = timedelta(seconds=cfg.granularity_seconds)
        self.first_poll_at: float | None = None
        self._last_events = 0.0
        self._last_equity_at: datetime | None = None  # feed time of the last equity row

    # ================================================================ the clock
    def now(self) -> datetime:
        """The feed's clock (a server clock is re-read when its reading is stale)."""
        return self.feed.now()

    def decision_time(self, candle: Candle) -> datetime:
        """Now for acting on ``candle``: the feed's clock read now, never before its close."""
        return max(self.feed.now(), candle.time + self.gran)

    # ================================================================ one step
    def step(self) -> int:
        """Handle what the feed has now; returns the number of new candles."""
        n = 0
        for candles, quotes, seen_at in self.feed.batches():
            if self.first_poll_at is None:
                self.first_poll_at = time.time()  # epoch seconds
            for q in quotes:
                self.state.quotes[q.instrument] = q
                self.broker.on_quote(q)
            for c in candles:
                self.on_candle(c, seen_at)
            n += len(candles)
        wall = time.monotonic()
        if n or wall - self._last_events >= max(self.cfg.feed.poll_interval_s, 1.0):
            self._last_events = wall
            self.desk.sync()
            self.update_equity()
        # every candle the feed had by these times is now decided and its orders answered
        self.state.handled_through.update(self.feed.checked_through())
        return n

    def on_candle(self, c: Candle, seen_at: float) -> None:
        """Signal, then act at once (the latency that matters), then journal the rest."""
        self.metrics.inc("candles")
        self.broker.on_candle(c)  # paper broker: stops and take-profits on this candle
        if self.broker.exits_pending(c, self.positions(c.instrument)):
            # Learn of stops and take-profits that fired inside this candle before acting on
            # it (as the backtest does). At a real broker this costs a request, so it is made
            # only when the candle's bid/ask range reached a stop or take-profit level.
            self.desk.sync()
        path = self.state.paths[c.instrument]
        d = path.update(c)
        self.state.candles_for(c.instrument).append(c)
        self.act(d, c, seen_at)
        self.journal.record_signal(c.instrument, c.time, path.model.model_id, d.action,
                                   d.target, d.confidence, d.extra)
        self.state.last_signal = {"instrument": c.instrument, "candle_time": fmt_time(c.time),
                                  "action": d.action, "target": d.target,
                                  "confidence": None if math.isnan(d.confidence)
                                  else d.confidence}
        self.journal.record_candle(c.instrument, c.time, c.c)
        self.state.last_candle[c.instrument] = {"time": fmt_time(c.time), "close": c.c}

    def positions(self, instrument: str | None = None, managed: bool = True
                  ) -> list[dict[str, Any]]:
        ps = self.journal.positions("open")
        if instrument:
            ps = [p for p in ps if p["instrument"] == instrument]
        if managed:
            ps = [p for p in ps if p["origin"] != "foreign"]
        return ps

    def act(self, d: Decision, c: Candle, seen_at: float) -> None:
        inst = d.instrument
        mine = self.positions(inst)
        cur = 0
        if mine:
            net = sum(p["units"] for p in mine)
            cur = (net > 0) - (net < 0)
        desired = d.target
        blocked = self.state.blocked.get(inst, 0)
        if blocked:
            if desired == blocked:
                desired = 0
            else:
                self.state.blocked.pop(inst, None)
                self.persist()
        if desired == cur:
            self.journal.record_decision("target", True, "position already at target",
                                         instrument=inst, candle_time=d.candle_time,
                                         detail={"target": d.target, "held": cur})
            return
        # close what is held against the target
        if cur != 0:
            v = self.risk.check_close(d.candle_time, self.decision_time(c))
            if not v.ok:
                self.journal.record_decision("close", False, v.reason, instrument=inst,
                                             candle_time=d.candle_time, rule=v.rule)
                self.metrics.inc(f"refused_{v.rule}")
                return
            for p in mine:
                self.desk.close(p, d.candle_time, seen_at)
        if desired == 0:
            return
        info = self.state.info[inst]
        acct = self.state.account
        close_time = c.time + self.gran
        q = self.state.quotes.get(inst)
        if q is None or q.time < close_time:
            # A quote from before the candle's close (prices, spread and tradeable flag of an
            # earlier moment: the stop would sit 20 pips from the wrong price) is refreshed
            # rather than trusted; the stale-data guard below still refuses if no fresh price
            # arrives.
            for fq in self.feed.fresh_quotes(close_time):
                self.state.quotes[fq.instrument] = fq
                self.broker.on_quote(fq)
        # market hours, the weekend cut-off and staleness judged now, as the order is sent
        v = self.risk.check_open(info, desired, now=self.decision_time(c),
                                 candle_time=d.candle_time,
                                 balance=acct.balance if acct else 0.0,
                                 quote=self.state.quotes.get(inst), quotes=self.state.quotes,
                                 open_positions=self.positions(managed=False))
        if not v.ok:
            self.journal.record_decision("open", False, v.reason, instrument=inst,
                                         candle_time=d.candle_time, rule=v.rule,
                                         detail={"target": desired})
            self.metrics.inc(f"refused_{v.rule}")
            return
        self.desk.open(info, desired * v.units, d, seen_at)

    # ================================================================ between candles
    def update_equity(self) -> None:
        try:
            self.state.account = self.broker.account()
        except Exception as exc:  # a failed read is retried next loop
            self.metrics.inc("errors")
            log.warning("account read failed: %s", exc)
            return
        a = self.state.account
        now = self.now()
        # a snapshot a minute of the feed's clock is plenty (the wall clock when trading; a
        # replay gets one per candle, so its equity curve has a point per candle)
        if self._last_equity_at is None or (now - self._last_equity_at).total_seconds() >= 60:
            self._last_equity_at = now
            self.journal.record_equity(a.balance, a.nav, a.unrealized, now)
        hit = self.risk.on_equity(a.nav, now)
        if hit:
            action, reason = hit
            self.journal.record_decision("risk", True, reason, rule=action)
            self.metrics.inc(f"risk_{action}")
            log.warning("risk limit: %s (%s)", reason, action)
            if action == "flatten_halt":
                self.flatten(reason)
        self.persist()

    def flatten(self, reason: str) -> None:
        now = self.now()
        for p in self.positions():
            self.desk.close(p, now, time.perf_counter())
        self.journal.record_decision("flatten", True, reason)
