"""The runner against the OANDA v20 emulator (loopback, manual replay clock): an end-to-end run
whose fills equal the backtest of the same candles, fault storms, and start-up refusals.

Candles: the packaged real EUR_USD H1 sample (mid only; the emulator quotes mid +/- 0.7 pip).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.live_helpers import HALF_SPREAD, ROOT, Rig, check_no_duplicates


def test_end_to_end_fills_match_backtest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sep_research.backtest import run_backtest
    from sep_research.signals.seed import seed_signals

    rig = Rig(tmp_path, conf_threshold=0.0, coh_threshold=0.0)  # trade every BUY/SELL
    r = rig.runner(monkeypatch)
    try:
        n = 0
        for _ in range(90):  # Monday 00:00 .. Thursday 18:00
            n += rig.advance_and_step(r)
        assert n == 90
        port = r.status_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5) as resp:
            status = json.load(resp)
        assert status["mode"] == "practice" and status["instruments"] == ["EUR_USD"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert "sep_runner_order_latency_ms" in resp.read().decode()
    finally:
        r.stop()
        r.shutdown()
        rig.stop()
    frame = rig.frames["EUR_USD"]
    rows = r.journal.signals(limit=10**9, oldest_first=True)
    times = [row["candle_time"] for row in rows]
    import pandas as pd

    first = frame.index.get_loc(pd.Timestamp(times[0]))
    last = frame.index.get_loc(pd.Timestamp(times[-1]))
    params = r.models["EUR_USD"].params
    sig = seed_signals(frame.iloc[: last + 2], params)
    target = np.where(sig.hc, sig.action, 0).astype(int)
    target[:first] = 0
    assert [row["target"] for row in rows] == target[first:last + 1].tolist()
    # trades entered at the open after `last` are not in the runner's range
    target[last + 1:] = 0
    bt = run_backtest(frame.iloc[: last + 2], target, instrument="EUR_USD", units=1000.0,
                      stop_loss_pips=r.models["EUR_USD"].policy.stop_loss_pips,
                      half_spread_pips=HALF_SPREAD)
    trades = bt.trades[bt.trades.exit_reason != "end_of_data"]
    pos = r.journal.closed_trades(limit=10**9, oldest_first=True)
    assert len(trades) >= 10
    if os.environ.get("SEP_DEBUG_E2E"):
        for p, (_, t) in zip(pos, trades.iterrows(), strict=False):
            print(p["opened_at"][:16], p["closed_at"][:16], p["units"], p["entry_price"],
                  p["exit_price"], p["exit_reason"], "|", t.entry_time, t.exit_time,
                  t.direction, t.entry_price, t.exit_price, t.exit_reason)
    assert len(pos) == len(trades)
    for p, (_, t) in zip(pos, trades.iterrows(), strict=True):
        assert p["units"] == int(t.direction) * 1000
        assert p["entry_price"] == pytest.approx(t.entry_price, abs=1e-9)
        assert p["exit_price"] == pytest.approx(t.exit_price, abs=1e-9)
        assert p["pl"] == pytest.approx(t.pnl, abs=1e-4)
    check_no_duplicates(rig, tmp_path / "journal.sqlite")
    r.journal.close()


@pytest.mark.slow
def test_fault_storms_recover_count_and_never_duplicate(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(tmp_path, conf_threshold=0.0, coh_threshold=0.0)
    r = rig.runner(monkeypatch)
    try:
        for _ in range(5):
            rig.advance_and_step(r)
        rig.emu.set_faults("429x3,503x2,seed=1")
        for _ in range(4):
            rig.advance_and_step(r)
        rig.emu.set_faults("drop-order:1.0@1x3,seed=2")
        for _ in range(8):
            rig.advance_and_step(r)
        rig.emu.set_faults(None)
        for _ in range(4):
            rig.advance_and_step(r)
        c = r.metrics.counters
        assert c.get("http_429", 0) >= 1 and c.get("http_5xx", 0) >= 1
        assert c.get("ambiguous_orders", 0) >= 1
        text = r.metrics_text()
        for name in ("sep_runner_http_429_total", "sep_runner_http_5xx_total",
                     "sep_runner_ambiguous_orders_total"):
            line = next(x for x in text.splitlines() if x.startswith(name + " "))
            assert float(line.split()[1]) >= 1
        # the dropped orders were resolved from the transactions, not sent again
        states = [o["state"] for o in r.journal.orders()]
        assert "intent" not in states and states.count("filled") >= 3
    finally:
        r.stop()
        r.shutdown()
        rig.stop()
    check_no_duplicates(rig, tmp_path / "journal.sqlite")
    r.journal.close()


@pytest.mark.slow
def test_stalled_and_cut_stream_reconnect(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    # the first stream stalls after 0.3 s (no heartbeat); later ones are cut mid-chunk at 1.5 s
    rig = Rig(tmp_path, faults="stall:1.0@0.3x1,cut:1.0@1.5x2,seed=3",
              conf_threshold=0.0, coh_threshold=0.0)
    r = rig.runner(monkeypatch)
    try:
        t_end = time.monotonic() + 8.0
        while time.monotonic() < t_end:
            st = r.feed.stats()
            if st.get("stream_stalls", 0) >= 1 and st.get("stream_reconnects", 0) >= 2:
                break
            r.step()
            time.sleep(0.05)
        for _ in range(3):
            assert rig.advance_and_step(r) == 1
        st = r.feed.stats()
        assert st.get("stream_stalls", 0) >= 1 and st.get("stream_reconnects", 0) >= 2
        text = r.metrics_text()
        line = next(x for x in text.splitlines()
                    if x.startswith("sep_runner_stream_stalls_total "))
        assert float(line.split()[1]) >= 1
    finally:
        r.stop()
        r.shutdown()
        rig.stop()
    check_no_duplicates(rig, tmp_path / "journal.sqlite")
    r.journal.close()


def _cli(rig: Rig, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {"PATH": os.environ.get("PATH", ""), "HOME": str(rig.tmp), **(env or rig.env)}
    return subprocess.run([sys.executable, "-m", "runners.live", *args], capture_output=True,
                          text=True, timeout=60, env=e, cwd=ROOT, check=False)


def test_bad_input_is_refused_before_any_order(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        model = rig.models[0]
        base = ["--model", model, "--config", str(rig.config), "--max-steps", "1"]
        # malformed config
        bad = tmp_path / "bad.yaml"
        bad.write_text("instruments: [EUR_USD]\nrisk: {max_open_positions: -1}\n")
        out = _cli(rig, "--model", model, "--config", str(bad))
        assert out.returncode == 2 and "risk.max_open_positions" in out.stderr
        # tampered artifact
        tampered = tmp_path / "tampered.json"
        tampered.write_text(Path(model).read_text().replace('"window": 11', '"window": 13'))
        out = _cli(rig, "--model", str(tampered), "--config", str(rig.config))
        assert out.returncode == 2 and "checksum" in out.stderr
        # wrong credentials: refused by the server, the token never printed
        out = _cli(rig, *base, env={**rig.env, "OANDA_API_KEY": "wrong-token-123"})
        assert out.returncode == 2 and "401" in out.stderr
        assert "wrong-token-123" not in out.stderr + out.stdout
        # a live account needs --live
        out = _cli(rig, *base, env={**rig.env, "OANDA_ACCOUNT_ID": "001-001-0000000-001"})
        assert out.returncode == 2 and "--live" in out.stderr
        # a practice account on the live environment
        out = _cli(rig, *base, env={**rig.env, "OANDA_ENVIRONMENT": "live"})
        assert out.returncode == 2 and "practice account" in out.stderr
        # corrupt journal: refused and left as it was
        jp = tmp_path / "journal.sqlite"
        jp.write_bytes(b"garbage" * 100)
        out = _cli(rig, *base)
        assert out.returncode == 2 and "corrupt" in out.stderr
        assert jp.read_bytes() == b"garbage" * 100
        assert rig.market_orders() == []
    finally:
        rig.stop()
