"""Helpers shared by the live runner's tests (no test module imports another one).

- :func:`make_artifact`: a small verified seed-model artifact (synthetic provenance);
- :func:`frame_candles`: a candle frame as the runner's :class:`Candle` values;
- :class:`Rig`: the OANDA v20 emulator in this process (manual replay clock) plus the files a
  runner needs (config, artifacts, credentials in ``env``);
- :func:`spawn_runner`, :func:`wait_for`, :func:`journal_last_candle`: a runner as a separate
  process (``python -m runners.live``), as on a server;
- :func:`check_no_duplicates`, :func:`compare_with_account`: what must hold between the journal
  and the emulator's account after any run (no order sent twice; open trades, units, realised
  P&L and fills equal).

Tokens here are obviously fake (``status-token-for-tests``, the emulator's own).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sep_research.live.types import Candle
from sep_research.training.artifact import write_artifact

ROOT = Path(__file__).resolve().parents[1]
HALF_SPREAD = 0.7
# A Monday-to-Friday stretch of the packaged sample (no weekend inside the traded range).
START = "2017-06-12T00:00:00Z"
#: risk guards the backtest does not model, off, so fills compare one for one; the stop is the
#: artifact's policy (null here: the artifact's), sizing is explicit (fixed units)
QUIET_RISK = {"fixed_units": 1000, "max_spread_pips": None, "weekend_cutoff_minutes": None,
              "cooldown_losses": None, "daily_loss_limit": None, "max_drawdown": None}
#: the policy the tests' artifacts carry (the runner trades it): a 20-pip stop
STOP = 20.0
STATUS_TOKEN = "status-token-for-tests"


def make_artifact(path: Path, instrument: str = "EUR_USD", granularity: str = "H1", *,
                  stop_loss_pips: float | None = None, take_profit_pips: float | None = None,
                  trade_on: str = "hc", hold: str = "flat", financing: Any = None,
                  **params: float) -> Path:
    """An artifact of the seed rule (``params`` change the preset) with a policy and a cost
    model (``financing``: its rates, a :class:`sep_research.financing.FinancingRates`; None:
    explicitly off)."""
    from sep_research.signals.seed import SEED
    from sep_research.strategy import CostModel, Policy, StrategySpec

    spec = StrategySpec(instrument=instrument, granularity=granularity,
                        params=SEED.with_(**params),
                        policy=Policy(trade_on, hold, stop_loss_pips, take_profit_pips),
                        costs=CostModel("mid", 0.5, financing))
    write_artifact(path, {
        "created_at": "2026-11-24T00:00:00Z", **spec.to_dict(), "objective": {"name": "test"},
        "selection_gap": {}, "data": {"provenance": {"source": "synthetic"}}, "windows": {},
        "metrics": {}, "baselines": {}, "overfitting": {}, "code": {}, "packages": {}})
    return path


def frame_candles(frame: Any, instrument: str) -> list[Candle]:
    has_ba = "bid_open" in frame.columns
    out = []
    for t, r in frame.iterrows():
        out.append(Candle(
            instrument, t.to_pydatetime(), float(r.open), float(r.high), float(r.low),
            float(r.close), int(r.volume), True,
            (float(r.bid_open), float(r.bid_high), float(r.bid_low), float(r.bid_close))
            if has_ba else None,
            (float(r.ask_open), float(r.ask_high), float(r.ask_low), float(r.ask_close))
            if has_ba else None))
    return out


def write_candle_json(frame: Any, path: Path) -> Path:
    """``frame`` as an OANDA candles JSON file (mid prices), for ``feed.source: file``."""
    data = {"candles": [{"time": t.strftime("%Y-%m-%dT%H:%M:%S.000000000Z"), "complete": True,
                         "volume": int(r.volume),
                         "mid": {k[0]: f"{getattr(r, k):.5f}" for k in
                                 ("open", "high", "low", "close")}}
                        for t, r in frame.iterrows()]}
    path.write_text(json.dumps(data))
    return path


def sample_frame() -> Any:
    from sep_research.data import load_sample

    return load_sample()


class Rig:
    """An emulator in this process (thread) plus files for a runner."""

    def __init__(self, tmp: Path, *, start: str = START, faults: str | None = None,
                 instruments: tuple[str, ...] = ("EUR_USD",), risk: dict | None = None,
                 feed: dict | None = None, frames: dict | None = None,
                 config: dict | None = None, speed: float = 0.0,
                 emulator: dict | None = None, artifact: dict | None = None,
                 **params: float):
        from sep_research.emulator.app import Emulator, EmulatorConfig

        self.tmp = tmp
        frames = frames or {"EUR_USD": sample_frame()}
        self.frames = frames
        self.emu = Emulator(EmulatorConfig(candles=frames, start=start, faults=faults,
                                           half_spread_pips=HALF_SPREAD, speed=speed,
                                           heartbeat_s=0.5, **(emulator or {}))).start()
        self.models = [str(make_artifact(tmp / f"{i}.json", i, "H1",
                                         **{"stop_loss_pips": STOP, **(artifact or {})},
                                         **params))
                       for i in instruments]
        self.journal = tmp / "journal.sqlite"
        cfg = {"instruments": list(instruments), "granularity": "H1",
               "journal": str(self.journal), "risk": {**QUIET_RISK, **(risk or {})},
               "feed": {"poll_interval_s": 0.02, "stall_timeout_s": 1.0,
                        "reconnect_base_s": 0.05, "reconnect_max_s": 0.5, "request_rate": 100,
                        **(feed or {})},
               "status": {"port": 0}, **(config or {})}
        self.config = tmp / "runner.yaml"
        self.config.write_text(json.dumps(cfg))  # JSON is YAML
        self.env = {"OANDA_API_KEY": self.emu.token, "OANDA_ACCOUNT_ID": self.emu.account_id,
                    "OANDA_ENVIRONMENT": self.emu.base_url}

    def args(self, *extra: str) -> argparse.Namespace:
        from sep_research.live.cli import add_arguments

        p = argparse.ArgumentParser()
        add_arguments(p)
        return p.parse_args([a for m in self.models for a in ("--model", m)] +
                            ["--config", str(self.config), *extra])

    def build(self, monkeypatch: pytest.MonkeyPatch, *extra: str) -> Any:
        """A runner built by ``sep run``'s own code, not started."""
        from sep_research.live.cli import build

        for k, v in self.env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("SEP_STATUS_TOKEN", STATUS_TOKEN)
        return build(self.args(*extra))

    def runner(self, monkeypatch: pytest.MonkeyPatch, *extra: str) -> Any:
        r = self.build(monkeypatch, *extra)
        r.start()
        r.step()  # the newest complete candle at start-up, before the clock moves
        return r

    def advance_and_step(self, runner: Any, candles: int = 1, max_steps: int = 200) -> int:
        self.emu.clock.advance(candles=candles)
        before = runner.metrics.counters.get("candles", 0)
        for _ in range(max_steps):
            try:
                runner.step()
            except Exception:  # a fault storm: the loop carries on
                runner.metrics.inc("loop_errors")
            if runner.metrics.counters.get("candles", 0) > before:
                break
        return int(runner.metrics.counters.get("candles", 0) - before)

    def market_orders(self) -> list[dict]:
        return [t for t in self.emu.transactions() if t["type"] == "MARKET_ORDER"]

    def open_trades(self) -> list[dict]:
        from oandapyV20.endpoints import trades

        return self.emu.api().request(trades.OpenTrades(self.emu.account_id))["trades"]

    def stop(self) -> None:
        self.emu.stop()


