"""The replay clock: the emulator's "now", driven by hand or at a speed factor."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sep_research.emulator.wire import NS, fmt_time, to_ns

#: The most the clock moves in one call, and the fastest it runs (both far beyond any use).
MAX_STEP_SECONDS = 100 * 366 * 86400
MAX_SPEED = 1e7


def _check_count(name: str, value: Any, most: float) -> None:
    """``value`` must be a real, finite number in ``0 .. most`` (ValueError naming it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and 0 <= value <= most):
        raise ValueError(f"{name} must be between 0 and {most:g}, got {value!r}")


class ReplayClock:
    """Replayed time in integer nanoseconds (UTC).

    ``speed == 0`` (the default for the Python API) leaves time still until :meth:`advance` or
    :meth:`set` moves it; ``speed > 0`` runs it at ``speed`` times real time from the moment
    :meth:`run` (or the constructor) set the speed. Time never goes past ``end`` (the end of the
    data) and never backwards. Listeners (the venue) are called after every manual move so that
    orders trigger along the way.
    """

    def __init__(self, start: Any, *, step_seconds: int, end: Any = None, speed: float = 0.0):
        self._lock = threading.Lock()
        self._base = to_ns(start)
        self._wall0 = time.monotonic()
        self._speed = 0.0
        self.step_ns = int(step_seconds) * NS
        self.end_ns = to_ns(end) if end is not None else None
        self._listeners: list[Callable[[int], None]] = []
        if speed:
            self.run(speed)

    # -- reading --------------------------------------------------------------------------
    def now_ns(self) -> int:
        with self._lock:
            return self._now_locked()

    def _now_locked(self) -> int:
        t = self._base
        if self._speed > 0:
            t += int((time.monotonic() - self._wall0) * self._speed * NS)
        if self.end_ns is not None and t > self.end_ns:
            t = self.end_ns
        return t

    def now(self) -> datetime:
        """The replayed time as a tz-aware UTC datetime (microsecond resolution)."""
        ns = self.now_ns()
        return datetime.fromtimestamp(ns // NS, tz=UTC).replace(
            microsecond=(ns % NS) // 1000
        )

    def iso(self) -> str:
        return fmt_time(self.now_ns())

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def at_end(self) -> bool:
        return self.end_ns is not None and self.now_ns() >= self.end_ns

    # -- moving ---------------------------------------------------------------------------
    def add_listener(self, fn: Callable[[int], None]) -> None:
        self._listeners.append(fn)

    def _notify(self) -> None:
        now = self.now_ns()
        for fn in list(self._listeners):
            fn(now)

    def check_advance(self, candles: Any, seconds: Any) -> int:
        """ValueError or TypeError unless :meth:`advance` can take these; the candles as int."""
        for value in (candles, seconds):
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ValueError("the replay clock only moves forward (candles, seconds >= 0)")
        _check_count("seconds", seconds, MAX_STEP_SECONDS)
        _check_count("candles", candles, MAX_STEP_SECONDS * NS / max(self.step_ns, 1))
        if candles != int(candles):
            raise ValueError(f"candles must be a whole number, got {candles!r}")
        return int(candles)

    def advance(self, *, candles: int = 0, seconds: float = 0.0) -> datetime:
        """Move forward by ``candles`` stored-candle lengths plus ``seconds``; returns now."""
        candles = self.check_advance(candles, seconds)
        with self._lock:
            t = self._now_locked() + candles * self.step_ns + round(seconds * NS)
            self._rebase(t)
        self._notify()
        return self.now()

    def set(self, when: Any) -> datetime:
        """Jump to ``when`` (tz-aware datetime, ISO string or ns); never backwards."""
        t = to_ns(when)
        with self._lock:
            if t < self._now_locked():
                raise ValueError(
                    f"the replay clock cannot go back (now {fmt_time(self._now_locked())}, "
                    f"asked {fmt_time(t)})"
                )
            self._rebase(t)
        self._notify()
        return self.now()

    @staticmethod
    def check_speed(speed: Any) -> None:
        """ValueError or TypeError unless :meth:`run` can take ``speed``."""
        if isinstance(speed, (int, float)) and not isinstance(speed, bool) and speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        _check_count("speed", speed, MAX_SPEED)

    def run(self, speed: float) -> None:
        """Run at ``speed`` times real time (``0`` pauses)."""
        self.check_speed(speed)
        with self._lock:
            self._rebase(self._now_locked())
            self._speed = float(speed)

    def pause(self) -> None:
        self.run(0.0)

    def _rebase(self, t: int) -> None:
        if self.end_ns is not None:
            t = min(t, self.end_ns)
        self._base = t
        self._wall0 = time.monotonic()
