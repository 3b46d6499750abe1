"""The look-ahead check: every shipped preset and feature function passes in causal
alignment; the legacy alignment and a planted look-ahead are caught; CLI exit codes."""

from __future__ import annotations

import numpy as np
import pytest

from sep_research.cli import main
from sep_research.signals.causality import FEATURE_FUNCTIONS, check_causality, check_preset
from sep_research.signals.presets import PRESETS
from sep_research.signals.seed import ohlcv
from tests.conftest import SEED_EURUSD_M1, seed_file


@pytest.fixture(scope="module")
def sample_head():
    from sep_research.data import load_sample

    x = ohlcv(load_sample())
    return {k: v[:1500] for k, v in x.items()}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_and_feature_function_is_causal(sample_head, preset):
    reports = check_preset(sample_head, preset, instrument="EUR_USD", alignment="causal",
                           engine="cpu", n_cuts=16)
    assert set(reports) == set(FEATURE_FUNCTIONS)
    for rep in reports.values():
        assert rep.checked == len(rep.cuts) * 5 and len(rep.cuts) >= 16
        assert rep.ok, rep.summary()


def test_legacy_alignment_is_caught(sample_head):
    reports = check_preset(sample_head, "seed", instrument="EUR_USD", alignment="legacy",
                           engine="cpu", n_cuts=10)
    for rep in reports.values():
        assert not rep.ok
        first = rep.first
        assert first.candle <= first.cut  # a candle at or before the cut changed
        assert "changed" in rep.summary()


def test_planted_look_ahead_is_caught_and_a_causal_function_passes(sample_head):
    def peeks(x):  # uses the next close: look-ahead by one candle
        c = x["close"]
        return {"next": np.append(c[1:], np.nan) - c}

    def backward(x):  # a trailing mean: causal
        c = x["close"]
        return {"mean3": np.convolve(c, np.ones(3) / 3, mode="full")[: len(c)]}

    rep = check_causality(peeks, sample_head, n_cuts=8, label="peeks")
    assert not rep.ok and rep.first.name == "next" and rep.first.candle == rep.first.cut
    assert check_causality(backward, sample_head, n_cuts=8).ok


@pytest.mark.slow
def test_cli_exit_codes():
    path = str(seed_file(SEED_EURUSD_M1))
    assert main(["check-causality", "--alignment", "legacy", "--data", path, "--cuts", "6"]) == 1
    assert main(["check-causality", "--alignment", "causal", "--data", path, "--cuts", "6"]) == 0
    assert main(["check-causality", "--preset", "nope", "--data", path]) == 2
