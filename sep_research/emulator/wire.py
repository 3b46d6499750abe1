"""Wire conventions of OANDA v20: request values (times, decimals), money and error answers.

Times inside the emulator are integer nanoseconds since the Unix epoch (UTC). They are parsed
and written by :mod:`sep_research.fx` (the project's one time parser, with its range and
finiteness checks); this module only turns its errors into :class:`WireError`, which names the
request parameter as OANDA's messages do (``Invalid value specified for 'order.gtdTime'``).
On the wire times are RFC3339 with 9 fractional digits, or ``"SECONDS.NANOSECONDS"`` when the
client sends ``Accept-Datetime-Format: UNIX``.

Decimals arrive as JSON strings or numbers and are read by :func:`parse_decimal`, which also
refuses exponents that would overflow the decimal context later (``1E+1000000``). An answer
other than success is an :class:`ApiError` (HTTP status and JSON body).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from sep_research import fx

NS = fx.NS
MONEY = Decimal("0.0001")
#: Largest decimal exponent accepted in a request (units, prices, distances, rates): far
#: beyond any real value, well inside the decimal context (whose limit is 999999).
MAX_EXPONENT = 30


class WireError(ValueError):
    """A request value that cannot be parsed; ``param`` names it for the error message."""

    def __init__(self, param: str, message: str | None = None) -> None:
        self.param = param
        super().__init__(message or f"Invalid value specified for '{param}'")


class ApiError(Exception):
    """An answer other than success: HTTP status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("errorMessage", ""))
        self.status = status
        self.body = body


def invalid(param: str, status: int = 400) -> ApiError:
    """OANDA's answer to a malformed request value: ``Invalid value specified for 'param'``."""
    return ApiError(status, {"errorMessage": f"Invalid value specified for '{param}'"})


# -- times -----------------------------------------------------------------------------------


_last_fmt: tuple[int, bool, str] = (-1, False, "")


def fmt_time(ns: int, unix: bool = False) -> str:
    """RFC3339 with 9 fractional digits (or ``"seconds.nanoseconds"``) of integer ns, by
    :func:`sep_research.fx.fmt_time` (the last answer is kept: an answer often formats one
    time several times)."""
    global _last_fmt
    last = _last_fmt
    if last[0] == ns and last[1] == unix:
        return last[2]
    out = fx.fmt_time(int(ns), unix=unix)
    _last_fmt = (ns, unix, out)
    return out


def parse_time_ns(value: Any, param: str) -> int:
    """A request time (RFC3339, a date, UNIX seconds as a string or a number) in nanoseconds;
    :class:`WireError` naming ``param`` when it is malformed, not finite or out of range."""
    try:
        return fx.parse_time_ns(value, name=param)
    except fx.FxError:
        raise WireError(param) from None


def to_ns(value: Any) -> int:
    """Any time-like (ns int, aware datetime, pandas Timestamp, string) to ns.

    Strings without an offset are UTC (``--start 2017-09-13``); naive datetimes are refused.
    """
    if isinstance(value, bool):
        raise TypeError("a time cannot be a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return fx.parse_time_ns(value, name="time")
    if isinstance(value, (int, float)) or value is None:
        raise TypeError(f"cannot read a time from {type(value).__name__}")
    return fx.parse_time_ns(value, name="time", naive="error")  # FxError is a ValueError


# -- decimals and money ------------------------------------------------------------------------


def money(x: Decimal) -> str:
    return str(x.quantize(MONEY, rounding=ROUND_HALF_EVEN))


def qmoney(x: Decimal) -> Decimal:
    return x.quantize(MONEY, rounding=ROUND_HALF_EVEN)


def parse_decimal(value: Any, param: str) -> Decimal:
    """A finite decimal from a JSON string or number (OANDA accepts both); bools, junk,
    non-finite values and exponents beyond :data:`MAX_EXPONENT` are refused."""
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        raise WireError(param)
    if isinstance(value, float):
        value = repr(value)
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise WireError(param) from None
    if not d.is_finite() or (d and abs(d.adjusted()) > MAX_EXPONENT):
        raise WireError(param)
    return d


def decimals_of(d: Decimal) -> int:
    """Number of significant decimals of ``d`` (``1.2300`` -> 2), without context overflow."""
    _, digits, exp = d.as_tuple()
    if not isinstance(exp, int) or exp >= 0 or not any(digits):
        return 0
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -exp - trailing)


def units_str(u: int) -> str:
    return str(int(u))
