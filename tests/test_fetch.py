"""fetch_candles against a local HTTP server that speaks OANDA's candle endpoint.

The server (stdlib ``http.server`` on 127.0.0.1, port 0, in a thread) follows OANDA's rules:
at most 5000 candles per answer (count or from/to range), ``from``/``to``/``count``/
``includeFirst``, "Time is in the future" for a ``to``/``from`` past its clock, ``complete:
false`` on the forming candle, no candles at the FX weekend, 401 for a wrong token, 400 for an
unknown instrument or granularity, and 429/503 injection. Its prices are a deterministic
synthetic function of time (test data, not market data).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import deque
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest

from sep_research.data.cache import CandleCache
from sep_research.data.candles import GRANULARITY_SECONDS, CandleError, get_provenance
from sep_research.data.fetch import fetch_candles, missing_ranges
from sep_research.oanda import client as oclient
from sep_research.oanda.client import AuthError
from sep_research.oanda.credentials import Credentials, CredentialsError
from tests.loopback import serve_loopback, stop_loopback

pytestmark = pytest.mark.usefixtures("fast_oanda_limits")

TOKEN = "test-token-0123456789abcdef"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _parse(value: str) -> datetime:
    if value.replace(".", "", 1).isdigit():
        return EPOCH + timedelta(seconds=float(value))
    return datetime.fromisoformat(value)


def _fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000000000Z")


def _closed(t: datetime) -> bool:
    """FX weekend used by this server: Friday 22:00 to Sunday 22:00 UTC."""
    dow, hour = t.weekday(), t.hour
    return (dow == 4 and hour >= 22) or dow == 5 or (dow == 6 and hour < 22)


class CandleServer:
    def __init__(self, now: str, *, to_inclusive: bool = False) -> None:
        self.now = datetime.fromisoformat(now)
        self.to_inclusive = to_inclusive
        self.faults: deque[int] = deque()
        self.log: list[dict[str, str]] = []
        self.max_answer = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                code, body = server.handle(self.path, self.headers.get("Authorization", ""))
                data = body.encode()
                self.send_response(code)
                ctype = "application/json" if body.startswith("{") else "text/html"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd, self.url = serve_loopback(Handler)

    def close(self) -> None:
        stop_loopback(self.httpd)

    # -- the data: a deterministic synthetic function of the candle time ----------------
    @staticmethod
    def candle(t: datetime, step: int, price: str, complete: bool) -> dict:
        k = int((t - EPOCH).total_seconds()) // step
        mid_o = 1.1 + 0.002 * math.sin(k / 37.0)
        mid_c = 1.1 + 0.002 * math.sin((k + 1) / 37.0)
        hi = max(mid_o, mid_c) + 0.00003 * (1 + k % 5)
        lo = min(mid_o, mid_c) - 0.00002 * (1 + k % 3)
        out = {"time": _fmt(t), "volume": 1 + k % 97, "complete": complete}
        for letter, key, off in (("M", "mid", 0.0), ("B", "bid", -0.00006), ("A", "ask", 0.00006)):
            if letter in price:
                out[key] = {n: f"{v + off:.5f}" for n, v in
                            (("o", mid_o), ("h", hi), ("l", lo), ("c", mid_c))}
        return out

    def times(self, lo: datetime, hi: datetime, step: int) -> list[datetime]:
        """Candle starts in [lo, hi] that exist (not weekend, started by now)."""
        s = int((lo - EPOCH).total_seconds())
        first = EPOCH + timedelta(seconds=-(-s // step) * step)
        out, t = [], first
        while t <= hi and t <= self.now:
            if not _closed(t):
                out.append(t)
            t += timedelta(seconds=step)
        return out

    def expected(self, start: str, end: str, step: int) -> list[datetime]:
        """Complete candles with start in [start, end): the oracle for the tests."""
        lo = datetime.fromisoformat(start)
        hi = datetime.fromisoformat(end)
        return [t for t in self.times(lo, hi, step)
                if t < hi and t + timedelta(seconds=step) <= self.now]

    # -- the endpoint ---------------------------------------------------------------------
    def handle(self, path: str, auth: str) -> tuple[int, str]:
        url = urlparse(path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self.lock:
            self.log.append(dict(q, path=url.path))
            if self.faults:
                code = self.faults.popleft()
                return code, ('{"errorMessage": "Too many requests"}' if code == 429
                              else "<html>Service Unavailable</html>")
        if auth != f"Bearer {TOKEN}":
            return 401, json.dumps({"errorMessage": "Insufficient authorization to perform "
                                    "request."})
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["v3", "instruments"] or parts[3] != "candles":
            return 404, json.dumps({"errorMessage": "Not found"})

        def bad(param: str, extra: str = "") -> tuple[int, str]:
            return 400, json.dumps({"errorMessage": f"Invalid value specified for '{param}'"
                                    + extra})

        if parts[2] not in ("EUR_USD", "USD_JPY"):
            return bad("instrument")
        gran = q.get("granularity", "S5")
        if gran not in GRANULARITY_SECONDS or gran in ("D", "W", "M"):
            return bad("granularity")
        step = GRANULARITY_SECONDS[gran]
        price = q.get("price", "M")
        if not price or set(price) - set("MBA"):
            return bad("price")
        include_first = q.get("includeFirst", "true").lower() == "true"
        if "count" in q and "from" in q and "to" in q:
            return 400, json.dumps({"errorMessage": "'count' cannot be specified when 'to' "
                                    "and 'from' parameters are set"})
        count = int(q.get("count", 500))
        if count > 5000 or count < 1:
            return 400, json.dumps({"errorMessage": "Maximum value for 'count' exceeded"})
        t_from = _parse(q["from"]) if "from" in q else None
        t_to = _parse(q["to"]) if "to" in q else None
        for name, t in (("to", t_to), ("from", t_from)):
            if t is not None and t > self.now:
                return bad(name, ". Time is in the future")
        if t_from is not None and t_to is not None:
            ts = self.times(t_from, t_to, step)
            if not self.to_inclusive:
                ts = [t for t in ts if t < t_to]
            if len(ts) > 5000:
                return 400, json.dumps({"errorMessage": "Maximum value for 'count' exceeded"})
        elif t_from is not None:
            ts = self.times(t_from, t_from + timedelta(seconds=step * (count + 1) * 3), step)
            if not ts or ts[-1] < self.now - timedelta(seconds=step):
                ts = self.times(t_from, self.now, step)
            ts = ts[:count + 1]
        else:
            hi = t_to or self.now
            ts = self.times(hi - timedelta(seconds=step * count * 3), hi, step)[-count:]
        if t_from is not None and not include_first:
            ts = [t for t in ts if t != t_from]
        ts = ts[:count] if "to" not in q else ts
        candles = [self.candle(t, step, price, t + timedelta(seconds=step) <= self.now)
                   for t in ts]
        self.max_answer = max(self.max_answer, len(candles))
        return 200, json.dumps({"instrument": parts[2], "granularity": gran, "candles": candles})




@pytest.fixture
def server():
    srv = CandleServer("2024-01-20T12:00:30Z")
    yield srv
    srv.close()


def creds(env: str, account: str | None = None) -> Credentials:
    return Credentials(token=TOKEN, account_id=account, environment=env)


def fetch(srv: CandleServer, cache: CandleCache, start: str, end: str, **kw):
    kw.setdefault("page_size", 1000)
    kw.setdefault("progress", False)
    kw.setdefault("backoff", 0.001)
    return fetch_candles("EUR_USD", kw.pop("granularity", "M1"), start, end,
                         environment=srv.url, credentials=creds(srv.url), cache=cache, **kw)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


# ------------------------------------------------------------------------------- paging


@pytest.mark.parametrize("to_inclusive", [False, True])
def test_long_download_is_paged_under_the_limit_and_matches_the_server(
    tmp_path: Path, to_inclusive: bool
) -> None:
    srv = CandleServer("2024-01-20T12:00:30Z", to_inclusive=to_inclusive)
    try:
        cache = CandleCache(tmp_path)
        rep = fetch(srv, cache, "2024-01-01", "2024-01-10", page_size=1000)
        expected = srv.expected("2024-01-01T00:00:00Z", "2024-01-10T00:00:00Z", 60)
        frame = cache.load("EUR_USD", "M1", "2024-01-01", "2024-01-10")
    finally:
        srv.close()
    # 9 days of M1 minus a weekend: about 10k candles, so at least 10 pages of 1000
    assert len(expected) > 9000
    assert srv.max_answer <= 1000
    assert rep.requests >= math.ceil(9 * 1440 / 999)
    assert all("count" not in q for q in srv.log)  # every window lies in the server's past
    assert list(frame.index) == [pd.Timestamp(t) for t in expected]
    assert rep.candles_written == len(expected)
    # values: the stored candles equal what the server serves, bid/ask included
    for t in (expected[0], expected[len(expected) // 2], expected[-1]):
        c = CandleServer.candle(t, 60, "MBA", True)
        row = frame.loc[pd.Timestamp(t)]
        assert row["open"] == float(c["mid"]["o"]) and row["close"] == float(c["mid"]["c"])
        assert row["bid_low"] == float(c["bid"]["l"]) and row["ask_high"] == float(c["ask"]["h"])
        assert row["volume"] == c["volume"]
    assert frame["complete"].all()
    prov = get_provenance(frame)
    assert prov.source == f"emulator:{srv.url}"
    assert prov.price == "MBA"


def test_retries_429_and_503_then_completes(tmp_path: Path, server: CandleServer) -> None:
    server.faults.extend([429, 503, 503, 429])
    cache = CandleCache(tmp_path)
    rep = fetch(server, cache, "2024-01-02", "2024-01-03")
    assert rep.retries == 4
    assert rep.candles_written == len(server.expected("2024-01-02T00:00:00Z",
                                                      "2024-01-03T00:00:00Z", 60)) == 1440


def test_retries_give_up_with_a_clear_error_and_keep_finished_pages(
    tmp_path: Path, server: CandleServer
) -> None:
    cache = CandleCache(tmp_path)
    # first page succeeds, then the server keeps answering 503
    orig = server.handle
    calls = {"n": 0}

    def handle(path: str, auth: str):
        calls["n"] += 1
        if calls["n"] > 1:
            server.faults.append(503)
        return orig(path, auth)

    server.handle = handle  # type: ignore[method-assign]
    with pytest.raises(oclient.TemporaryError, match="503"):
        fetch(server, cache, "2024-01-02", "2024-01-05", retries=2)
    # the finished first page (999 candles) was stored and recorded as covered
    stored = cache.load("EUR_USD", "M1")
    assert len(stored) == 999
    cov = cache.covered("EUR_USD", "M1", f"emulator:{server.url}")
    assert cov[0][0] == pd.Timestamp("2024-01-02", tz="UTC")


# ------------------------------------------------------------------------------- resumption


def test_second_run_requests_only_the_missing_range(tmp_path: Path, server: CandleServer) -> None:
    cache = CandleCache(tmp_path)
    fetch(server, cache, "2024-01-01", "2024-01-05")
    first = len(server.log)
    rep = fetch(server, cache, "2024-01-01", "2024-01-10")
    second = server.log[first:]
    assert second, "the missing days must be fetched"
    starts = [pd.Timestamp(q["from"]) for q in second]
    assert min(starts) >= pd.Timestamp("2024-01-05", tz="UTC")
    assert rep.missing_ranges == [("2024-01-05T00:00:00Z", "2024-01-10T00:00:00Z")]
    frame = cache.load("EUR_USD", "M1", "2024-01-01", "2024-01-10")
    expected = server.expected("2024-01-01T00:00:00Z", "2024-01-10T00:00:00Z", 60)
    assert len(frame) == len(expected)
    # a third identical run asks nothing at all
    n = len(server.log)
    rep3 = fetch(server, cache, "2024-01-01", "2024-01-10")
    assert len(server.log) == n and rep3.requests == 0 and rep3.missing_ranges == []
    # a hole in the middle: fetch a later range, then the whole span asks only for the hole
    fetch(server, cache, "2024-01-15", "2024-01-16")
    n = len(server.log)
    rep4 = fetch(server, cache, "2024-01-01", "2024-01-16")
    assert rep4.missing_ranges == [("2024-01-10T00:00:00Z", "2024-01-15T00:00:00Z")]
    asked = [(pd.Timestamp(q["from"]), pd.Timestamp(q["to"])) for q in server.log[n:]]
    assert min(a for a, _ in asked) == pd.Timestamp("2024-01-10", tz="UTC")
    assert max(b for _, b in asked) <= pd.Timestamp("2024-01-15", tz="UTC")


def test_weekend_without_candles_is_not_fetched_again(tmp_path: Path, server: CandleServer) -> None:
    cache = CandleCache(tmp_path)
    fetch(server, cache, "2024-01-05", "2024-01-09")  # Friday to Tuesday, weekend inside
    n = len(server.log)
    # the weekend alone: already covered although it holds no candles
    rep = fetch(server, cache, "2024-01-06", "2024-01-07T12:00")
    assert rep.requests == 0 and len(server.log) == n


def test_incomplete_candle_is_never_stored_and_is_fetched_later(
    tmp_path: Path, server: CandleServer
) -> None:
    cache = CandleCache(tmp_path)
    # the end lies past the server's clock (12:00:30): "time is in the future" -> count mode
    rep = fetch(server, cache, "2024-01-19", "2024-01-21")
    assert rep.reached_present
    assert rep.incomplete_dropped == 0  # the server's clock is on Saturday: nothing forming
    frame = cache.load("EUR_USD", "M1")
    assert frame.index[-1] == pd.Timestamp("2024-01-19T21:59", tz="UTC")  # Friday close
    assert frame["complete"].all()
    # next Monday: the server has moved on
    server.now = datetime(2024, 1, 22, 0, 3, 30, tzinfo=UTC)
    n = len(server.log)
    rep2 = fetch(server, cache, "2024-01-19", "2024-01-23")
    asked = [pd.Timestamp(q["from"]) for q in server.log[n:]]
    assert min(asked) > pd.Timestamp("2024-01-19T21:59", tz="UTC")
    frame = cache.load("EUR_USD", "M1")
    assert frame.index[-1] == pd.Timestamp("2024-01-22T00:02", tz="UTC")
    assert rep2.incomplete_dropped == 1


def test_forming_candle_inside_a_past_window(tmp_path: Path) -> None:
    srv = CandleServer("2024-01-10T12:00:30Z")
    try:
        cache = CandleCache(tmp_path)
        rep = fetch(srv, cache, "2024-01-10T11:00", "2024-01-10T12:00:30")
        frame = cache.load("EUR_USD", "M1")
    finally:
        srv.close()
    assert frame.index[-1] == pd.Timestamp("2024-01-10T11:59", tz="UTC")
    assert len(frame) == 60 and rep.reached_present


# ------------------------------------------------------------------------------- bad input


def test_bad_input_names_the_argument_and_leaves_the_cache_unchanged(
    tmp_path: Path, server: CandleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = CandleCache(tmp_path)
    fetch(server, cache, "2024-01-02", "2024-01-03")
    before = snapshot(tmp_path)
    n = len(server.log)
    cases = [
        ({"start": "2024-13-45"}, "start"),
        ({"end": "yesterday-ish"}, "end"),
        ({"start": "2024-01-05", "end": "2024-01-04"}, "end"),
        ({"granularity": "M3"}, "granularity"),
        ({"instrument": "EURUSD"}, "instrument"),
        ({"price": "MXA"}, "price"),
    ]
    for override, word in cases:
        args = {"instrument": "EUR_USD", "granularity": "M1", "start": "2024-01-01",
                    "end": "2024-01-04"}
        args.update(override)
        with pytest.raises(CandleError, match=word):
            fetch_candles(args["instrument"], args["granularity"], args["start"], args["end"],
                          price=override.get("price", "MBA"), environment=server.url,
                          credentials=creds(server.url), cache=cache, progress=False)
    assert len(server.log) == n  # all refused before any request
    # an instrument the server does not know: refused by the server, named in the error
    with pytest.raises(CandleError, match=r"instrument.*XAU_XYZ"):
        fetch_candles("XAU_XYZ", "M1", "2024-01-01", "2024-01-04", environment=server.url,
                      credentials=creds(server.url), cache=cache, progress=False)
    # missing credentials: the error lists where it looked
    for var in ("OANDA_API_KEY", "OANDA_ACCESS_TOKEN", "SEP_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path / "..")
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))
    with pytest.raises(CredentialsError, match="OANDA_API_KEY") as exc:
        fetch_candles("EUR_USD", "M1", "2024-01-01", "2024-01-04", environment=server.url,
                      cache=cache, progress=False)
    assert "config/OANDA.env" in str(exc.value) and ".config/sep/OANDA.env" in str(exc.value)
    # wrong price components for the stored dataset
    with pytest.raises(CandleError, match="price"):
        fetch(server, cache, "2024-01-01", "2024-01-04", price="M")
    assert snapshot(tmp_path) == before


def test_refused_token_says_so_without_printing_it(
    tmp_path: Path, server: CandleServer, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = "wrong-token-SECRET-987654321"
    cache = CandleCache(tmp_path)
    with pytest.raises(AuthError, match="refused the access token") as exc:
        fetch_candles("EUR_USD", "M1", "2024-01-02", "2024-01-03", environment=server.url,
                      credentials=Credentials(token=bad, environment=server.url),
                      cache=cache, progress=True)
    out = capsys.readouterr()
    for text in (str(exc.value), caplog.text, out.out, out.err):
        assert bad not in text
    assert len(server.log) == 1  # a 401 is not retried
    assert snapshot(tmp_path) == {}


def test_account_environment_mismatch_is_refused_before_any_request(
    tmp_path: Path, server: CandleServer
) -> None:
    cache = CandleCache(tmp_path)
    with pytest.raises(CredentialsError, match="practice account"):
        fetch_candles("EUR_USD", "M1", "2024-01-02", "2024-01-03", environment="live",
                      credentials=Credentials(TOKEN, "101-004-1435156-001", "practice"),
                      cache=cache, progress=False)
    with pytest.raises(CredentialsError, match="live account"):
        fetch_candles("EUR_USD", "M1", "2024-01-02", "2024-01-03", environment="practice",
                      credentials=Credentials(TOKEN, "001-004-1435156-001", "live"),
                      cache=cache, progress=False)
    assert server.log == []


def test_missing_ranges() -> None:
    t = lambda s: pd.Timestamp(s, tz="UTC")
    assert missing_ranges(t("2024-01-01"), t("2024-01-10"), []) == [
        (t("2024-01-01"), t("2024-01-10"))]
    cov = [(t("2024-01-02"), t("2024-01-03")), (t("2024-01-05"), t("2024-01-12"))]
    assert missing_ranges(t("2024-01-01"), t("2024-01-10"), cov) == [
        (t("2024-01-01"), t("2024-01-02")), (t("2024-01-03"), t("2024-01-05"))]
    assert missing_ranges(t("2024-01-06"), t("2024-01-08"), cov) == []


# ------------------------------------------------------------------------------- CLI and progress


def test_sep_data_fetch_command(
    tmp_path: Path, server: CandleServer, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sep_research.cli import main

    for var in ("OANDA_API_KEY", "OANDA_ACCESS_TOKEN", "OANDA_ACCOUNT_ID", "OANDA_ENVIRONMENT"):
        monkeypatch.delenv(var, raising=False)
    env_file = tmp_path / "OANDA.env"
    env_file.write_text(f'export OANDA_API_KEY="{TOKEN}"\nOANDA_ACCOUNT_ID=101-004-1435156-001\n')
    cache_dir = tmp_path / "cache"
    base = ["data", "fetch", "--instrument", "EUR_USD", "--granularity", "M5",
            "--environment", server.url, "--env-file", str(env_file),
            "--cache-dir", str(cache_dir)]
    rc = main([*base, "--start", "2024-01-02", "--end", "2024-01-04"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert TOKEN not in out.out + out.err
    assert "EUR_USD M5" in out.err  # the progress bar
    frame = CandleCache(cache_dir).load("EUR_USD", "M5")
    assert len(frame) == 2 * 288
    before = snapshot(cache_dir)
    rc = main([*base, "--start", "2024-02-30", "--end", "2024-03-04"])
    err = capsys.readouterr().err
    assert rc == 2 and "start" in err and "Traceback" not in err
    assert snapshot(cache_dir) == before


def test_progress_goes_to_stderr(
    tmp_path: Path, server: CandleServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fetch(server, CandleCache(tmp_path), "2024-01-02", "2024-01-03", progress=True)
    out = capsys.readouterr()
    assert out.out == ""
    assert "EUR_USD M1" in out.err and "candle" in out.err
