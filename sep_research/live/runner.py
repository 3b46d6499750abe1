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
import stat
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sep_research.live.config import RunnerConfig
from sep_research.live.feed import Feed
from sep_research.live.journal import Journal, JournalCorrupt, JournalFull
from sep_research.live.loop import CandleLoop
from sep_research.live.model import Model, SignalPath, check_policy, load_models, warmup_for
from sep_research.live.orders import OrderDesk
from sep_research.live.port import Broker
from sep_research.live.reconcile import NeedsHuman, reconcile
from sep_research.live.risk import RiskManager
from sep_research.live.state import Metrics, RunnerState
from sep_research.live.types import Candle, bounded, parse_time
from sep_research.live.view import (
    VERSION,
    StatusView,
    process_start_time,
    resident_memory_bytes,
)

log = logging.getLogger("sep_research.live")

__all__ = ["EXIT_SHUTDOWN_TIMEOUT", "VERSION", "NeedsHuman", "Runner", "needs_human",
           "process_start_time", "resident_memory_bytes"]

#: exit status when in-flight work outlasted ``shutdown_timeout_s`` after SIGTERM
EXIT_SHUTDOWN_TIMEOUT = 1
#: the largest model artifact a reload reads (artifacts are some tens of KB)
MAX_ARTIFACT_BYTES = 4 * 1024 * 1024


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
        # the runner trades each artifact's policy; the config may only tighten risk
        for m in models.values():
            check_policy(m, cfg.risk)
        self.risk.set_stops({i: m.policy.stop_loss_pips for i, m in models.items()})
        if cfg.feed.warmup_candles is None:  # null: the history the rules need
            cfg = cfg.model_copy(update={"feed": cfg.feed.model_copy(
                update={"warmup_candles": warmup_for(models, None)})})
            self.cfg = cfg
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
        self.loop_errors = 0  # consecutive failed steps
        self.last_loop_error = ""
        self._pending_reload: tuple[dict[str, Model], list[str], dict[str, Any]] | None = None
        self._configured_paths = list(self.state.model_paths)
        self._set_financing(models)

    def _set_financing(self, models: dict[str, Model]) -> None:
        """The models' financing rates (their cost models) to the broker: the paper broker
        charges them; a real broker's own financing is what it reports."""
        self.broker.set_financing({i: m.spec.costs.financing for i, m in models.items()},
                                  granularity_seconds=self.cfg.granularity_seconds)

    # ---------------------------------------------------------------- convenience views
    @property
    def models(self) -> dict[str, Model]:
        return self.state.models

    @property
    def account(self) -> Any:
        return self.state.account

    @property
    def quotes(self) -> dict[str, Any]:
        """The latest quote per instrument (read by the operator page's feed view)."""
        return self.state.quotes

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
        if self._pending_reload is not None:
            self._do_reload()
        return n

    def run(self, *, max_steps: int | None = None) -> None:
        """Loop until stopped. A failed step is logged and counted (``/health`` turns 503
        after ``status.unhealthy_after_errors`` in a row) and the loop goes on; what a person
        must decide (:class:`NeedsHuman`, a corrupt journal, refused credentials) ends it."""
        watchdog = _Watchdog(self.cfg.watchdog_interval_s)
        watchdog.notify("READY=1")
        steps = 0
        try:
            while not self._stop.is_set():
                try:
                    n = self.step()
                    self.loop_errors = 0
                except Exception as exc:
                    n = 0
                    self._loop_error(exc)
                    if needs_human(exc):
                        raise
                self.last_loop_at = time.monotonic()  # alive, if failing (see health)
                watchdog.ping()
                steps += 1
                if max_steps is not None and steps >= max_steps:
                    break
                if self.feed.exhausted:
                    break
                if n == 0:
                    self._stop.wait(min(self.cfg.feed.poll_interval_s, 0.25))
        finally:
            watchdog.notify("STOPPING=1")
            self.shutdown()

    def _loop_error(self, exc: BaseException) -> None:
        self.metrics.inc("loop_errors")
        self.loop_errors += 1
        if getattr(exc, "code", None) == 429:
            self.metrics.inc("http_429")
        what = "disk full" if isinstance(exc, JournalFull) else type(exc).__name__
        self.last_loop_error = bounded(f"{what}: {exc}", 300)
        log.error("loop error: %s", self.last_loop_error)

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
            raw = body.get("reason")
            if raw is not None and not isinstance(raw, str):
                return {"ok": False, "error": "reason must be a string"}
            reason = bounded(raw or "halted through the status API")
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
            return self._reload(body)
        return {"ok": False, "error": f"unknown command {bounded(name, 40)}"}

    # ================================================================ model reload
    def _reload(self, body: dict[str, Any]) -> dict[str, Any]:
        """Verify the artifacts, build and warm up their signal paths here, then hand them to
        the loop, which swaps models and paths all at once at the start of its next step (or
        nothing, if catching up on newer candles fails). Only the configured artifacts, or
        regular files under their folders of at most :data:`MAX_ARTIFACT_BYTES`, are read."""
        try:
            paths = self._reload_paths(body.get("models"))
            models = load_models(paths, self.cfg.instruments, self.cfg.granularity,
                                 risk=self.cfg.risk)
            prepared = {inst: self._warm_up(m) for inst, m in models.items()}
        except (ValueError, ReloadRefused) as exc:
            reason = bounded(f"reload refused: {exc}")
            self.journal.record_decision("reload", False, reason, rule="api")
            return {"ok": False, "error": reason}
        with self._lock:
            self._pending_reload = (models, paths, prepared)
        return {"ok": True, "verified": {i: m.model_id for i, m in models.items()},
                "note": "verified and warmed up; swapped in at the start of the next loop step"}

    def _reload_paths(self, asked: Any) -> list[str]:
        if asked is None:
            asked = list(self._configured_paths)
        if not isinstance(asked, list) or not asked or len(asked) > 2 * len(self.cfg.instruments) \
                or not all(isinstance(p, str) and 0 < len(p) <= 4096 for p in asked):
            raise ReloadRefused("models must be a list of artifact paths, one per instrument")
        configured = {os.path.realpath(p) for p in self._configured_paths}
        folders = sorted({os.path.dirname(p) for p in configured})
        out = []
        for p in asked:
            real = os.path.realpath(p)
            inside = real in configured or any(
                os.path.commonpath([real, d]) == d for d in folders)
            if not inside:  # the same answer whether or not such a file exists
                raise ReloadRefused("only the configured artifacts or files in their folders "
                                    f"({', '.join(folders)}) can be reloaded")
            try:
                st = os.stat(real)
            except OSError:
                raise ReloadRefused(f"{p}: no such artifact in the models folder") from None
            if not stat.S_ISREG(st.st_mode):
                raise ReloadRefused(f"{p}: not a regular file")
            if st.st_size > MAX_ARTIFACT_BYTES:
                raise ReloadRefused(f"{p}: {st.st_size} bytes, more than an artifact may have "
                                    f"({MAX_ARTIFACT_BYTES})")
            out.append(real)
        return out

    def _warm_up(self, model: Model) -> tuple[SignalPath, datetime | None]:
        """A new signal path warmed up on the candles the current one saw; an artifact whose
        signal code fails on them (or on a synthetic probe when there are too few) is refused
        here, before anything is swapped."""
        hist = list(self.state.candles_for(model.instrument))
        path = model.new_stream()
        try:
            for c in hist:
                path.update(c)
            if len(hist) < 64:
                probe = model.new_stream()
                for c in _probe_candles(model.instrument, 64):
                    probe.update(c)
        except Exception as exc:  # any failure of the new code refuses it
            raise ReloadRefused(f"{model.path}: the model fails on recent candles "
                                f"({type(exc).__name__}: {bounded(exc, 200)})") from None
        return path, (hist[-1].time if hist else None)

    def _do_reload(self) -> None:
        st = self.state
        with self._lock:
            pending, self._pending_reload = self._pending_reload, None
        if not pending:
            return
        models, paths, prepared = pending
        old = st.model_ids()
        new_paths = {}
        try:
            for inst, (path, upto) in prepared.items():
                for c in st.candles_for(inst):  # candles that arrived since the warm-up
                    if upto is None or c.time > upto:
                        path.update(c)
                old_path = st.paths.get(inst)
                if models[inst].policy.hold == "keep" and old_path is not None:
                    path.previous = old_path.previous
                new_paths[inst] = path
        except Exception as exc:  # nothing is swapped
            reason = bounded(f"reload refused: the new model fails on the newest candles "
                             f"({type(exc).__name__}: {exc})")
            self.journal.record_decision("reload", False, reason, rule="api",
                                         detail={"kept": old})
            log.error("%s", reason)
            return
        st.models, st.model_paths = models, paths
        st.paths.update(new_paths)
        self.risk.set_stops({i: m.policy.stop_loss_pips for i, m in models.items()})
        self._set_financing(models)
        self.journal.record_decision("reload", True, "models swapped",
                                     detail={"old": old, "new": st.model_ids()})
        log.info("models reloaded: %s", st.model_ids())


class ReloadRefused(Exception):
    """A reload request the runner will not carry out (the message says why)."""


def _probe_candles(instrument: str, n: int) -> list[Candle]:
    """``n`` synthetic hourly candles (a gentle zigzag) to exercise a new model's signal code;
    their signals are thrown away."""
    t0 = datetime(2020, 1, 6, tzinfo=UTC)
    out, px = [], 1.0
    for i in range(n):
        step = 0.0004 if (i // 3) % 2 == 0 else -0.0003
        o, c = px, px + step
        out.append(Candle(instrument, t0 + timedelta(hours=i), o, max(o, c) + 0.0002,
                          min(o, c) - 0.0002, c, 100))
        px = c
    return out


def needs_human(exc: BaseException) -> bool:
    """Whether the runner must stop and wait for a person: a journal of another account or a
    corrupt one, or credentials the broker refuses (a restart cannot fix these)."""
    if isinstance(exc, (NeedsHuman, JournalCorrupt, PermissionError)):
        return True
    return getattr(getattr(exc, "kind", None), "value", "") == "needs_human"


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
