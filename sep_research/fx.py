"""FX facts that research and live both need, stated once: instruments and their pip,
granularities, times on the wire, market hours and currency conversion.

Standard library only, so that the live runner, the emulator and the research code import the
same rules (``tests/test_import_boundaries.py`` keeps the live runner free of numba, pandas and
matplotlib). Every other module uses these instead of a copy of its own.

- **Pip**: one meaning everywhere, *price per pip* (0.0001 for EUR_USD, 0.01 for USD_JPY):
  :func:`pip_size`. A price difference ``d`` is ``d / pip`` pips; numeric kernels that multiply
  take :func:`pips_per_unit` (``1 / pip``, exactly 10000.0 and 100.0 for the two cases).
- **Times**: tz-aware UTC. :func:`parse_time_ns` is the one parser (RFC3339 with up to 9
  fractional digits and ``Z`` or an offset, a date alone, or UNIX ``"seconds.fraction"``);
  :func:`parse_time` returns a :class:`~datetime.datetime`, :func:`fmt_time` writes OANDA's
  RFC3339 with 9 fractional digits. Times outside :data:`MIN_TIME_NS` .. :data:`MAX_TIME_NS`
  and non-finite numbers are refused with a :class:`FxError` that names the value's field.
- **Market hours**: the FX week runs from Sunday 17:00 to Friday 17:00 New York time
  (:func:`market_open`, :func:`weekly_close`); New York's UTC offset follows the US rules in
  force since 2007 (:func:`new_york_offset`), so no time-zone database is needed. OANDA's
  trading day ends at 17:00 New York (:func:`next_rollover`).
- **Conversion**: :func:`conversion_rate` values one unit of a quote currency in the account
  currency from mid prices (direct pair, else the inverse pair, else an explicit override).
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

NS = 1_000_000_000

#: OANDA granularities and their nominal length in seconds (D, W and M are nominal).
GRANULARITY_SECONDS: dict[str, int] = {
    "S5": 5, "S10": 10, "S15": 15, "S30": 30,
    "M1": 60, "M2": 120, "M4": 240, "M5": 300, "M10": 600, "M15": 900, "M30": 1800,
    "H1": 3600, "H2": 7200, "H3": 10800, "H4": 14400, "H6": 21600, "H8": 28800,
    "H12": 43200, "D": 86400, "W": 604800, "M": 2592000,
}

#: Earliest and latest times accepted anywhere (1970-01-01 and 2100-01-01 UTC).
MIN_TIME_NS = 0
MAX_TIME_NS = calendar.timegm((2100, 1, 1, 0, 0, 0)) * NS

_INSTRUMENT_RE = re.compile(r"^[A-Z0-9]{2,10}_[A-Z0-9]{2,10}$")
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_UNIX = re.compile(r"^\d{1,12}(?:\.\d{1,9})?$")


class FxError(ValueError):
    """A value that is not a valid instrument, time or rate; the message names its field."""


# ------------------------------------------------------------------ instruments and pips


def check_instrument(instrument: Any, *, name: str = "instrument") -> str:
    """An OANDA instrument name (two codes joined by ``_``, e.g. ``EUR_USD``), or FxError."""
    if not isinstance(instrument, str) or not _INSTRUMENT_RE.match(instrument):
        shown = instrument if isinstance(instrument, str) and len(instrument) <= 40 else (
            f"<{type(instrument).__name__} of length {len(instrument)}>"
            if isinstance(instrument, str) else f"<{type(instrument).__name__}>")
        raise FxError(f"{name}: {shown!r} is not an OANDA instrument name such as 'EUR_USD'")
    return instrument


def currencies(instrument: str) -> tuple[str, str]:
    """(base, quote) of an instrument: ``EUR_USD`` -> ``("EUR", "USD")``."""
    base, quote = check_instrument(instrument).split("_")
    return base, quote


def pip_location(instrument: str) -> int:
    """OANDA's ``pipLocation``: -2 for JPY-quoted pairs, else -4."""
    return -2 if currencies(instrument)[1] == "JPY" else -4


def pip_size(instrument: str) -> float:
    """Price per pip: 0.01 for JPY-quoted pairs, else 0.0001 (``10 ** pipLocation``)."""
    return 0.01 if pip_location(instrument) == -2 else 0.0001


