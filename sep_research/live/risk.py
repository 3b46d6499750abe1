"""Risk rules of the live runner. Each rule is configurable (``RiskConfig``) and testable alone.

:class:`RiskManager` answers two questions:

- :meth:`RiskManager.check_open`: may a new position be opened now, and with how many units?
  Rules, in order: halted, stale candle, stale quote, market closed / weekend cut-off,
  cooldown after consecutive losses, spread guard, max open positions, size (risk per trade
  and stop distance in account currency, capped by max units per order), exposure per
  currency. The first failing rule refuses the trade and names itself.
- :meth:`RiskManager.on_equity`: after each equity update, has the daily loss limit (flatten and
  halt) or the drawdown from peak equity (halt) been reached?

Closing or reducing a position is never refused by these rules except by the stale-data guard
(the runner never acts on stale data; the next fresh candle acts instead).

State that must survive a restart (halt, peak equity, day start equity, loss streak, cooldown)
is exported by :meth:`RiskManager.state` and restored by :meth:`RiskManager.restore`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sep_research.backtest.fills import fixed_fractional_units
from sep_research.fx import conversion_rate, market_open, weekly_close
from sep_research.live.config import RiskConfig
from sep_research.live.types import InstrumentInfo, Quote, bounded

__all__ = ["RiskManager", "RiskState", "Verdict", "currency_to_account", "market_open",
           "quote_to_account", "weekly_close"]


@dataclass
class Verdict:
    """A risk answer: ``ok``; the refusing ``rule`` and ``reason``; the allowed ``units``."""

    ok: bool
    rule: str = ""
    reason: str = ""
    units: int = 0

    @classmethod
    def refuse(cls, rule: str, reason: str) -> Verdict:
        return cls(False, rule, reason, 0)


@dataclass
class RiskState:
    halted: bool = False
    halt_reason: str = ""
    day: str = ""  # ISO date (UTC) of day_start_equity
    day_start_equity: float = math.nan
    peak_equity: float = math.nan
    consecutive_losses: int = 0
    cooldown_until: str = ""  # RFC3339 UTC, empty when none


# ------------------------------------------------------------------ conversion


def quote_to_account(
    info: InstrumentInfo, account_currency: str, quotes: dict[str, Quote],
    overrides: dict[str, float] | None = None,
) -> float | None:
    """Account-currency value of one unit of ``info``'s quote currency, or None if unknown."""
    return currency_to_account(info.quote, account_currency, quotes, overrides)


def currency_to_account(currency: str, account_currency: str, quotes: dict[str, Quote],
                        overrides: dict[str, float] | None = None) -> float | None:
    """:func:`sep_research.fx.conversion_rate` on the mids of the runner's quotes."""
    mids = {name: (q.bid + q.ask) / 2.0 for name, q in quotes.items()}
    return conversion_rate(currency, account_currency, mids, overrides)


# ------------------------------------------------------------------ the manager


