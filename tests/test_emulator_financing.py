"""The emulator's daily financing (issue 14): OANDA's ``DAILY_FINANCING`` at 17:00 New York on
open trades, with the weekend multiple, long and short, and the account's state after it.

Expected amounts are computed here from OANDA's published rule (``units x price x rate x days /
365``, the price the mid close of the hour before the rollover), not by the emulator's code;
candles are the packaged real EUR_USD H1 sample (mid only: bid/ask are mid -/+ 0.7 pip, so
their mid is the stored close), and one synthetic USD_JPY frame (labelled synthetic) for the
conversion to the account currency.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pandas as pd
import pytest
from oandapyV20.endpoints import accounts, orders, positions, trades

from sep_research.data import load_sample, synthetic_candles
from sep_research.emulator import Emulator, EmulatorConfig
from sep_research.financing import FinancingRates, default_rates, from_oanda

RATES = FinancingRates(long_rate=-0.03, short_rate=0.01, source="test")
START = "2017-06-13T18:00:00Z"  # a Tuesday (New York summer time: rollovers at 21:00Z)
CENT = Decimal("0.0001")


def d(x: str) -> Decimal:
    assert isinstance(x, str), x
    return Decimal(x)


def expected(units: int, price: float, rate: float, days: int, conv: float = 1.0) -> Decimal:
    """OANDA's rule, in the account currency, rounded as amounts are on the wire."""
    amount = abs(units) * price * rate * days / 365.0 * conv
    return Decimal(repr(amount)).quantize(CENT, rounding=ROUND_HALF_EVEN)


def market(api, acct: str, units: int, instrument: str = "EUR_USD") -> dict:
    body = {"order": {"type": "MARKET", "instrument": instrument, "units": str(units)}}
    return api.request(orders.OrderCreate(acct, data=body))


def close_before(frame: pd.DataFrame, t: str) -> float:
    """The stored (mid) close of the hour that ends at ``t``."""
    return float(frame.loc[pd.Timestamp(t) - pd.Timedelta(hours=1), "close"])


def financing_txs(emu: Emulator) -> list[dict]:
    return [t for t in emu.transactions() if t["type"] == "DAILY_FINANCING"]


def check_invariants(emu: Emulator, api) -> dict:
    """What must hold of any emulator account, financing included: IDs contiguous from 1, each
    transaction's ``accountBalance`` the running balance, balance = funding + the fills'
    realised P/L + financing, the summary's ``pl`` and ``financing`` those sums, and every
    trade's and position's financing adding up to the account's."""
    a = emu.account_id
    txs = emu.transactions()
    assert [int(t["id"]) for t in txs] == list(range(1, len(txs) + 1))
    balance = Decimal(0)
    pl = fin = Decimal(0)
    for t in txs:
        assert int(t["batchID"]) <= int(t["id"])
        if t["type"] == "TRANSFER_FUNDS":
            balance += d(t["amount"])
        elif t["type"] == "ORDER_FILL":
            balance += d(t["pl"])
            pl += d(t["pl"])
            assert t["financing"] == "0.0000"  # DAILY mode: nothing accrued is paid at a fill
        elif t["type"] == "DAILY_FINANCING":
            balance += d(t["financing"])
            fin += d(t["financing"])
            assert t["accountFinancingMode"] == "DAILY"
            pos = t["positionFinancings"]
            assert d(t["financing"]) == sum(d(p["financing"]) for p in pos)
            for p in pos:
                assert d(p["financing"]) == sum(d(x["financing"])
                                                for x in p["openTradeFinancings"])
        if "accountBalance" in t:
            assert d(t["accountBalance"]) == balance, t
    s = api.request(accounts.AccountSummary(a))["account"]
    assert d(s["balance"]) == balance
    assert d(s["pl"]) == pl and d(s["financing"]) == fin
    all_trades = api.request(trades.TradesList(a, params={"state": "ALL", "count": 500}))
    assert sum(d(tr["financing"]) for tr in all_trades["trades"]) == fin
    pos = api.request(positions.PositionList(a))["positions"]
    assert sum(d(p["financing"]) for p in pos) == fin
    for p in pos:
        assert d(p["financing"]) == d(p["long"]["financing"]) + d(p["short"]["financing"])
    assert d(s["NAV"]) == d(s["balance"]) + d(s["unrealizedPL"])
    return {"balance": balance, "pl": pl, "financing": fin}


