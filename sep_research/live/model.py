"""Model artifacts in the runner: verify, check against the config, and turn signals into targets.

:func:`load_models` verifies each artifact (:func:`sep_research.training.artifact.load_artifact`
refuses a failed checksum, a non-canonical file, an older schema, a legacy alignment and a
strategy that does not validate), reads its :class:`~sep_research.strategy.StrategySpec`, and
refuses an artifact whose instrument or granularity the runner config does not trade, or a
config instrument without a model.

**The runner trades the artifact's policy** (``artifact["policy"]``, the one training
evaluated): which signals trade (``trade_on``), what a HOLD means (``hold``), the stop-loss and
the take-profit (:meth:`sep_research.strategy.Policy.target`). The runner config may only
tighten risk (limits, sizing, guards); it cannot change the policy. With ``risk`` given,
:func:`load_models` (and so ``sep run`` at start-up and ``/api/reload``) refuses

- ``risk.stop_loss_pips`` / ``risk.take_profit_pips`` other than null (null: the artifact's)
  or the artifact's own value: the message names both values;
- risk-based sizing (``risk.fixed_units: null``: units from ``risk_per_trade`` over the stop
  distance) for a policy without a stop-loss, where that size is undefined: set
  ``risk.fixed_units`` to trade such a model.

The signal itself comes from the artifact's rule's live stream (``Rule.stream`` of
:mod:`sep_research.signals.rules`; :class:`sep_research.signals.live.SeedSignalStream` for the
seed rule), the pure-Python path of the research signal code, for the artifact's instrument
(its pip) and granularity. Every registered rule has one (:data:`sep_research.strategy.RULES`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sep_research.live.types import Candle, Decision
from sep_research.strategy import RULES, Policy, SpecError, StrategySpec
from sep_research.training.artifact import ArtifactError, load_artifact

log = logging.getLogger(__name__)

#: the rules whose signals the runner can compute: every registered rule has a live stream
RUNNER_RULES = tuple(RULES)

__all__ = ["Model", "ModelError", "Policy", "SignalPath", "check_policy", "load_model",
           "load_models"]


class ModelError(ValueError):
    """A model artifact cannot be used by this runner."""


@dataclass
class Model:
    path: str
    artifact: dict[str, Any]
    spec: StrategySpec
    model_id: str

    @property
    def instrument(self) -> str:
        return self.spec.instrument

    @property
    def granularity(self) -> str:
        return self.spec.granularity

    @property
    def params(self) -> Any:  # the rule's parameters (SeedParams or a subclass)
        return self.spec.params

    @property
    def policy(self) -> Policy:
        return self.spec.policy

    @property
    def history(self) -> int:
        """Candles the rule's live stream must see before its signals equal research's
        whatever the feed's start (``Rule.history``)."""
        from sep_research.signals.rules.base import get_rule

        return get_rule(self.spec.rule).history(self.params, self.granularity)

    def new_stream(self) -> SignalPath:
        return SignalPath(self)


class SignalPath:
    """One instrument's signal state: the rule's stream plus the policy's previous target."""

    def __init__(self, model: Model) -> None:
        from sep_research.signals.rules.base import get_rule

        self.model = model
        self.stream = get_rule(model.spec.rule).stream(model.params,
                                                       instrument=model.instrument,
                                                       granularity=model.granularity)
        self.previous = 0

    def update(self, candle: Candle) -> Decision:
        sig = self.stream.update(candle.time, candle.o, candle.h, candle.l, candle.c,
                                 candle.volume)
        target = self.model.policy.target(sig.direction, sig.high_confidence, self.previous)
        self.previous = target
        return Decision(
            instrument=candle.instrument, candle_time=candle.time,
            action=sig.action if sig.has_features else "NONE", target=target,
            confidence=sig.confidence,
            extra={"hc": sig.high_confidence, "coherence": sig.coherence,
                   "stability": sig.stability, "phase": sig.phase, "n": sig.index})


