"""``kill -9`` of the runner (a subprocess) at random moments around order placement, then a
restart, 24 times: no order is ever sent twice, and journal and account agree.

The emulator runs in this process on a manual replay clock; each round moves the clock one
candle (the runner sees a completed candle and usually trades: the model trades every
BUY/SELL) and kills the runner with SIGKILL: in even rounds after a seeded random 0-250 ms, in
odd rounds 0-150 ms after the emulator has executed an order or a close, whose answer it holds
back for 200 ms (the order exists, the runner has not heard of it).
"""

from __future__ import annotations

import random
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest

from sep_research.live.journal import Journal
from tests.live_helpers import (
    Rig,
    check_no_duplicates,
    journal_last_candle,
    spawn_runner,
    wait_for,
)

ROUNDS = 24


@pytest.mark.slow
def test_kill9_around_orders_never_duplicates(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    rig = Rig(tmp_path, conf_threshold=0.0, coh_threshold=0.0)
    journal = tmp_path / "journal.sqlite"
    log = tmp_path / "runner.log"
    kills = 0
    in_window = 0  # kills that certainly landed while an executed order's answer was held back
    try:
        proc = spawn_runner(rig, log)
        assert wait_for(lambda: journal_last_candle(journal) is not None, 30), log.read_text()[-2000:]
        # a hook that tells when the emulator has just executed an order or a close
        import threading

        hit = threading.Event()
        broker = rig.emu.broker
        for name in ("create_order", "close_trade"):
            orig = getattr(broker, name)

            def hooked(*a, _orig=orig, **k):
                out = _orig(*a, **k)
                hit.set()
                time.sleep(0.4)  # the answer is late: the runner is killed while waiting
                return out

            setattr(broker, name, hooked)
        for i in range(ROUNDS):
            hit.clear()
            rig.emu.clock.advance(candles=1)
            if i % 2 == 0:  # at a random moment after the candle completes
                time.sleep(rng.uniform(0.0, 0.25))
            else:  # just after the broker executed an order, before the runner records it
                # (wait long enough for a loaded machine; a candle that changes no position
                # sends no order, and that round is an ordinary random kill)
                if hit.wait(5.0):
                    in_window += 1
                time.sleep(rng.uniform(0.0, 0.15))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
            proc = spawn_runner(rig, log)
            # the restarted runner reconciles and catches up with the clock
            want = (rig.emu.clock.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H")
            assert wait_for(lambda w=want: (journal_last_candle(journal) or "")[:13] >= w, 30), \
                log.read_text()[-3000:]
        # a clean stop: SIGTERM finishes in-flight work, persists and exits 0
        rig.emu.clock.advance(candles=1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        from oandapyV20.endpoints import trades

        api = rig.emu.api()
        open_ids = {t["id"] for t in
                    api.request(trades.OpenTrades(rig.emu.account_id))["trades"]}
    finally:
        if proc.poll() is None:
            proc.kill()
        rig.stop()
    assert kills >= 20
    counts = check_no_duplicates(rig, journal)
    assert counts["orders"] >= 10, counts
    # journal and account agree: the open trades are the same
    j = Journal(journal)
    mine = {p["trade_id"] for p in j.positions("open")}
    left = {o["state"] for o in j.orders()}
    recon = [{"reason": r} for r in {d["reason"] for d in j.decisions(limit=10**9,
                                                                       kind="reconcile")}]
    j.close()
    print("kill test:", counts, recon)
    # some kills landed between the broker's execution and the journal's record of it, and the
    # restarted runner adopted (or confirmed) what the broker had done
    assert in_window >= 3, in_window
    assert any("adopted" in r["reason"] or "confirmed" in r["reason"] for r in recon), recon
    assert "intent" not in left
    assert mine == open_ids
