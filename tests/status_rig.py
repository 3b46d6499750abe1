"""The status API's test rigs: a stand-in for the runner (:class:`FakeSource`), and a paper
runner on real EUR_USD H1 candles from a file feed, every signal traded, the status API on a
free loopback port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sep_research.live.brokers import PaperBroker
from sep_research.live.config import config_from_dict
from sep_research.live.feed import FileFeed
from sep_research.live.journal import Journal
from sep_research.live.model import load_models
from sep_research.live.runner import Runner
from sep_research.live.status import prometheus
from tests.live_helpers import QUIET_RISK, frame_candles, make_artifact


class FakeSource:
    """A stand-in for the runner (the page's extra reads included)."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self.halt_reason = ""

    def status(self) -> dict[str, Any]:
        return {"service": "t", "mode": "paper", "now": "2026-11-24T10:30:00Z",
                "granularity": "H1", "instruments": ["EUR_USD"],
                "last_candle": {"EUR_USD": {"time": "2026-11-24T09:00:00Z", "close": 1.1}},
                "risk": {"halted": bool(self.halt_reason), "halt_reason": self.halt_reason}}

    def health(self) -> tuple[bool, dict[str, Any]]:
        return True, {"ok": True, "loop_age_s": 0.1, "halted": False}

    def positions(self) -> list[dict[str, Any]]:
        return [{"trade_id": "1"}]

    def signals(self, limit: int) -> list[dict[str, Any]]:
        return [{"n": limit}]

    def trades(self, limit: int) -> dict[str, Any]:
        return {"trades": [], "orders": [], "decisions": []}

    def metrics_text(self) -> str:
        return prometheus([("sep_x_total", "counter", "x", [({"kind": "a"}, 2.0)])])

    def command(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.commands.append((name, body))
        if name == "halt":
            self.halt_reason = body.get("reason", "")
        return {"ok": True}


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
