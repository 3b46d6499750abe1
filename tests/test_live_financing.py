"""The runner's financing (issue 14): journalled from the broker's daily financing, counted in
the P&L it reports, reconciled exactly with the account, and equal to the backtest's trade for
trade in a rehearsal whose positions are held through 17:00 New York rollovers.

The rehearsals trade a policy that holds (every BUY/SELL signal, HOLD keeps the position) at
100 000 units, so that most trades are held overnight and each financing is dollars, not
cents; the artifact's cost model carries the rates, and the emulator charges the same ones.
Candles: the packaged real EUR_USD H1 sample (mid only, quoted mid -/+ the half-spread).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sep_research.financing import FinancingRates
from tests.live_helpers import HALF_SPREAD, Rig, compare_with_account, run_paper, sample_frame

RATES = FinancingRates(long_rate=-0.04, short_rate=0.015, source="test")
UNITS = 100_000
HOLDING = {"trade_on": "all", "hold": "keep", "financing": RATES}


def backtest_of(runner: Any, frame: pd.DataFrame, half_spread_pips: float,
                refused: set[str] = frozenset()) -> pd.DataFrame:
    """The backtest of the runner's own decisions (its journalled targets, flat outside them
    and at opens it was refused), under the artifact's policy and financing; closed trades."""
    from sep_research.backtest import run_backtest

    model = runner.models["EUR_USD"]
    rows = runner.journal.signals(limit=10**9, oldest_first=True)
    pos = {t: i for i, t in enumerate(frame.index)}
    target = np.zeros(len(frame), dtype=int)
    idx = [pos[pd.Timestamp(r["candle_time"])] for r in rows]
    for i, r in zip(idx, rows, strict=True):
        target[i] = 0 if r["candle_time"] in refused else int(r["target"])
    last = idx[-1]
    bt = run_backtest(frame.iloc[: last + 2], target[: last + 2], instrument="EUR_USD",
                      units=float(UNITS), stop_loss_pips=model.policy.stop_loss_pips,
                      take_profit_pips=model.policy.take_profit_pips,
                      half_spread_pips=half_spread_pips, financing=model.spec.costs.financing,
                      granularity="H1")
    return bt.trades[bt.trades.exit_reason != "end_of_data"]


def check_trade_for_trade(journal: Any, trades: pd.DataFrame, *, rounding: float,
                          before: pd.Timestamp | None = None) -> dict:
    """Each closed trade of the runner equals the backtest's: entry and exit, the price P&L,
    the financing and their sum (``rounding``: the broker's rounding of each amount);
    ``before``: only the runner's trades opened before then (the replay's last candle: a trade
    opened there is closed by the runner at the last price it had, by the backtest at the
    data's end, which is not compared)."""
    pos = [p for p in journal.closed_trades(limit=10**9, oldest_first=True)
           if before is None or pd.Timestamp(p["opened_at"]) < before]
    assert len(pos) == len(trades) > 5, (len(pos), len(trades))
    held = 0
    for p, (_, t) in zip(pos, trades.iterrows(), strict=True):
        charges = len(journal.financing(trade_id=p["trade_id"]))
        tol = rounding * (1 + charges) + 1e-9
        assert p["units"] == int(t.direction) * UNITS
        assert p["entry_price"] == pytest.approx(t.entry_price, abs=1e-9)
        assert p["exit_price"] == pytest.approx(t.exit_price, abs=1e-9)
        assert p["pl"] == pytest.approx(t.pnl - t.financing_pnl, abs=rounding + 1e-9), p
        assert p["financing"] == pytest.approx(t.financing_pnl, abs=tol), (p, t)
        assert p["net_pl"] == pytest.approx(t.pnl, abs=tol), (p, t)
        assert (charges > 0) == (t.financing_pnl != 0), (p, t)
        held += charges > 0
    return {"trades": len(pos), "held_through_rollover": held,
            "runner_financing": sum(p["financing"] for p in pos),
            "backtest_financing": float(trades.financing_pnl.sum())}


