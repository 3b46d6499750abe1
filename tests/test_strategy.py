"""The strategy specification (sep_research.strategy): strict typed validation naming the key,
the policy's one rule (scalar in live, arrays in research, equal), the cost model, and that the
module stays standard-library only."""

from __future__ import annotations

import numpy as np
import pytest

from sep_research.financing import default_rates
from sep_research.signals.seed import SEED, SeedParams
from sep_research.strategy import (
    RULES,
    CostModel,
    Policy,
    SpecError,
    StrategySpec,
    data_instrument,
    rule_params_class,
)


def _spec_dict(**changes) -> dict:
    d = StrategySpec("EUR_USD", "H1", policy=Policy(stop_loss_pips=20.0),
                     costs=CostModel("mid", 0.5)).to_dict()
    d.update(changes)
    return d


def test_round_trip_and_derived_pip() -> None:
    d = _spec_dict()
    spec = StrategySpec.from_dict(d)
    assert spec.to_dict() == d
    assert spec.params == SEED and spec.policy.stop_loss_pips == 20.0
    assert spec.pip == 0.0001 and StrategySpec("USD_JPY", "M5").pip == 0.01
    assert "20-pip stop-loss" in spec.describe() and "mid +/- 0.5 pip" in spec.describe()
    assert set(d) == {"rule", "signal_params", "instrument", "granularity", "alignment",
                      "policy", "costs"}
    assert d["policy"] == {"trade_on": "hc", "hold": "flat", "stop_loss_pips": 20.0,
                           "take_profit_pips": None}


_DAYS = {"MONDAY": 1, "TUESDAY": 1, "WEDNESDAY": 3, "THURSDAY": 1, "FRIDAY": 1,
         "SATURDAY": 0, "SUNDAY": 0}
BAD = [
    ({"instrument": 123}, "instrument"),
    ({"instrument": "../../etc/passwd"}, "instrument"),
    ({"granularity": "X9"}, "granularity"),
    ({"alignment": "legacy"}, "alignment"),
    ({"rule": "magic"}, "rule"),
    ({"extra": 1}, "unknown key"),
    ({"policy": {"trade_on": "hc", "hold": "flat", "stop_loss_pips": 0,
                 "take_profit_pips": None}}, "policy.stop_loss_pips"),
    ({"policy": {"trade_on": "hc", "hold": "flat", "stop_loss_pips": float("inf"),
                 "take_profit_pips": None}}, "policy.stop_loss_pips"),
    ({"policy": {"trade_on": "hc", "hold": "flat", "stop_loss_pips": "20",
                 "take_profit_pips": None}}, "policy.stop_loss_pips"),
    ({"policy": {"trade_on": True, "hold": "flat", "stop_loss_pips": None,
                 "take_profit_pips": None}}, "policy.trade_on"),
    ({"policy": {"trade_on": "hc", "hold": "flat", "stop_loss_pips": None}},
     "policy: missing key(s) 'take_profit_pips'"),
    ({"costs": {"spread": "mid", "half_spread_pips": None, "financing": None}},
     "half_spread_pips"),
    ({"costs": {"spread": "bid_ask", "half_spread_pips": 0.5, "financing": None}},
     "half_spread_pips"),
    ({"costs": {"spread": "mid", "half_spread_pips": -1, "financing": None}},
     "costs.half_spread_pips"),
    ({"costs": {"spread": "mid", "half_spread_pips": 0.5, "financing": 0.01}},
     "costs.financing"),
    ({"costs": {"spread": "mid", "half_spread_pips": 0.5, "financing": {
        "source": "x", "long_rate": "-0.02", "short_rate": 0.0, "days": _DAYS}}},
     "costs.financing.long_rate"),
    ({"costs": {"spread": "mid", "half_spread_pips": 0.5, "financing": {
        "source": "x", "long_rate": -0.02, "short_rate": 2.0, "days": _DAYS}}},
     "costs.financing.short_rate"),
    ({"costs": {"spread": "mid", "half_spread_pips": 0.5, "financing": {
        "source": "x", "long_rate": -0.02, "short_rate": 0.0,
        "days": {**_DAYS, "WEDNESDAY": 3.0}}}}, "costs.financing.days.WEDNESDAY"),
    ({"costs": {"spread": "mid", "half_spread_pips": 0.5, "financing": {
        "source": "x", "long_rate": -0.02, "short_rate": 0.0,
        "days": {k: v for k, v in _DAYS.items() if k != "SUNDAY"}}}},
     "costs.financing.days: missing key(s) 'SUNDAY'"),
    ({"costs": {"spread": "mid", "half_spread_pips": 0.5, "financing": {
        "source": "", "long_rate": -0.02, "short_rate": 0.0, "days": _DAYS}}},
     "costs.financing.source"),
    ({"costs": {"spread": "mid", "half_spread_pips": 0.5, "financing": {
        "long_rate": -0.02, "short_rate": 0.0, "days": _DAYS}}},
     "costs.financing: missing key(s) 'source'"),
]


