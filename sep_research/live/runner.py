"""The runner as a service: start-up, the main loop's life, commands, and its parts wired up.

One :class:`Runner` per process (``sep run``). It owns nothing of the trading logic itself;
it builds and connects the parts, each in its own module:

- :mod:`sep_research.live.reconcile`: the journal brought in line with the account on start;
- :mod:`sep_research.live.loop`: one step of the candle loop (signal -> risk -> orders);
- :mod:`sep_research.live.orders`: the order-safety protocol, fills and positions;
- :mod:`sep_research.live.view`: the status view (the runner implements
  :class:`~sep_research.live.status.StatusSource` by delegating to it);
- :mod:`sep_research.live.state`: the in-memory state they share.

:meth:`Runner.start` reads the instruments, restores the risk state, reconciles, warms the
signal paths up on the feed's history and starts the status API; :meth:`Runner.run` loops
:meth:`Runner.step` until :meth:`Runner.stop` (SIGTERM), then finishes the step in flight,
persists and returns. :meth:`Runner.command` serves the status API's ``halt``, ``resume`` and
``reload``; a reload is carried out by the loop thread between steps.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from typing import Any

from sep_research.live.config import RunnerConfig
from sep_research.live.feed import Feed
from sep_research.live.journal import Journal
from sep_research.live.loop import CandleLoop
from sep_research.live.model import Model, load_models
from sep_research.live.orders import OrderDesk
from sep_research.live.port import Broker
from sep_research.live.reconcile import reconcile
from sep_research.live.risk import RiskManager
from sep_research.live.state import Metrics, RunnerState
from sep_research.live.types import parse_time
from sep_research.live.view import (
    VERSION,
    StatusView,
    process_start_time,
    resident_memory_bytes,
)

log = logging.getLogger("sep_research.live")

__all__ = ["EXIT_SHUTDOWN_TIMEOUT", "VERSION", "Runner", "process_start_time",
           "resident_memory_bytes"]

#: exit status when in-flight work outlasted ``shutdown_timeout_s`` after SIGTERM
EXIT_SHUTDOWN_TIMEOUT = 1


class Runner:
    def __init__(self, cfg: RunnerConfig, models: dict[str, Model], broker: Broker, feed: Feed,
                 journal: Journal, *, mode: str, status_token: str | None = None,
                 model_paths: list[str] | None = None) -> None:
        self.cfg = cfg
        self.broker = broker
        self.feed = feed
        self.journal = journal
        self.mode = mode
        self.status_token = status_token
        self.metrics = Metrics()
        self.risk = RiskManager(cfg.risk, granularity_seconds=cfg.granularity_seconds,
                                account_currency=cfg.account_currency)
        self.state = RunnerState(models=dict(models),
                                 model_paths=list(model_paths or
                                                  [m.path for m in models.values()]),
                                 warmup=cfg.feed.warmup_candles)
        self.desk = OrderDesk(cfg, self.state, journal, broker, self.risk, self.metrics,
                              clock=lambda: self.loop.now(), persist=self._persist_state)
        self.loop = CandleLoop(cfg, self.state, feed, broker, journal, self.risk, self.desk,
                               self.metrics, persist=self._persist_state)
        self.view = StatusView(self)
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._status: Any = None
        self.started_at = time.monotonic()
        self.process_started = process_start_time()  # epoch seconds
        self.first_poll_s: float | None = None
        self.last_loop_at = time.monotonic()
        self._deadline: threading.Timer | None = None
        self._reload_request: list[str] | None = None
        self._pending_models: dict[str, Model] | None = None

    # ---------------------------------------------------------------- convenience views
    @property
    def models(self) -> dict[str, Model]:
        return self.state.models

    @property
    def account(self) -> Any:
        return self.state.account

    @property
    def status_port(self) -> int | None:
        return self._status.port if self._status else None

    # ================================================================ start-up
    def start(self, *, status: bool = True) -> None:
        st = self.state
        st.info = self.broker.instrument_info(self.cfg.instruments)
        self.risk.restore(json.loads(self.journal.get_meta("risk_state") or "{}"))
        st.blocked = {k: int(v) for k, v in
                      json.loads(self.journal.get_meta("blocked") or "{}").items()}
        st.account = reconcile(self.journal, self.broker, self.desk, self.metrics,
                               clock=self.loop.now)
        last_seen = {i: (parse_time(t) if (t := self.journal.last_candle(i)) else None)
                     for i in self.cfg.instruments}
        st.last_candle = self.journal.last_candles()
        history = self.feed.start(last_seen)
        for inst in self.cfg.instruments:
            st.paths[inst] = st.models[inst].new_stream()
            for c in history.get(inst, [])[-self.cfg.feed.warmup_candles:]:
                st.paths[inst].update(c)
                st.candles_for(inst).append(c)
        if status and self.cfg.status.enabled:
            from sep_research.live.status import StatusServer

            self._status = StatusServer(self, host=self.cfg.status.host,
                                        port=self.cfg.status.port,
                                        token=self.status_token).start()
            log.info("status API on %s:%d", self.cfg.status.host, self._status.port)
        self.journal.record_decision("start", True, f"runner started in {self.mode} mode",
                                     detail={"models": list(st.model_ids().values())})

    def _persist_state(self) -> None:
        self.journal.set_meta("risk_state", json.dumps(self.risk.state()))
        self.journal.set_meta("blocked", json.dumps(self.state.blocked))

    # ================================================================ the loop's life
    def step(self) -> int:
        """One step of the candle loop, then a pending model reload."""
        n = self.loop.step()
        if self.first_poll_s is None and self.loop.first_poll_at is not None:
            self.first_poll_s = self.loop.first_poll_at - self.process_started
        self.last_loop_at = time.monotonic()
        if self._reload_request is not None:
            paths, self._reload_request = self._reload_request, None
            self._do_reload(paths)
        return n

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

    def stop(self, *, grace: float | None = None) -> None:
        """Ask the loop to stop after the step in flight. With ``grace`` (SIGTERM:
        ``shutdown_timeout_s``), the process exits anyway when the in-flight work (an order
        being answered or resolved, a reconciliation) has not finished within that many
        seconds: what was sent is journalled as an intent and resolved on the next start."""
        self._stop.set()
        if grace is not None and self._deadline is None:
            self._deadline = threading.Timer(grace, self._give_up, args=(grace,))
            self._deadline.daemon = True
            self._deadline.start()

    def _give_up(self, grace: float) -> None:
        log.error("in-flight work did not finish within shutdown_timeout_s (%gs) of the stop "
                  "request: exiting now; the next start reconciles the journal with the account",
                  grace)
        for h in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                h.flush()
        os._exit(EXIT_SHUTDOWN_TIMEOUT)

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
            if self._deadline is not None:
                self._deadline.cancel()

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
        return self.view.health()

    def status(self) -> dict[str, Any]:
        return self.view.status()

    def positions(self) -> list[dict[str, Any]]:
        return self.view.positions()

    def signals(self, limit: int) -> list[dict[str, Any]]:
        return self.view.signals(limit)

    def trades(self, limit: int) -> dict[str, Any]:
        return self.view.trades(limit)

    def metrics_text(self) -> str:
        return self.view.metrics_text()

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
            paths = body.get("models") or self.state.model_paths
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                return {"ok": False, "error": "models must be a list of artifact paths"}
            try:
                models = load_models(paths, self.cfg.instruments, self.cfg.granularity)
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
        st = self.state
        models = self._pending_models
        if not models:
            return
        old = st.model_ids()
        st.models = models
        st.model_paths = paths
        for inst, m in models.items():
            # a new signal path, warmed up on the same recent candles the old one saw
            path = m.new_stream()
            for c in st.candles_for(inst):
                path.update(c)
            old_prev = st.paths[inst].previous if inst in st.paths else 0
            path.previous = old_prev if m.policy.hold == "keep" else path.previous
            st.paths[inst] = path
        self.journal.record_decision("reload", True, "models swapped",
                                     detail={"old": old, "new": st.model_ids()})
        log.info("models reloaded: %s", st.model_ids())


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