def test_emulator_rehearsal_pnl_matches_backtest_with_financing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    rig = Rig(tmp_path, conf_threshold=0.0, coh_threshold=0.0, artifact=HOLDING,
              risk={"fixed_units": UNITS}, emulator={"financing": {"EUR_USD": RATES}})
    r = rig.runner(monkeypatch)
    try:
        for _ in range(4 * 24 + 6):  # Monday 00:00 .. Friday 06:00: four rollovers
            assert rig.advance_and_step(r) == 1
        status = r.status()
        figures = compare_with_account(rig, rig.journal)  # financing per trade and in total
    finally:
        r.stop()
        r.shutdown()
        rig.stop()
    trades = backtest_of(r, rig.frames["EUR_USD"], HALF_SPREAD)
    got = check_trade_for_trade(r.journal, trades, rounding=1e-4)
    with capsys.disabled():
        print(f"\nemulator rehearsal with financing: {got}; account {figures}")
    assert got["held_through_rollover"] >= 2
    assert got["runner_financing"] == pytest.approx(got["backtest_financing"], abs=1e-3)
    # the status view reports financing as its own line, inside the realised net
    real = status["realized"]
    assert real["financing"] == pytest.approx(figures["financing"], abs=1e-6) != 0
    assert real["net"] == pytest.approx(real["trades"] + real["financing"])
    assert "sep_runner_financing" in r.metrics_text()
    r.journal.close()


@pytest.mark.slow
def test_paper_rehearsal_pnl_matches_backtest_with_financing(tmp_path: Path) -> None:
    """The paper broker charges the artifact's rates itself, over weeks with weekends."""
    frame = sample_frame().iloc[1000:1600]
    runner = run_paper(tmp_path, frame, "EUR_USD", "H1", half_spread_pips=0.5,
                       artifact=HOLDING, units=UNITS, conf_threshold=0.0, coh_threshold=0.0)
    # opens refused into a closed market (Friday 17:00 New York), and at the replay's last
    # candle (no next price): the backtest is given a flat target there too
    refused = runner.journal.decisions(limit=10**9, kind="open", taken=False)
    assert {d["rule"] for d in refused} <= {"market_closed", "stale_data"}
    trades = backtest_of(runner, frame, 0.5, {d["candle_time"] for d in refused})
    got = check_trade_for_trade(runner.journal, trades, rounding=1e-6, before=frame.index[-1])
    assert got["held_through_rollover"] >= 5
    # the balance moved by exactly the trades' price P&L and all financing (open trades too)
    real = runner.journal.pnl()
    acct = runner.broker.account()
    assert acct.balance == pytest.approx(10_000 + real["net"], abs=1e-6)
    runner.journal.close()


# ------------------------------------------------------------------ the parts


def test_daily_financing_transactions_read_as_per_trade_shares() -> None:
    from sep_research.live.brokers import financing_from_transactions

    txs = [{"id": "41", "type": "DAILY_FINANCING", "time": "2017-06-14T21:00:00.000000000Z",
            "financing": "-2.4660", "accountBalance": "99990.1200",
            "accountFinancingMode": "DAILY",
            "positionFinancings": [{"instrument": "EUR_USD", "financing": "-2.4660",
                                    "openTradeFinancings": [
                                        {"tradeID": "7", "financing": "-2.9000"},
                                        {"tradeID": "9", "financing": "0.4340"}]}]},
           {"id": "42", "type": "ORDER_FILL", "time": "2017-06-14T21:00:00.000000000Z"}]
    (ev,) = financing_from_transactions(txs)
    assert ev.transaction_id == "41" and ev.amount == pytest.approx(-2.466)
    assert ev.time.isoformat() == "2017-06-14T21:00:00+00:00"
    assert ev.trades == [("7", "EUR_USD", -2.9), ("9", "EUR_USD", 0.434)]


def test_journal_keeps_financing_per_trade_once(tmp_path: Path) -> None:
    from sep_research.live.journal import Journal

    j = Journal(tmp_path / "j.sqlite")
    j.open_position(trade_id="7", instrument="EUR_USD", units=1000, entry_price=1.1,
                    stop_loss=None, take_profit=None, client_id="sep-a", origin="runner",
                    opened_at="2017-06-13T10:00:00.000000000Z")
    shares = [("7", "EUR_USD", -0.25)]
    assert j.record_financing(transaction_id="20", time="2017-06-13T21:00:00.000000000Z",
                              trades=shares) == 1
    assert j.record_financing(transaction_id="20", time="2017-06-13T21:00:00.000000000Z",
                              trades=shares) == 0  # the same activity applied again
    j.record_financing(transaction_id="25", time="2017-06-14T21:00:00.000000000Z",
                       trades=[("7", "EUR_USD", -0.75)])
    (p,) = j.positions("open")
    assert p["financing"] == pytest.approx(-1.0) and p["net_pl"] is None
    j.close_position("7", exit_price=1.1010, pl=1.0, reason="MARKET_ORDER_TRADE_CLOSE",
                     closed_at="2017-06-15T10:00:00.000000000Z")
    (c,) = j.closed_trades()
    assert c["pl"] == 1.0 and c["net_pl"] == pytest.approx(0.0)
    assert j.pnl() == pytest.approx({"trades": 1.0, "financing": -1.0, "net": 0.0})
    assert {k: v.isoformat() for k, v in j.financing_through().items()} == \
        {"EUR_USD": "2017-06-14T21:00:00+00:00"}
    j.close()


