"""The runner's in-memory state, shared by its parts, and its counters.

:class:`RunnerState` holds what the candle loop, the order desk, reconciliation and the status
view read and write between journal rows: the models in force and their signal paths, the
instrument facts, the latest quotes and account reading, the per-instrument re-entry blocks,
and the progress marks (last candle, last signal, and *handled through*: the feed time up to
which every completed candle has been decided and its orders answered). Everything here can be
rebuilt from the journal and the broker on start; nothing here is a second copy of a journal
table.

:class:`Metrics` counts events for ``/metrics``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sep_research.live.model import Model, SignalPath
from sep_research.live.port import Account
from sep_research.live.types import InstrumentInfo, Quote


@dataclass
class Metrics:
    counters: dict[str, float] = field(default_factory=dict)
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))

    def inc(self, name: str, n: float = 1.0) -> None:
        self.counters[name] = self.counters.get(name, 0.0) + n

    def get(self, name: str) -> float:
        return self.counters.get(name, 0.0)


@dataclass
class RunnerState:
    models: dict[str, Model]
    model_paths: list[str]
    warmup: int
    paths: dict[str, SignalPath] = field(default_factory=dict)
    history: dict[str, deque] = field(default_factory=dict)
    info: dict[str, InstrumentInfo] = field(default_factory=dict)
    quotes: dict[str, Quote] = field(default_factory=dict)
    account: Account | None = None
    #: after a stop-loss / take-profit: no re-entry in that direction until the signal changes
    blocked: dict[str, int] = field(default_factory=dict)
    last_candle: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_signal: dict[str, Any] | None = None
    #: per instrument, the feed time up to which every completed candle is fully handled
    handled_through: dict[str, datetime] = field(default_factory=dict)

    def candles_for(self, instrument: str) -> deque:
        if instrument not in self.history:
            self.history[instrument] = deque(maxlen=self.warmup)
        return self.history[instrument]

    def model_ids(self) -> dict[str, str]:
        return {i: m.model_id for i, m in self.models.items()}
