"""Model artifacts in the runner: verify, check against the config, and turn signals into targets.

:func:`load_models` verifies each artifact (:func:`sep_research.training.artifact.load_artifact`
refuses a failed checksum, a non-canonical file and a legacy alignment), and refuses an
artifact whose instrument or granularity the runner config does not trade, or a config
instrument without a model.

The trading policy (what position a signal asks for) is the one training scores:

- ``hc_only`` (default true): only high-confidence signals trade; others mean flat;
- ``hold`` (default ``"flat"``): a HOLD (or a non-HC signal) means flat, so each signal is a
  one-candle trade; ``"keep"`` keeps the previous target instead.

Both are read from ``artifact["policy"]`` or ``artifact["signal_params"]["policy"]`` when
present. The signal itself comes from :class:`sep_research.signals.live.SeedSignalStream`, the
pure-Python path of the research signal code.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sep_research.live.types import Candle, Decision
from sep_research.training.artifact import ArtifactError, load_artifact

log = logging.getLogger(__name__)


class ModelError(ValueError):
    """A model artifact cannot be used by this runner."""


@dataclass(frozen=True)
class Policy:
    hc_only: bool = True
    hold: str = "flat"

    def target(self, direction: int, high_confidence: bool, previous: int) -> int:
        if self.hc_only and not high_confidence:
            direction = 0
        if direction == 0 and self.hold == "keep":
            return previous
        return direction


@dataclass
class Model:
    path: str
    artifact: dict[str, Any]
    instrument: str
    granularity: str
    model_id: str
    params: Any  # SeedParams
    policy: Policy

    def new_stream(self) -> SignalPath:
        return SignalPath(self)


class SignalPath:
    """One instrument's signal state: the seed stream plus the policy's previous target."""

    def __init__(self, model: Model) -> None:
        from sep_research.signals.live import SeedSignalStream

        self.model = model
        self.stream = SeedSignalStream(model.params)
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


def _params(art: dict[str, Any], where: str) -> tuple[Any, Policy]:
    from sep_research.signals.seed import SeedParams

    if art.get("preset") not in ("seed", None) and not str(art.get("preset")).startswith("seed"):
        raise ModelError(f"{where}: preset {art.get('preset')!r} is not one the runner knows "
                         "(seed)")
    sp = dict(art.get("signal_params") or {})
    pol = dict(art.get("policy") or sp.pop("policy", None) or {})
    names = {f.name for f in dataclasses.fields(SeedParams)} - {"extra"}
    unknown = sorted(set(sp) - names)
    if unknown:
        log.info("model %s: signal_params keys not used by the seed rule: %s", where, unknown)
    try:
        params = SeedParams(**{k: v for k, v in sp.items() if k in names})
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: bad signal_params: {exc}") from None
    hold = pol.get("hold", "flat")
    if hold not in ("flat", "keep"):
        raise ModelError(f"{where}: policy.hold must be 'flat' or 'keep', got {hold!r}")
    return params, Policy(hc_only=bool(pol.get("hc_only", True)), hold=hold)


def load_model(path: str | Path) -> Model:
    p = str(path)
    try:
        art = load_artifact(p, verify=True)
    except ArtifactError as exc:
        raise ModelError(str(exc)) from None
    params, policy = _params(art, p)
    return Model(path=p, artifact=art, instrument=str(art["instrument"]),
                 granularity=str(art["granularity"]),
                 model_id=f"{art['instrument']}-{art['granularity']}-{art['sha256'][:12]}",
                 params=params, policy=policy)


def load_models(paths: list[str], instruments: list[str], granularity: str
                ) -> dict[str, Model]:
    """Verify every artifact and match them to the config: one model per instrument."""
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
        models[m.instrument] = m
    missing = [i for i in instruments if i not in models]
    if missing:
        raise ModelError(f"no model for {', '.join(missing)}: give one --model per instrument "
                         "of the config")
    return models
