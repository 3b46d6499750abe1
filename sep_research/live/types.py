"""Small value types of the live runner: candles, quotes, instrument facts, decisions.

Standard library only. Times are tz-aware UTC :class:`datetime` objects. The FX facts (times on
the wire, pips, granularities, market hours) are :mod:`sep_research.fx`'s; the names re-exported
here (``parse_time``, ``fmt_time``, ``utc_now``, ``pip_size``, ``GRANULARITY_SECONDS``) are the
same objects, kept importable for the modules that use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sep_research.fx import (
    GRANULARITY_SECONDS,
    display_precision,
    fmt_time,
    parse_time,
    pip_location,
    pip_size,
    utc_now,
)

__all__ = ["GRANULARITY_SECONDS", "MAX_REASON", "RUNNER_GRANULARITIES", "Candle", "Decision",
           "InstrumentInfo", "Quote", "bounded", "fmt_time", "parse_time", "pip_size", "utc_now"]

#: characters of a reason (a halt reason, a refusal, an error) kept in the journal and shown
MAX_REASON = 500


def bounded(text: Any, limit: int = MAX_REASON) -> str:
    """``text`` as a string of at most ``limit`` characters (a longer one is cut and marked),
    so that no caller can make the runner persist or serve an unbounded text."""
    s = str(text)
    return s if len(s) <= limit else s[: max(0, limit - 20)] + f"... [{len(s)} chars]"


#: The granularities the runner trades (S5 ... D; the nominal W and M are research-only).
RUNNER_GRANULARITIES: tuple[str, ...] = tuple(g for g in GRANULARITY_SECONDS if g not in ("W", "M"))


@dataclass(frozen=True)
class InstrumentInfo:
    """What the broker boundary needs to know about an instrument."""

    name: str
    display_precision: int = 5
    pip_location: int = -4
    minimum_trade_size: float = 1.0
    maximum_order_units: float = 100_000_000.0

    @property
    def pip(self) -> float:
        return 10.0 ** self.pip_location

    @property
    def base(self) -> str:
        return self.name.split("_")[0]

    @property
    def quote(self) -> str:
        return self.name.split("_")[1]

    def price(self, value: float) -> str:
        """A price as OANDA's decimal string at the display precision."""
        if not math.isfinite(value):
            raise ValueError(f"{self.name}: price {value!r} is not finite")
        return f"{value:.{self.display_precision}f}"

    @classmethod
    def default(cls, name: str) -> InstrumentInfo:
        return cls(name, display_precision(name), pip_location(name))

    @classmethod
    def from_oanda(cls, d: dict[str, Any]) -> InstrumentInfo:
        return cls(
            name=d["name"],
            display_precision=int(d.get("displayPrecision", 5)),
            pip_location=int(d.get("pipLocation", -4)),
            minimum_trade_size=float(d.get("minimumTradeSize", 1)),
            maximum_order_units=float(d.get("maximumOrderUnits", 1e8)),
        )


@dataclass(frozen=True)
class Candle:
    """One candle: ``time`` is its start (UTC); mid OHLC always, bid/ask OHLC where known."""

    instrument: str
    time: datetime
    o: float
    h: float
    l: float  # noqa: E741 - OHLC's own letter
    c: float
    volume: int = 0
    complete: bool = True
    bid: tuple[float, float, float, float] | None = None
    ask: tuple[float, float, float, float] | None = None

    def quotes(self, half_spread: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(bid, ask) OHLC: the candle's own, else mid -/+ ``half_spread``."""
        if self.bid is not None and self.ask is not None:
            return self.bid, self.ask
        mid = (self.o, self.h, self.l, self.c)
        return tuple(x - half_spread for x in mid), tuple(x + half_spread for x in mid)

    @classmethod
    def from_oanda(cls, instrument: str, d: dict[str, Any]) -> Candle:
        """From one element of the candles endpoint's ``candles`` list."""

        def ohlc(part: dict[str, str] | None) -> tuple[float, float, float, float] | None:
            if not part:
                return None
            return (float(part["o"]), float(part["h"]), float(part["l"]), float(part["c"]))

        bid = ohlc(d.get("bid"))
        ask = ohlc(d.get("ask"))
        mid = ohlc(d.get("mid"))
        if mid is None:
            if bid is None or ask is None:
                raise ValueError(f"{instrument} candle {d.get('time')} has no mid or bid/ask")
            mid = tuple((b + a) / 2.0 for b, a in zip(bid, ask, strict=True))  # type: ignore[assignment]
        return cls(
            instrument=instrument,
            time=parse_time(d["time"]),
            o=mid[0], h=mid[1], l=mid[2], c=mid[3],
            volume=int(d.get("volume", 0)),
            complete=bool(d.get("complete", True)),
            bid=bid,
            ask=ask,
        )


@dataclass(frozen=True)
class Quote:
    """The latest price of an instrument."""

    instrument: str
    time: datetime
    bid: float
    ask: float
    tradeable: bool = True

    @property
    def spread(self) -> float:
        return self.ask - self.bid


@dataclass
class Decision:
    """What the signal path said at a candle's close: the target direction and why."""

    instrument: str
    candle_time: datetime
    action: str  # "BUY", "SELL", "HOLD" or "NONE" (no features yet)
    target: int  # +1 long, -1 short, 0 flat
    confidence: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)
