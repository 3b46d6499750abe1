"""Every registered rule in the runner: its pure-Python live stream gives the vectorised
research signals candle for candle on real data (also when it starts late, once it has seen
its bounded history), imports nothing heavy, and ``sep run --paper`` trades it with the
research signals; ``sep train --rule NAME --grid small`` writes an artifact that
``sep model verify`` accepts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sep_research.signals.rules.base import get_rule, rule_signals
from sep_research.strategy import CostModel, Policy, StrategySpec
from tests.conftest import SEED_O_TEST, seed_file

ROOT = Path(__file__).resolve().parents[1]
#: (rule, preset) pairs that run on H1 candles
H1_CASES = (("seed", "seed"), ("thresholded", "default"), ("thresholded", "k0"),
            ("mtf", "default"))
RULES = ("seed", "thresholded", "mtf")


@pytest.fixture(scope="module")
def sample():
    from sep_research.data import load_sample

    return load_sample()


def _stream(rule: str, params, frame, granularity: str, start: int = 0) -> list:
    s = get_rule(rule).stream(params, instrument="EUR_USD", granularity=granularity)
    cols = [frame[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close", "volume")]
    times = list(frame.index)
    return [s.update(times[i], *(c[i] for c in cols)) for i in range(start, len(frame))]


def _check(out: list, ref, lo: int = 0) -> None:
    act = np.array([o.direction for o in out])
    assert np.array_equal(act, ref.action[lo:])
    assert np.array_equal(np.array([o.high_confidence for o in out]), ref.hc[lo:])
    assert np.array_equal(np.array([o.confidence for o in out]), ref.confidence[lo:],
                          equal_nan=True)
    assert np.array_equal(np.array([o.coherence for o in out]), ref.features["coherence"][lo:],
                          equal_nan=True)
    assert [o.has_features for o in out] == list(ref.has[lo:])


@pytest.mark.parametrize(("rule", "preset"), H1_CASES)
def test_stream_equals_research_on_real_data(sample, rule, preset):
    params = get_rule(rule).preset(preset)
    ref = rule_signals(sample, params, rule=rule, engine="cpu")
    out = _stream(rule, params, sample, "H1")
    _check(out, ref)
    act = ref.action
    assert (act != 0).sum() > 200 and ref.hc.sum() > 50


@pytest.mark.parametrize("rule", RULES)
def test_stream_started_late_equals_research_after_its_history(sample, rule):
    r = get_rule(rule)
    params = r.preset()
    ref = rule_signals(sample, params, rule=rule, engine="cpu")
    start = 701  # mid-bucket for the higher timeframes of mtf
    h = r.history(params, "H1")
    out = _stream(rule, params, sample, "H1", start=start)
    assert start + h < len(sample)
    _check(out[h:], ref, start + h)


def test_mtf_seed_m1_stream_on_the_seeds_m1_file():
    from sep_research.signals.cli import load_file

    frame = load_file(seed_file(SEED_O_TEST), instrument="EUR_USD", granularity="M1")
    params = get_rule("mtf").preset("seed-m1")
    ref = rule_signals(frame, params, rule="mtf", granularity="M1", engine="cpu")
    _check(_stream("mtf", params, frame, "M1"), ref)
    assert (ref.action != 0).sum() > 100


def test_every_rules_stream_loads_neither_numba_nor_pandas():
    code = (
        "import sys, datetime as dt\n"
        "from sep_research.live.model import RUNNER_RULES\n"
        "from sep_research.signals.rules.base import get_rule\n"
        "t0 = dt.datetime(2020, 1, 6, tzinfo=dt.timezone.utc)\n"
        "for name in RUNNER_RULES:\n"
        "    r = get_rule(name)\n"
        "    s = r.stream(r.preset(), instrument='EUR_USD', granularity='H1')\n"
        "    for i in range(60):\n"
        "        s.update(t0 + dt.timedelta(hours=i), 1.0, 1.0 + 0.001 * (i % 3), 0.999,\n"
        "                 1.0 + 0.0001 * (i % 5), 100)\n"
        "print(sorted(RUNNER_RULES))\n"
        "bad = [m for m in ('numba', 'pandas', 'matplotlib', 'scipy') if m in sys.modules]\n"
        "sys.exit(f'loaded {bad}' if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, check=False, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "'mtf'" in r.stdout and "'thresholded'" in r.stdout


def rule_artifact(path: Path, rule: str, params=None) -> Path:
    """A model artifact of ``rule`` (its preset) with the default policy, mid costs."""
    from sep_research.training.artifact import write_artifact

    spec = StrategySpec(instrument="EUR_USD", granularity="H1", rule=rule, params=params,
                        policy=Policy(), costs=CostModel("mid", 0.5))
    write_artifact(path, {
        "created_at": "2026-11-24T00:00:00Z", **spec.to_dict(), "objective": {"name": "test"},
        "selection_gap": {}, "data": {"provenance": {"source": "synthetic"}}, "windows": {},
        "metrics": {}, "baselines": {}, "overfitting": {}, "code": {}, "packages": {}})
    return path


@pytest.mark.slow
@pytest.mark.parametrize("rule", RULES)
def test_sep_run_paper_trades_each_rule_with_the_research_signals(tmp_path, sample, rule):
    """``sep run --paper`` on a file feed of real candles: the journal's action and target of
    every candle equal the research signals of the same candles under the artifact's policy."""
    from sep_research.data import read_candle_file
    from sep_research.live.journal import Journal
    from tests.live_helpers import write_candle_json

    feed = write_candle_json(sample.iloc[:1500], tmp_path / "c.json")
    frame = read_candle_file(feed, instrument="EUR_USD", granularity="H1")
    art = rule_artifact(tmp_path / "m.json", rule)
    (tmp_path / "r.yaml").write_text(
        "instruments: [EUR_USD]\ngranularity: H1\n"
        f"journal: {tmp_path / 'j.sqlite'}\n"
        f"feed: {{source: file, files: {{EUR_USD: {feed}}}}}\n"
        "risk: {fixed_units: 1000, max_spread_pips: null, weekend_cutoff_minutes: null, "
        "cooldown_losses: null, daily_loss_limit: null, max_drawdown: null}\n"
        "status: {enabled: false}\n", encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "runners.live", "--model", str(art),
                          "--config", str(tmp_path / "r.yaml"), "--paper"],
                         capture_output=True, text=True, timeout=600, env=env, check=False,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    j = Journal(tmp_path / "j.sqlite")
    rows = j._query("SELECT candle_time, action, target FROM signals ORDER BY candle_time")
    n_open = j._query("SELECT count(*) n FROM positions")[0]["n"]
    j.close()
    ref = rule_signals(frame, rule=rule, engine="cpu")
    names = {1: "BUY", -1: "SELL", 0: "HOLD"}
    assert len(rows) == len(frame)
    assert [r["action"] for r in rows] == [names[int(a)] if h else "NONE"
                                           for a, h in zip(ref.action, ref.has, strict=True)]
    assert [r["target"] for r in rows] == np.where(ref.hc, ref.action, 0).astype(int).tolist()
    assert n_open > 10


@pytest.mark.slow
@pytest.mark.parametrize("rule", RULES)
def test_sep_train_small_grid_writes_an_artifact_that_verifies(tmp_path, rule, capsys):
    from sep_research.cli import main
    from sep_research.live.model import load_models

    path = tmp_path / f"{rule}.json"
    assert main(["train", "--rule", rule, "--grid", "small", "--no-progress", "--random", "50",
                 "--out", str(path)]) == 0
    assert "verdict (tuned)" in capsys.readouterr().out
    assert main(["model", "verify", str(path)]) == 0
    art = json.loads(path.read_text())
    assert art["rule"] == rule and art["settings"]["rule"] == rule
    assert set(art["signal_params"]) == set(get_rule(rule).preset().to_dict())
    m = load_models([str(path)], ["EUR_USD"], "H1")["EUR_USD"]
    assert type(m.params) is get_rule(rule).params_class
