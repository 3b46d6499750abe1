"""A paper runner for the status API's tests: real EUR_USD H1 candles from a file feed, every
signal traded, the status API on a free loopback port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sep_research.live.brokers import PaperBroker
from sep_research.live.config import config_from_dict
from sep_research.live.feed import FileFeed
from sep_research.live.journal import Journal
from sep_research.live.model import load_models
from sep_research.live.runner import Runner
from tests.live_helpers import QUIET_RISK, frame_candles, make_artifact


def paper_runner(tmp: Path, frame: Any, *, token: str) -> Runner:
    """Started (journal reconciled, status API up), not yet stepped: call ``step()``."""
    art = make_artifact(tmp / "m.json", "EUR_USD", "H1", conf_threshold=0.0, coh_threshold=0.0)
    cfg = config_from_dict({"instruments": ["EUR_USD"], "granularity": "H1",
                            "journal": str(tmp / "j.sqlite"), "risk": QUIET_RISK,
                            "status": {"port": 0}})
    models = load_models([str(art)], cfg.instruments, cfg.granularity)
    feed = FileFeed({"EUR_USD": frame_candles(frame, "EUR_USD")}, cfg.granularity_seconds,
                    half_spread={"EUR_USD": 0.00005})
    runner = Runner(cfg, models, PaperBroker(balance=10_000, half_spread_pips=0.5), feed,
                    Journal(cfg.journal), mode="paper", status_token=token)
    runner.start()
    return runner