def test_journal_from_before_the_financing_table_opens(tmp_path: Path) -> None:
    """A journal written before the financing table existed is accepted and given it (a bad
    financing row is refused like any bad row: tests/test_live_findings.py)."""
    import sqlite3

    from sep_research.live.journal import Journal

    p = tmp_path / "old.sqlite"
    Journal(p).close()
    con = sqlite3.connect(p)
    con.execute("DROP TABLE financing")  # as a journal written before the table existed
    con.commit()
    con.close()
    j = Journal(p)  # accepted, and given the table
    assert j.financing() == [] and j.pnl()["financing"] == 0.0
    j.record_financing(transaction_id="3", time="2017-06-13T21:00:00.000000000Z",
                       trades=[("2", "EUR_USD", -0.5)])
    assert j.pnl()["financing"] == -0.5
    j.close()
    Journal(p).close()  # and opens again


def test_paper_broker_charges_the_rule_once_per_rollover() -> None:
    from datetime import UTC, datetime

    from sep_research.live.paper import PaperBroker
    from sep_research.live.port import BrokerRecords, OrderRequest
    from sep_research.live.types import Candle, Quote

    b = PaperBroker(balance=10_000)
    b.set_financing({"EUR_USD": RATES}, granularity_seconds=3600)
    t = datetime(2017, 6, 14, 20, tzinfo=UTC)  # a Wednesday; its candle ends at the rollover
    b.on_quote(Quote("EUR_USD", t, 1.12000, 1.12010))
    long_ = b.market_order(OrderRequest("sep-l", "EUR_USD", 10_000)).fill.opened
    short = b.market_order(OrderRequest("sep-s", "EUR_USD", -4_000)).fill.opened
    c = Candle("EUR_USD", t, 1.1200, 1.1210, 1.1195, 1.1205,
               bid=(1.1199, 1.1209, 1.1194, 1.1204), ask=(1.1201, 1.1211, 1.1196, 1.1206))
    b.on_candle(c)
    (ev,) = b.activity_since("0").financing
    assert ev.time == datetime(2017, 6, 14, 21, tzinfo=UTC)
    # three days (Wednesday), at the candle's mid close, long pays and short receives
    want = {long_.trade_id: -10_000 * 1.1205 * 0.04 * 3 / 365,
            short.trade_id: 4_000 * 1.1205 * 0.015 * 3 / 365}
    assert {tid: pytest.approx(a) for tid, _, a in ev.trades} == want
    assert b.account().balance == pytest.approx(10_000 + sum(want.values()))
    # rebuilt from a journal that holds that rollover: the same candle charges nothing again
    b.resume(BrokerRecords(open_trades=b.open_trades(), realized_pl=sum(want.values()),
                           orders={}, last_transaction_id=ev.transaction_id,
                           financing_through={"EUR_USD": ev.time}))
    b.on_candle(c)
    assert b.activity_since(ev.transaction_id).financing == []
    # no rates (an artifact with financing off): nothing charged
    b.set_financing({"EUR_USD": None}, granularity_seconds=3600)
    b.on_candle(Candle("EUR_USD", datetime(2017, 6, 15, 20, tzinfo=UTC), 1.12, 1.12, 1.12,
                       1.12))
    assert b.activity_since(ev.transaction_id).financing == []


def test_history_import_brings_the_financing(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty journal on an account with history imports its DAILY_FINANCING too, so the
    journal equals the account (financing per trade and in total) after a lost journal."""
    rig = Rig(tmp_path, conf_threshold=0.0, coh_threshold=0.0, artifact=HOLDING,
              risk={"fixed_units": UNITS}, emulator={"financing": {"EUR_USD": RATES}})
    try:
        r = rig.runner(monkeypatch)
        for _ in range(30):  # Monday 00:00 .. 06:00 on Tuesday: Monday's rollover
            rig.advance_and_step(r)
        r.stop()
        r.shutdown()
        r.journal.close()
        for f in tmp_path.glob("journal.sqlite*"):
            f.unlink()  # the whole journal lost
        r2 = rig.runner(monkeypatch)
        r2.stop()
        r2.shutdown()
        r2.journal.close()
        figures = compare_with_account(rig, rig.journal)
        assert figures["financed_trades"] >= 1 and figures["financing"] != 0, figures
        from sep_research.live.journal import Journal

        j = Journal(rig.journal)
        (why,) = [d["reason"] for d in j.decisions(limit=100, kind="reconcile")
                  if d["reason"].startswith("empty journal")]
        j.close()
        assert "1 daily financing(s)" in why, why
    finally:
        rig.stop()
