"""The runner's clock (issue 13): decisions and risk checks use a time that cannot be staler than
the candle being acted on, market hours are judged when the order is sent, and the levels an
order carries come from a price no older than the candle's close.

The emulator runs in this process on a manual replay clock. A loaded machine is modelled
exactly: the replay clock moves on *after* the runner's price poll and *before* its candle
request is answered (a hook on the runner's candle request advances the clock), so the server
time the runner last read is older than the candle it then acts on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.live_helpers import Rig


def _clock_moves_before_candles_answer(monkeypatch: pytest.MonkeyPatch, rig: Rig, runner: Any,
                                       candles: int) -> None:
    """Arm one hook: the next candle request of the runner's feed finds the replay clock moved
    on by ``candles`` since the runner's price poll."""
    feed = runner.feed
    orig = feed._candles
    armed = [True]

    def late(instrument: str, params: dict) -> Any:
        if armed[0]:
            armed[0] = False
            rig.emu.clock.advance(candles=candles)
        return orig(instrument, params)

    monkeypatch.setattr(feed, "_candles", late)


def test_stale_server_clock_does_not_refuse_the_first_candle_of_the_week(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13 (make demo under load): the week's first candle (Sunday 22:00Z) was refused
    with ``market_closed`` because the runner's "now" was the server time of its last price
    poll (Sunday 20:00Z, market closed), not a time at or after the candle's close."""
    rig = Rig(tmp_path, start="2017-11-26T20:00:00Z", conf_threshold=0.0, coh_threshold=0.0)
    r = rig.runner(monkeypatch)  # Sunday 20:00Z: the market is closed, the last candle Friday's
    try:
        _clock_moves_before_candles_answer(monkeypatch, rig, r, candles=3)  # -> 23:00Z
        r.step()  # prices polled at 20:00Z, then the 22:00Z candle arrives (complete at 23:00Z)
        sig = [s for s in r.journal.signals(limit=100)
               if s["candle_time"].startswith("2017-11-26T22:00")]
        assert len(sig) == 1 and sig[0]["target"] != 0, sig  # a decision that trades
        decided = [d for d in r.journal.decisions(limit=1000)
                   if (d["candle_time"] or "").startswith("2017-11-26T22:00")]
        refused = [d for d in decided if d["kind"] == "open" and not d["taken"]]
        assert not refused, [(d['rule'], d['reason']) for d in refused]
        orders = [o for o in r.journal.orders() if o["candle_time"].startswith("2017-11-26T22")]
        assert len(orders) == 1 and orders[0]["state"] == "filled", orders
    finally:
        r.stop()
        r.shutdown()
        r.journal.close()
        rig.stop()


def test_order_levels_come_from_the_price_at_the_candle_close(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13, the second difference ("the entry had the right time but another price"):
    when the runner's last price poll fell exactly on the week's first candle start (Sunday
    22:00Z, market open) and the clock moved to 23:00Z before the candle request, the order was
    sent at the right time, but its stop-loss was set 20 pips from the quote of 22:00Z (not
    older than the candle's *start*, so it was trusted) instead of the price at the candle's
    close, where the order fills: the trade left at another price than the backtest's."""
    rig = Rig(tmp_path, start="2017-11-26T22:00:00Z", conf_threshold=0.0, coh_threshold=0.0)
    r = rig.runner(monkeypatch)  # Sunday 22:00Z: open; Friday's last candle is long stale
    try:
        _clock_moves_before_candles_answer(monkeypatch, rig, r, candles=1)  # -> 23:00Z
        r.step()  # prices polled at 22:00Z, then the 22:00Z candle arrives (complete at 23:00Z)
        orders = [o for o in r.journal.orders() if o["candle_time"].startswith("2017-11-26T22")]
        assert len(orders) == 1 and orders[0]["state"] == "filled", orders
        o = orders[0]
        (fill,) = [f for f in r.journal.fills(limit=100) if f["trade_id"] == o["trade_id"]]
        direction = 1 if o["units"] > 0 else -1
        assert float(o["stop_loss"]) == pytest.approx(fill["price"] - direction * 20 * 0.0001,
                                                      abs=1e-9), (o, fill)
        (trade,) = rig.open_trades()
        assert float(trade["stopLossOrder"]["price"]) == pytest.approx(float(o["stop_loss"]))
    finally:
        r.stop()
        r.shutdown()
        r.journal.close()
        rig.stop()


def test_handled_through_moves_only_after_the_orders_are_answered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13, the deterministic rehearsal: the status API's ``handled_through`` (what the
    demo's stepped clock waits for) reaches the clock's time only once every candle completed
    by then is decided and its orders sent and answered, not when the candle is first seen."""
    import json
    import urllib.request

    rig = Rig(tmp_path, conf_threshold=0.0, coh_threshold=0.0)
    r = rig.runner(monkeypatch)
    seen_while_sending: list[tuple[str | None, str]] = []
    orig = r.desk.send

    def send(req: Any) -> Any:
        through = r.status()["handled_through"].get("EUR_USD")
        seen_while_sending.append((through, rig.emu.clock.iso()))
        return orig(req)

    monkeypatch.setattr(r.desk, "send", send)
    try:
        for _ in range(8):
            rig.emu.clock.advance(candles=1)
            r.step()
            url = f"http://127.0.0.1:{r.status_port}/api/status"
            with urllib.request.urlopen(url, timeout=5) as resp:
                through = json.load(resp)["handled_through"]["EUR_USD"]
            assert through[:19] == rig.emu.clock.iso()[:19], (through, rig.emu.clock.iso())
        assert seen_while_sending, "no order was sent"
        for through, clock in seen_while_sending:
            assert through is None or through[:19] < clock[:19], (through, clock)
    finally:
        r.stop()
        r.shutdown()
        r.journal.close()
        rig.stop()
