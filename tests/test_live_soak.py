"""A soak with a fault schedule (issue 13): the runner (a separate process, as on a server)
against the emulator replaying real EUR_USD H1 candles at 30,000 times real time for three
simulated weeks (weekends included), with seeded random faults: 429s, 503s, slow answers,
stalled and cut price streams, and order answers dropped after the order was carried out.

At the end (clock paused, faults off, the runner caught up):

- memory is flat: the runner's resident set after the first simulated day and at the end;
- no order was sent twice (unique client IDs at the emulator, all known to the journal);
- the journal equals the emulator's account: open trades and units, every fill (units and
  price), realised P&L per trade and in total, the daily financing per trade and in total, and
  the balance (funding plus the journal's trades and financing);
- every refusal is journalled with its rule, and every order the emulator cancelled is a
  refusal (rule ``broker``) in the journal.

It prints its figures (simulated weeks, faults injected by kind, orders, fills, RSS start and
end). Bounded: about a minute and a half of wall time, a hard limit of ten.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from sep_research.live.journal import Journal
from sep_research.live.view import resident_memory_bytes
from tests.live_helpers import (
    Rig,
    check_no_duplicates,
    compare_with_account,
    journal_cursor,
    spawn_runner,
    wait_for,
)

SPEED = 30_000.0  # an H1 candle every 0.12 s
WEEKS = 3
START = "2017-06-12T00:00:00Z"  # a Monday
FAULTS = ("429:0.03,503:0.03,slow:0.02@0.3,stall:1.0@2x3,cut:1.0@3x3,drop-order:0.25@0.5,"
          "seed=13")  # the first price streams stall or are cut, later ones hold
MB = 1024 * 1024


def _status(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5) as resp:
        return json.load(resp)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_soak_weeks_with_faults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t_wall = time.monotonic()
    rig = Rig(tmp_path, start=START, conf_threshold=0.0, coh_threshold=0.0,
              feed={"use_stream": True, "stall_timeout_s": 1.0},
              # the replay clock runs 30,000 times faster than the runner's requests: 0.5 s
              # of backoff is 4 simulated hours; later than 12 h is refused as stale
              risk={"stale_candle_s": 12 * 3600.0, "stale_quote_s": 12 * 3600.0},
              config={"status": {"port": 0}})
    log = tmp_path / "runner.log"
    rig.emu.set_faults(FAULTS)  # from the start: the price stream's first opening included
    spec = rig.emu.faults
    proc = spawn_runner(rig, log)
    try:
        port = wait_for(lambda: _port(log), 60, 0.1)
        assert port, log.read_text()[-2000:]
        assert wait_for(lambda: _status(port).get("handled_through"), 60, 0.1)
        t0 = rig.emu.clock.now()
        end = t0 + timedelta(weeks=WEEKS)
        rig.emu.clock.run(SPEED)
        assert wait_for(lambda: rig.emu.clock.now() >= t0 + timedelta(days=1), 60, 0.05)
        rss_start = resident_memory_bytes(proc.pid)
        peak = rss_start or 0
        while rig.emu.clock.now() < end:
            assert proc.poll() is None, log.read_text()[-3000:]
            peak = max(peak, resident_memory_bytes(proc.pid) or 0)
            time.sleep(0.5)
        rig.emu.clock.pause()
        hits = {k: v for k, v in spec.hits.items() if v}
        rig.emu.set_faults(None)
        now = rig.emu.clock.now()
        # the runner catches up: every candle handled, every transaction seen
        last_tx = lambda: str(rig.emu.transactions()[-1]["id"])

        def caught_up() -> bool:
            through = _status(port)["handled_through"].get("EUR_USD", "")
            return through[:19] >= now.strftime("%Y-%m-%dT%H:%M:%S") and \
                journal_cursor(rig.journal) == last_tx()

        assert wait_for(caught_up, 120, 0.2), (_status(port)["handled_through"], now,
                                               journal_cursor(rig.journal), last_tx())
        rss_end = resident_memory_bytes(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
        counts = check_no_duplicates(rig, rig.journal)
        figures = compare_with_account(rig, rig.journal)
        txs = rig.emu.transactions()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        rig.stop()
    j = Journal(rig.journal)
    try:
        decisions = j.decisions(limit=10**7)
        orders = {o["client_id"]: o for o in j.orders(limit=10**7)}
        candles_handled = len(j.signals(limit=10**7))
    finally:
        j.close()
    refused = [d for d in decisions if not d["taken"]]
    assert all(d["rule"] for d in refused), [d for d in refused if not d["rule"]][:5]
    by_rule = Counter(d["rule"] for d in refused)
    # every order the emulator cancelled is journalled as such, with a refusal by the broker
    order_tx = {t["id"]: t for t in txs if t["type"] == "MARKET_ORDER"}
    cancelled = [order_tx[t["orderID"]] for t in txs if t["type"] == "ORDER_CANCEL"
                 and t["orderID"] in order_tx]
    for o in cancelled:
        cid = (o.get("clientExtensions") or {}).get("id")
        if cid:
            assert orders[cid]["state"] == "cancelled", orders[cid]
    assert by_rule.get("broker", 0) >= len([o for o in cancelled if o.get("clientExtensions")])
    states = Counter(o["state"] for o in orders.values())
    assert "intent" not in states and "unknown" not in states, states
    client_orders = [o for o in order_tx.values() if o.get("reason") == "CLIENT_ORDER"]
    with capsys.disabled():
        print(f"\nsoak: {WEEKS} simulated weeks at {SPEED:,.0f}x in "
              f"{time.monotonic() - t_wall:.0f} s wall; {candles_handled} candles handled; "
              f"faults injected {sum(hits.values())} {hits}; orders sent {len(client_orders)} "
              f"(journal {counts['journal']}, states {dict(states)}), fills {figures['fills']}, "
              f"closed trades {figures['closed']}, realised P&L {figures['realized_pl']}, "
              f"financing {figures['financing']} on {figures['financed_trades']} trades; "
              f"refusals by rule {dict(by_rule)}; RSS start {rss_start / MB:.1f} MB, end "
              f"{rss_end / MB:.1f} MB, peak {peak / MB:.1f} MB")
    assert sum(hits.values()) >= 50, hits
    assert {"429", "503", "slow", "drop-order", "stall", "cut"} <= set(hits), hits
    # (a loaded machine lags the 30,000x clock more: more stale refusals, fewer orders)
    assert len(client_orders) >= 15 and candles_handled >= WEEKS * 100, (len(client_orders),
                                                                         candles_handled)
    assert rss_start and rss_end and rss_end - rss_start < 16 * MB, (rss_start, rss_end)


def _port(log: Path) -> int | None:
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("status API: http://"):
            return int(line.rsplit(":", 1)[1])
    return None