class RiskManager:
    def __init__(self, cfg: RiskConfig, *, granularity_seconds: int,
                 account_currency: str = "USD") -> None:
        self.cfg = cfg
        self.granularity_seconds = int(granularity_seconds)
        self.account_currency = account_currency
        self.s = RiskState()
        #: instrument -> the stop-loss (pips) of its model's policy (see set_stops)
        self.stops: dict[str, float | None] = {}

    # -------------------------------------------------------------- persistence
    def state(self) -> dict[str, Any]:
        return asdict(self.s)

    def restore(self, data: dict[str, Any] | None) -> None:
        if data:
            known = {k: v for k, v in data.items() if k in RiskState.__dataclass_fields__}
            self.s = RiskState(**known)
            self.s.halt_reason = bounded(self.s.halt_reason)

    # -------------------------------------------------------------- halt
    def halt(self, reason: str) -> None:
        self.s.halted = True
        self.s.halt_reason = bounded(reason)

    def resume(self) -> None:
        self.s.halted = False
        self.s.halt_reason = ""

    # -------------------------------------------------------------- sizing
    def set_stops(self, stops: dict[str, float | None]) -> None:
        """The stop-loss (pips) of each instrument's model policy, which risk-based sizing
        divides by (the runner sets it from the artifacts at start-up and on reload)."""
        self.stops = dict(stops)

    def stop_of(self, instrument: str) -> float | None:
        return self.stops.get(instrument, self.cfg.stop_loss_pips)

    def size(self, balance: float, info: InstrumentInfo, q2a: float) -> int:
        """Units for a new position: fixed, or risk per trade over the policy's stop distance
        (0 without a stop: start-up refuses that configuration already)."""
        stop = self.stop_of(info.name)
        if self.cfg.fixed_units is not None:
            units = float(self.cfg.fixed_units)
        elif stop is None:
            return 0
        else:
            units = fixed_fractional_units(balance, self.cfg.risk_per_trade, stop, info.pip,
                                           q2a)
        units = min(units, float(self.cfg.max_units_per_order), info.maximum_order_units)
        return int(units)

    # -------------------------------------------------------------- rules
    def stale_candle(self, candle_time: datetime, now: datetime) -> Verdict | None:
        end = candle_time + timedelta(seconds=self.granularity_seconds)
        age = (now - end).total_seconds()
        if age > self.cfg.stale_candle_s:
            return Verdict.refuse("stale_data", f"candle closed {age:.1f}s ago (limit "
                                  f"{self.cfg.stale_candle_s:g}s)")
        return None

    def stale_quote(self, quote: Quote | None, now: datetime) -> Verdict | None:
        if quote is None:
            return None
        age = (now - quote.time).total_seconds()
        if age > self.cfg.stale_quote_s:
            return Verdict.refuse("stale_data", f"latest price is {age:.1f}s old (limit "
                                  f"{self.cfg.stale_quote_s:g}s)")
        return None

    def check_close(self, candle_time: datetime, now: datetime) -> Verdict:
        return self.stale_candle(candle_time, now) or Verdict(True)

    def check_open(
        self,
        info: InstrumentInfo,
        direction: int,
        *,
        now: datetime,
        candle_time: datetime,
        balance: float,
        quote: Quote | None,
        quotes: dict[str, Quote],
        open_positions: list[dict[str, Any]],
    ) -> Verdict:
        """May a position of ``direction`` in ``info.name`` be opened? With how many units?"""
        cfg = self.cfg
        if self.s.halted:
            return Verdict.refuse("halted", f"trading is halted: {self.s.halt_reason}")
        for v in (self.stale_candle(candle_time, now), self.stale_quote(quote, now)):
            if v is not None:
                return v
        if quote is not None and not quote.tradeable:
            return Verdict.refuse("market_closed", f"{info.name} is not tradeable now")
        if not market_open(now):
            return Verdict.refuse("market_closed", "the FX market is closed (weekend)")
        if cfg.weekend_cutoff_minutes is not None:
            left = (weekly_close(now) - now).total_seconds() / 60.0
            if left < cfg.weekend_cutoff_minutes:
                return Verdict.refuse("weekend", f"{left:.0f} min to the weekly close (no new "
                                      f"positions within {cfg.weekend_cutoff_minutes} min)")
        if self.s.cooldown_until:
            until = datetime.fromisoformat(self.s.cooldown_until)
            if now < until:
                return Verdict.refuse("cooldown", f"{self.s.consecutive_losses} consecutive "
                                      f"losses: no new positions until {self.s.cooldown_until}")
        if cfg.max_spread_pips is not None and quote is not None:
            spread = quote.spread / info.pip
            if spread > cfg.max_spread_pips:
                return Verdict.refuse("spread", f"spread {spread:.1f} pips > "
                                      f"{cfg.max_spread_pips:g}")
        if len(open_positions) >= cfg.max_open_positions:
            return Verdict.refuse("max_open_positions", f"{len(open_positions)} positions open "
                                  f"(limit {cfg.max_open_positions})")
        q2a = quote_to_account(info, self.account_currency, quotes, cfg.quote_to_account)
        if q2a is None:
            return Verdict.refuse("conversion", f"no price to convert {info.quote} to "
                                  f"{self.account_currency}: add risk.quote_to_account."
                                  f"{info.quote} or trade a pair that gives it")
        units = self.size(balance, info, q2a)
        if units < max(1, info.minimum_trade_size):
            stop = self.stop_of(info.name)
            return Verdict.refuse("size", f"size {units} units is below the minimum (balance "
                                  f"{balance:.2f}, stop "
                                  f"{'none' if stop is None else f'{stop:g} pips'})")
        if cfg.max_exposure_per_currency is not None:
            v = self._exposure(info, direction, units, quote, quotes, open_positions)
            if v is not None:
                return v
        return Verdict(True, units=units)

    def _exposure(self, info: InstrumentInfo, direction: int, units: int, quote: Quote | None,
                  quotes: dict[str, Quote], open_positions: list[dict[str, Any]]
                  ) -> Verdict | None:
        """Net exposure per currency in account currency, including the new position."""
        exp: dict[str, float] = {}

        def add(instrument: str, signed_units: float, price: float) -> None:
            base, q = instrument.split("_")
            inf = InstrumentInfo.default(instrument)
            q2a = quote_to_account(inf, self.account_currency, quotes,
                                   self.cfg.quote_to_account) or 0.0
            value = signed_units * price * q2a
            exp[base] = exp.get(base, 0.0) + value
            exp[q] = exp.get(q, 0.0) - value

        for p in open_positions:
            qp = quotes.get(p["instrument"])
            price = (qp.bid + qp.ask) / 2.0 if qp else float(p["entry_price"])
            add(p["instrument"], float(p["units"]), price)
        price = (quote.bid + quote.ask) / 2.0 if quote else math.nan
        if math.isnan(price):
            return None
        add(info.name, direction * units, price)
        limit = float(self.cfg.max_exposure_per_currency or math.inf)
        for ccy in (info.base, info.quote):
            if ccy == self.account_currency:
                continue
            if abs(exp.get(ccy, 0.0)) > limit:
                return Verdict.refuse("exposure", f"{ccy} exposure would be "
                                      f"{abs(exp[ccy]):.0f} {self.account_currency} "
                                      f"(limit {limit:.0f})")
        return None

    # -------------------------------------------------------------- outcomes
    def on_trade_closed(self, pl: float, now: datetime) -> str | None:
        """Count the loss streak; start a cooldown when it reaches the limit (returns why)."""
        if pl < 0:
            self.s.consecutive_losses += 1
        else:
            self.s.consecutive_losses = 0
        n = self.cfg.cooldown_losses
        if n is not None and self.s.consecutive_losses >= n:
            until = now + timedelta(seconds=self.cfg.cooldown_candles * self.granularity_seconds)
            self.s.cooldown_until = until.isoformat()
            self.s.consecutive_losses = 0
            return f"{n} consecutive losses: cooldown until {self.s.cooldown_until}"
        return None

    def on_equity(self, nav: float, now: datetime) -> tuple[str, str] | None:
        """Update day-start and peak equity; return ("flatten_halt"|"halt", reason) when a
        limit is reached (only the first time: a halted runner is not halted again)."""
        today = now.date().isoformat()
        if self.s.day != today or math.isnan(self.s.day_start_equity):
            self.s.day = today
            self.s.day_start_equity = nav
        if math.isnan(self.s.peak_equity) or nav > self.s.peak_equity:
            self.s.peak_equity = nav
        if self.s.halted:
            return None
        cfg = self.cfg
        if cfg.daily_loss_limit is not None and self.s.day_start_equity > 0:
            loss = (self.s.day_start_equity - nav) / self.s.day_start_equity
            if loss >= cfg.daily_loss_limit:
                reason = (f"daily loss {loss:.2%} reached the limit {cfg.daily_loss_limit:.2%}"
                          f" (day start equity {self.s.day_start_equity:.2f}, now {nav:.2f})")
                self.halt(reason)
                return "flatten_halt", reason
        if cfg.max_drawdown is not None and self.s.peak_equity > 0:
            dd = (self.s.peak_equity - nav) / self.s.peak_equity
            if dd >= cfg.max_drawdown:
                reason = (f"drawdown {dd:.2%} from peak equity {self.s.peak_equity:.2f} reached "
                          f"the limit {cfg.max_drawdown:.2%}")
                self.halt(reason)
                return "halt", reason
        return None
