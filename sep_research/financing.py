"""Overnight financing of FX positions: OANDA's rule and rates, stated once.

Standard library only: the backtest (research), the emulator and the live runner import the same
rule (``tests/test_artifact.py`` keeps this module free of numpy, numba and pandas).

The rule (what OANDA documents)
-------------------------------
* **When:** a position open at the end of OANDA's trading day, **17:00 New York**
  (:func:`sep_research.fx.next_rollover`; 21:00Z in summer, 22:00Z in winter), is charged or
  credited financing for that day. A position opened and closed between two rollovers pays none.
  [OANDA, "Financing costs": "If you have an open position on your account at the end of each
  trading day (5pm ET), the position is considered to be held overnight and subject to either a
  'financing cost' or 'financing credit'".]
* **How many days:** each rollover charges a whole number of days, by the New York weekday whose
  trading day it ends: OANDA's v20 instrument definition carries them as
  ``financing.financingDaysOfWeek: [{"dayOfWeek": "WEDNESDAY", "daysCharged": 3}, ...]``
  (``FinancingDayOfWeek``: "the number of days worth of financing to be charged on
  dayOfWeek"). Spot FX settles two business days after the trade, so Wednesday's roll moves
  settlement from Friday over the weekend to Monday and charges **three days**; Saturday and
  Sunday charge none (:data:`DEFAULT_DAYS_CHARGED`, seven days a week in all). [OANDA,
  "Financing costs affected by holidays and weekends": FX trades settle T+2, "if you hold a
  position on Wednesday at 5 p.m., the funding rate will typically be three times" the daily
  one.] Holidays that move settlement change the days of a given week; the defaults know no
  holidays, OANDA's fetched schedule does.
* **How much:** ``financing = position value x annual rate x days / 365``, with ``position value
  = units x price at 17:00 New York`` (in the quote currency), converted to the account currency.
  [OANDA: "Financing cost or credit = position value x applicable funding rate x 1/365";
  worked example: long 100 000 EUR/USD at 1.15826 with a long rate of -3.00 %:
  (100 000 x 1.15826) x -3.00 % x 1/365 = -9.52 USD, a test here.] Long positions use the
  ``longRate``, short ones the ``shortRate`` (v20 ``InstrumentFinancing``; decimals, 5 % = 0.05,
  **negative = a charge, positive = a credit**). Per unit of position this is
  ``price x rate x days / 365`` in the quote currency, ``/ pip`` in pips (:func:`pips`).
* **The price**: the backtest values the position at the mid close of the candle before the
  rollover (for candles aligned to the hour, the price at 17:00 New York itself).

Rates
-----
* **From OANDA** when fetched: ``sep data rates --instrument EUR_USD`` reads the account's
  instruments endpoint (``GET /v3/accounts/{id}/instruments``, whose ``financing`` object holds
  ``longRate``, ``shortRate`` and ``financingDaysOfWeek``) and stores them, with their source and
  the time obtained, in ``financing.json`` in the candle cache folder (:func:`save_fetched`,
  :func:`load_fetched`); :func:`from_oanda` parses one instrument's object. OANDA's rates change
  daily; a fetched rate is today's, and says so.
* **Else the default table** (:func:`default_rates`), **indicative only**: OANDA's FX funding
  rates are tom-next swap rates less an admin fee of 1.00 % a year for most pairs [OANDA,
  "How we calculate funding rates": "Other pairs 1.00%"; 2 % for CZK, HUF, SAR, THB, ZAR, 4 %
  for TRY]. The table approximates the tom-next differential by the central banks' policy rates
  (:data:`POLICY_RATES`, the rate in force on the snapshot's date: Federal Reserve target range
  midpoint, ECB deposit facility, BoJ, BoE Bank Rate, SNB policy rate, RBA cash rate, BoC
  overnight target, RBNZ OCR), so that for ``BASE_QUOTE`` ``long = r_base - r_quote - fee`` and
  ``short = r_quote - r_base - fee``. The snapshot used is the latest at or before the data's
  first candle (the earliest for older data), and its date is in the source label
  (``"default-table:2025-07-01"``).

In the strategy spec (:class:`sep_research.strategy.CostModel`) financing is stored as
:meth:`FinancingRates.to_dict`::

    {"source": "default-table:2025-07-01", "long_rate": -0.03375, "short_rate": 0.01375,
     "days": {"MONDAY": 1, "TUESDAY": 1, "WEDNESDAY": 3, "THURSDAY": 1, "FRIDAY": 1,
              "SATURDAY": 0, "SUNDAY": 0}}

and ``null`` only where financing is explicitly off.

For the emulator and the runner
-------------------------------
Charge financing where the clock passes a rollover, with the functions the backtest uses:

* ``for r in rollovers(previous_time, now):`` (UTC datetimes; each 17:00 New York instant ``r``
  with ``previous_time < r <= now``), ``days = rates.days_charged(r)``; skip ``days == 0``.
* for each position open just before ``r`` (a fill at ``r`` itself, at the open of the candle
  that starts at the rollover, comes after it: a position closed there pays, one opened there
  does not), of signed ``units``, valued at ``price`` = the mid close of the candle that ends
  at ``r`` (the last price before it; what the backtest uses, so that the two agree):
  ``amount = rates.amount(units, price, days, quote_to_account=...)`` in the account currency
  (OANDA's ``DAILY_FINANCING`` transaction's ``financing``; add it to the balance and to the
  trade's and the account's ``financing``), and ``rates.pips(units, price, days, pip=...)`` for
  a journal in pips.
* the rates themselves: the artifact's ``costs.financing``
  (``FinancingRates.from_dict(artifact["costs"]["financing"])``, or
  ``StrategySpec.from_artifact(artifact).costs.financing``), else
  :func:`default_rates` for an instrument and date; :meth:`FinancingRates.to_oanda` gives the
  v20 ``financing`` object an emulated instruments endpoint serves.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sep_research import fx

#: New York weekdays in :meth:`datetime.weekday` order (v20 ``DayOfWeek`` names)
DAYS_OF_WEEK = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
#: days of financing charged at the rollover that ends each New York weekday's trading day
DEFAULT_DAYS_CHARGED: dict[str, int] = {"MONDAY": 1, "TUESDAY": 1, "WEDNESDAY": 3,
                                        "THURSDAY": 1, "FRIDAY": 1, "SATURDAY": 0, "SUNDAY": 0}
#: the day count of OANDA's annual rates
DAYS_PER_YEAR = 365.0
#: OANDA's admin fee on the funding rate of most FX pairs (a year, decimal)
ADMIN_FEE = 0.01
#: largest annual rate accepted (100 % a year), either sign
MAX_RATE = 1.0
#: the file in the candle cache folder that holds rates fetched from OANDA
FETCHED_FILE = "financing.json"

#: Central-bank policy rates (decimal, a year) in force on each snapshot date; the source of the
#: indicative default rates (see the module docstring). USD: the midpoint of the Federal funds
#: target range (1.00-1.25 % after 14 June 2017; 4.25-4.50 % after 18 December 2024).
POLICY_RATES: dict[str, dict[str, float]] = {
    "2017-07-01": {"USD": 0.01125, "EUR": -0.0040, "JPY": -0.0010, "GBP": 0.0025,
                   "CHF": -0.0075, "AUD": 0.0150, "CAD": 0.0050, "NZD": 0.0175},
    "2025-07-01": {"USD": 0.04375, "EUR": 0.0200, "JPY": 0.0050, "GBP": 0.0425,
                   "CHF": 0.0000, "AUD": 0.0385, "CAD": 0.0275, "NZD": 0.0325},
}


class FinancingError(ValueError):
    """Bad financing rates or a currency without a default; the message names the value."""


def _check_rate(value: Any, key: str) -> float:
    from sep_research.strategy import check_number

    return check_number(value, key, minimum=-MAX_RATE, maximum=MAX_RATE)


def _check_days(days: Any, key: str) -> tuple[int, ...]:
    from sep_research.strategy import check_int, check_keys

    d = check_keys(days, key, required=DAYS_OF_WEEK)
    return tuple(check_int(d[name], f"{key}.{name}", minimum=0, maximum=7)
                 for name in DAYS_OF_WEEK)


@dataclass(frozen=True)
class FinancingRates:
    """One instrument's financing: annual long and short rates (decimal; negative = charge),
    the days charged at the rollover ending each New York weekday (Monday first), and where
    the rates came from."""

    long_rate: float
    short_rate: float
    days: tuple[int, ...] = tuple(DEFAULT_DAYS_CHARGED[d] for d in DAYS_OF_WEEK)
    source: str = "explicit"

    def __post_init__(self) -> None:
        from sep_research.strategy import SpecError

        try:
            object.__setattr__(self, "long_rate", _check_rate(self.long_rate,
                                                              "financing.long_rate"))
            object.__setattr__(self, "short_rate", _check_rate(self.short_rate,
                                                               "financing.short_rate"))
            days = self.days
            if isinstance(days, Mapping):
                days = _check_days(days, "financing.days")
            elif not (isinstance(days, tuple) and len(days) == 7):
                raise FinancingError("financing.days: expected 7 day counts (MONDAY .. SUNDAY)"
                                     f", got {days!r}")
            else:
                _check_days(dict(zip(DAYS_OF_WEEK, days, strict=True)), "financing.days")
            object.__setattr__(self, "days", tuple(int(x) for x in days))
        except SpecError as exc:
            raise FinancingError(str(exc)) from None
        if not isinstance(self.source, str) or not 0 < len(self.source) <= 200:
            raise FinancingError(f"financing.source: expected a non-empty string of at most 200 "
                                 f"characters, got {self.source!r}")

    # ------------------------------------------------------------ the rule

    def rate(self, direction: int) -> float:
        """The annual rate of a long (``direction > 0``) or short (``< 0``) position."""
        if direction > 0:
            return self.long_rate
        if direction < 0:
            return self.short_rate
        raise FinancingError("direction: must be +1 (long) or -1 (short), got 0")

    def days_charged(self, rollover: datetime) -> int:
        """Days charged at ``rollover`` (a 17:00 New York instant, UTC): by the New York
        weekday whose trading day it ends."""
        return self.days[fx.new_york_wall(rollover).weekday()]

    def amount(self, units: float, price: float, days: float, *,
               quote_to_account: float = 1.0) -> float:
        """Financing of a position of signed ``units`` held through rollovers charging ``days``
        days, valued at ``price``: ``|units| x price x rate x days / 365 x quote_to_account``
        in the account currency (negative: a charge)."""
        if units == 0 or days == 0:
            return 0.0
        return per_unit(price, self.rate(1 if units > 0 else -1), days) * abs(units) * \
            quote_to_account

    def pips(self, units: float, price: float, days: float, *, pip: float) -> float:
        """The same financing per unit of position in pips: ``price x rate x days / 365 / pip``
        (the units only choose the rate)."""
        if units == 0 or days == 0:
            return 0.0
        return pips(price, self.rate(1 if units > 0 else -1), days, pip=pip)

    def annual_days(self) -> int:
        return sum(self.days)

    # ------------------------------------------------------------ forms

    def describe(self) -> str:
        return (f"financing long {100 * self.long_rate:+.2f} %/yr, short "
                f"{100 * self.short_rate:+.2f} %/yr at 17:00 New York "
                f"({'/'.join(str(d) for d in self.days[:5])} days Mon-Fri; "
                f"{self.source}{', indicative' if self.source.startswith('default') else ''})")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "long_rate": self.long_rate,
                "short_rate": self.short_rate,
                "days": dict(zip(DAYS_OF_WEEK, self.days, strict=True))}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "financing") -> FinancingRates:
        """Strict: exactly ``source``, ``long_rate``, ``short_rate`` and ``days`` (all seven
        weekdays, integers 0..7); rates are finite numbers within +/-1 (100 % a year). Errors
        name the key (:class:`sep_research.strategy.SpecError`)."""
        from sep_research.strategy import SpecError, check_keys

        d = check_keys(data, where, required=("source", "long_rate", "short_rate", "days"))
        if not isinstance(d["source"], str) or not 0 < len(d["source"]) <= 200:
            raise SpecError(f"{where}.source: expected a non-empty string of at most 200 "
                            f"characters, got {d['source']!r}"[:300])
        return cls(long_rate=_check_rate(d["long_rate"], f"{where}.long_rate"),
                   short_rate=_check_rate(d["short_rate"], f"{where}.short_rate"),
                   days=_check_days(d["days"], f"{where}.days"), source=d["source"])

    def to_oanda(self) -> dict[str, Any]:
        """The v20 ``InstrumentFinancing`` object (decimal strings) of these rates."""
        return {"longRate": _decimal(self.long_rate), "shortRate": _decimal(self.short_rate),
                "financingDaysOfWeek": [{"dayOfWeek": name, "daysCharged": n}
                                        for name, n in zip(DAYS_OF_WEEK, self.days,
                                                           strict=True)]}


def _decimal(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".") if x != 0 else "0"


def per_unit(price: float, rate: float, days: float) -> float:
    """Financing of one unit valued at ``price`` held through ``days`` days at the annual
    ``rate``, in the quote currency: ``price x rate x days / 365``. The one statement of the
    formula: the numba backtest compiles this function as it stands (plain arithmetic)."""
    return price * rate * days / DAYS_PER_YEAR


def pips(price: float, rate: float, days: float, *, pip: float) -> float:
    """Financing of one unit held through ``days`` days at ``rate``, in pips:
    ``price x rate x days / 365 / pip``."""
    return per_unit(price, rate, days) / pip


# ------------------------------------------------------------ when


def _utc(t: datetime, name: str) -> datetime:
    if not isinstance(t, datetime) or t.tzinfo is None:
        raise FinancingError(f"{name}: expected a timezone-aware datetime, got {t!r}")
    return t.astimezone(UTC)


def rollovers(start: datetime, end: datetime) -> list[datetime]:
    """Every rollover (17:00 New York, in UTC) ``r`` with ``start < r <= end``: the ones a
    position held from ``start`` to ``end`` is held through."""
    t0, t1 = _utc(start, "start"), _utc(end, "end")
    out: list[datetime] = []
    r = fx.next_rollover(t0)
    if r == t0:
        r = fx.next_rollover(t0 + timedelta(seconds=1))
    while r <= t1:
        out.append(r)
        r = fx.next_rollover(r + timedelta(seconds=1))
    return out


def days_between(rates: FinancingRates, start: datetime, end: datetime) -> int:
    """Days charged on a position held from ``start`` to ``end`` (rollovers in between)."""
    return sum(rates.days_charged(r) for r in rollovers(start, end))


# ------------------------------------------------------------ where the rates come from


def _snapshot(at: date | datetime | None) -> str:
    dates = sorted(POLICY_RATES)
    if at is None:
        return dates[-1]
    day = (at.astimezone(UTC).date() if isinstance(at, datetime) and at.tzinfo is not None
           else at.date() if isinstance(at, datetime) else at)
    before = [d for d in dates if date.fromisoformat(d) <= day]
    return before[-1] if before else dates[0]


def default_rates(instrument: str, at: date | datetime | None = None) -> FinancingRates:
    """Indicative rates of ``instrument`` from the policy-rate snapshot in force at ``at``
    (the latest at or before it, the earliest for older dates; None: the latest), less
    :data:`ADMIN_FEE` on both sides, with :data:`DEFAULT_DAYS_CHARGED`. Raises
    :class:`FinancingError` naming a currency the table does not hold."""
    base, quote = fx.currencies(instrument)
    snap = _snapshot(at)
    table = POLICY_RATES[snap]
    for ccy in (base, quote):
        if ccy not in table:
            raise FinancingError(
                f"financing: no default rate for {ccy} (instrument {instrument}; the table "
                f"holds {', '.join(sorted(table))}): fetch OANDA's rates (sep data rates "
                f"--instrument {instrument}) or turn financing off explicitly")
    diff = table[base] - table[quote]
    return FinancingRates(long_rate=round(diff - ADMIN_FEE, 6),
                          short_rate=round(-diff - ADMIN_FEE, 6), source=f"default-table:{snap}")


def from_oanda(financing: Any, *, source: str, instrument: str = "instrument"
               ) -> FinancingRates:
    """Rates from the ``financing`` object of an OANDA v20 instrument (``longRate`` and
    ``shortRate`` as decimal strings, ``financingDaysOfWeek`` a list of ``{dayOfWeek,
    daysCharged}``; a weekday left out charges 0 days). Raises :class:`FinancingError`."""
    where = f"{instrument}.financing"
    if not isinstance(financing, Mapping):
        raise FinancingError(f"{where}: the instrument has no financing object")
    rates = []
    for key in ("longRate", "shortRate"):
        v = financing.get(key)
        try:
            x = float(v) if isinstance(v, (str, int, float)) and not isinstance(v, bool) \
                else math.nan
        except ValueError:
            x = math.nan
        if not math.isfinite(x):
            raise FinancingError(f"{where}.{key}: expected a decimal rate, got {v!r}"[:200])
        rates.append(x)
    dow = financing.get("financingDaysOfWeek")
    if not isinstance(dow, list):
        raise FinancingError(f"{where}.financingDaysOfWeek: expected a list, got {dow!r}"[:200])
    days = dict.fromkeys(DAYS_OF_WEEK, 0)
    for item in dow:
        name = item.get("dayOfWeek") if isinstance(item, Mapping) else None
        n = item.get("daysCharged") if isinstance(item, Mapping) else None
        if name not in days or isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 7:
            raise FinancingError(f"{where}.financingDaysOfWeek: bad entry {item!r}"[:200])
        days[name] = n
    return FinancingRates(long_rate=rates[0], short_rate=rates[1],
                          days=tuple(days[d] for d in DAYS_OF_WEEK), source=source)


def save_fetched(folder: str | os.PathLike[str], instrument: str, rates: FinancingRates,
                 *, obtained: str) -> Path:
    """Store fetched rates for ``instrument`` in ``folder/financing.json`` (other instruments'
    entries kept; written to a temporary file and renamed)."""
    from sep_research._util import atomic_write_bytes

    path = Path(folder) / FETCHED_FILE
    table = _read_fetched(path)
    table[fx.check_instrument(instrument)] = {**rates.to_dict(), "obtained": obtained}
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(table, sort_keys=True, indent=1) + "\n").encode())
    return path


def _read_fetched(path: Path) -> dict[str, Any]:
    from sep_research._util import JsonInputError, loads_json

    if not path.is_file():
        return {}
    try:
        data = loads_json(path.read_bytes(), what=str(path), max_bytes=1 << 20)
    except (OSError, JsonInputError) as exc:
        raise FinancingError(f"{path}: cannot read fetched financing rates: {exc}") from None
    if not isinstance(data, dict):
        raise FinancingError(f"{path}: expected an object of instruments")
    return data


def load_fetched(folder: str | os.PathLike[str], instrument: str) -> FinancingRates | None:
    """Rates fetched from OANDA for ``instrument`` (:func:`save_fetched`), or None."""
    path = Path(folder) / FETCHED_FILE
    entry = _read_fetched(path).get(instrument)
    if entry is None:
        return None
    from sep_research.strategy import SpecError

    entry = dict(entry) if isinstance(entry, Mapping) else entry
    obtained = entry.pop("obtained", None) if isinstance(entry, dict) else None
    try:
        rates = FinancingRates.from_dict(entry, where=f"{path}:{instrument}")
    except SpecError as exc:
        raise FinancingError(str(exc)) from None
    if obtained and "obtained" not in rates.source:
        rates = FinancingRates(rates.long_rate, rates.short_rate, rates.days,
                               f"{rates.source} (obtained {obtained})"[:200])
    return rates


def rates_for(instrument: str, *, at: date | datetime | None = None,
              folder: str | os.PathLike[str] | None = None) -> FinancingRates:
    """Rates OANDA gave for ``instrument`` when they were fetched into ``folder``, else the
    indicative :func:`default_rates` at ``at``."""
    if folder is not None:
        fetched = load_fetched(folder, instrument)
        if fetched is not None:
            return fetched
    return default_rates(instrument, at)