def test_long_and_short_charged_at_17_new_york_with_the_weekend_multiple():
    frame = load_sample()
    with Emulator(EmulatorConfig(source="sample", start=START, hedging=True,
                                 financing={"EUR_USD": RATES})) as emu:
        api = emu.api()
        a = emu.account_id
        long_id = market(api, a, 10_000)["orderFillTransaction"]["id"]
        short_id = market(api, a, -5_000)["orderFillTransaction"]["id"]
        emu.clock.set("2017-06-19T00:00:00Z")  # through Tuesday .. Sunday
        txs = financing_txs(emu)
        # Tuesday to Friday 17:00 New York (21:00Z); Saturday's and Sunday's charge no days
        want_days = {"2017-06-13T21:00": 1, "2017-06-14T21:00": 3,  # Wednesday: the weekend
                     "2017-06-15T21:00": 1, "2017-06-16T21:00": 1}
        assert [t["time"][:16] for t in txs] == list(want_days)
        totals = {long_id: Decimal(0), short_id: Decimal(0)}
        for t in txs:
            (p,) = t["positionFinancings"]
            assert p["instrument"] == "EUR_USD"
            price = close_before(frame, t["time"][:19] + "Z")
            days = want_days[t["time"][:16]]
            got = {x["tradeID"]: d(x["financing"]) for x in p["openTradeFinancings"]}
            assert got == {long_id: expected(10_000, price, -0.03, days),
                           short_id: expected(-5_000, price, 0.01, days)}
            assert got[long_id] < 0 < got[short_id]  # the long pays, the short receives
            assert {x["financingRate"] for x in p["openTradeFinancings"]} == {"-0.030000",
                                                                               "0.010000"}
            for k, v in got.items():
                totals[k] += v
        # Wednesday's charge is three days' worth of Tuesday's (at its own price)
        tue, wed = (t["positionFinancings"][0]["openTradeFinancings"][0] for t in txs[:2])
        p_tue, p_wed = (close_before(frame, t["time"][:19] + "Z") for t in txs[:2])
        assert abs(float(wed["financing"]) / p_wed - 3 * float(tue["financing"]) / p_tue) < 3e-4
        # the account, the trades and the position sides carry it
        figures = check_invariants(emu, api)
        assert figures["financing"] == totals[long_id] + totals[short_id]
        assert figures["balance"] == Decimal(100_000) + figures["financing"]
        open_ = {tr["id"]: d(tr["financing"])
                 for tr in api.request(trades.OpenTrades(a))["trades"]}
        assert open_ == totals
        pos = api.request(positions.PositionDetails(a, "EUR_USD"))["position"]
        assert d(pos["long"]["financing"]) == totals[long_id]
        assert d(pos["short"]["financing"]) == totals[short_id]


def test_winter_rollover_is_at_22z():
    with Emulator(EmulatorConfig(source="sample", start="2017-11-14T12:00:00Z",
                                 financing={"EUR_USD": RATES})) as emu:
        market(emu.api(), emu.account_id, -1_000)
        emu.clock.set("2017-11-15T12:00:00Z")
        (t,) = financing_txs(emu)
        assert t["time"] == "2017-11-14T22:00:00.000000000Z"  # 17:00 New York, standard time
        price = close_before(load_sample(), "2017-11-14T22:00:00Z")
        assert d(t["financing"]) == expected(-1_000, price, 0.01, 1) > 0


