"""The runner in paper mode on replayed real candles: its decisions equal the research signals
candle for candle, and its fills equal the backtest of the same candles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sep_research.live.brokers import PaperBroker
from sep_research.live.config import config_from_dict
from sep_research.live.feed import FileFeed
from sep_research.live.journal import Journal
from sep_research.live.model import load_models
from sep_research.live.runner import Runner
from tests.conftest import SEED_O_TEST
from tests.live_helpers import (
    QUIET_RISK,
    STOP,
    frame_candles,
    make_artifact,
    run_paper,
    write_candle_json,
)


def _compare(runner: Runner, frame, instrument: str, half_spread_pips: float | None) -> int:
    from sep_research.backtest import run_backtest
    from sep_research.signals.seed import seed_signals

    sig = seed_signals(frame)
    stop = runner.models[instrument].policy.stop_loss_pips  # the artifact's
    # decisions: the runner's action per candle equals the vectorised research signals
    rows = runner.journal.signals(limit=10**9, oldest_first=True)
    assert len(rows) == len(frame)
    names = {1: "BUY", -1: "SELL", 0: "HOLD"}
    expected = [names[int(a)] if h else "NONE" for a, h in zip(sig.action, sig.has,
                                                               strict=True)]
    got = [r["action"] for r in rows]
    assert got == expected
    target = np.where(sig.hc, sig.action, 0).astype(int)
    assert [r["target"] for r in rows] == target.tolist()
    # The runner refuses to open into a closed market (Friday 17:00 New York): the backtest
    # enters at the next open even across the weekend. Those decisions (journalled with their
    # rule) are the only allowed difference: the backtest is given a flat target there.
    refused = runner.journal.decisions(limit=10**9, kind="open", taken=False)
    assert all(r["rule"] == "market_closed" for r in refused)
    assert len(refused) <= max(3, len(frame) // 100)
    idx = {t: i for i, t in enumerate(r["candle_time"] for r in rows)}
    for r in refused:
        target[idx[r["candle_time"]]] = 0
    # fills: the paper trades equal the backtest's (the runner never closes at the data's end)
    bt = run_backtest(frame, target, instrument=instrument, units=1000.0, stop_loss_pips=stop,
                      half_spread_pips=half_spread_pips)
    trades = bt.trades[bt.trades.exit_reason != "end_of_data"]
    pos = runner.journal.closed_trades(limit=10**9, oldest_first=True)
    assert len(pos) == len(trades) and len(pos) > 10
    for p, (_, t) in zip(pos, trades.iterrows(), strict=True):
        assert p["units"] == int(t.direction) * int(t.units)
        assert p["entry_price"] == pytest.approx(t.entry_price, abs=1e-9)
        assert p["exit_price"] == pytest.approx(t.exit_price, abs=1e-9)
        assert p["pl"] == pytest.approx(t.pnl, abs=1e-6)
    return len(pos)


@pytest.mark.slow
@pytest.mark.skipif(not SEED_O_TEST.exists(), reason="seed reference data not present")
def test_paper_replay_matches_research_signals_and_backtest_bid_ask(tmp_path: Path) -> None:
    from sep_research.data import read_candle_file

    frame = read_candle_file(SEED_O_TEST, instrument="EUR_USD", granularity="M1",
                             check_grid=False)
    runner = run_paper(tmp_path, frame, "EUR_USD", "M1")
    _compare(runner, frame, "EUR_USD", None)


def test_paper_replay_on_packaged_sample(tmp_path: Path) -> None:
    """Real EUR_USD H1 (the packaged sample, mid only), 1500 candles, half-spread 0.7 pip."""
    from sep_research.data import load_sample

    frame = load_sample().iloc[:1500]
    runner = run_paper(tmp_path, frame, "EUR_USD", "H1", half_spread_pips=0.7)
    n = _compare(runner, frame, "EUR_USD", 0.7)
    assert n > 10


def test_paper_mode_needs_no_credentials(tmp_path: Path) -> None:
    """`sep run --paper` with a file feed runs with an empty environment (no OANDA_*)."""
    from sep_research.data import load_sample

    frame = load_sample().iloc[:300]
    write_candle_json(frame, tmp_path / "c.json")
    make_artifact(tmp_path / "m.json")
    (tmp_path / "r.yaml").write_text(
        "instruments: [EUR_USD]\ngranularity: H1\n"
        f"journal: {tmp_path / 'j.sqlite'}\n"
        f"feed: {{source: file, files: {{EUR_USD: {tmp_path / 'c.json'}}}}}\n"
        "risk: {fixed_units: 1000}\nstatus: {port: 0}\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "runners.live", "--model",
                          str(tmp_path / "m.json"), "--config", str(tmp_path / "r.yaml"),
                          "--paper"], capture_output=True, text=True, timeout=120, env=env,
                         check=False,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    j = Journal(tmp_path / "j.sqlite")
    assert len(j.signals(limit=1000)) == 300
    j.close()


def test_status_commands_halt_resume_reload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    """Through the runner's own status API: halt stops new positions, resume, reload verifies
    the artifact before swapping it (a tampered one is refused and the model stays)."""
    import json
    import urllib.error
    import urllib.request

    from sep_research.data import load_sample

    frame = load_sample().iloc[:400]
    art = make_artifact(tmp_path / "m.json", "EUR_USD", "H1", stop_loss_pips=STOP,
                        conf_threshold=0.0, coh_threshold=0.0)
    cfg = config_from_dict({"instruments": ["EUR_USD"], "granularity": "H1",
                            "journal": str(tmp_path / "j.sqlite"), "risk": QUIET_RISK,
                            "status": {"port": 0}})
    models = load_models([str(art)], cfg.instruments, cfg.granularity)
    feed = FileFeed({"EUR_USD": frame_candles(frame, "EUR_USD")}, 3600,
                    half_spread={"EUR_USD": 0.00005})
    runner = Runner(cfg, models, PaperBroker(balance=10_000), feed, Journal(cfg.journal),
                    mode="paper", status_token="tok-for-tests", model_paths=[str(art)])
    runner.start()
    base = f"http://127.0.0.1:{runner.status_port}"

    def post(path: str, body: dict | None = None, token: str = "tok-for-tests") -> tuple:
        req = urllib.request.Request(base + path, method="POST",
                                     data=json.dumps(body or {}).encode(),
                                     headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    try:
        for _ in range(200):
            runner.step()
        assert post("/api/halt", {"reason": "test"}, token="bad")[0] == 401
        assert post("/api/halt", {"reason": "test"})[0] == 200
        for _ in range(100):
            runner.step()
        assert runner.journal.decisions(limit=10**9, rule="halted")
        with urllib.request.urlopen(base + "/api/status", timeout=5) as r:
            st = json.load(r)
        assert st["risk"]["halted"] and st["mode"] == "paper" and st["last_candle"]["EUR_USD"]
        assert post("/api/resume")[0] == 200 and not runner.risk.s.halted
        bad = tmp_path / "bad.json"
        bad.write_text(art.read_text().replace('"window": 11', '"window": 12'))
        code, body = post("/api/reload", {"models": [str(bad)]})
        assert code == 409 and "checksum" in body["error"]
        code, body = post("/api/reload")
        assert code == 200 and body["verified"]["EUR_USD"] == models["EUR_USD"].model_id
        runner.step()
        kinds = [d["kind"] for d in runner.journal.decisions(1000)]
        assert "reload" in kinds
    finally:
        runner.stop()
        runner.shutdown()
