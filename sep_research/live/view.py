"""The status view: what the runner shows through the status API (read-only).

:class:`StatusView` turns the runner's state, journal, metrics and feed counters into the
answers of :class:`~sep_research.live.status.StatusSource` (``status``, ``health``,
``positions``, ``signals``, ``trades``, ``metrics_text``); the runner implements the protocol
by delegating here. Nothing in this module changes state or calls the broker, and nothing
here asks the feed for a fresh reading (the status API's threads never make broker requests).
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Any

from sep_research.fx import market_open
from sep_research.live.status import prometheus
from sep_research.live.types import fmt_time

if TYPE_CHECKING:
    from sep_research.live.runner import Runner

VERSION = "0.1.0"


class StatusView:
    def __init__(self, runner: Runner) -> None:
        self.r = runner

    def health(self) -> tuple[bool, dict[str, Any]]:
        r = self.r
        age = time.monotonic() - r.last_loop_at
        alive = age < max(30.0, 10 * r.cfg.feed.poll_interval_s)
        failing = r.loop_errors >= r.cfg.status.unhealthy_after_errors
        ok = alive and not failing
        body: dict[str, Any] = {"ok": ok, "loop_age_s": round(age, 3),
                                "halted": r.risk.s.halted, "loop_errors": r.loop_errors}
        if r.loop_errors:
            body["last_error"] = r.last_loop_error
        return ok, body

    def status(self) -> dict[str, Any]:
        r = self.r
        st = r.state
        now = r.feed.now(refresh=False)
        a = st.account
        day_start = r.risk.s.day_start_equity
        pnl_today = (a.nav - day_start) if a and not math.isnan(day_start) else 0.0
        return {
            "service": r.cfg.service, "version": VERSION, "mode": r.mode,
            "model_id": st.model_ids(), "instruments": r.cfg.instruments,
            "granularity": r.cfg.granularity, "now": fmt_time(now),
            "market_open": market_open(now), "last_candle": st.last_candle,
            "handled_through": {i: fmt_time(t) for i, t in st.handled_through.items()},
            "last_signal": st.last_signal, "open_positions": self.positions(),
            "pnl_today": pnl_today,
            "account": {"balance": a.balance, "nav": a.nav, "unrealized": a.unrealized,
                        "currency": a.currency} if a else None,
            # realised P&L from the journal: closed trades' prices, financing (open trades'
            # too) as its own line, and their sum
            "realized": r.journal.pnl(),
            "risk": {**r.risk.state(), "blocked": st.blocked},
            "policy": self._policies(),
        }

    def _policies(self) -> dict[str, Any]:
        """The policy in force per instrument: the artifact's, and how trades are sized."""
        r = self.r.cfg.risk
        out = {}
        for inst, m in self.r.state.models.items():
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
        return self.r.journal.positions("open")

    def signals(self, limit: int) -> list[dict[str, Any]]:
        return self.r.journal.signals(limit)

    def trades(self, limit: int) -> dict[str, Any]:
        j = self.r.journal
        return {"trades": j.closed_trades(limit), "orders": j.orders(limit=limit),
                "decisions": j.decisions(limit)}

    def metrics_text(self) -> str:
        r = self.r
        m = r.metrics
        feed = r.feed.stats()
        a = r.state.account
        lat = sorted(m.latencies_ms)
        managed = [p for p in r.journal.positions("open") if p["origin"] != "foreign"]
        rows: list[tuple[str, str, str, list[tuple[dict[str, str], float]]]] = [
            ("sep_runner_up", "gauge", "1 while the runner runs", [({}, 1.0)]),
            ("sep_runner_halted", "gauge", "1 when trading is halted",
             [({}, 1.0 if r.risk.s.halted else 0.0)]),
            ("sep_runner_events_total", "counter", "runner events by kind",
             [({"kind": k}, v) for k, v in sorted(m.counters.items())]),
            ("sep_runner_feed_total", "counter", "feed requests and stream events",
             [({"kind": k}, float(v)) for k, v in sorted(feed.items())]),
            ("sep_runner_open_positions", "gauge", "open positions managed by the runner",
             [({}, float(len(managed)))]),
            ("sep_runner_equity", "gauge", "account NAV",
             [({}, a.nav if a else math.nan)]),
            ("sep_runner_balance", "gauge", "account balance",
             [({}, a.balance if a else math.nan)]),
            ("sep_runner_financing", "gauge", "financing journalled, signed (negative: paid)",
             [({}, r.journal.financing_total())]),
        ]
        if r.first_poll_s is not None:
            rows.append(("sep_runner_start_to_first_poll_seconds", "gauge",
                         "process start -> first poll answered", [({}, r.first_poll_s)]))
        rss = resident_memory_bytes()
        if rss:
            rows.append(("sep_runner_resident_memory_bytes", "gauge", "resident set size",
                         [({}, float(rss))]))
        if lat:
            def q(f: float) -> float:
                return lat[min(len(lat) - 1, int(f * len(lat)))]

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