def test_closed_at_the_rollover_pays_opened_at_it_does_not():
    """A fill at 17:00 New York itself comes after the rollover (as in the backtest): a trade
    closed there pays, one opened there does not; a trade opened and closed between two
    rollovers pays nothing."""
    frame = load_sample()
    with Emulator(EmulatorConfig(source="sample", start=START,
                                 financing={"EUR_USD": RATES})) as emu:
        api = emu.api()
        a = emu.account_id
        intraday = market(api, a, 1_000)["orderFillTransaction"]["id"]
        emu.clock.set("2017-06-13T19:30:00Z")
        api.request(trades.TradeClose(a, intraday))
        first = market(api, a, 2_000)["orderFillTransaction"]["id"]
        emu.clock.set("2017-06-13T21:00:00Z")  # exactly at the rollover
        out = market(api, a, -5_000)  # closes the long and opens a short, at the rollover
        fill = out["orderFillTransaction"]
        (t,) = financing_txs(emu)
        assert int(t["id"]) < int(out["orderCreateTransaction"]["id"])  # before the fill
        assert [x["tradeID"] for x in t["positionFinancings"][0]["openTradeFinancings"]] == \
            [first]
        assert fill["tradesClosed"][0]["tradeID"] == first
        short = fill["tradeOpened"]["tradeID"]
        emu.clock.set("2017-06-14T21:00:00Z")
        txs = financing_txs(emu)
        assert len(txs) == 2
        assert [x["tradeID"] for x in txs[1]["positionFinancings"][0]["openTradeFinancings"]] \
            == [short]
        assert d(txs[1]["financing"]) == expected(-3_000, close_before(frame,
                                                                       "2017-06-14T21:00:00Z"),
                                                  0.01, 3)
        done = {tr["id"]: tr for tr in api.request(trades.TradesList(
            a, params={"state": "ALL"}))["trades"]}
        assert done[intraday]["financing"] == "0.0000"
        assert d(done[first]["financing"]) == expected(2_000, close_before(
            frame, "2017-06-13T21:00:00Z"), -0.03, 1)
        check_invariants(emu, api)


def test_account_invariants_hold_with_financing_over_two_weeks():
    """Netting, FIFO, partial closes, stops and position closes over two weeks of rollovers."""
    with Emulator(EmulatorConfig(source="sample", start="2017-06-12T09:00:00Z")) as emu:
        api = emu.api()
        a = emu.account_id
        t0 = datetime(2017, 6, 12, 9, tzinfo=UTC)
        plan = [(1_500, None), (-700, None), (2_000, "0.00150"), (-4_000, None), (900, None),
                (-300, "0.00100"), (1_200, None), (-1_500, None)]
        for k in range(14):
            units, stop = plan[k % len(plan)]
            body: dict = {"type": "MARKET", "instrument": "EUR_USD", "units": str(units)}
            if stop:
                body["stopLossOnFill"] = {"distance": stop}
            api.request(orders.OrderCreate(a, data={"order": body}))
            if k % 5 == 4:
                open_ = api.request(trades.OpenTrades(a))["trades"]
                if open_:
                    api.request(trades.TradeClose(a, open_[-1]["id"], data={"units": "100"}))
            emu.clock.set((t0 + timedelta(hours=23 * (k + 1))).strftime("%Y-%m-%dT%H:%M:%SZ"))
        figures = check_invariants(emu, api)
        n = len(financing_txs(emu))
        assert n >= 8 and figures["financing"] != 0, (n, figures)
        pos = api.request(positions.PositionDetails(a, "EUR_USD"))["position"]
        if pos["long"]["units"] != "0" or pos["short"]["units"] != "0":
            api.request(positions.PositionClose(a, "EUR_USD", data={
                "longUnits": "ALL" if pos["long"]["units"] != "0" else "NONE",
                "shortUnits": "ALL" if pos["short"]["units"] != "0" else "NONE"}))
        check_invariants(emu, api)


