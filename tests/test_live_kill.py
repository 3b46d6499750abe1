"""``kill -9`` of the runner (a subprocess) at random moments around order placement, then a
restart, 24 times: no order is ever sent twice, and journal and account agree.

The emulator runs in this process on a manual replay clock; each round moves the clock one
candle (the runner sees a completed candle and usually trades: the model trades every
BUY/SELL) and kills the runner with SIGKILL: in even rounds after a seeded random 0-250 ms, in
odd rounds 0-150 ms after the emulator has executed an order or a close, whose answer it holds
back for 200 ms (the order exists, the runner has not heard of it).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from sep_research.live.journal import Journal
from tests.test_live_emulator import ROOT, Rig, check_no_duplicates

ROUNDS = 24


def _spawn(rig: Rig, log: Path) -> subprocess.Popen:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(rig.tmp), **rig.env}
    args = [sys.executable, "-m", "runners.live", "--config", str(rig.config)]
    for m in rig.models:
        args += ["--model", m]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=log.open("ab"))


def _wait_for(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def _last_candle(path: Path) -> str | None:
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            row = con.execute("SELECT max(time) FROM candles").fetchone()
        finally:
            con.close()
        return row[0] if row else None
    except sqlite3.Error:
        return None


@pytest.mark.slow
def test_kill9_around_orders_never_duplicates(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    rig = Rig(tmp_path, conf_threshold=0.0, coh_threshold=0.0)
    journal = tmp_path / "journal.sqlite"
    log = tmp_path / "runner.log"
    kills = 0
    in_window = 0  # kills that certainly landed while an executed order's answer was held back
    try:
        proc = _spawn(rig, log)
        assert _wait_for(lambda: _last_candle(journal) is not None, 30), log.read_text()[-2000:]
        # a hook that tells when the emulator has just executed an order or a close
        import threading

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
            proc = _spawn(rig, log)
            # the restarted runner reconciles and catches up with the clock
            want = (rig.emu.clock.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H")
            assert _wait_for(lambda w=want: (_last_candle(journal) or "")[:13] >= w, 30), \
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
    recon = j._query("SELECT reason, count(*) n FROM decisions WHERE kind='reconcile' "
                     "GROUP BY reason")
    j.close()
    print("kill test:", counts, recon)
    # some kills landed between the broker's execution and the journal's record of it, and the
    # restarted runner adopted (or confirmed) what the broker had done
    assert in_window >= 3, in_window
    assert any("adopted" in r["reason"] or "confirmed" in r["reason"] for r in recon), recon
    assert "intent" not in left
    assert mine == open_ids