def pips_per_unit(pip: float) -> float:
    """Pips per unit of price, ``1 / pip`` (10000.0 for a pip of 0.0001, exactly)."""
    if not (isinstance(pip, (int, float)) and math.isfinite(pip) and pip > 0):
        raise FxError(f"pip: must be a finite price per pip > 0, got {pip!r}")
    return 1.0 / float(pip)


def display_precision(instrument: str) -> int:
    """Decimals OANDA quotes the instrument with: 3 for JPY-quoted pairs, else 5."""
    return 3 if pip_location(instrument) == -2 else 5


def check_granularity(granularity: Any) -> str:
    if not isinstance(granularity, str) or granularity not in GRANULARITY_SECONDS:
        raise FxError(f"unknown granularity {granularity!r} "
                      f"(known: {', '.join(GRANULARITY_SECONDS)})")
    return granularity


# ------------------------------------------------------------------ times


def _check_range(ns: int, name: str, value: Any) -> int:
    if not MIN_TIME_NS <= ns < MAX_TIME_NS:
        raise FxError(f"{name}: time {_shown(value)} is outside 1970-01-01 .. 2100-01-01")
    return ns


def _shown(value: Any) -> str:
    s = repr(value)
    return s if len(s) <= 40 else s[:37] + "..."


def parse_time_ns(value: Any, *, name: str = "time", naive: str = "utc") -> int:
    """Nanoseconds since the epoch (UTC) from an RFC3339 string, a date, UNIX seconds
    (a number or ``"1497466233.049880709"``), an aware :class:`datetime` or a pandas
    Timestamp. ``naive``: ``"utc"`` reads a string or datetime without an offset as UTC,
    ``"error"`` refuses it. Raises :class:`FxError` naming ``name``."""
    if naive not in ("utc", "error"):
        raise ValueError(f"naive must be 'utc' or 'error', got {naive!r}")
    if isinstance(value, bool) or value is None:
        raise FxError(f"{name}: {_shown(value)} is not a time")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            if naive == "error":
                raise FxError(f"{name}: naive datetime {_shown(value)}: times must be "
                              "timezone-aware UTC")
            value = value.replace(tzinfo=UTC)
        ns = getattr(value, "value", None)  # pandas Timestamp keeps nanoseconds here
        if not isinstance(ns, int):
            v = value.astimezone(UTC)
            ns = calendar.timegm(v.timetuple()) * NS + v.microsecond * 1000
        return _check_range(ns, name, value)
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise FxError(f"{name}: {_shown(value)} is not a finite time")
        if abs(value) >= MAX_TIME_NS / NS:
            raise FxError(f"{name}: time {_shown(value)} is outside 1970-01-01 .. 2100-01-01")
        return _check_range(round(float(value) * NS), name, value)
    if not isinstance(value, str):
        raise FxError(f"{name}: cannot read a time from {type(value).__name__}")
    s = value.strip()
    if len(s) > 64:
        raise FxError(f"{name}: {_shown(value)} is not a time")
    if _UNIX.match(s):
        whole, _, frac = s.partition(".")
        return _check_range(int(whole) * NS + int((frac or "0").ljust(9, "0")), name, value)
    m = _RFC3339.match(s)
    if not m:
        raise FxError(f"{name}: {_shown(value)} is not an RFC3339 or UNIX time")
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    try:
        datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0))  # noqa: DTZ001 - validates the fields only
    except ValueError:
        raise FxError(f"{name}: {_shown(value)} is not a valid date and time") from None
    if tz is None and naive == "error":
        raise FxError(f"{name}: {_shown(value)} has no timezone (use Z for UTC)")
    sec = calendar.timegm((int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0)))
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        sec -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return _check_range(sec * NS + int((frac or "0").ljust(9, "0")), name, value)


def parse_time(value: Any, *, name: str = "time", naive: str = "utc") -> datetime:
    """:func:`parse_time_ns` as a UTC :class:`datetime` (microseconds; nanoseconds dropped)."""
    return from_ns(parse_time_ns(value, name=name, naive=naive))


