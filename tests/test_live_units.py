"""Unit tests of the live runner's pieces: config, journal, risk rules, client IDs, paper
broker, status API, model checks. Synthetic values only (labelled); no network but loopback."""

from __future__ import annotations

import json
import math
import sqlite3
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sep_research.live.brokers import OrderRequest, PaperBroker, client_id, result_from_transactions
from sep_research.live.config import ConfigError, RiskConfig, config_from_dict, load_config
from sep_research.live.journal import Journal, JournalError
from sep_research.live.model import ModelError, Policy, load_models
from sep_research.live.risk import RiskManager, market_open, weekly_close
from sep_research.live.status import StatusError, StatusServer, prometheus
from sep_research.live.types import Candle, InstrumentInfo, Quote, parse_time
from tests.live_helpers import make_artifact

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # a Tuesday
EUR = InstrumentInfo.default("EUR_USD")


# ------------------------------------------------------------------ config


def test_config_defaults_and_errors(tmp_path: Path) -> None:
    cfg = config_from_dict({"instruments": ["EUR_USD"]})
    assert cfg.granularity == "H1" and cfg.status.host == "127.0.0.1" and cfg.status.port == 8080
    assert cfg.risk.max_open_positions == 4 and cfg.feed.stall_timeout_s == 10.0
    with pytest.raises(ConfigError, match=r"risk\.max_open_positions"):
        config_from_dict({"instruments": ["EUR_USD"], "risk": {"max_open_positions": 0}})
    with pytest.raises(ConfigError, match=r"risk\.max_open_postions: unknown key"):
        config_from_dict({"instruments": ["EUR_USD"], "risk": {"max_open_postions": 2}})
    with pytest.raises(ConfigError, match="instruments"):
        config_from_dict({"granularity": "H1"})
    with pytest.raises(ConfigError, match="not an OANDA instrument"):
        config_from_dict({"instruments": ["EURUSD"]})
    with pytest.raises(ConfigError, match="credentials do not belong"):
        config_from_dict({"instruments": ["EUR_USD"], "oanda": {"api_key": "x"}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("instruments: [EUR_USD\nrisk: {", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML at line"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


# ------------------------------------------------------------------ journal


def test_journal_intent_is_unique_and_persists(tmp_path: Path) -> None:
    p = tmp_path / "j.sqlite"
    j = Journal(p)
    assert j.add_order_intent("sep-1", "EUR_USD", T0, "open", 100, "1.1", None)
    assert not j.add_order_intent("sep-1", "EUR_USD", T0, "open", 100, "1.1", None)
    j.update_order("sep-1", "filled", order_id="5", trade_id="6")
    j.set_last_transaction_id("7")
    j.set_last_transaction_id("3")  # never goes back
    j.close()
    j2 = Journal(p)
    assert j2.order("sep-1")["state"] == "filled"
    assert j2.last_transaction_id == "7"
    assert j2.journal_mode == "wal"
    j2.close()


def test_corrupt_or_foreign_journal_is_refused_and_kept(tmp_path: Path) -> None:
    p = tmp_path / "j.sqlite"
    p.write_bytes(b"this is not a database" * 50)
    before = p.read_bytes()
    with pytest.raises(JournalError, match="corrupt or not a runner journal"):
        Journal(p)
    assert p.read_bytes() == before
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE customers (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(JournalError):
        Journal(other)


# ------------------------------------------------------------------ risk


def _risk(**kw: object) -> RiskManager:
    base = {"max_spread_pips": 3.0, "weekend_cutoff_minutes": 120, "cooldown_losses": 2,
            "cooldown_candles": 3}
    base.update(kw)
    r = RiskManager(RiskConfig(**base), granularity_seconds=3600)
    r.set_stops({"EUR_USD": kw.get("stop_loss_pips", 20.0),
                 "USD_JPY": kw.get("stop_loss_pips", 20.0)})  # the models' policy stops
    return r


def _q(bid: float = 1.10000, ask: float = 1.10010, t: datetime = T0) -> Quote:
    return Quote("EUR_USD", t, bid, ask)


def _check(r: RiskManager, now: datetime = T0 + timedelta(seconds=1), *, balance: float = 10_000,
           quote: Quote | None = None, positions: list | None = None, info: InstrumentInfo = EUR,
           direction: int = 1, candle_time: datetime | None = None):
    q = quote or _q(t=now)
    return r.check_open(info, direction, now=now, candle_time=candle_time or now -
                        timedelta(hours=1, seconds=1), balance=balance, quote=q,
                        quotes={q.instrument: q}, open_positions=positions or [])


def test_risk_sizing_from_risk_and_stop() -> None:
    r = _risk(risk_per_trade=0.01, stop_loss_pips=20.0, max_units_per_order=1_000_000)
    v = _check(r, balance=10_000)
    assert v.ok and v.units == math.floor(10_000 * 0.01 / (20 * 0.0001))  # 50000
    capped = _check(_risk(risk_per_trade=0.01, stop_loss_pips=20.0, max_units_per_order=1234))
    assert capped.units == 1234
    # USD_JPY in a USD account: quote (JPY) -> USD at 1/price
    jpy = InstrumentInfo.default("USD_JPY")
    q = Quote("USD_JPY", T0 + timedelta(seconds=1), 150.00, 150.01)
    v = _risk(risk_per_trade=0.01, stop_loss_pips=20.0, max_units_per_order=10**7,
              max_spread_pips=None).check_open(
        jpy, 1, now=q.time, candle_time=T0 - timedelta(hours=1), balance=10_000, quote=q,
        quotes={"USD_JPY": q}, open_positions=[])
    assert v.ok and v.units == math.floor(100 / (20 * 0.01 / 150.005))


def test_risk_rules_each_refuse() -> None:
    now = T0 + timedelta(seconds=1)
    assert _check(_risk(), quote=_q(1.1, 1.1005, now)).rule == "spread"
    assert _check(_risk(max_open_positions=1),
                  positions=[{"instrument": "GBP_USD", "units": 10, "entry_price": 1.3}]
                  ).rule == "max_open_positions"
    assert _check(_risk(stale_candle_s=30), candle_time=now - timedelta(hours=1, minutes=5)
                  ).rule == "stale_data"
    assert _check(_risk(stale_quote_s=5), quote=_q(t=now - timedelta(seconds=60))
                  ).rule == "stale_data"
    exp = _risk(max_exposure_per_currency=10_000.0, fixed_units=20_000)
    assert _check(exp).rule == "exposure"
    friday = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)  # 16:00 New York, 1 h before the close
    assert _check(_risk(), now=friday).rule == "weekend"
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert _check(_risk(), now=saturday).rule == "market_closed"
    halted = _risk()
    halted.halt("test")
    assert _check(halted).rule == "halted"
    tiny = _check(_risk(risk_per_trade=0.0001), balance=1.0)
    assert tiny.rule == "size"


def test_weekly_close_and_market_hours() -> None:
    assert weekly_close(T0) == datetime(2026, 11, 27, 22, 0, tzinfo=UTC)  # EST
    assert weekly_close(datetime(2026, 7, 1, tzinfo=UTC)) == datetime(2026, 7, 3, 21, 0,
                                                                      tzinfo=UTC)  # EDT
    assert market_open(T0)
    assert not market_open(datetime(2026, 11, 29, 21, 59, tzinfo=UTC))
    assert market_open(datetime(2026, 11, 29, 22, 0, tzinfo=UTC))


def test_cooldown_daily_loss_and_drawdown() -> None:
    r = _risk(daily_loss_limit=0.02, max_drawdown=0.05)
    assert r.on_trade_closed(-1.0, T0) is None
    msg = r.on_trade_closed(-1.0, T0)
    assert msg and "cooldown" in msg
    assert _check(r, now=T0 + timedelta(hours=1)).rule == "cooldown"
    assert _check(r, now=T0 + timedelta(hours=3, seconds=1),
                  candle_time=T0 + timedelta(hours=2)).ok
    assert r.on_equity(10_000, T0) is None
    assert r.on_equity(9_900, T0 + timedelta(minutes=5)) is None
    hit = r.on_equity(9_790, T0 + timedelta(minutes=10))
    assert hit is not None and hit[0] == "flatten_halt" and r.s.halted
    r.resume()
    r2 = _risk(daily_loss_limit=None, max_drawdown=0.05)
    r2.on_equity(10_000, T0)
    r2.on_equity(10_500, T0 + timedelta(days=1))
    hit = r2.on_equity(9_970, T0 + timedelta(days=2))
    assert hit is not None and hit[0] == "halt"
    state = r2.state()
    r3 = _risk()
    r3.restore(state)
    assert r3.s.halted and r3.s.peak_equity == 10_500


# ------------------------------------------------------------------ brokers


def test_client_id_is_deterministic() -> None:
    a = client_id("m1", "EUR_USD", T0, "open")
    assert a == client_id("m1", "EUR_USD", T0, "open")
    assert a != client_id("m1", "EUR_USD", T0 + timedelta(hours=1), "open")
    assert a != client_id("m2", "EUR_USD", T0, "open")
    assert a.startswith("sep-") and len(a) <= 128


def test_paper_broker_uses_backtest_fill_rules() -> None:
    b = PaperBroker(balance=10_000)
    b.on_quote(_q(1.10000, 1.10010, T0))
    res = b.market_order(OrderRequest("sep-a", "EUR_USD", 1000, stop_loss="1.09810"))
    assert res.state == "filled" and res.fill is not None and res.fill.price == 1.10010
    assert b.market_order(OrderRequest("sep-a", "EUR_USD", 1000)) is res  # a repeat: no 2nd
    assert len(b.open_trades()) == 1
    # a candle (synthetic) whose bid low crosses the stop: filled at the stop level
    c = Candle("EUR_USD", T0, 1.1001, 1.1003, 1.0970, 1.0990,
               bid=(1.1000, 1.1002, 1.0969, 1.0989), ask=(1.1002, 1.1004, 1.0971, 1.0991))
    b.on_candle(c)
    ev = list(b.activity_since(res.fill.transaction_id).fills)
    assert len(ev) == 1 and ev[0].reason == "STOP_LOSS_ORDER" and ev[0].price == 1.09810
    assert ev[0].closed[0][3] == pytest.approx((1.09810 - 1.10010) * 1000)
    assert b.account().balance == pytest.approx(10_000 + (1.09810 - 1.10010) * 1000)


def test_result_from_transactions() -> None:
    txs = [{"id": "10", "type": "MARKET_ORDER", "clientExtensions": {"id": "sep-x"},
            "instrument": "EUR_USD", "units": "100", "time": "2026-11-24T10:00:00.000000000Z"},
           {"id": "11", "type": "ORDER_FILL", "orderID": "10", "instrument": "EUR_USD",
            "units": "100", "price": "1.10010", "time": "2026-11-24T10:00:00.000000000Z",
            "tradeOpened": {"tradeID": "11", "units": "100", "price": "1.10010"}}]
    res = result_from_transactions("sep-x", txs)
    assert res is not None and res.state == "filled" and res.fill.opened.trade_id == "11"
    assert result_from_transactions("sep-y", txs) is None
    assert result_from_transactions("sep-x", txs[:1]).state == "unknown"


# ------------------------------------------------------------------ models


def test_model_checks(tmp_path: Path) -> None:
    good = make_artifact(tmp_path / "m.json")
    models = load_models([str(good)], ["EUR_USD"], "H1")
    assert models["EUR_USD"].model_id.startswith("EUR_USD-H1-")
    with pytest.raises(ModelError, match="does not trade"):
        load_models([str(good)], ["GBP_USD"], "H1")
    with pytest.raises(ModelError, match="M5"):
        load_models([str(good)], ["EUR_USD"], "M5")
    with pytest.raises(ModelError, match="no model for GBP_USD"):
        load_models([str(good)], ["EUR_USD", "GBP_USD"], "H1")
    tampered = tmp_path / "t.json"
    tampered.write_text(good.read_text().replace('"window": 11', '"window": 12'))
    with pytest.raises(ModelError, match="checksum"):
        load_models([str(tampered)], ["EUR_USD"], "H1")
    legacy = json.loads(good.read_text())
    legacy["alignment"] = "legacy"
    (tmp_path / "l.json").write_text(json.dumps(legacy))
    with pytest.raises(ModelError, match="legacy"):
        load_models([str(tmp_path / "l.json")], ["EUR_USD"], "H1")
    assert Policy().target(1, False, 0) == 0 and Policy().target(-1, True, 0) == -1
    assert Policy(hold="keep").target(0, False, 1) == 1


# ------------------------------------------------------------------ status API


class _Source:
    def __init__(self) -> None:
        self.commands: list[str] = []

    def status(self) -> dict:
        return {"service": "t", "mode": "paper"}

    def health(self) -> tuple[bool, dict]:
        return True, {"ok": True}

    def positions(self) -> list:
        return [{"trade_id": "1"}]

    def signals(self, limit: int) -> list:
        return [{"n": limit}]

    def trades(self, limit: int) -> dict:
        return {"trades": []}

    def metrics_text(self) -> str:
        return prometheus([("sep_x_total", "counter", "x", [({"kind": "a"}, 2.0)])])

    def command(self, name: str, body: dict) -> dict:
        self.commands.append(name)
        return {"ok": True}


def _req(url: str, method: str = "GET", token: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_status_api_endpoints_and_token() -> None:
    src = _Source()
    srv = StatusServer(src, host="127.0.0.1", port=0, token="s3cret-token").start()
    base = f"http://127.0.0.1:{srv.port}"
    try:
        assert _req(base + "/health")[0] == 200
        assert json.loads(_req(base + "/api/status")[1])["mode"] == "paper"
        assert json.loads(_req(base + "/api/positions")[1])["positions"][0]["trade_id"] == "1"
        assert json.loads(_req(base + "/api/signals?limit=7")[1])["signals"][0]["n"] == 7
        assert _req(base + "/api/signals?limit=x")[0] == 400
        code, text = _req(base + "/metrics")
        assert code == 200 and 'sep_x_total{kind="a"} 2' in text and "# TYPE" in text
        assert _req(base + "/nope")[0] == 404
        assert _req(base + "/api/halt", "POST")[0] == 401
        assert _req(base + "/api/halt", "POST", token="wrong")[0] == 401
        assert _req(base + "/api/halt", "POST", token="s3cret-token")[0] == 200
        assert src.commands == ["halt"]
    finally:
        srv.stop()
    with pytest.raises(StatusError, match="not a loopback"):
        StatusServer(src, host="0.0.0.0", port=0, token=None)
    srv = StatusServer(src, host="0.0.0.0", port=0, token="tok-123456").start()
    try:
        # finding 15: /health (ok or not, no data) answers a container's health check
        # without the token; data needs it (more in tests/test_status_api.py)
        assert _req(f"http://127.0.0.1:{srv.port}/health") == (200, '{"ok":true}')
        assert _req(f"http://127.0.0.1:{srv.port}/api/status")[0] == 401
        assert _req(f"http://127.0.0.1:{srv.port}/api/status", token="tok-123456")[0] == 200
    finally:
        srv.stop()


def test_candle_from_oanda_and_times() -> None:
    c = Candle.from_oanda("EUR_USD", {"time": "2026-11-24T10:00:00.000000000Z", "volume": 5,
                                      "complete": True, "mid": {"o": "1.1", "h": "1.2",
                                                                "l": "1.0", "c": "1.15"}})
    assert c.time == T0 and c.c == 1.15 and c.bid is None
    assert parse_time("1764000000.5") == datetime.fromtimestamp(1764000000.5, UTC)


def test_warmup_is_the_rules_history_unless_configured_and_never_less(tmp_path):
    """No default decides what live computes: feed.warmup_candles null takes the history the
    rule needs for its signals to equal research's from the first candle; a configured value
    below it is refused at start-up, naming both numbers (the runner used to warn and trade
    signals that differed from research until enough candles had arrived)."""
    from sep_research.live.model import warmup_for

    art = make_artifact(tmp_path / "m.json")
    models = load_models([str(art)], ["EUR_USD"], "H1")
    need = models["EUR_USD"].history
    assert need > 2
    assert warmup_for(models, None) == need
    assert warmup_for(models, need + 50) == need + 50
    with pytest.raises(ModelError, match=rf"needs {need} candles.*warmup_candles is 10"):
        load_models([str(art)], ["EUR_USD"], "H1", warmup=10)
    assert load_models([str(art)], ["EUR_USD"], "H1", warmup=need)
