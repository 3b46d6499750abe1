"""The numba backtest against its slow reference, and hand-checked fills."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sep_research.backtest import fills
from sep_research.backtest.simulation import positions_from_actions, quote_arrays, run_backtest
from sep_research.data.candles import synthetic_candles
from sep_research.fx import pip_size
from tests.reference_backtest import reference_backtest

PIP = 1e-4


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    return synthetic_candles(n, granularity="H1", seed=seed, spread_pips=1.2)


def _tiny(rows: list[tuple[float, float, float, float]], spread_pips: float = 1.0) -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=len(rows), freq="h", tz="UTC", name="time")
    frame = pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=idx)
    half = spread_pips * PIP / 2
    for side, sign in (("bid", -1), ("ask", 1)):
        for col in ("open", "high", "low", "close"):
            frame[f"{side}_{col}"] = frame[col] + sign * half
    frame["volume"] = 100
    frame["complete"] = True
    return frame


CASES = [
    {},
    {"stop_loss_pips": 3.0},
    {"take_profit_pips": 2.0},
    {"stop_loss_pips": 2.5, "take_profit_pips": 2.5},
    {"stop_loss_pips": 4.0, "sizing": "fixed_fractional", "risk_fraction": 0.02},
    {"half_spread_pips": 0.7, "stop_loss_pips": 3.0, "take_profit_pips": 6.0},
    {"units": "varying", "quote_to_account": 0.9},
]


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
@pytest.mark.parametrize("seed", [1, 2])
def test_numba_matches_reference_exactly(case: dict, seed: int) -> None:
    frame = _frame(600, seed)
    rng = np.random.default_rng(seed + 10)
    # Runs of targets, so that positions are held over several candles and stops matter.
    target = np.repeat(rng.choice([-1, 0, 1], size=120, p=[0.35, 0.3, 0.35]), 5).astype(np.int8)
    kw = dict(case)
    units = np.full(len(frame), 1000.0)
    if kw.get("units") == "varying":
        units = rng.integers(1, 5000, size=len(frame)).astype(float)
        kw["units"] = units
    res = run_backtest(frame, target, instrument="EUR_USD", **kw)
    bid, ask, _ = quote_arrays(frame, half_spread_pips=kw.get("half_spread_pips"), pip=PIP)
    ref = reference_backtest(
        target, units if "units" in kw else np.ones(len(frame)), bid.tolist(), ask.tolist(), PIP,
        stop_loss_pips=kw.get("stop_loss_pips"), take_profit_pips=kw.get("take_profit_pips"),
        sizing=kw.get("sizing", "fixed"), risk_fraction=kw.get("risk_fraction", 0.01),
        quote_to_account=kw.get("quote_to_account", 1.0),
    )
    trades, position, eq_pips, eq_ccy, cost_pips, cost_ccy = ref
    assert len(trades) > 10
    assert res.n_trades == len(trades)
    got = res.trades
    for key, col in (("entry_index", "entry_index"), ("exit_index", "exit_index"),
                     ("direction", "direction"), ("units", "units"),
                     ("entry_price", "entry_price"), ("exit_price", "exit_price"),
                     ("pips", "pips"), ("pnl", "pnl"), ("cost_pips", "cost_pips"),
                     ("cost_pnl", "cost_pnl")):
        assert got[col].tolist() == [tr[key] for tr in trades], col
    assert got["exit_reason"].tolist() == [fills.EXIT_REASONS[tr["reason"]] for tr in trades]
    assert res.position.tolist() == position
    assert res.equity_pips.tolist() == eq_pips
    assert res.equity_ccy.tolist() == eq_ccy
    assert res.costs_pips == cost_pips and res.costs_ccy == cost_ccy
    if "stop_loss_pips" in kw or "take_profit_pips" in kw:
        assert set(got["exit_reason"]) & {"stop_loss", "take_profit"}


def test_buy_at_next_open_ask_sell_at_bid() -> None:
    frame = _tiny([(1.1000, 1.1010, 1.0990, 1.1005),
                   (1.1005, 1.1012, 1.1001, 1.1010),
                   (1.1010, 1.1020, 1.1008, 1.1015),
                   (1.1015, 1.1016, 1.1000, 1.1002)])
    res = run_backtest(frame, [1, 1, 0, 0], instrument="EUR_USD", units=10_000)
    tr = res.trades.iloc[0]
    assert (tr.entry_index, tr.exit_index) == (1, 3)
    assert tr.entry_price == pytest.approx(1.1005 + 0.00005)  # ask at the open of candle 1
    assert tr.exit_price == pytest.approx(1.1015 - 0.00005)  # bid at the open of candle 3
    assert tr.pips == pytest.approx(9.0)  # 10 pips of mid move less a 1-pip spread
    assert tr.pnl == pytest.approx(9.0 * PIP * 10_000)
    assert res.costs_pips == pytest.approx(1.0)
    assert res.net_pips == pytest.approx(9.0)
    # marked at the bid close while open: candle 1 close 1.1010 -> bid 1.10095
    assert res.equity_pips.iloc[1] == pytest.approx((1.10095 - 1.10055) / PIP)
    short = run_backtest(frame, [-1, 0, 0, 0], instrument="EUR_USD")
    assert short.trades.iloc[0].entry_price == pytest.approx(1.1005 - 0.00005)
    assert short.trades.iloc[0].exit_price == pytest.approx(1.1010 + 0.00005)


def test_stop_first_when_both_levels_inside_one_candle() -> None:
    frame = _tiny([(1.1000, 1.1001, 1.0999, 1.1000),
                   (1.1000, 1.1030, 1.0970, 1.1000),  # both levels inside
                   (1.1000, 1.1001, 1.0999, 1.1000)], spread_pips=0.0)
    res = run_backtest(frame, [1, 1, 1], instrument="EUR_USD", stop_loss_pips=10,
                       take_profit_pips=10)
    tr = res.trades.iloc[0]
    assert tr.exit_reason == "stop_loss" and tr.exit_index == 1
    assert tr.pips == pytest.approx(-10.0)
    # blocked: the target stays +1, so there is no re-entry after the stop
    assert res.n_trades == 1


def test_gap_through_stop_fills_at_open() -> None:
    frame = _tiny([(1.1000, 1.1001, 1.0999, 1.1000),
                   (1.1000, 1.1002, 1.0995, 1.0996),
                   (1.0980, 1.0985, 1.0975, 1.0980)], spread_pips=0.0)
    res = run_backtest(frame, [1, 1, 1], instrument="EUR_USD", stop_loss_pips=10)
    tr = res.trades.iloc[0]
    assert tr.exit_reason == "stop_loss" and tr.exit_index == 2
    assert tr.exit_price == pytest.approx(1.0980)  # the open, worse than the 1.0990 stop
    assert tr.pips == pytest.approx(-20.0)


def test_fill_functions_compiled_by_numba_match_plain_python() -> None:
    # the numba backtest compiles fills.py's own functions (no retyped twin); compiled and
    # plain give the same bits
    from sep_research.backtest import nb
    from sep_research.backtest.nb import check_stop_take_nb, stop_take_levels_nb

    assert nb.check_stop_take_nb.py_func.__code__ is fills.check_stop_take.__code__
    assert nb.stop_take_levels_nb.py_func.__code__ is fills.stop_take_levels.__code__

    rng = np.random.default_rng(5)
    for _ in range(3000):
        d = int(rng.choice([-1, 1]))
        mid = 1.1 + rng.normal(0, 0.001, size=3)
        o = mid[0]
        h = max(mid) + abs(rng.normal(0, 0.0003))
        lo = min(mid) - abs(rng.normal(0, 0.0003))
        hs = abs(rng.normal(0, 0.00005))
        entry = 1.1 + rng.normal(0, 0.0005)
        sl = None if rng.random() < 0.2 else float(rng.uniform(1, 15))
        tp = None if rng.random() < 0.2 else float(rng.uniform(1, 15))
        stop, take = fills.stop_take_levels(d, entry, PIP, sl, tp, 5)
        s_nb, t_nb = stop_take_levels_nb(d, entry, PIP, sl or 0.0, tp or 0.0, 5)
        assert (stop == s_nb or (math.isnan(stop) and math.isnan(s_nb)))
        assert (take == t_nb or (math.isnan(take) and math.isnan(t_nb)))
        args = (d, stop, take, o - hs, h - hs, lo - hs, o + hs, h + hs, lo + hs)
        py = fills.check_stop_take(*args)
        nb = check_stop_take_nb(*args)
        assert py[0] == nb[0] and py[2] == nb[2]
        assert (math.isnan(py[1]) and math.isnan(nb[1])) or py[1] == nb[1]


@pytest.mark.parametrize(("instrument", "scale"), [("EUR_USD", 1.0), ("USD_JPY", 100.0)])
def test_a_stop_exactly_at_the_low_is_reached_for_every_instrument(instrument, scale) -> None:
    # levels live on the price grid, so a tie is a tie (not floating-point noise): a long
    # entered at 1.10064 (ask) with a 3-pip stop has its stop at 1.10034, exactly the next
    # candle's bid low; JPY: the same at 110.064 / 110.034 (where 110.064 - 3 * 0.01 is
    # 110.03399999999999 in floating point, which the low of 110.034 would not reach)
    rows = [(1.1006, 1.1007, 1.1005, 1.10059), (1.10059, 1.1007, 1.1005, 1.1006),
            (1.1006, 1.1006, 1.10039, 1.1004), (1.1004, 1.1005, 1.1003, 1.1004)]
    frame = _tiny([tuple(round(v * scale, 5) for v in r) for r in rows])
    for side, sign in (("bid", -1), ("ask", 1)):
        for col in ("open", "high", "low", "close"):
            frame[f"{side}_{col}"] = (frame[col] + sign * 0.5 * pip_size(instrument)
                                      ).round(5 if scale == 1.0 else 3)
    res = run_backtest(frame, [1, 1, 1, 1], instrument=instrument, stop_loss_pips=3.0)
    tr = res.trades.iloc[0]
    assert tr.exit_reason == "stop_loss" and tr.exit_index == 2
    assert tr.pips == pytest.approx(-3.0)


def test_fills_module_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = ("import sys, sep_research.backtest.fills; "
            "bad=[m for m in ('numba','pandas') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_bad_input_is_named() -> None:
    frame = _frame(50)
    with pytest.raises(ValueError, match="one value per candle"):
        run_backtest(frame, np.zeros(10), instrument="EUR_USD")
    with pytest.raises(ValueError, match="-1"):
        run_backtest(frame, np.full(50, 2), instrument="EUR_USD")
    with pytest.raises(ValueError, match="stop_loss_pips"):
        run_backtest(frame, np.zeros(50), instrument="EUR_USD", sizing="fixed_fractional")
    mid_only = frame[["open", "high", "low", "close", "volume", "complete"]]
    with pytest.raises(ValueError, match="half_spread_pips"):
        run_backtest(mid_only, np.zeros(50), instrument="EUR_USD")


def test_positions_from_actions() -> None:
    a = np.array([1, 0, 0, -1, 0, 1])
    assert positions_from_actions(a).tolist() == a.tolist()
    assert positions_from_actions(a, hold="keep").tolist() == [1, 1, 1, -1, -1, 1]