@pytest.mark.parametrize(("change", "named"), BAD, ids=[n for _, n in BAD])
def test_every_bad_value_is_refused_naming_its_key(change: dict, named: str) -> None:
    with pytest.raises(SpecError, match=named.replace("(", r"\(").replace(")", r"\)")):
        StrategySpec.from_dict(_spec_dict(**change))


PARAMS_BAD = [
    ("window", 11.0, "expected an integer"),
    ("window", 10**12, "<= 5000"),
    ("window", 1, ">= 2"),
    ("w_s", "0.4", "expected a number"),
    ("buy_threshold", True, "expected a number"),
    ("w_e", float("nan"), "finite"),
    ("volume_factor", "no", "expected true or false"),
    ("volume_factor", 1, "expected true or false"),
    ("min_move", -0.1, ">= 0"),
    ("tf_short", 20, "tf_short must not exceed tf_long"),
    ("window", [11], "expected an integer"),
]


@pytest.mark.parametrize(("key", "value", "why"), PARAMS_BAD,
                         ids=[f"{k}={v!r}" for k, v, _ in PARAMS_BAD])
def test_seed_params_are_validated_by_the_rule(key: str, value, why: str) -> None:
    d = SEED.to_dict()
    d[key] = value
    with pytest.raises(SpecError, match=f"signal_params.*{why}") as err:
        SeedParams.from_dict(d)
    assert key in str(err.value)
    d = _spec_dict()
    d["signal_params"] = {**d["signal_params"], key: value}
    with pytest.raises(SpecError, match="signal_params"):
        StrategySpec.from_dict(d)


def test_seed_params_need_every_key_and_no_other() -> None:
    d = SEED.to_dict()
    assert SeedParams.from_dict(d) == SEED
    with pytest.raises(SpecError, match=r"missing key.*'window'"):
        SeedParams.from_dict({k: v for k, v in d.items() if k != "window"})
    with pytest.raises(SpecError, match=r"unknown key.*'pip'"):  # the old pips-per-unit field
        SeedParams.from_dict({**d, "pip": 1e4})


def test_the_rule_registry_is_the_one_place() -> None:
    assert RULES["seed"] == ("sep_research.signals.rules.seed", "RULE")
    assert set(RULES) >= {"seed", "thresholded", "mtf"}
    assert rule_params_class("seed") is SeedParams
    with pytest.raises(SpecError, match="unknown rule 'x'"):
        rule_params_class("x")


def test_policy_target_scalar_equals_research_arrays() -> None:
    from sep_research.evaluation.metrics import policy_targets

    rng = np.random.default_rng(3)
    a = rng.choice([-1, 0, 1], size=400)
    hc = rng.random(400) < 0.4
    mask = np.ones(400, bool)
    mask[:30] = False
    for trade_on in ("hc", "all"):
        for hold in ("flat", "keep"):
            pol = Policy(trade_on=trade_on, hold=hold)
            prev, scalar = 0, []
            for i in range(400):
                if not mask[i]:
                    prev = 0
                    scalar.append(0)
                    continue
                prev = pol.target(int(a[i]), bool(hc[i]), prev)
                scalar.append(prev)
            assert policy_targets(a, hc, pol, mask).tolist() == scalar, (trade_on, hold)


def test_cost_model_for_data() -> None:
    assert CostModel.for_data(True, None) == CostModel("bid_ask", None)
    assert CostModel.for_data(True, 0.3) == CostModel("mid", 0.3)  # overrides bid/ask
    assert CostModel.for_data(False, 0.5).describe() == "mid +/- 0.5 pip; no financing (off)"
    rates = default_rates("EUR_USD")
    with_fin = CostModel.for_data(False, 0.5, rates)
    assert with_fin.financing is rates
    assert "financing long -3.38 %/yr, short +1.38 %/yr" in with_fin.describe()
    assert "indicative" in with_fin.describe()
    assert CostModel.from_dict(with_fin.to_dict()) == with_fin
    assert with_fin.to_dict()["financing"]["days"]["WEDNESDAY"] == 3
    with pytest.raises(SpecError, match="no bid/ask: pass half_spread_pips"):
        CostModel.for_data(False, None)


def test_data_instrument() -> None:
    from types import SimpleNamespace

    def Frame() -> SimpleNamespace:  # stands for a candle frame
        return SimpleNamespace(attrs={"provenance": {"instrument": "USD_JPY"}})

    assert data_instrument(Frame()) == "USD_JPY"
    assert data_instrument({}, "EUR_USD") == "EUR_USD"
    with pytest.raises(SpecError, match="name no instrument"):
        data_instrument({"close": [1.0]})
    with pytest.raises(SpecError, match="'EUR_USD' was given but the candles are 'USD_JPY'"):
        data_instrument(Frame(), "EUR_USD")

