"""``kill -9`` of the runner (a subprocess) at random moments around order placement and during
start-up and reconciliation, then a restart: no order is ever sent twice, and journal and
account agree in open trades, units, fills, realised P&L and daily financing (per trade and in
total; the emulator charges the default table's rates), not only in open trade IDs.

The emulator runs in this process on a manual replay clock. Each of the order rounds (12;
``SEP_KILL_ROUNDS``) moves
the clock one candle (the runner sees a completed candle and usually trades: the model trades
every BUY/SELL) and kills the runner with SIGKILL: in even rounds after a seeded random
0-250 ms, in odd rounds 0-150 ms after the emulator has executed an order or a close (the
clock moves on a candle at a time, up to three more, until one is), whose answer it holds
back for 400 ms (the order exists, the runner has not heard of it). After each
odd round the restarted runner is itself killed during its start-up, with every broker answer
slowed to 0.4 s so that start-up and reconciliation (whose intents are then unresolved) take
a few seconds; the next one finishes it. Bounded: a couple of minutes.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from sep_research.live.journal import Journal
from tests.live_helpers import (
    Rig,
    check_no_duplicates,
    compare_with_account,
    journal_cursor,
    journal_last_candle,
    journal_starts,
    spawn_runner,
    wait_for,
)

#: order rounds: 12 by default (about 75 s); SEP_KILL_ROUNDS=24 (or more) for a longer run
ROUNDS = int(os.environ.get("SEP_KILL_ROUNDS", "12"))


@pytest.mark.slow
def test_kill9_around_orders_and_start_up_never_duplicates(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    rig = Rig(tmp_path, conf_threshold=0.0, coh_threshold=0.0)
    journal = rig.journal
    log = tmp_path / "runner.log"
    kills = in_window = startup_kills = 0
    try:
        proc = spawn_runner(rig, log)
        assert wait_for(lambda: journal_last_candle(journal) is not None, 60), \
            log.read_text()[-2000:]
        # a hook that tells when the emulator has just executed an order or a close
        hit = threading.Event()
        broker = rig.emu.venue
        for name in ("create_order", "close_trade"):
            orig = getattr(broker, name)

            def hooked(*a, _orig=orig, **k):
                out = _orig(*a, **k)
                hit.set()
                time.sleep(0.4)  # the answer is late: the runner is killed while waiting
                return out

            setattr(broker, name, hooked)

        def caught_up() -> bool:
            want = (rig.emu.clock.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H")
            return (journal_last_candle(journal) or "")[:13] >= want

        for i in range(ROUNDS):
            hit.clear()
            rig.emu.clock.advance(candles=1)
            if i % 2 == 0:  # at a random moment after the candle completes
                time.sleep(rng.uniform(0.0, 0.25))
            else:  # just after the broker executed an order, before the runner records it
                # (a candle that changes no position sends no order: move on a candle, up to
                # three more times; wait long enough for a loaded machine)
                for _ in range(4):
                    if hit.wait(5.0):
                        in_window += 1
                        break
                    rig.emu.clock.advance(candles=1)
                time.sleep(rng.uniform(0.0, 0.15))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
            if i % 2 == 1:
                # kill the next runner while it starts up and reconciles (slowed answers)
                starts = journal_starts(journal)
                rig.emu.set_faults("slow:1.0@0.4")
                proc = spawn_runner(rig, log)
                time.sleep(rng.uniform(0.5, 3.0))
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
                rig.emu.set_faults(None)
                kills += 1
                if journal_starts(journal) == starts:
                    startup_kills += 1
            proc = spawn_runner(rig, log)
            # the restarted runner reconciles and catches up with the clock
            assert wait_for(caught_up, 60), log.read_text()[-3000:]
        # a clean stop once the journal has seen every transaction: SIGTERM finishes
        # in-flight work, persists and exits 0
        rig.emu.clock.advance(candles=1)
        last_tx = lambda: str(rig.emu.transactions()[-1]["id"])
        assert wait_for(lambda: caught_up() and journal_cursor(journal) == last_tx(), 30, 0.1), \
            (journal_cursor(journal), last_tx())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        counts = check_no_duplicates(rig, journal)
        figures = compare_with_account(rig, journal)  # open trades, units, fills, realised P&L
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        rig.stop()
    j = Journal(journal)
    left = {o["state"] for o in j.orders(limit=10**6)}
    recon = sorted({d["reason"] for d in j.decisions(limit=10**6, kind="reconcile")})
    j.close()
    print("kill test:", kills, "kills,", startup_kills, "during start-up,", in_window,
          "in the order window;", counts, figures, recon)
    half = ROUNDS // 2
    assert kills == ROUNDS + half and counts["orders"] >= ROUNDS // 2, (kills, counts)
    # some kills landed between the broker's execution and the journal's record of it, and
    # the restarted runner adopted (or confirmed) what the broker had done
    assert in_window >= half // 2 + 1, in_window
    assert startup_kills >= half // 2, startup_kills
    assert any("adopted" in r or "confirmed" in r for r in recon), recon
    assert "intent" not in left and figures["closed"] >= ROUNDS // 5, figures
