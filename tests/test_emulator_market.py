"""Replay clock, price path, aggregation and configuration of the emulator (no HTTP here,
except the CLI check). Mechanics use synthetic candles (labelled), realism the real sample."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from sep_research.cli import main as sep_main
from sep_research.data import load_sample, synthetic_candles
from sep_research.emulator import Emulator, EmulatorConfig, ReplayClock
from sep_research.emulator.market import Series, make_spec
from sep_research.emulator.wire import NS, fmt_time
from sep_research.emulator.wire import parse_time_ns as parse_time


def test_wire_times_round_trip():
    t = parse_time("2016-10-24T21:48:18.593753865Z", "t")
    assert fmt_time(t) == "2016-10-24T21:48:18.593753865Z"
    assert fmt_time(t, unix=True) == "1477345698.593753865"
    assert parse_time("1477345698.593753865", "t") == t
    assert parse_time("2016-10-24T23:48:18.593753865+02:00", "t") == t
    for bad in ("2016-02-30T00:00:00Z", "soon", ""):
        with pytest.raises(ValueError):
            parse_time(bad, "from")


def test_clock_manual_speed_end_and_no_going_back():
    start = datetime(2024, 1, 1, tzinfo=UTC)
    seen = []
    c = ReplayClock(start, step_seconds=60, end=start + timedelta(hours=1))
    c.add_listener(seen.append)
    assert c.now() == start and c.speed == 0
    c.advance(candles=2, seconds=30)
    assert c.now() == start + timedelta(seconds=150) and len(seen) == 1
    c.set("2024-01-01T00:30:00Z")
    with pytest.raises(ValueError, match="cannot go back"):
        c.set(start)
    with pytest.raises(ValueError):
        c.advance(candles=-1)
    c.run(3600.0)
    import time

    time.sleep(0.05)
    assert c.now() > start + timedelta(minutes=30)
    c.pause()
    frozen = c.now_ns()
    time.sleep(0.02)
    assert c.now_ns() == frozen
    c.advance(seconds=10**6)
    assert c.at_end and c.now() == start + timedelta(hours=1)
    with pytest.raises(ValueError, match="naive"):
        ReplayClock(datetime(2024, 1, 1), step_seconds=60)


def test_price_path_is_continuous_inside_a_candle_and_matches_its_ohlc():
    frame = synthetic_candles(50, granularity="M5", seed=1)
    s = Series(make_spec("EUR_USD", "0.02"), frame, "M5", 0.00007)
    for i in range(0, 50, 7):
        t0 = s.tl[i]
        vals = [s.value_at("M", t0 + k * s.dur // 300) for k in range(300)]
        row = frame.iloc[i]
        assert vals[0] == pytest.approx(row["open"], abs=6e-6)
        assert max(vals) <= round(row["high"], 5) + 1e-12
        assert min(vals) >= round(row["low"], 5) - 1e-12
        _o, h, lo, c = s.partial(i, "M", t0 + s.dur - 1)
        assert (h, lo) == (round(row["high"], 5), round(row["low"], 5))
        assert c == pytest.approx(row["close"], abs=2e-5)
        bid = s.value_at("B", t0 + s.dur // 2)
        assert bid == pytest.approx(round(frame.iloc[i]["bid_open"], 5), abs=0.01)


def test_weekend_gap_halts_the_real_sample():
    frame = load_sample()
    s = Series(make_spec("EUR_USD", "0.02"), frame, "H1", 0.00007)
    friday_close = pd.Timestamp("2017-09-15T21:00:00Z").value
    assert s.halted(friday_close + 3600 * NS)
    assert s.halted(pd.Timestamp("2017-09-17T12:00:00Z").value)
    assert not s.halted(pd.Timestamp("2017-09-13T12:30:00Z").value)
    assert s.quote_time(pd.Timestamp("2017-09-16T12:00:00Z").value) <= friday_close


def test_daily_alignment_follows_new_york_daylight_saving():
    frame = load_sample()
    s = Series(make_spec("EUR_USD", "0.02"), frame, "H1", 0.00007)
    agg = s.aggregate("D", 17, "America/New_York", "Friday")
    hours = {pd.Timestamp(t, unit="ns", tz="UTC").hour for t in agg.start}
    assert hours <= {21, 22} and hours == {21, 22}  # the sample spans both DST sides
    utc = s.aggregate("D", 0, "UTC", "Friday")
    assert {pd.Timestamp(t, unit="ns", tz="UTC").hour for t in utc.start} == {0}
    # volumes are conserved by aggregation
    assert sum(agg.volume) == int(frame["volume"].sum())
    h4 = s.aggregate("H4", 17, "America/New_York", "Friday")
    assert np.all(np.diff(h4.start) > 0)


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="account id"):
        Emulator(EmulatorConfig(account_id="abc"))
    with pytest.raises(ValueError, match="source"):
        Emulator(EmulatorConfig(source="web"))
    with pytest.raises(ValueError, match="outside the data"):
        Emulator(EmulatorConfig(start="2030-01-01T00:00:00Z"))
    with pytest.raises(ValueError, match="GBP_USD or USD_GBP"):
        Emulator(EmulatorConfig(candles={"EUR_GBP": synthetic_candles(
            10, instrument="EUR_GBP", granularity="M1")}))
    with pytest.raises(ValueError, match="fault spec"):
        Emulator(EmulatorConfig(faults="explode"))


def test_trailing_stop_and_gtd_expiry_on_synthetic_path():
    from oandapyV20.endpoints import orders, trades

    frames = {"EUR_USD": synthetic_candles(3000, granularity="M1", seed=5)}
    with Emulator(EmulatorConfig(candles=frames, start="2024-01-01T10:00:00Z")) as emu:
        api = emu.api()
        acct = emu.account_id
        fill = api.request(orders.OrderCreate(acct, data={"order": {
            "type": "MARKET", "instrument": "EUR_USD", "units": "1000",
            "trailingStopLossOnFill": {"distance": "0.00080"}}}))["orderFillTransaction"]
        gtd = (pd.Timestamp(emu.clock.now()) + pd.Timedelta(minutes=5)).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        lim = api.request(orders.OrderCreate(acct, data={"order": {
            "type": "LIMIT", "instrument": "EUR_USD", "units": "1", "price": "0.50000",
            "timeInForce": "GTD", "gtdTime": gtd}}))["orderCreateTransaction"]
        first_ts = float(api.request(trades.TradeDetails(acct, fill["id"]))["trade"]
                         ["trailingStopLossOrder"]["trailingStopValue"])
        assert first_ts == pytest.approx(float(fill["fullPrice"]["closeoutBid"]) - 0.0008)
        emu.clock.advance(seconds=400)
        o = api.request(orders.OrderDetails(acct, lim["id"]))["order"]
        assert o["state"] == "CANCELLED"
        cancel = emu.transactions()[int(o["cancellingTransactionID"]) - 1]
        assert cancel["reason"] == "TIME_IN_FORCE_EXPIRED" and cancel["time"].startswith(
            gtd[:16])
        ts = first_ts
        for _ in range(600):
            t = api.request(trades.TradeDetails(acct, fill["id"]))["trade"]
            if t["state"] == "CLOSED":
                break
            new_ts = float(t["trailingStopLossOrder"]["trailingStopValue"])
            assert new_ts >= ts - 1e-9  # a long trade's trailing stop only rises
            ts = new_ts
            emu.clock.advance(seconds=20)
        assert t["state"] == "CLOSED"
        fx = emu.transactions()[int(t["closingTransactionIDs"][0]) - 1]
        assert fx["reason"] == "TRAILING_STOP_LOSS_ORDER"
        # the stop only rises and this path has no gaps: the fill is at or above the last
        # trailing value seen (it may have risen again after the last look)
        assert float(fx["price"]) >= ts - 1e-9
        assert ts >= first_ts


def test_cli_help_documents_the_fault_spec(capsys):
    with pytest.raises(SystemExit):
        sep_main(["emulator", "--help"])
    out = capsys.readouterr().out
    for word in ("--faults", "drop-order", "stall", "cut", "xCOUNT", "--speed", "--source"):
        assert word in out
    assert sep_main(["emulator", "--token", "t", "--faults", "bogus"]) == 2


def test_source_cache_replays_what_the_cache_holds(tmp_path):
    from oandapyV20.endpoints import instruments

    from sep_research.data import CandleCache

    CandleCache(tmp_path).write(load_sample())
    with Emulator(EmulatorConfig(source="cache", cache_dir=str(tmp_path))) as emu:
        assert emu.instruments == ["EUR_USD"]
        c = emu.api().request(instruments.InstrumentsCandles(
            "EUR_USD", params={"granularity": "H1", "count": 2}))["candles"]
        assert len(c) == 2 and c[0]["complete"] is True
    with pytest.raises(ValueError, match="holds no candles"):
        Emulator(EmulatorConfig(source="cache", cache_dir=str(tmp_path / "empty")))


def test_real_m1_seed_data_aggregates_like_pandas(seed_eurusd_m1):
    from oandapyV20.endpoints import instruments

    from sep_research.data import read_candle_file

    frame = read_candle_file(seed_eurusd_m1, instrument="EUR_USD", granularity="M1")
    now = pd.Timestamp("2025-07-25T12:30:00Z")
    with Emulator(EmulatorConfig(candles={"EUR_USD": frame}, start=now)) as emu:
        api = emu.api()
        for gran, rule in (("M5", "5min"), ("M15", "15min"), ("H1", "1h")):
            got = api.request(instruments.InstrumentsCandles(
                "EUR_USD", params={"granularity": gran, "count": 12}))["candles"]
            want = frame[frame.index < now].resample(rule).agg(
                {"open": "first", "high": "max", "low": "min", "close": "last",
                 "volume": "sum"}).dropna()
            for c in got:
                t = pd.Timestamp(c["time"])
                if not c["complete"]:
                    continue
                row = want.loc[t]
                assert [c["mid"][k] for k in "ohlc"] == [
                    f"{row[k]:.5f}" for k in ("open", "high", "low", "close")], (gran, t)
                assert c["volume"] == int(row["volume"])
        forming = api.request(instruments.InstrumentsCandles(
            "EUR_USD", params={"granularity": "H1", "count": 1}))["candles"][0]
        assert forming["complete"] is False and pd.Timestamp(forming["time"]) == now.floor("h")
        part = frame[(frame.index >= now.floor("h")) & (frame.index < now)]
        opening = frame.loc[now, "open"]
        assert forming["mid"]["h"] == f"{max(part['high'].max(), opening):.5f}"
        assert forming["mid"]["c"] == f"{opening:.5f}"
        assert forming["volume"] == int(part["volume"].sum())
        with pytest.raises(Exception, match="granularity"):
            api.request(instruments.InstrumentsCandles("EUR_USD", params={"granularity": "S5"}))


def test_frames_without_provenance_need_a_granularity():
    frame = synthetic_candles(100, granularity="M1")
    bare = frame.copy()
    bare.attrs = {}
    with pytest.raises(ValueError, match="granularity"):
        Emulator(EmulatorConfig(candles={"EUR_USD": bare}))
    emu = Emulator(EmulatorConfig(candles={"EUR_USD": bare}, granularity="M1"))
    assert emu.market["EUR_USD"].granularity == "M1"
    with pytest.raises(ValueError, match="are for EUR_USD"):
        Emulator(EmulatorConfig(candles={"GBP_USD": frame}))
