"""The README's worked example of a rule, registered as written: the framework's checks pass
on it (look-ahead check, up_pips 0 is the seed rule, live stream equals research on real
data, CPU and plain-Python sweeps agree, its spec round-trips)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from sep_research import strategy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def offset(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- rule-example -->\n```python\n(.*?)```", text, re.DOTALL)
    assert m, "the README's rule example is gone"
    code = m.group(1)
    assert 30 <= len(code.splitlines()) <= 60  # "a few dozen lines"
    (tmp_path / "readme_offset_rule.py").write_text(code, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(strategy.RULES, "offset", ("readme_offset_rule", "RULE"))
    yield strategy.rule_object("offset")
    sys.modules.pop("readme_offset_rule", None)


def test_the_readme_rule_passes_the_frameworks_checks(offset):
    from sep_research.data import load_sample
    from sep_research.signals.causality import check_rule
    from sep_research.signals.grid import product_grid
    from sep_research.signals.rules.base import get_rule, rule_signals
    from sep_research.signals.seed import seed_signals
    from sep_research.signals.sweep import sweep_seed
    from sep_research.strategy import CostModel, StrategySpec

    frame = load_sample()
    r = get_rule("offset")
    for rep in check_rule(frame.iloc[:1200], "offset", engine="cpu", n_cuts=8).values():
        assert rep.ok, rep.summary()
    zero = r.params_class(up_pips=0.0)
    a = seed_signals(frame, engine="cpu")
    b = rule_signals(frame, zero, rule="offset", engine="cpu")
    assert np.array_equal(a.action, b.action) and np.array_equal(a.hc, b.hc)
    sig = rule_signals(frame, rule="offset", engine="cpu")
    assert (sig.action != a.action).any()
    s = r.stream(r.preset(), instrument="EUR_USD", granularity="H1")
    cols = [frame[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close", "volume")]
    out = [s.update(t, *(c[i] for c in cols)) for i, t in enumerate(frame.index[:1500])]
    assert [o.direction for o in out] == sig.action[:1500].tolist()
    assert [o.high_confidence for o in out] == sig.hc[:1500].tolist()
    grid = product_grid("offset", window=[7, 11], up_pips=[0.0, 0.5, 1.0])
    kw = {"rule": "offset", "score_start": 50, "score_end": 1199, "half_spread_pips": 0.5}
    cpu = sweep_seed(frame.iloc[:1200], grid, engine="cpu", **kw)
    py = sweep_seed(frame.iloc[:1200], grid, engine="python", **kw)
    for k, v in cpu.items():
        assert v.tobytes() == py[k].tobytes(), k
    spec = StrategySpec("EUR_USD", "H1", rule="offset", costs=CostModel("mid", 0.5))
    assert StrategySpec.from_dict(spec.to_dict()) == spec
    assert "up_pips" in r.describe()