def load_model(path: str | Path) -> Model:
    p = str(path)
    try:
        art = load_artifact(p, verify=True)
        spec = StrategySpec.from_artifact(art, where=p)
    except (ArtifactError, SpecError) as exc:
        raise ModelError(str(exc)) from None
    if spec.rule not in RUNNER_RULES:
        raise ModelError(f"{p}: rule {spec.rule!r} is not one the runner computes "
                         f"({', '.join(RUNNER_RULES)})")
    return Model(path=p, artifact=art, spec=spec,
                 model_id=f"{spec.instrument}-{spec.granularity}-{art['sha256'][:12]}")


def _pips(v: float | None) -> str:
    return "null (none)" if v is None else f"{v:g}"


def check_policy(model: Model, risk: Any) -> None:
    """Refuse a runner config that would trade another policy than the artifact's, or size
    trades of a policy without a stop-loss from the stop distance (see the module docstring).
    ``risk``: the config's ``RiskConfig``."""
    pol = model.policy
    for key, mine in (("stop_loss_pips", pol.stop_loss_pips),
                      ("take_profit_pips", pol.take_profit_pips)):
        asked = getattr(risk, key)
        if asked is not None and asked != mine:
            flag = "--" + key.replace("_", "-")
            retrain = (f"retrain with sep train {flag} {asked:g}" if asked is not None else "")
            raise ModelError(
                f"{model.path}: the runner config asks risk.{key}={_pips(asked)} but the model "
                f"was trained and judged with policy.{key}={_pips(mine)}: the runner trades the "
                f"artifact's policy. Set risk.{key} to null (the artifact's) or to {_pips(mine)}"
                + (f", or {retrain}" if retrain else ""))
    if risk.fixed_units is None and pol.stop_loss_pips is None:
        raise ModelError(
            f"{model.path}: the model's policy has no stop-loss (policy.stop_loss_pips: null), "
            "so risk-based sizing (risk.risk_per_trade over the stop distance) is undefined: "
            "set risk.fixed_units to the units per trade, or train with --stop-loss-pips")


def warmup_for(models: dict[str, Model], configured: int | None) -> int:
    """Candles of history the runner fetches and keeps per instrument: the configured
    ``feed.warmup_candles``, or (null) the longest history any model's rule needs, so that
    live signals equal research's from the first candle (at least 2)."""
    if configured is not None:
        return int(configured)
    return max([2, *(m.history for m in models.values())])


def load_models(paths: list[str], instruments: list[str], granularity: str, *,
                risk: Any = None, warmup: int | None = None) -> dict[str, Model]:
    """Verify every artifact and match them to the config: one model per instrument; with
    ``risk`` (the config's ``RiskConfig``) also :func:`check_policy` each; with ``warmup``
    (the config's ``feed.warmup_candles``) refuse a model whose rule needs more candles than
    that before its signals equal research's (:attr:`Model.history`); see
    :func:`warmup_for`."""
    if not paths:
        raise ModelError("no model artifact given (--model ARTIFACT.json)")
    models: dict[str, Model] = {}
    for p in paths:
        m = load_model(p)
        if m.instrument not in instruments:
            raise ModelError(f"{p}: the model is for {m.instrument}, which the runner config "
                             f"does not trade (instruments: {', '.join(instruments)})")
        if m.granularity != granularity:
            raise ModelError(f"{p}: the model is for {m.granularity} candles but the runner "
                             f"config trades {granularity}")
        if m.instrument in models:
            raise ModelError(f"{p}: a second model for {m.instrument} "
                             f"(first: {models[m.instrument].path})")
        if risk is not None:
            check_policy(m, risk)
        if warmup is not None and m.history > warmup:
            raise ModelError(
                f"{p}: rule {m.spec.rule!r} needs {m.history} candles of history before its "
                f"signals equal research's, but feed.warmup_candles is {warmup}: set it to at "
                f"least {m.history}, or to null (the rule's own history)")
        if m.history > 5000:
            raise ModelError(f"{p}: rule {m.spec.rule!r} needs {m.history} candles of history, "
                             "more than one request of OANDA's candles endpoint (5000)")
        models[m.instrument] = m
    missing = [i for i in instruments if i not in models]
    if missing:
        raise ModelError(f"no model for {', '.join(missing)}: give one --model per instrument "
                         "of the config")
    return models