def check_no_duplicates(rig: Rig, journal_path: Path) -> dict[str, int]:
    """Every order at the emulator has a unique client ID that the journal knows."""
    from sep_research.live.journal import Journal

    orders = rig.market_orders()
    ids = [(o.get("clientExtensions") or {}).get("id") for o in orders]
    opens = [i for i in ids if i]
    assert len(opens) == len(set(opens)), "a client ID was sent twice"
    j = Journal(journal_path)
    try:
        known = j.all_client_ids()
        states = {o["client_id"]: o["state"] for o in j.orders(limit=10**9)}
    finally:
        j.close()
    missing = [i for i in opens if i not in known]
    assert not missing, f"orders at the broker that the journal does not know: {missing}"
    return {"orders": len(orders), "journal": len(states)}


def compare_with_account(rig: Rig, journal_path: Path) -> dict[str, Any]:
    """The journal equals the emulator's account: the same open trades with the same units,
    the same fills (by transaction ID, with units and price), the same realised P&L per
    closed trade and in total, the same financing per trade (from the DAILY_FINANCING
    transactions) and in total (the account's ``financing``), and the balance is the funding
    plus the journal's realised net (trades and financing). Returns the figures."""
    from oandapyV20.endpoints import accounts

    from sep_research.live.journal import Journal

    txs = rig.emu.transactions()
    fills = {t["id"]: t for t in txs if t["type"] == "ORDER_FILL"}
    realized: dict[str, float] = {}
    for t in fills.values():
        for c in (t.get("tradesClosed") or []) + ([t["tradeReduced"]]
                                                  if t.get("tradeReduced") else []):
            realized[str(c["tradeID"])] = realized.get(str(c["tradeID"]), 0.0) + \
                float(c["realizedPL"])
    financed: dict[str, float] = {}
    for t in txs:
        if t["type"] == "DAILY_FINANCING":
            for pf in t["positionFinancings"]:
                for tf in pf["openTradeFinancings"]:
                    financed[tf["tradeID"]] = financed.get(tf["tradeID"], 0.0) + \
                        float(tf["financing"])
    open_at_broker = {t["id"]: int(float(t["currentUnits"])) for t in rig.open_trades()}
    summary = rig.emu.api().request(accounts.AccountSummary(rig.emu.account_id))["account"]
    funding = sum(float(t["amount"]) for t in txs if t["type"] == "TRANSFER_FUNDS")
    j = Journal(journal_path)
    try:
        j_open = {p["trade_id"]: int(p["units"]) for p in j.positions("open")}
        j_closed = {p["trade_id"]: p for p in j.closed_trades(limit=10**9)}
        j_fills = {f["transaction_id"]: f for f in j.fills(limit=10**9)}
        j_financed: dict[str, float] = {}
        for f in j.financing(limit=10**9):
            j_financed[f["trade_id"]] = j_financed.get(f["trade_id"], 0.0) + f["amount"]
        j_pnl = j.pnl()
    finally:
        j.close()
    assert j_open == open_at_broker, ("open trades and units differ", j_open, open_at_broker)
    assert set(j_fills) == set(fills), ("fills differ", sorted(set(j_fills) ^ set(fills)))
    for tid, f in fills.items():
        jf = j_fills[tid]
        assert jf["units"] == int(float(f["units"])), (tid, jf, f)
        assert jf["price"] == pytest.approx(float(f["price"]), abs=1e-9), (tid, jf, f)
    assert set(j_closed) == set(realized), ("closed trades differ",
                                            sorted(set(j_closed) ^ set(realized)))
    for tid, pl in realized.items():
        assert j_closed[tid]["pl"] == pytest.approx(pl, abs=1e-6), (tid, j_closed[tid], pl)
        assert not math.isnan(j_closed[tid]["exit_price"]), j_closed[tid]
    total = sum(realized.values())
    assert sum(p["pl"] for p in j_closed.values()) == pytest.approx(total, abs=1e-6)
    # financing: per trade, in total, and in the closed trades' net P&L
    assert set(j_financed) == set(financed), ("financed trades differ",
                                              sorted(set(j_financed) ^ set(financed)))
    for tid, fin in financed.items():
        assert j_financed[tid] == pytest.approx(fin, abs=1e-6), (tid, j_financed[tid], fin)
    assert j_pnl["financing"] == pytest.approx(float(summary["financing"]), abs=1e-6)
    for tid, p in j_closed.items():
        assert p["financing"] == pytest.approx(financed.get(tid, 0.0), abs=1e-6), p
        assert p["net_pl"] == pytest.approx(realized[tid] + financed.get(tid, 0.0), abs=1e-6)
    assert funding + j_pnl["net"] == pytest.approx(float(summary["balance"]), abs=1e-6)
    return {"open": len(j_open), "closed": len(j_closed), "fills": len(j_fills),
            "realized_pl": round(total, 6), "financing": round(j_pnl["financing"], 6),
            "financed_trades": len(financed)}