def test_usd_jpy_financing_is_converted_to_usd():
    frames = {"USD_JPY": synthetic_candles(48, instrument="USD_JPY", granularity="H1",
                                           price=110.0, seed=5)}  # from Monday 2024-01-01
    rates = FinancingRates(long_rate=0.04, short_rate=-0.05, source="test")
    with Emulator(EmulatorConfig(candles=frames, start="2024-01-01T12:00:00Z",
                                 financing={"USD_JPY": rates})) as emu:
        market(emu.api(), emu.account_id, 10_000, "USD_JPY")
        emu.clock.set("2024-01-02T12:00:00Z")
        (t,) = financing_txs(emu)
        assert t["time"] == "2024-01-01T22:00:00.000000000Z"
        bar = frames["USD_JPY"].loc[pd.Timestamp("2024-01-01T21:00:00Z")]
        # the emulator quotes at the display precision (3 decimals for a JPY pair)
        price = 0.5 * (round(bar.bid_close, 3) + round(bar.ask_close, 3))
        (p,) = t["positionFinancings"]
        assert abs(float(p["quoteFinancing"]) - 10_000 * price * 0.04 / 365) < 1e-6  # in JPY
        # in USD: the JPY amount at the USD_JPY mid of the moment, about units x rate / 365
        assert abs(d(t["financing"]) - Decimal(10_000 * 0.04 / 365)) < Decimal("0.001")
        factor = float(p["homeConversionFactors"]["gainQuoteHome"]["factor"])
        assert abs(factor - 1 / round(float(bar.close), 3)) < 1e-6


def test_instruments_endpoint_serves_the_rates_charged():
    first = load_sample().index[0].to_pydatetime()
    for financing, want in (("default", default_rates("EUR_USD", first)),
                            ({"EUR_USD": RATES.to_dict()}, RATES),
                            ("off", FinancingRates(0.0, 0.0, source="off"))):
        with Emulator(EmulatorConfig(source="sample", start=START, financing=financing)) as emu:
            api = emu.api()
            (ins,) = api.request(accounts.AccountInstruments(emu.account_id))["instruments"]
            got = from_oanda(ins["financing"], source=want.source)
            assert got == want, (financing, ins["financing"])
            market(api, emu.account_id, 1_000)
            emu.clock.set("2017-06-14T00:00:00Z")
            n = len(financing_txs(emu))
            fin = api.request(accounts.AccountSummary(emu.account_id))["account"]["financing"]
            if financing == "off":
                assert n == 0 and fin == "0.0000"
            else:
                assert n == 1 and d(fin) < 0  # EUR_USD longs paid in 2017 (and here)


def test_financing_settings_are_checked(tmp_path: Path):
    from sep_research.emulator.cli import financing_option

    for bad, text in (("weekly", "financing 'weekly'"),
                      ({"EUR_USD": {"source": "x", "long_rate": 2.0, "short_rate": 0.0,
                                    "days": {}}}, "financing.EUR_USD"),
                      ({"eurusd": None}, "financing instrument"),
                      (["EUR_USD"], "financing: expected")):
        with pytest.raises(ValueError, match=text):
            EmulatorConfig(financing=bad).check()
    with pytest.raises(ValueError, match="GBP_USD not among the replayed instruments"):
        Emulator(EmulatorConfig(source="sample", financing={"GBP_USD": None}))
    assert financing_option("off") == "off"
    with pytest.raises(ValueError, match=r"--financing 'nope.json'"):
        financing_option("nope.json")
    bad_file = tmp_path / "bad.json"
    bad_file.write_text("{not json")
    with pytest.raises(ValueError, match=r"--financing .*bad.json: not a JSON file"):
        financing_option(str(bad_file))
    good = tmp_path / "rates.json"
    good.write_text(json.dumps({"EUR_USD": RATES.to_dict()}))
    assert financing_option(str(good)) == {"EUR_USD": RATES}
