"""Wire conventions of OANDA v20: times, decimals and the error bodies.

Times inside the emulator are integer nanoseconds since the Unix epoch (UTC). They go on the
wire as RFC3339 with 9 fractional digits, or as ``"SECONDS.NANOSECONDS"`` when the client
sends ``Accept-Datetime-Format: UNIX``.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

NS = 1_000_000_000
MONEY = Decimal("0.0001")

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


class WireError(ValueError):
    """A request value that cannot be parsed; ``param`` names it for the error message."""

    def __init__(self, param: str, message: str | None = None) -> None:
        self.param = param
        super().__init__(message or f"Invalid value specified for '{param}'")


def fmt_time(ns: int, unix: bool = False) -> str:
    sec, frac = divmod(int(ns), NS)
    if unix:
        return f"{sec}.{frac:09d}"
    t = time.gmtime(sec)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{frac:09d}Z"
    )


def parse_time(value: Any, param: str) -> int:
    """Parse an RFC3339 or UNIX (``1497466233.049880709``) time into nanoseconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return round(float(value) * NS)
    if not isinstance(value, str) or not value:
        raise WireError(param)
    s = value.strip()
    if re.fullmatch(r"\d{1,12}(\.\d{1,9})?", s):
        whole, _, frac = s.partition(".")
        return int(whole) * NS + int((frac or "0").ljust(9, "0"))
    m = _RFC3339.match(s)
    if not m:
        raise WireError(param)
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    try:
        datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0))
    except ValueError:
        raise WireError(param) from None
    sec = calendar.timegm((int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0)))
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        sec -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return sec * NS + int((frac or "0").ljust(9, "0"))


def to_ns(value: Any) -> int:
    """Any time-like (ns int, datetime, pandas Timestamp, string) to ns; naive times refused."""
    if isinstance(value, bool):
        raise TypeError("a time cannot be a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return parse_time(value, "time")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: times must be timezone-aware UTC")
        # pandas Timestamps keep nanoseconds in .value
        ns = getattr(value, "value", None)
        if isinstance(ns, int):
            return ns
        v = value.astimezone(UTC)
        return calendar.timegm(v.timetuple()) * NS + v.microsecond * 1000
    raise TypeError(f"cannot read a time from {type(value).__name__}")


def money(x: Decimal) -> str:
    return str(x.quantize(MONEY, rounding=ROUND_HALF_EVEN))


def qmoney(x: Decimal) -> Decimal:
    return x.quantize(MONEY, rounding=ROUND_HALF_EVEN)


def parse_decimal(value: Any, param: str) -> Decimal:
    """A decimal from a JSON string or number (OANDA accepts both); bools and junk refused."""
    if isinstance(value, bool) or value is None:
        raise WireError(param)
    if isinstance(value, float):
        value = repr(value)
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise WireError(param) from None
    if not d.is_finite():
        raise WireError(param)
    return d


def decimals_of(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return max(0, -int(exp)) if isinstance(exp, int) else 0


def units_str(u: int) -> str:
    return str(int(u))