# ------------------------------------------------------------------ a runner process


def spawn_runner(rig: Rig, log: Path, *extra: str) -> subprocess.Popen:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(rig.tmp), **rig.env}
    args = [sys.executable, "-m", "runners.live", "--config", str(rig.config), *extra]
    for m in rig.models:
        args += ["--model", m]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=log.open("ab"))


def wait_for(cond: Callable[[], Any], timeout: float, poll: float = 0.02) -> Any:
    """``cond()``'s first truthy value within ``timeout`` seconds, else None."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(poll)
    return None


def _read_only(path: Path, sql: str) -> list[tuple]:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []


def journal_last_candle(path: Path) -> str | None:
    """The newest candle a (running) runner's journal has handled, read without writing."""
    rows = _read_only(path, "SELECT max(time) FROM candles")
    return rows[0][0] if rows else None


def journal_cursor(path: Path) -> str | None:
    """A (running) runner's journal's transaction cursor, read without writing."""
    rows = _read_only(path, "SELECT value FROM meta WHERE key='last_transaction_id'")
    return rows[0][0] if rows else None


def journal_starts(path: Path) -> int:
    """How many times a runner finished starting up on this journal."""
    rows = _read_only(path, "SELECT count(*) FROM decisions WHERE kind='start'")
    return int(rows[0][0]) if rows else 0


