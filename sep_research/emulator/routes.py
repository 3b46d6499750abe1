"""The v20 REST endpoints (and the emulator's admin endpoints): what each answers.

This module owns the routing table (:data:`ROUTES`: method, path pattern, endpoint) and the
endpoints, each a function of one :class:`Call` (the authenticated request: its path
parameters, query, body, the accounts its token owns) returning ``(status, body)``. Query
parameters are read here (counts, states, IDs, candle options), request bodies by the venue
(:mod:`sep_research.emulator.venue`), the objects in answers by
:mod:`sep_research.emulator.views`. HTTP itself (authentication, faults, streams, bytes on the
wire) is :mod:`sep_research.emulator.server`'s.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sep_research.emulator import views
from sep_research.emulator.book import VenueAccount
from sep_research.emulator.market import WEEKDAYS
from sep_research.emulator.venue import Venue
from sep_research.emulator.wire import ApiError, fmt_time, invalid, parse_time_ns, to_ns
from sep_research.fx import GRANULARITY_SECONDS

if TYPE_CHECKING:
    from sep_research.emulator.app import Emulator

_HOST = re.compile(r"^[A-Za-z0-9.\-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$")


class RawJSON(str):
    """A body already encoded as JSON text (the candles fast path)."""


@dataclass
class Call:
    """One authenticated request, as the endpoints see it."""

    app: Emulator
    params: dict[str, str]
    query: dict[str, str]
    owned: list[str]
    #: the JSON body (None when empty); raises a 400 when it is not acceptable JSON
    body: Callable[[], Any] = field(repr=False)
    unix: bool = False
    host_header: str | None = None
    port: int = 0

    @property
    def host(self) -> str:
        """The host the client used, for links in answers (loopback when odd)."""
        return host_of(self.host_header, self.port)

    @property
    def venue(self) -> Venue:
        return self.app.venue

    @property
    def account(self) -> VenueAccount:
        return self.app.venue.accounts[self.params["acct"]]


#: ``(status, body)`` or ``(status, body, extra headers)``.
Answer = tuple[int, Any] | tuple[int, Any, dict[str, str] | None]


def _bool(q: dict[str, str], name: str, default: bool) -> bool:
    v = q.get(name)
    if v is None:
        return default
    if v.lower() in ("true", "1"):
        return True
    if v.lower() in ("false", "0"):
        return False
    raise invalid(name)


def _int(q: dict[str, str], name: str, default: int | None, lo: int, hi: int | None,
         over: str | None = None) -> int | None:
    v = q.get(name)
    if v is None:
        return default
    try:
        n = int(v)
    except ValueError:
        raise invalid(name) from None
    if n < lo:
        raise invalid(name)
    if hi is not None and n > hi:
        if over:
            raise ApiError(400, {"errorMessage": over})
        raise invalid(name)
    return n


def _locked(call: Call, fn: Callable[..., Any], *args: Any) -> Any:
    venue = call.venue
    with venue.lock:  # Venue.request() inlined: this is every request's path
        venue.begin()
        return fn(*args)


def _last(acct: VenueAccount) -> str:
    return str(acct.last_id)


def _write(status: int, method: str, *path: str, body: bool = True
           ) -> Callable[[Call], Answer]:
    """An endpoint that hands the account, the path parameters ``path`` and (with ``body``)
    the JSON body to ``Venue.<method>`` under the lock (looked up per call). A 201 carries
    ``Location``, the link to the order it created."""

    def endpoint(call: Call) -> Answer:
        args: list[Any] = [call.params[k] for k in path]
        if body:
            args.append(call.body())
        out = _locked(call, getattr(call.venue, method), call.account, *args)
        if status == 201 and "orderCreateTransaction" in out:
            oid = out["orderCreateTransaction"]["id"]
            return status, out, {"Location": f"http://{call.host}/v3/accounts/"
                                             f"{call.account.id}/orders/{oid}"}
        return status, out

    endpoint.__name__ = method
    return endpoint


configuration = _write(200, "configure")
order_create = _write(201, "create_order")
order_replace = _write(201, "replace_order", "oid")
order_cancel = _write(200, "cancel_order", "oid", body=False)
order_ext = _write(200, "order_client_extensions", "oid")
trade_close = _write(200, "close_trade", "tid")
trade_orders = _write(200, "trade_orders", "tid")
trade_ext = _write(200, "trade_client_extensions", "tid")
position_close = _write(200, "close_position", "inst")


# -- accounts ----------------------------------------------------------------------------------


def accounts(call: Call) -> Answer:
    return 200, {"accounts": [{"id": a, "tags": []} for a in call.owned]}


def account(call: Call) -> Answer:
    acct = call.account
    return 200, _locked(call, lambda: {"account": views.details(call.venue, acct),
                                       "lastTransactionID": _last(acct)})


def summary(call: Call) -> Answer:
    acct = call.account
    return 200, _locked(call, lambda: {"account": views.summary(call.venue, acct),
                                       "lastTransactionID": _last(acct)})


def instruments(call: Call) -> Answer:
    market = call.venue.market
    names = list(market)
    if call.query.get("instruments"):
        want = call.query["instruments"].split(",")
        if any(w not in market for w in want):
            raise invalid("instruments")
        names = want
    return 200, {"instruments": [views.instrument_json(call.venue, n) for n in names],
                 "lastTransactionID": _last(call.account)}


def changes(call: Call) -> Answer:
    acct = call.account
    since = _int(call.query, "sinceTransactionID", None, 1, None)
    if since is None:
        raise invalid("sinceTransactionID")

    def go() -> Any:
        if since > acct.last_id:
            raise invalid("sinceTransactionID")
        return views.changes(call.venue, acct, since)
    return 200, _locked(call, go)


# -- candles and prices ------------------------------------------------------------------------


def candles(call: Call) -> Answer:
    q = call.query
    venue = call.venue
    series = venue.market.get(call.params["inst"])
    if series is None:
        raise invalid("instrument")
    price = q.get("price", "M")
    if not price or any(c not in "MBA" for c in price) or len(set(price)) != len(price):
        raise invalid("price")
    gran = q.get("granularity", "S5")
    if gran not in GRANULARITY_SECONDS or not series.supports(gran):
        raise invalid("granularity")
    count = _int(q, "count", None, 1, 5000, "Maximum value for 'count' exceeded")
    _bool(q, "smooth", False)
    include_first = _bool(q, "includeFirst", True)
    align = _int(q, "dailyAlignment", 17, 0, 23)
    tz = q.get("alignmentTimezone", "America/New_York")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid("alignmentTimezone") from None
    weekly = q.get("weeklyAlignment", "Friday")
    if weekly not in WEEKDAYS:
        raise invalid("weeklyAlignment")
    t_from = parse_time_ns(q["from"], "from") if "from" in q else None
    t_to = parse_time_ns(q["to"], "to") if "to" in q else None
    now = call.app.clock.now_ns()
    if t_to is not None and t_to > now:
        raise ApiError(400, {"errorMessage":
                             "Invalid value specified for 'to'. Time is in the future"})
    if t_from is not None and t_from > now:
        raise ApiError(400, {"errorMessage":
                             "Invalid value specified for 'from'. Time is in the future"})
    if t_from is not None and t_to is not None:
        if count is not None:
            raise ApiError(400, {"errorMessage": "'count' cannot be specified when 'to' "
                                 "and 'from' parameters are set"})
        if t_to < t_from:
            raise invalid("to")
    n = 500 if count is None else count
    with venue.lock:
        agg = series.aggregate(gran, align or 0, tz, weekly)
    nvis = agg.visible(now)
    starts = agg.start

    def first_at(t: int) -> int:
        if include_first:
            i = bisect.bisect_right(starts, t) - 1
            if i >= 0 and agg.bend[i] > t:
                return i
            return i + 1
        return bisect.bisect_right(starts, t)

    if t_from is not None and t_to is not None:
        lo = first_at(t_from)
        hi = min(bisect.bisect_left(starts, t_to), nvis)
        if hi - lo > 5000:
            raise ApiError(400, {"errorMessage": "Maximum value for 'count' exceeded"})
    elif t_from is not None:
        lo = first_at(t_from)
        hi = min(lo + n, nvis)
    elif t_to is not None:
        hi = min(bisect.bisect_left(starts, t_to), nvis)
        lo = max(0, hi - n)
    else:
        hi = nvis
        lo = max(0, hi - n)
    rows = agg.render(lo, hi, price, now, call.unix)
    return 200, RawJSON(f'{{"instrument":"{series.spec.name}","granularity":"{gran}",'
                        f'"candles":[{rows}]}}')


def instruments_param(venue: Venue, q: dict[str, str]) -> list[str]:
    """The ``instruments`` query of pricing and the pricing stream (all known, at least one)."""
    names = [n for n in q.get("instruments", "").split(",") if n]
    if not names or any(n not in venue.market for n in names):
        raise invalid("instruments")
    return names


def pricing(call: Call) -> Answer:
    venue = call.venue
    names = instruments_param(venue, call.query)
    since = parse_time_ns(call.query["since"], "since") if call.query.get("since") else None

    def go() -> Any:
        now = venue.now()
        prices = [views.price_object(venue, n, now) for n in names]
        if since is not None:
            prices = [p for p in prices if parse_time_ns(p["time"], "time") > since]
        return {"time": fmt_time(now), "prices": prices}
    return 200, _locked(call, go)


# -- orders ------------------------------------------------------------------------------------


def order(call: Call) -> Answer:
    acct = call.account
    return 200, _locked(call, lambda: {"order": call.venue.find_order(acct, call.params["oid"]).w,
                                       "lastTransactionID": _last(acct)})


def _instrument_of(acct: VenueAccount, item: Any) -> str | None:
    if getattr(item, "instrument", ""):
        return item.instrument
    if acct.orders.get(item.id) is item and item.trade_id in acct.trades:  # a dependent order
        return acct.trades[item.trade_id].instrument
    return None


def _list(call: Call, items: list[Any], states: tuple[str, ...], default_state: str
          ) -> tuple[list[Any], bool]:
    """The items the query selects (state, ids, instrument, beforeID, count), newest first,
    and whether more would follow (OANDA's ``Link: <...>; rel="next"``)."""
    q = call.query
    state = q.get("state", default_state)
    if state not in states:
        raise invalid("state")
    count = _int(q, "count", 50, 1, 500)
    assert count is not None
    before = _int(q, "beforeID", None, 1, None)
    ids = set(q["ids"].split(",")) if q.get("ids") else None
    inst = q.get("instrument")
    if inst is not None and inst not in call.venue.market:
        raise invalid("instrument")
    out = []
    for it in items:
        if state != "ALL" and it.state != state:
            continue
        if before is not None and it.id >= before:
            continue
        if ids is not None and str(it.id) not in ids:
            continue
        if inst is not None and _instrument_of(call.account, it) != inst:
            continue
        if len(out) >= count:
            return out, True
        out.append(it)
    return out, False


def _next_link(call: Call, what: str, got: list[Any], more: bool) -> dict[str, str] | None:
    if not more or not got:
        return None
    query = urlencode({**{k: v for k, v in call.query.items() if k != "beforeID"},
                       "beforeID": str(got[-1].id)})
    return {"Link": f'<http://{call.host}/v3/accounts/{call.account.id}/{what}?{query}>; '
                    'rel="next"'}


def orders(call: Call) -> Answer:
    acct = call.account

    def go() -> Any:
        items = sorted(acct.orders.values(), key=lambda o: -o.id)
        got, more = _list(call, items, ("PENDING", "FILLED", "TRIGGERED", "CANCELLED", "ALL"),
                          "PENDING")
        return ({"orders": [o.w for o in got], "lastTransactionID": _last(acct)},
                _next_link(call, "orders", got, more))
    body, link = _locked(call, go)
    return 200, body, link


def pending_orders(call: Call) -> Answer:
    acct = call.account
    return 200, _locked(call, lambda: {
        "orders": [o.w for o in sorted(acct.pending_orders(), key=lambda o: -o.id)],
        "lastTransactionID": _last(acct)})


# -- trades ------------------------------------------------------------------------------------


def trades(call: Call) -> Answer:
    acct = call.account

    def go() -> Any:
        items = sorted(acct.trades.values(), key=lambda t: -t.id)
        got, more = _list(call, items, ("OPEN", "CLOSED", "CLOSE_WHEN_TRADEABLE", "ALL"),
                          "OPEN")
        return ({"trades": [views.trade_json(call.venue, acct, t) for t in got],
                 "lastTransactionID": _last(acct)}, _next_link(call, "trades", got, more))
    body, link = _locked(call, go)
    return 200, body, link


def open_trades(call: Call) -> Answer:
    acct = call.account
    return 200, _locked(call, lambda: {
        "trades": [views.trade_json(call.venue, acct, t)
                   for t in sorted(acct.open_trades(), key=lambda t: -t.id)],
        "lastTransactionID": _last(acct)})


def trade(call: Call) -> Answer:
    acct = call.account

    def go() -> Any:
        tr = call.venue.find_trade(acct, call.params["tid"])
        assert tr is not None
        return {"trade": views.trade_json(call.venue, acct, tr),
                "lastTransactionID": _last(acct)}
    return 200, _locked(call, go)


# -- positions ---------------------------------------------------------------------------------


def positions(call: Call) -> Answer:
    acct = call.account
    return 200, _locked(call, lambda: {
        "positions": views.positions(call.venue, acct, only_open=False),
        "lastTransactionID": _last(acct)})


def open_positions(call: Call) -> Answer:
    acct = call.account
    return 200, _locked(call, lambda: {
        "positions": views.positions(call.venue, acct, only_open=True),
        "lastTransactionID": _last(acct)})


def position(call: Call) -> Answer:
    acct = call.account
    name = call.params["inst"]
    if name not in call.venue.market:
        raise invalid("instrument")
    return 200, _locked(call, lambda: {"position": views.position_json(call.venue, acct, name),
                                       "lastTransactionID": _last(acct)})


# -- transactions ------------------------------------------------------------------------------


def _types(q: dict[str, str]) -> set[str] | None:
    return set(q["type"].split(",")) if q.get("type") else None


def transactions(call: Call) -> Answer:
    acct = call.account
    q = call.query
    page = _int(q, "pageSize", 100, 1, 1000)
    assert page is not None
    t0 = parse_time_ns(q["from"], "from") if q.get("from") else acct.created
    types = _types(q)
    host = call.host

    def go() -> Any:
        now = call.venue.now()
        t1 = parse_time_ns(q["to"], "to") if q.get("to") else now
        if t1 < t0:
            raise invalid("to")
        sel = [tx for tx in acct.txs
               if t0 <= parse_time_ns(tx["time"], "time") <= t1
               and (types is None or tx["type"] in types)]
        ids = [int(tx["id"]) for tx in sel]
        pages = []
        for i in range(0, len(ids), page):
            chunk = ids[i:i + page]
            pages.append(f"http://{host}/v3/accounts/{acct.id}/transactions/idrange?"
                         f"from={chunk[0]}&to={chunk[-1]}"
                         + (f"&type={q['type']}" if types else ""))
        out = {"from": fmt_time(t0), "to": fmt_time(t1), "pageSize": page,
               "count": len(ids), "pages": pages, "lastTransactionID": _last(acct)}
        if types:
            out["type"] = sorted(types)
        return out
    return 200, _locked(call, go)


def tx_idrange(call: Call) -> Answer:
    acct = call.account
    a = _int(call.query, "from", None, 1, None)
    z = _int(call.query, "to", None, 1, None)
    if a is None:
        raise invalid("from")
    if z is None or z < a:
        raise invalid("to")
    types = _types(call.query)
    return 200, _locked(call, lambda: {
        "transactions": [tx for tx in acct.txs[a - 1:z] if types is None or tx["type"] in types],
        "lastTransactionID": _last(acct)})


def tx_sinceid(call: Call) -> Answer:
    acct = call.account
    a = _int(call.query, "id", None, 0, None)
    if a is None:
        raise invalid("id")
    types = _types(call.query)
    return 200, _locked(call, lambda: {
        "transactions": [tx for tx in acct.txs[a:] if types is None or tx["type"] in types],
        "lastTransactionID": _last(acct)})


def transaction(call: Call) -> Answer:
    acct = call.account
    txid = call.params["txid"]

    def go() -> Any:
        if not txid.isdigit() or not 1 <= int(txid) <= acct.last_id:
            raise ApiError(404, {"lastTransactionID": _last(acct),
                                 "errorMessage": "The transaction ID specified does not exist",
                                 "errorCode": "NO_SUCH_TRANSACTION"})
        return {"transaction": acct.txs[int(txid) - 1], "lastTransactionID": _last(acct)}
    return 200, _locked(call, go)


# -- admin (emulator control; not part of v20; the main token only) ---------------------------


def admin_clock(call: Call) -> Answer:
    clock = call.app.clock
    return 200, {"time": fmt_time(clock.now_ns()), "speed": clock.speed}


def admin_clock_set(call: Call) -> Answer:
    clock = call.app.clock
    body = call.body() or {}
    if not isinstance(body, dict):
        raise invalid("body")
    try:  # everything is checked before the clock moves at all
        when = to_ns(body["set"]) if "set" in body else None
        if when is not None and when < clock.now_ns():
            raise ValueError(f"the replay clock cannot go back (now {clock.iso()})")
        seconds = body.get("advance_seconds", 0.0)
        candles = clock.check_advance(body.get("advance_candles", 0), seconds)
        if "speed" in body:
            clock.check_speed(body["speed"])
    except (ValueError, TypeError, OverflowError) as exc:
        raise ApiError(400, {"errorMessage": str(exc)}) from None
    if when is not None:
        clock.set(when)
    if candles or seconds:
        clock.advance(candles=candles, seconds=seconds)
    if "speed" in body:
        clock.run(float(body["speed"]))
    return admin_clock(call)


def admin_faults(call: Call) -> Answer:
    body = call.body() or {}
    if not isinstance(body, dict):
        raise invalid("body")
    spec = body.get("spec")
    if spec is not None and not isinstance(spec, str):
        raise invalid("spec")
    try:
        call.app.set_faults(spec)
    except ValueError as exc:
        raise ApiError(400, {"errorMessage": str(exc)}) from None
    return 200, {"spec": spec or ""}


def host_of(header: str | None, port: int) -> str:
    """The ``Host`` a client used (for page links), or loopback when it is missing or odd."""
    if header and _HOST.match(header):
        return header
    return f"127.0.0.1:{port}"


_ACC = r"/v3/accounts/(?P<acct>[^/]+)"
#: (method, path pattern, endpoint name); the name is also the key of :data:`ENDPOINTS`.
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p + "$"), name) for m, p, name in [
        ("GET", r"/v3/accounts", "accounts"),
        ("GET", _ACC, "account"),
        ("GET", _ACC + r"/summary", "summary"),
        ("GET", _ACC + r"/instruments", "instruments"),
        ("GET", _ACC + r"/changes", "changes"),
        ("PATCH", _ACC + r"/configuration", "configuration"),
        ("GET", r"/v3/instruments/(?P<inst>[^/]+)/candles", "candles"),
        ("GET", _ACC + r"/pricing", "pricing"),
        ("GET", _ACC + r"/pricing/stream", "pricing_stream"),
        ("GET", _ACC + r"/instruments/(?P<inst>[^/]+)/candles", "candles"),
        ("POST", _ACC + r"/orders", "order_create"),
        ("GET", _ACC + r"/orders", "orders"),
        ("GET", _ACC + r"/pendingOrders", "pending_orders"),
        ("GET", _ACC + r"/orders/(?P<oid>[^/]+)", "order"),
        ("PUT", _ACC + r"/orders/(?P<oid>[^/]+)", "order_replace"),
        ("PUT", _ACC + r"/orders/(?P<oid>[^/]+)/cancel", "order_cancel"),
        ("PUT", _ACC + r"/orders/(?P<oid>[^/]+)/clientExtensions", "order_ext"),
        ("GET", _ACC + r"/trades", "trades"),
        ("GET", _ACC + r"/openTrades", "open_trades"),
        ("GET", _ACC + r"/trades/(?P<tid>[^/]+)", "trade"),
        ("PUT", _ACC + r"/trades/(?P<tid>[^/]+)/close", "trade_close"),
        ("PUT", _ACC + r"/trades/(?P<tid>[^/]+)/orders", "trade_orders"),
        ("PUT", _ACC + r"/trades/(?P<tid>[^/]+)/clientExtensions", "trade_ext"),
        ("GET", _ACC + r"/positions", "positions"),
        ("GET", _ACC + r"/openPositions", "open_positions"),
        ("GET", _ACC + r"/positions/(?P<inst>[^/]+)", "position"),
        ("PUT", _ACC + r"/positions/(?P<inst>[^/]+)/close", "position_close"),
        ("GET", _ACC + r"/transactions", "transactions"),
        ("GET", _ACC + r"/transactions/idrange", "tx_idrange"),
        ("GET", _ACC + r"/transactions/sinceid", "tx_sinceid"),
        ("GET", _ACC + r"/transactions/stream", "tx_stream"),
        ("GET", _ACC + r"/transactions/(?P<txid>[^/]+)", "transaction"),
        ("GET", r"/_emulator/clock", "admin_clock"),
        ("POST", r"/_emulator/clock", "admin_clock_set"),
        ("POST", r"/_emulator/faults", "admin_faults"),
    ]
]
#: Requests that carry out an order (the ``drop-order`` fault applies to them).
ORDER_ROUTES = {"order_create", "order_replace", "trade_close", "position_close"}
#: Chunked streams, served by the server itself.
STREAM_ROUTES = {"pricing_stream", "tx_stream"}
ADMIN_ROUTES = {"admin_clock", "admin_clock_set", "admin_faults"}
ENDPOINTS: dict[str, Callable[[Call], Answer]] = {
    name: globals()[name] for _, _, name in ROUTES if name not in STREAM_ROUTES}
