"""``sep demo`` end to end (a smaller run than ``make demo``): it passes, its rehearsal fills
equal the backtest's, its artifact verifies, and it leaves no process running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    env = dict(os.environ, SEP_CACHE_DIR=str(tmp_path / "cache"),
               SEP_REPORTS_DIR=str(tmp_path / "reports"), PYTHONUNBUFFERED="1")
    r = subprocess.run([sys.executable, "-m", "sep_research", "demo", "--grid", "small",
                        "--candles", "80"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600, check=False)
    out = r.stdout
    assert r.returncode == 0, out[-3000:] + r.stderr[-3000:]
    for step in range(1, 7):
        assert f"[{step}/6]" in out
    assert "identical to the research signals" in out
    assert "the runner's fills match the backtest" in out
    # the rehearsal compares against the backtest of the artifact's own policy, which the
    # runner traded (the demo trains a 20-pip stop; the runner config asks for none)
    assert "the artifact's policy: HC signals only, HOLD = flat (one-candle trades), " \
           "20-pip stop-loss, no take-profit" in out
    assert "positions carried a stop-loss (policy: every one)" in out
    assert "package:backtesting==" in out
    assert (tmp_path / "reports" / "index.html").is_file()
    (artifact,) = (tmp_path / "reports" / "runs").glob("*/model.json")
    v = subprocess.run([sys.executable, "-m", "sep_research", "model", "verify", str(artifact)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120,
                       check=False)
    assert v.returncode == 0, v.stdout + v.stderr
    import json

    art = json.loads(artifact.read_text())
    assert art["policy"] == {"trade_on": "hc", "hold": "flat", "stop_loss_pips": 20.0,
                             "take_profit_pips": None}
    config = json.loads((artifact.parent / "rehearsal" / "runner.yaml").read_text())
    assert config["risk"]["stop_loss_pips"] is None  # the artifact's
    assert not _processes_mentioning(str(tmp_path)), "the demo left a process running"