def from_ns(ns: int) -> datetime:
    sec, rem = divmod(int(ns), NS)
    return datetime.fromtimestamp(sec, UTC) + timedelta(microseconds=rem // 1000)


def to_ns(value: Any) -> int:
    """Any time-like to nanoseconds: an int is taken as nanoseconds already; naive refused."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return parse_time_ns(value, naive="error")


def fmt_time(value: datetime | int, *, unix: bool = False) -> str:
    """OANDA's RFC3339 with 9 fractional digits (or ``"seconds.nanoseconds"`` with ``unix``);
    ``value`` is an aware datetime or integer nanoseconds."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise FxError("naive datetime: times must be timezone-aware UTC")
        ns = to_ns(value)
    else:
        ns = int(value)
    sec, frac = divmod(ns, NS)
    if unix:
        return f"{sec}.{frac:09d}"
    t = datetime.fromtimestamp(sec, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{frac:09d}Z"


def utc_now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------ market hours


def _nth_sunday(year: int, month: int, n: int) -> date:
    d = date(year, month, 1)
    first = d + timedelta(days=(6 - d.weekday()) % 7)
    return first + timedelta(weeks=n - 1)


def new_york_offset(t: datetime) -> timedelta:
    """UTC offset of America/New_York at ``t`` (US rules since 2007; no tz database needed)."""
    y = t.astimezone(UTC).year
    start = datetime.combine(_nth_sunday(y, 3, 2), datetime.min.time(), UTC) + \
        timedelta(hours=7)  # 02:00 EST = 07:00Z
    end = datetime.combine(_nth_sunday(y, 11, 1), datetime.min.time(), UTC) + \
        timedelta(hours=6)  # 02:00 EDT = 06:00Z
    return timedelta(hours=-4) if start <= t < end else timedelta(hours=-5)


def new_york_wall(t: datetime) -> datetime:
    """New York wall-clock time at ``t`` as a naive datetime."""
    return (t.astimezone(UTC) + new_york_offset(t)).replace(tzinfo=None)


def _from_new_york(wall: datetime) -> datetime:
    """UTC instant of a New York wall time (at 17:00, never inside a DST change)."""
    guess = wall.replace(tzinfo=UTC) + timedelta(hours=5)
    return wall.replace(tzinfo=UTC) - new_york_offset(guess)


def market_open(t: datetime) -> bool:
    """FX trades from Sunday 17:00 to Friday 17:00 New York time."""
    ny = new_york_wall(t)
    wd, hour = ny.weekday(), ny.hour
    if wd == 5:
        return False
    if wd == 4 and hour >= 17:
        return False
    return not (wd == 6 and hour < 17)


def weekly_close(t: datetime) -> datetime:
    """The next FX weekly close at or after ``t``: Friday 17:00 New York, in UTC."""
    ny = new_york_wall(t)
    fri = (ny + timedelta(days=(4 - ny.weekday()) % 7)).replace(hour=17, minute=0, second=0,
                                                               microsecond=0)
    if fri < ny:
        fri += timedelta(days=7)
    return _from_new_york(fri)


def next_rollover(t: datetime) -> datetime:
    """The end of OANDA's trading day at or after ``t``: the next 17:00 New York, in UTC."""
    ny = new_york_wall(t)
    r = ny.replace(hour=17, minute=0, second=0, microsecond=0)
    if r < ny:
        r += timedelta(days=1)
    return _from_new_york(r)


# ------------------------------------------------------------------ conversion


def conversion_rate(quote_currency: str, account_currency: str, mids: Mapping[str, float],
                    overrides: Mapping[str, float] | None = None) -> float | None:
    """Account-currency value of one unit of ``quote_currency``, or None if unknown.

    1 when the currencies are the same; else an explicit override; else the mid of the
    direct pair ``QUOTE_ACCOUNT``; else one over the mid of ``ACCOUNT_QUOTE``. Only finite
    positive rates are returned.
    """
    if quote_currency == account_currency:
        return 1.0
    rate: float | None = None
    if overrides and quote_currency in overrides:
        rate = float(overrides[quote_currency])
    elif (m := mids.get(f"{quote_currency}_{account_currency}")) is not None:
        rate = float(m)
    elif (m := mids.get(f"{account_currency}_{quote_currency}")) is not None:
        rate = 1.0 / float(m) if float(m) > 0 else None
    if rate is None or not math.isfinite(rate) or rate <= 0:
        return None
    return rate
