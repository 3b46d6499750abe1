"""The runner trades the artifact's policy (issue 19): the stop-loss and take-profit come from
the artifact training wrote and judged; the runner config may only tighten risk. A config that
asks for another stop is refused at start-up naming both values; risk-based sizing of a policy
without a stop is refused; ``/api/status`` shows the policy in force."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sep_research.live.config import config_from_dict
from sep_research.live.model import ModelError, load_models
from tests.live_helpers import (
    QUIET_RISK,
    ROOT,
    frame_candles,
    make_artifact,
    run_paper,
    write_candle_json,
)


@pytest.fixture(scope="module")
def sample():
    from sep_research.data import load_sample

    return load_sample().iloc[:1200]


def _orders(runner) -> list[dict]:
    return runner.journal.positions(None)  # open and closed, in order of opening


@pytest.mark.parametrize("stop", [20.0, None])
def test_paper_runner_trades_the_artifacts_stop(tmp_path: Path, sample, stop) -> None:
    runner = run_paper(tmp_path, sample, "EUR_USD", "H1", half_spread_pips=0.5,
                       stop_loss_pips=stop)
    pos = _orders(runner)
    assert len(pos) > 20
    for p in pos:
        if stop is None:
            assert p["stop_loss"] is None and p["take_profit"] is None
        else:  # 20 pips from the entry fill, against the position, on the price grid
            direction = 1 if p["units"] > 0 else -1
            assert p["stop_loss"] == pytest.approx(p["entry_price"] - direction * 0.0020,
                                                   abs=1e-9)
            assert p["take_profit"] is None
    st = runner.status()["policy"]["EUR_USD"]
    assert st["stop_loss_pips"] == stop and st["take_profit_pips"] is None
    assert st["trade_on"] == "hc" and st["hold"] == "flat" and st["sizing"].startswith("fixed")
    runner.journal.close()


def _cfg(tmp_path: Path, **risk) -> object:
    return config_from_dict({"instruments": ["EUR_USD"], "granularity": "H1",
                             "journal": str(tmp_path / "j.sqlite"),
                             "risk": {**QUIET_RISK, **risk}, "status": {"enabled": False}})


def test_config_asking_another_stop_is_refused_naming_both(tmp_path: Path) -> None:
    with20 = make_artifact(tmp_path / "m20.json", stop_loss_pips=20.0)
    without = make_artifact(tmp_path / "m0.json")
    for art, asked, has in ((with20, 10.0, "20"), (without, 20.0, "null")):
        cfg = _cfg(tmp_path, stop_loss_pips=asked)
        with pytest.raises(ModelError) as err:
            load_models([str(art)], cfg.instruments, cfg.granularity, risk=cfg.risk)
        msg = str(err.value)
        assert f"risk.stop_loss_pips={asked:g}" in msg and f"policy.stop_loss_pips={has}" in msg
    cfg = _cfg(tmp_path, take_profit_pips=30.0)
    with pytest.raises(ModelError, match=r"take_profit_pips=30.*policy.take_profit_pips=null"):
        load_models([str(with20)], cfg.instruments, cfg.granularity, risk=cfg.risk)
    # null (the artifact's) and the artifact's own value are accepted
    for asked in (None, 20.0):
        cfg = _cfg(tmp_path, stop_loss_pips=asked)
        m = load_models([str(with20)], cfg.instruments, cfg.granularity, risk=cfg.risk)
        assert m["EUR_USD"].policy.stop_loss_pips == 20.0


def test_risk_sizing_without_a_stop_needs_fixed_units(tmp_path: Path) -> None:
    without = make_artifact(tmp_path / "m0.json")
    cfg = _cfg(tmp_path, fixed_units=None)
    with pytest.raises(ModelError, match=r"no stop-loss.*risk.fixed_units"):
        load_models([str(without)], cfg.instruments, cfg.granularity, risk=cfg.risk)
    with20 = make_artifact(tmp_path / "m20.json", stop_loss_pips=20.0)
    m = load_models([str(with20)], cfg.instruments, cfg.granularity, risk=cfg.risk)
    assert m["EUR_USD"].policy.stop_loss_pips == 20.0


def _run_cli(tmp_path: Path, model: Path, risk: str) -> subprocess.CompletedProcess:
    from sep_research.data import load_sample

    write_candle_json(load_sample().iloc[:120], tmp_path / "c.json")
    (tmp_path / "r.yaml").write_text(
        "instruments: [EUR_USD]\ngranularity: H1\n"
        f"journal: {tmp_path / 'j.sqlite'}\n"
        f"feed: {{source: file, files: {{EUR_USD: {tmp_path / 'c.json'}}}}}\n"
        f"risk: {risk}\nstatus: {{enabled: false}}\n")
    return subprocess.run([sys.executable, "-m", "runners.live", "--model", str(model),
                           "--config", str(tmp_path / "r.yaml"), "--paper"],
                          capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})


def test_sep_run_refuses_at_start_up(tmp_path: Path) -> None:
    with20 = make_artifact(tmp_path / "m20.json", stop_loss_pips=20.0)
    out = _run_cli(tmp_path, with20, "{stop_loss_pips: 15, fixed_units: 1000}")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "risk.stop_loss_pips=15" in out.stderr and "policy.stop_loss_pips=20" in out.stderr
    assert "Traceback" not in out.stderr
    without = make_artifact(tmp_path / "m0.json")
    out = _run_cli(tmp_path, without, "{risk_per_trade: 0.01}")
    assert out.returncode == 2 and "risk.fixed_units" in out.stderr, out.stderr[-2000:]
    out = _run_cli(tmp_path, with20, "{risk_per_trade: 0.01, max_spread_pips: null, "
                   "weekend_cutoff_minutes: null}")
    assert out.returncode == 0, out.stderr[-2000:]


def test_reload_keeps_the_policy_rules(tmp_path: Path, sample) -> None:
    """/api/reload applies the same checks: an artifact whose stop the config contradicts is
    refused and the model in force stays."""
    from sep_research.live.brokers import PaperBroker
    from sep_research.live.feed import FileFeed
    from sep_research.live.journal import Journal
    from sep_research.live.runner import Runner

    with20 = make_artifact(tmp_path / "m20.json", stop_loss_pips=20.0)
    with30 = make_artifact(tmp_path / "m30.json", stop_loss_pips=30.0)
    cfg = _cfg(tmp_path, stop_loss_pips=20.0)
    models = load_models([str(with20)], cfg.instruments, cfg.granularity, risk=cfg.risk)
    feed = FileFeed({"EUR_USD": frame_candles(sample.iloc[:50], "EUR_USD")}, 3600,
                    half_spread={"EUR_USD": 0.00005})
    runner = Runner(cfg, models, PaperBroker(balance=10_000), feed, Journal(cfg.journal),
                    mode="paper", model_paths=[str(with20)])
    try:
        runner.start(status=False)
        res = runner.command("reload", {"models": [str(with30)]})
        assert not res["ok"] and "policy.stop_loss_pips=30" in res["error"]
        assert runner.status()["policy"]["EUR_USD"]["stop_loss_pips"] == 20.0
    finally:
        runner.shutdown()


@pytest.mark.slow
def test_sep_train_with_and_without_a_stop_and_sep_run_trades_each(tmp_path: Path) -> None:
    """Issue 19's done-when: `sep train --stop-loss-pips 20` and `sep train` write artifacts
    whose policy differs and whose out-of-sample trading figures differ; `sep run` with the
    first trades a 20-pip stop, with the second none."""
    from sep_research.cli import main
    from sep_research.live.journal import Journal

    arts = {}
    for name, extra in (("stop", ["--stop-loss-pips", "20"]), ("none", [])):
        out = tmp_path / f"{name}.json"
        assert main(["train", "--grid", "small", "--folds", "3", "--random", "30",
                     "--no-progress", "--out", str(out), *extra]) == 0
        arts[name] = json.loads(out.read_text())
    assert arts["stop"]["policy"]["stop_loss_pips"] == 20.0
    assert arts["none"]["policy"]["stop_loss_pips"] is None
    t_stop, t_none = (arts[k]["metrics"]["tuned"]["trading"] for k in ("stop", "none"))
    assert t_stop["n_stop_loss"] > 0 and t_none["n_stop_loss"] == 0
    assert t_stop["net_pips"] != t_none["net_pips"]
    assert arts["stop"]["signal_params"] == arts["none"]["signal_params"]  # same choice
    for name, has_stop in (("stop", True), ("none", False)):
        run_dir = tmp_path / name
        run_dir.mkdir()
        out = _run_cli(run_dir, tmp_path / f"{name}.json", "{fixed_units: 1000, "
                       "max_spread_pips: null, weekend_cutoff_minutes: null}")
        assert out.returncode == 0, out.stderr[-2000:]
        j = Journal(run_dir / "j.sqlite")
        pos = j.positions(None)
        j.close()
        assert pos, "the runner traded nothing"
        for p in pos:
            if has_stop:
                direction = 1 if p["units"] > 0 else -1
                assert p["stop_loss"] == pytest.approx(p["entry_price"] - direction * 0.0020,
                                                       abs=1e-9)
            else:
                assert p["stop_loss"] is None
