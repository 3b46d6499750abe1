"""Options that were validated but never read (issue 17) now do what they say:
``price_bound_pips`` bounds the fill price of market orders, ``shutdown_timeout_s`` bounds the
wait for in-flight work after SIGTERM."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sep_research.live.paper import PaperBroker
from sep_research.live.port import OrderRequest
from sep_research.live.types import Quote
from tests.live_helpers import Rig, journal_last_candle, spawn_runner, wait_for

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # a Tuesday


def test_price_bound_goes_with_every_market_order(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(tmp_path, config={"price_bound_pips": 2.0}, conf_threshold=0.0, coh_threshold=0.0)
    r = rig.runner(monkeypatch)
    try:
        for _ in range(6):
            rig.advance_and_step(r)
    finally:
        r.stop()
        r.shutdown()
        r.journal.close()
        rig.stop()
    orders = [o for o in rig.market_orders() if o.get("reason") == "CLIENT_ORDER"]  # not closes
    assert len(orders) >= 2, "too few orders were placed"
    for o in orders:
        fill = next(t for t in rig.emu.transactions()
                    if t["type"] == "ORDER_FILL" and t["orderID"] == o["id"])
        units = float(o["units"])
        bound, price = float(o["priceBound"]), float(fill["price"])
        # the quote the order was sized on, moved 2 pips against it (the fill is that quote)
        assert bound == pytest.approx(price + (2e-4 if units > 0 else -2e-4), abs=1e-9), (o, fill)


def test_paper_fill_worse_than_the_bound_is_cancelled() -> None:
    b = PaperBroker(balance=10_000)
    b.on_quote(Quote("EUR_USD", T0, 1.10000, 1.10010))
    res = b.market_order(OrderRequest("sep-a", "EUR_USD", 1000, price_bound="1.10005"))
    assert res.state == "cancelled" and res.reason == "BOUNDS_VIOLATION"
    assert not b.open_trades()
    ok = b.market_order(OrderRequest("sep-b", "EUR_USD", -1000, price_bound="1.09990"))
    assert ok.state == "filled" and ok.fill is not None and ok.fill.price == 1.10000


@pytest.mark.slow
def test_sigterm_waits_at_most_shutdown_timeout_for_in_flight_work(tmp_path: Path) -> None:
    """A runner stuck in a broker call (every answer held back 30 s) stops within
    ``shutdown_timeout_s`` of SIGTERM, not when the call returns."""
    rig = Rig(tmp_path, config={"shutdown_timeout_s": 1.0})
    log = tmp_path / "runner.log"
    proc = spawn_runner(rig, log)
    try:
        assert wait_for(lambda: journal_last_candle(rig.journal), 60), log.read_text()[-2000:]
        rig.emu.set_faults("slow:1.0@30")
        rig.emu.clock.advance(candles=1)  # the runner's next requests hang
        time.sleep(1.0)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)  # a 30 s answer (and its retries) would take far longer
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        rig.emu.set_faults(None)
        rig.stop()
    assert rc == 1 and took < 20
    assert "did not finish within shutdown_timeout_s" in log.read_text()
