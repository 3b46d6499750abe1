"""Financing at 17:00 New York: the rule, the rates, and the backtest's charge (hand-computed
figures on constructed candles, labelled synthetic; the reference backtest bit for bit)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from sep_research import financing as fin
from sep_research.backtest.simulation import (
    candle_financing_days,
    quote_arrays,
    rollover_candles,
    run_backtest,
)
from sep_research.data.candles import synthetic_candles
from sep_research.financing import FinancingError, FinancingRates
from sep_research.strategy import SpecError
from tests.reference_backtest import reference_backtest

PIP = 1e-4
#: long pays 3.65 % a year, short earns 0.73 %: 1.1 x 0.0365 / 365 = 0.00011 a day per unit
RATES = FinancingRates(long_rate=-0.0365, short_rate=0.0073, source="test")


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ------------------------------------------------------------------ the rule


def test_oanda_worked_example() -> None:
    # OANDA: long 100 000 EUR/USD at 1.15826, long rate -3.00 %, one day: -9.52 USD
    r = FinancingRates(long_rate=-0.03, short_rate=0.01, source="oanda example")
    assert round(r.amount(100_000, 1.15826, 1), 2) == -9.52
    assert round(r.amount(-100_000, 1.15826, 1), 2) == 3.17  # short: +1 % credit
    assert r.pips(100_000, 1.15826, 1, pip=PIP) == pytest.approx(-0.952, abs=1e-3)
    assert r.amount(0, 1.15826, 1) == 0.0


def test_rollovers_are_17_new_york_in_winter_and_summer() -> None:
    # Wednesday 2024-01-10 (EST, UTC-5) and Wednesday 2024-07-10 (EDT, UTC-4)
    assert fin.rollovers(_utc(2024, 1, 10, 12), _utc(2024, 1, 11, 12)) == [_utc(2024, 1, 10, 22)]
    assert fin.rollovers(_utc(2024, 7, 10, 12), _utc(2024, 7, 11, 12)) == [_utc(2024, 7, 10, 21)]
    # start excluded, end included
    assert fin.rollovers(_utc(2024, 1, 10, 22), _utc(2024, 1, 11, 22)) == [_utc(2024, 1, 11, 22)]
    assert fin.rollovers(_utc(2024, 1, 10, 22, 0, 1), _utc(2024, 1, 10, 23)) == []
    # across the change to summer time (Sunday 2024-03-10)
    assert fin.rollovers(_utc(2024, 3, 8, 12), _utc(2024, 3, 11, 23)) == [
        _utc(2024, 3, 8, 22), _utc(2024, 3, 9, 22), _utc(2024, 3, 10, 21), _utc(2024, 3, 11, 21)]
    with pytest.raises(FinancingError, match="start"):
        fin.rollovers(datetime(2024, 1, 1), _utc(2024, 1, 2))


def test_weekend_multiple_on_wednesday_and_seven_days_a_week() -> None:
    r = fin.default_rates("EUR_USD")
    assert r.days == (1, 1, 3, 1, 1, 0, 0)
    assert r.days_charged(_utc(2024, 1, 10, 22)) == 3  # Wednesday 17:00 New York
    assert r.days_charged(_utc(2024, 7, 10, 21)) == 3  # the same in summer time
    assert r.days_charged(_utc(2024, 1, 12, 22)) == 1  # Friday
    assert r.days_charged(_utc(2024, 1, 14, 22)) == 0  # Sunday's open
    # held over the weekend (Friday noon to Monday noon): Friday's day only
    assert fin.days_between(r, _utc(2024, 1, 12, 12), _utc(2024, 1, 15, 12)) == 1
    # a whole week, whatever the start: seven days
    for start in (_utc(2024, 1, 8, 3), _utc(2024, 7, 11, 21, 30)):
        assert fin.days_between(r, start, start.replace(day=start.day + 7)) == 7


def test_default_table_is_the_policy_rate_difference_less_the_fee() -> None:
    old = fin.default_rates("EUR_USD", date(2017, 4, 19))  # before the first snapshot
    assert old.source == "default-table:2017-07-01"
    assert old.long_rate == pytest.approx(-0.0040 - 0.01125 - 0.01)
    assert old.short_rate == pytest.approx(0.01125 + 0.0040 - 0.01)
    new = fin.default_rates("EUR_USD", _utc(2025, 7, 23, 20, 40))
    assert new.source == "default-table:2025-07-01"
    assert new.long_rate == pytest.approx(0.02 - 0.04375 - 0.01)
    jpy = fin.default_rates("USD_JPY", date(2025, 7, 23))
    assert jpy.long_rate > 0 > jpy.short_rate  # carry: long USD against JPY earns
    with pytest.raises(FinancingError, match="no default rate for TRY"):
        fin.default_rates("USD_TRY")


def test_oanda_instrument_financing_is_parsed_and_round_trips() -> None:
    obj = {"longRate": "-0.0323", "shortRate": "0.012", "financingDaysOfWeek": [
        {"dayOfWeek": d, "daysCharged": n} for d, n in
        (("MONDAY", 1), ("TUESDAY", 1), ("WEDNESDAY", 3), ("THURSDAY", 1), ("FRIDAY", 1),
         ("SATURDAY", 0), ("SUNDAY", 0))]}
    r = fin.from_oanda(obj, source="oanda:practice", instrument="EUR_USD")
    assert (r.long_rate, r.short_rate, r.days) == (-0.0323, 0.012, (1, 1, 3, 1, 1, 0, 0))
    assert fin.from_oanda(r.to_oanda(), source="x").days == r.days
    assert FinancingRates.from_dict(r.to_dict()) == r
    with pytest.raises(FinancingError, match=r"EUR_USD.financing.longRate"):
        fin.from_oanda({**obj, "longRate": "n/a"}, source="x", instrument="EUR_USD")
    with pytest.raises(FinancingError, match="financingDaysOfWeek"):
        fin.from_oanda({**obj, "financingDaysOfWeek": [{"dayOfWeek": "FUNDAY"}]}, source="x")


def test_fetched_rates_are_stored_and_preferred(tmp_path) -> None:
    r = FinancingRates(long_rate=-0.0323, short_rate=0.012, source="oanda:practice")
    fin.save_fetched(tmp_path, "EUR_USD", r, obtained="2026-01-05T12:00:00Z")
    got = fin.rates_for("EUR_USD", folder=tmp_path)
    assert (got.long_rate, got.short_rate) == (-0.0323, 0.012)
    assert got.source == "oanda:practice (obtained 2026-01-05T12:00:00Z)"
    # another instrument falls back to the default table
    assert fin.rates_for("GBP_USD", folder=tmp_path, at=date(2025, 7, 2)).source == \
        "default-table:2025-07-01"
    (tmp_path / fin.FETCHED_FILE).write_text('{"EUR_USD": {"long_rate": 5}}')
    with pytest.raises(FinancingError, match="EUR_USD"):
        fin.rates_for("EUR_USD", folder=tmp_path)


@pytest.mark.parametrize(("change", "named"), [
    ({"long_rate": math.nan}, "financing.long_rate"),
    ({"short_rate": True}, "financing.short_rate"),
    ({"days": (1, 1, 3)}, "financing.days"),
    ({"days": (1, 1, 3, 1, 1, 0, -1)}, "financing.days.SUNDAY"),
    ({"source": ""}, "financing.source"),
])
def test_bad_rates_are_refused_naming_the_field(change: dict, named: str) -> None:
    kw = {"long_rate": -0.01, "short_rate": 0.0, "source": "x", **change}
    with pytest.raises(FinancingError, match=named):
        FinancingRates(**kw)
    with pytest.raises(FinancingError, match="direction"):
        RATES.rate(0)
    with pytest.raises(SpecError, match=r"costs.financing.days"):
        FinancingRates.from_dict({**RATES.to_dict(), "days": {}}, where="costs.financing")


# ------------------------------------------------------------------ the backtest


def _flat(start: str, hours: int, mid: float = 1.1, spread_pips: float = 0.0) -> pd.DataFrame:
    """Hourly candles of constant price (so every pip of P&L is spread or financing)."""
    idx = pd.date_range(start, periods=hours, freq="h", tz="UTC", name="time")
    frame = pd.DataFrame(dict.fromkeys(("open", "high", "low", "close"), mid), index=idx)
    half = spread_pips * PIP / 2
    for side, sign in (("bid", -1), ("ask", 1)):
        for c in ("open", "high", "low", "close"):
            frame[f"{side}_{c}"] = mid + sign * half
    frame["volume"] = 1
    frame["complete"] = True
    return frame


def _held(frame: pd.DataFrame, first: str, last: str, direction: int) -> np.ndarray:
    """Target ``direction`` decided at the closes of candles ``first .. last``: held over the
    candles after them."""
    t = np.zeros(len(frame), dtype=np.int8)
    t[frame.index.get_loc(pd.Timestamp(first)):frame.index.get_loc(pd.Timestamp(last)) + 1] = \
        direction
    return t


# per unit and day at 1.1: long 1.1 x -0.0365 / 365 = -0.00011 (-1.1 pips), short +0.22 pips
LONG_DAY, SHORT_DAY = -1.1, 0.22


@pytest.mark.parametrize(("start", "held", "direction", "days", "charged_candle"), [
    # winter (EST): Wednesday 17:00 New York = 22:00Z, the close of the 21:00Z candle; 3 days
    ("2024-01-10T19:00Z", ("2024-01-10T19:00Z", "2024-01-10T22:00Z"), 1, 3, "2024-01-10T21:00Z"),
    # summer (EDT): 21:00Z, the close of the 20:00Z candle
    ("2024-07-10T18:00Z", ("2024-07-10T18:00Z", "2024-07-10T21:00Z"), 1, 3, "2024-07-10T20:00Z"),
    # short, Thursday in winter: one day, a credit
    ("2024-01-11T19:00Z", ("2024-01-11T19:00Z", "2024-01-11T22:00Z"), -1, 1, "2024-01-11T21:00Z"),
    # short, Thursday in summer
    ("2024-07-11T18:00Z", ("2024-07-11T18:00Z", "2024-07-11T21:00Z"), -1, 1, "2024-07-11T20:00Z"),
])
def test_backtest_charges_positions_held_through_17_new_york(
        start, held, direction, days, charged_candle) -> None:
    frame = _flat(start, 8)
    target = _held(frame, *held, direction)
    bt = run_backtest(frame, target, instrument="EUR_USD", units=100_000, financing=RATES,
                      granularity="H1")
    per_day = LONG_DAY if direction > 0 else SHORT_DAY
    (trade,) = bt.trades.itertuples()
    assert trade.financing_pips == pytest.approx(days * per_day)
    assert trade.financing_pnl == pytest.approx(days * per_day * PIP * 100_000)
    assert trade.pips == pytest.approx(days * per_day)  # no spread, flat prices
    assert bt.financing_pips == pytest.approx(days * per_day)
    assert bt.financing_ccy == pytest.approx(days * per_day * 10.0)  # $10 a pip on 100k
    assert bt.net_pips == pytest.approx(days * per_day)
    # the equity steps at the candle whose close is the rollover, and nowhere else
    steps = bt.equity_pips.diff().fillna(bt.equity_pips.iloc[0])
    assert steps[steps != 0].index.tolist() == [pd.Timestamp(charged_candle)]


def test_a_position_between_two_rollovers_pays_nothing() -> None:
    frame = _flat("2024-01-10T23:00Z", 12)  # after Wednesday's roll, well before Thursday's
    bt = run_backtest(frame, _held(frame, "2024-01-10T23:00Z", "2024-01-11T08:00Z", 1),
                      instrument="EUR_USD", financing=RATES, granularity="H1")
    assert bt.financing_pips == 0.0 and bt.trades.financing_pips.tolist() == [0.0]


def test_the_weekend_is_charged_on_friday_and_wednesday_not_saturday_or_sunday() -> None:
    # Friday 2024-01-12 20:00Z to Monday 2024-01-15 23:00Z with the weekend's candles missing
    # (the FX week closes Friday 17:00 New York and opens Sunday 17:00)
    fri = pd.date_range("2024-01-12T20:00Z", "2024-01-12T21:00Z", freq="h")
    sun_mon = pd.date_range("2024-01-14T22:00Z", "2024-01-15T23:00Z", freq="h")
    idx = fri.append(sun_mon)
    frame = _flat("2024-01-12T20:00Z", len(idx)).set_axis(idx.rename("time"))
    days = candle_financing_days(frame.index, RATES, granularity="H1")
    got = {str(t): d for t, d in zip(frame.index, days, strict=True) if d}
    # Friday's roll (22:00Z, the close of 21:00Z) and Monday's (22:00Z, the close of 21:00Z);
    # Saturday's and Sunday's rolls charge 0 days
    assert got == {"2024-01-12 21:00:00+00:00": 1.0, "2024-01-15 21:00:00+00:00": 1.0}
    candle, r_ns = rollover_candles(frame.index, granularity="H1")
    assert [str(pd.Timestamp(r, tz="UTC")) for r in r_ns] == [
        "2024-01-12 22:00:00+00:00", "2024-01-13 22:00:00+00:00", "2024-01-14 22:00:00+00:00",
        "2024-01-15 22:00:00+00:00"]
    assert candle.tolist() == [1, 1, 1, 25]  # the gap's rolls fall to Friday's last candle
    bt = run_backtest(frame, np.ones(len(frame), np.int8), instrument="EUR_USD",
                      financing=RATES, granularity="H1")
    assert bt.financing_pips == pytest.approx(2 * LONG_DAY)
    # Tuesday noon to Thursday noon: Tuesday 1 + Wednesday 3
    frame = _flat("2024-01-09T12:00Z", 49)
    bt = run_backtest(frame, np.ones(49, np.int8), instrument="EUR_USD", financing=RATES,
                      granularity="H1")
    assert bt.financing_pips == pytest.approx(4 * LONG_DAY)


def test_financing_in_account_currency_uses_units_and_conversion() -> None:
    frame = _flat("2024-01-10T19:00Z", 6, mid=150.0)  # a JPY-quoted pair
    r = FinancingRates(long_rate=0.0365, short_rate=-0.0730, source="test")
    bt = run_backtest(frame, _held(frame, "2024-01-10T19:00Z", "2024-01-10T22:00Z", -1),
                      instrument="USD_JPY", units=10_000, quote_to_account=1 / 150.0,
                      financing=r, granularity="H1")
    # short 10 000 USD_JPY at 150 over Wednesday: 150 x -0.073 x 3 / 365 = -0.09 JPY a unit
    assert bt.financing_pips == pytest.approx(-0.09 / 0.01)
    assert bt.financing_ccy == pytest.approx(-0.09 * 10_000 / 150.0)


def test_financing_off_changes_nothing_and_needs_its_days() -> None:
    frame = _flat("2024-01-10T19:00Z", 8, spread_pips=1.0)
    t = _held(frame, "2024-01-10T19:00Z", "2024-01-10T22:00Z", 1)
    off = run_backtest(frame, t, instrument="EUR_USD")
    zero = run_backtest(frame, t, instrument="EUR_USD", granularity="H1",
                        financing=FinancingRates(0.0, 0.0, source="zero"))
    assert off.trades.pips.tolist() == zero.trades.pips.tolist()
    assert off.equity_pips.tolist() == zero.equity_pips.tolist()
    assert off.financing_pips == 0.0 and off.settings["financing"] is None
    from sep_research.backtest.simulation import backtest_arrays

    bid, ask, _ = quote_arrays(frame, pip=PIP)
    with pytest.raises(ValueError, match="financing needs financing_days"):
        backtest_arrays(t, bid, ask, pip=PIP, financing=RATES)
    with pytest.raises(ValueError, match="financing_days must be 8"):
        backtest_arrays(t, bid, ask, pip=PIP, financing=RATES, financing_days=np.ones(3))
    with pytest.raises(ValueError, match="financing needs granularity"):
        run_backtest(frame, t, instrument="EUR_USD", financing=RATES)


CASES = [{}, {"stop_loss_pips": 3.0}, {"take_profit_pips": 2.0, "half_spread_pips": 0.4},
         {"stop_loss_pips": 4.0, "sizing": "fixed_fractional", "risk_fraction": 0.02},
         {"units": "varying", "quote_to_account": 0.9}]


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_numba_matches_reference_with_financing(case: dict) -> None:
    frame = synthetic_candles(1500, granularity="H1", seed=3, spread_pips=1.2)
    rng = np.random.default_rng(5)
    # runs of about a day, so that positions are held through rollovers
    target = np.repeat(rng.choice([-1, 0, 1], size=60, p=[0.4, 0.2, 0.4]), 25)[:1500]
    target = target.astype(np.int8)
    kw = dict(case)
    units = np.full(len(frame), 1000.0)
    if kw.get("units") == "varying":
        units = rng.integers(1, 5000, size=len(frame)).astype(float)
        kw["units"] = units
    res = run_backtest(frame, target, instrument="EUR_USD", financing=RATES, granularity="H1",
                       **kw)
    bid, ask, _ = quote_arrays(frame, half_spread_pips=kw.get("half_spread_pips"), pip=PIP)
    days = candle_financing_days(frame.index, RATES, granularity="H1")
    assert days.sum() > 40
    ref = reference_backtest(
        target, units if "units" in kw else np.ones(len(frame)), bid.tolist(), ask.tolist(), PIP,
        stop_loss_pips=kw.get("stop_loss_pips"), take_profit_pips=kw.get("take_profit_pips"),
        sizing=kw.get("sizing", "fixed"), risk_fraction=kw.get("risk_fraction", 0.01),
        quote_to_account=kw.get("quote_to_account", 1.0), financing=RATES,
        financing_days=days.tolist())
    trades, position, eq_pips, eq_ccy, cost_pips, cost_ccy, fin_pips, fin_ccy = ref
    assert len(trades) > 10
    got = res.trades
    for col in ("entry_index", "exit_index", "direction", "units", "entry_price", "exit_price",
                "pips", "pnl", "cost_pips", "cost_pnl", "financing_pips", "financing_pnl"):
        assert got[col].tolist() == [tr[col] for tr in trades], col
    assert res.position.tolist() == position
    assert res.equity_pips.tolist() == eq_pips
    assert res.equity_ccy.tolist() == eq_ccy
    assert (res.costs_pips, res.costs_ccy) == (cost_pips, cost_ccy)
    assert (res.financing_pips, res.financing_ccy) == (fin_pips, fin_ccy)
    assert fin_pips < 0 and (got.financing_pips > 0).any()  # long charged, short credited
    assert res.financing_pips == pytest.approx(got.financing_pips.sum())
    assert res.net_pips == pytest.approx(got.pips.sum())


def test_evaluation_charges_financing_to_the_rule_and_every_baseline() -> None:
    from sep_research.evaluation.metrics import evaluate_signals, verdict

    frame = _flat("2024-01-08T00:00Z", 24 * 5)  # Monday to Friday, flat prices, no spread
    frame.attrs["provenance"] = {"instrument": "EUR_USD", "granularity": "H1"}
    n = len(frame)
    out = evaluate_signals(frame, np.ones(n, int), np.ones(n, bool), instrument="EUR_USD",
                           granularity="H1", n_random=20, financing=RATES)
    # held from Monday 01:00Z to Friday 23:00Z: the rolls of Monday to Friday (22:00Z),
    # 1 + 1 + 3 + 1 + 1 = 7 days
    days = candle_financing_days(frame.index, RATES, granularity="H1")
    assert days.sum() == 7
    t = out["trading"]
    assert t["financing_pips"] == pytest.approx(7 * LONG_DAY)
    assert t["net_pips"] == pytest.approx(7 * LONG_DAY)
    bl = out["baselines"]
    assert bl["always_long"]["trading"]["financing_pips"] == pytest.approx(7 * LONG_DAY)
    assert bl["always_short"]["trading"]["financing_pips"] == pytest.approx(7 * SHORT_DAY)
    assert bl["random"]["financing_pips_mean"] == pytest.approx(7 * LONG_DAY)
    assert out["financing"] == RATES.to_dict()
    assert "after the spread and financing" in verdict(out)


class _InstrumentsApi:
    """Stands in for oandapyV20.API: answers the account instruments endpoint with OANDA's
    documented form (decimal strings; financingDaysOfWeek)."""

    environment = "practice"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def request(self, ep):
        self.asked.append(ep.ENDPOINT if hasattr(ep, "ENDPOINT") else str(ep))
        days = [{"dayOfWeek": d, "daysCharged": n} for d, n in
                (("MONDAY", 1), ("TUESDAY", 1), ("WEDNESDAY", 3), ("THURSDAY", 1),
                 ("FRIDAY", 1), ("SATURDAY", 0), ("SUNDAY", 0))]
        return {"instruments": [{"name": "EUR_USD", "type": "CURRENCY", "pipLocation": -4,
                                 "financing": {"longRate": "-0.0323", "shortRate": "0.012",
                                               "financingDaysOfWeek": days}},
                                {"name": "USD_JPY", "type": "CURRENCY", "pipLocation": -2}]}


def test_fetch_financing_stores_oandas_rates_for_training(tmp_path, fast_oanda_limits) -> None:
    from sep_research.data.fetch import fetch_financing
    from sep_research.oanda.credentials import Credentials

    cred = Credentials(token="t" * 20, account_id="101-004-1435156-001", environment="practice")
    api = _InstrumentsApi()
    got = fetch_financing(["EUR_USD"], credentials=cred, cache=tmp_path, api=api)
    assert (got["EUR_USD"].long_rate, got["EUR_USD"].short_rate) == (-0.0323, 0.012)
    stored = fin.rates_for("EUR_USD", folder=tmp_path)
    assert stored.source.startswith("oanda:practice (obtained ")
    assert stored.days == (1, 1, 3, 1, 1, 0, 0)
    with pytest.raises(FinancingError, match=r"USD_JPY.financing: the instrument has no"):
        fetch_financing(["USD_JPY"], credentials=cred, cache=tmp_path, api=api)
    with pytest.raises(ValueError, match="OANDA_ACCOUNT_ID is needed"):
        fetch_financing(["EUR_USD"], credentials=Credentials(token="t" * 20), cache=tmp_path,
                        api=api)