def run_paper(tmp_path: Path, frame: Any, instrument: str, granularity: str, *,
              half_spread_pips: float = 0.5, stop_loss_pips: float | None = STOP,
              artifact: dict | None = None, units: int = 1000, **params: float) -> Any:
    """A paper runner that replays ``frame`` to its end (status API off) and is returned;
    ``artifact``: more of :func:`make_artifact`'s options (policy, financing); ``units``:
    fixed units per trade."""
    from sep_research.live.config import config_from_dict
    from sep_research.live.feed import FileFeed
    from sep_research.live.journal import Journal
    from sep_research.live.model import load_models
    from sep_research.live.paper import PaperBroker
    from sep_research.live.runner import Runner

    art = make_artifact(tmp_path / "m.json", instrument, granularity,
                        stop_loss_pips=stop_loss_pips, **(artifact or {}), **params)
    cfg = config_from_dict({
        "instruments": [instrument], "granularity": granularity,
        "journal": str(tmp_path / "j.sqlite"), "risk": {**QUIET_RISK, "fixed_units": units},
        "paper": {"half_spread_pips": half_spread_pips}, "status": {"enabled": False}})
    models = load_models([str(art)], cfg.instruments, cfg.granularity, risk=cfg.risk)
    pip = 0.01 if instrument.endswith("_JPY") else 0.0001
    feed = FileFeed({instrument: frame_candles(frame, instrument)}, cfg.granularity_seconds,
                    half_spread={instrument: half_spread_pips * pip})
    broker = PaperBroker(balance=10_000, half_spread_pips=half_spread_pips)
    runner = Runner(cfg, models, broker, feed, Journal(cfg.journal), mode="paper")
    runner.start(status=False)
    runner.run()
    return runner


def paper_runner(tmp: Path, frame: Any, *, models_dir: Path | None = None,
                 config: dict | None = None, status: bool = False, **params: float) -> Any:
    """A started paper runner replaying ``frame`` (EUR_USD H1) from memory; its artifact is
    ``models_dir/m.json`` (default ``tmp/models``)."""
    from sep_research.live.config import config_from_dict
    from sep_research.live.feed import FileFeed
    from sep_research.live.journal import Journal
    from sep_research.live.model import load_models
    from sep_research.live.paper import PaperBroker
    from sep_research.live.runner import Runner

    models_dir = models_dir or tmp / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    art = make_artifact(models_dir / "m.json", "EUR_USD", "H1", stop_loss_pips=STOP, **params)
    cfg = config_from_dict({"instruments": ["EUR_USD"], "granularity": "H1",
                            "journal": str(tmp / "journal.sqlite"), "risk": QUIET_RISK,
                            "status": {"port": 0, "enabled": status}, **(config or {})})
    models = load_models([str(art)], cfg.instruments, cfg.granularity, risk=cfg.risk)
    feed = FileFeed({"EUR_USD": frame_candles(frame, "EUR_USD")}, 3600,
                    half_spread={"EUR_USD": 0.00005})
    runner = Runner(cfg, models, PaperBroker(balance=10_000), feed, Journal(cfg.journal),
                    mode="paper", status_token=STATUS_TOKEN, model_paths=[str(art)])
    runner.start(status=status)
    return runner
