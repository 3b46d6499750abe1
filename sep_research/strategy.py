"""The strategy specification: one plain description of a strategy from research to live.

Standard library only: the live runner, the artifact code and the research code all import it
(``tests/test_import_boundaries.py`` keeps the runner free of numba and pandas). Research
reads a :class:`StrategySpec` (the sweep, the walk-forward, the backtest, the evaluation),
the model artifact stores it, and the runner trades exactly it; the runner's own config may
only tighten risk limits, never change the policy (``sep_research.live.model``).

A spec holds

- ``rule`` and ``params``: the signal rule's name and its parameter object. Which rules exist
  is stated once, in :data:`RULES` (name -> the module and attribute of its
  :class:`sep_research.signals.rules.Rule`, which names its parameter class and everything
  else the framework derives for it; ``sep rules`` lists them).
- ``instrument`` and ``granularity``; the pip is derived from the instrument
  (:attr:`StrategySpec.pip`, :func:`sep_research.fx.pip_size`): **price per pip** (0.0001 for
  EUR_USD, 0.01 for USD_JPY), the one meaning of ``pip`` everywhere.
- ``alignment``: ``"causal"``, the only alignment anything that trades may use (the legacy
  alignment looks ahead and exists for reproducing the seed's headline only).
- ``policy`` (:class:`Policy`): which signals trade (``trade_on``: ``"hc"`` high-confidence
  only, or ``"all"``), what a HOLD means (``hold``: ``"flat"`` closes, so each signal is a
  trade of one candle; ``"keep"`` keeps the previous target), ``stop_loss_pips`` and
  ``take_profit_pips`` (a positive finite number of pips from the entry fill, or None: off).
- ``costs`` (:class:`CostModel`): which spread is paid when. ``"bid_ask"``: fills at the
  data's bid and ask (a buy at the ask, a sell at the bid, half the quoted spread per fill);
  ``"mid"``: mid-only data quoted as mid +/- ``half_spread_pips``. ``financing``: overnight
  financing at 17:00 New York (:class:`sep_research.financing.FinancingRates`: long and short
  annual rates, the days charged per weekday and their source), or null where it is
  explicitly off.

Serialised form (:meth:`StrategySpec.to_dict`; the model artifact holds exactly these keys at
its top level, next to its evaluation)::

    {"rule": "seed", "signal_params": {...every parameter of the rule...},
     "instrument": "EUR_USD", "granularity": "H1", "alignment": "causal",
     "policy": {"trade_on": "hc", "hold": "flat", "stop_loss_pips": null,
                "take_profit_pips": null},
     "costs": {"spread": "mid", "half_spread_pips": 0.5,
               "financing": {"source": "default-table:2017-07-01", "long_rate": -0.02525,
                             "short_rate": 0.00525, "days": {"MONDAY": 1, ...}}}}

:meth:`StrategySpec.from_dict` is strict and typed, and every error names its key
(:class:`SpecError`): booleans are not numbers, numbers are finite, integers are JSON integers
within their bounds, choices are one of their values, and unknown or missing keys are errors.
The typed checks (:func:`check_number`, :func:`check_int`, :func:`check_bool`,
:func:`check_choice`, :func:`check_keys`) are the ones rule parameter classes use too.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sep_research import fx
from sep_research.financing import FinancingError, FinancingRates

#: rule name -> (module, attribute) of the rule (a :class:`sep_research.signals.rules.Rule`).
#: The one registry of signal rules: registering a rule here gives it the look-ahead check,
#: the sweep, the walk-forward, the artifact, the runner's live stream and the CLI's
#: ``--rule``. Its ``params_class`` validates a mapping with ``from_dict(data, where=...)``
#: (strict, typed) and serialises with ``to_dict()``; the no-argument constructor gives the
#: rule's preset.
RULES: dict[str, tuple[str, str]] = {
    "seed": ("sep_research.signals.rules.seed", "RULE"),
    "thresholded": ("sep_research.signals.rules.thresholded", "RULE"),
    "mtf": ("sep_research.signals.rules.mtf", "RULE"),
}

TRADE_ON = ("hc", "all")
HOLDS = ("flat", "keep")
SPREADS = ("bid_ask", "mid")
#: alignments a strategy that trades may use
TRADING_ALIGNMENTS = ("causal",)
#: the keys of a serialised spec (top-level keys of the model artifact)
SPEC_KEYS = ("rule", "signal_params", "instrument", "granularity", "alignment", "policy",
             "costs")


class SpecError(ValueError):
    """A strategy specification (or one of its values) is invalid; the message names the key."""


# ------------------------------------------------------------------ typed checks


def _shown(value: Any) -> str:
    s = repr(value)
    return s if len(s) <= 40 else s[:37] + "..."


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def check_number(value: Any, key: str, *, minimum: float | None = None,
                 above: float | None = None, maximum: float | None = None) -> float:
    """A finite JSON number (int or float, not a bool) within the bounds, as a float.

    ``minimum``/``maximum`` are inclusive, ``above`` exclusive; the error names ``key``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{key}: expected a number, got {type(value).__name__} {_shown(value)}")
    try:
        v = float(value)
    except OverflowError:
        raise SpecError(f"{key}: {_shown(value)} is too large") from None
    if not math.isfinite(v):
        raise SpecError(f"{key}: expected a finite number, got {_shown(value)}")
    if minimum is not None and v < minimum:
        raise SpecError(f"{key}: must be >= {minimum:g}, got {_shown(value)}")
    if above is not None and not v > above:
        raise SpecError(f"{key}: must be > {above:g}, got {_shown(value)}")
    if maximum is not None and v > maximum:
        raise SpecError(f"{key}: must be <= {maximum:g}, got {_shown(value)}")
    return v


def check_int(value: Any, key: str, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """A JSON integer (an int, not a bool and not a float such as ``11.0``) within bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{key}: expected an integer, got {type(value).__name__} "
                        f"{_shown(value)}")
    if minimum is not None and value < minimum:
        raise SpecError(f"{key}: must be >= {minimum}, got {_shown(value)}")
    if maximum is not None and value > maximum:
        raise SpecError(f"{key}: must be <= {maximum}, got {_shown(value)}")
    return int(value)


def check_bool(value: Any, key: str) -> bool:
    """``true`` or ``false`` exactly (not ``"no"``, not 0/1)."""
    if not isinstance(value, bool):
        raise SpecError(f"{key}: expected true or false, got {type(value).__name__} "
                        f"{_shown(value)}")
    return value


def check_choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise SpecError(f"{key}: must be one of {', '.join(map(repr, choices))}, got "
                        f"{_shown(value)}")
    return value


def check_optional_positive(value: Any, key: str) -> float | None:
    """None (off) or a positive finite number."""
    if value is None:
        return None
    return check_number(value, key, above=0.0)


def check_keys(data: Any, where: str, *, required: tuple[str, ...],
               optional: tuple[str, ...] = ()) -> Mapping[str, Any]:
    """``data`` is a mapping with string keys, every ``required`` key and nothing unknown."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{where or 'spec'}: expected an object, got {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise SpecError(f"{where or 'spec'}: keys must be strings, got {_shown(bad[0])}")
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        raise SpecError(f"{where or 'spec'}: unknown key(s) {', '.join(map(repr, unknown[:5]))}"
                        f" (known: {', '.join(required + optional)})")
    missing = [k for k in required if k not in data]
    if missing:
        raise SpecError(f"{where or 'spec'}: missing key(s) {', '.join(map(repr, missing))}")
    return data


# ------------------------------------------------------------------ the rules


def rule_object(rule: Any, *, where: str = "rule") -> Any:
    """The rule registered under a name in :data:`RULES` (imported when first asked for)."""
    if not isinstance(rule, str) or rule not in RULES:
        raise SpecError(f"{where}: unknown rule {_shown(rule)} (known: {', '.join(RULES)})")
    module, name = RULES[rule]
    return getattr(importlib.import_module(module), name)


def rule_params_class(rule: Any, *, where: str = "rule") -> type:
    """The parameter class of a rule named in :data:`RULES`."""
    return rule_object(rule, where=where).params_class


def rule_params_from_dict(rule: str, data: Any, *, where: str = "signal_params") -> Any:
    """The rule's parameter object from a mapping, validated by the rule (strict)."""
    return rule_params_class(rule).from_dict(data, where=where)


# ------------------------------------------------------------------ policy


@dataclass(frozen=True)
class Policy:
    """What position a signal asks for, and when a position is closed by a price level.

    ``trade_on``: ``"hc"`` (only high-confidence signals trade; others mean no position) or
    ``"all"`` (every BUY and SELL). ``hold``: ``"flat"`` (a HOLD, or a signal that does not
    trade, means no position: each signal is a one-candle trade) or ``"keep"`` (it keeps the
    previous target). ``stop_loss_pips`` / ``take_profit_pips``: distance from the entry fill
    in pips, or None (off).
    """

    trade_on: str = "hc"
    hold: str = "flat"
    stop_loss_pips: float | None = None
    take_profit_pips: float | None = None

    def __post_init__(self) -> None:
        check_choice(self.trade_on, "policy.trade_on", TRADE_ON)
        check_choice(self.hold, "policy.hold", HOLDS)
        for name in ("stop_loss_pips", "take_profit_pips"):
            v = check_optional_positive(getattr(self, name), f"policy.{name}")
            object.__setattr__(self, name, v)

    def target(self, direction: int, high_confidence: bool, previous: int) -> int:
        """Target direction (+1, -1, 0) for one candle's signal; ``previous``: the last target.

        The one statement of the rule; research applies it to arrays
        (:func:`sep_research.evaluation.metrics.policy_targets`, tested equal to this)."""
        if self.trade_on == "hc" and not high_confidence:
            direction = 0
        if direction == 0 and self.hold == "keep":
            return previous
        return direction

    def describe(self) -> str:
        sl = (f"{self.stop_loss_pips:g}-pip stop-loss" if self.stop_loss_pips is not None
              else "no stop-loss")
        tp = (f"{self.take_profit_pips:g}-pip take-profit" if self.take_profit_pips is not None
              else "no take-profit")
        which = "HC signals only" if self.trade_on == "hc" else "every BUY/SELL signal"
        hold = ("HOLD = flat (one-candle trades)" if self.hold == "flat"
                else "HOLD keeps the position")
        return f"{which}, {hold}, {sl}, {tp}"

    def to_dict(self) -> dict[str, Any]:
        return {"trade_on": self.trade_on, "hold": self.hold,
                "stop_loss_pips": self.stop_loss_pips, "take_profit_pips": self.take_profit_pips}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "policy") -> Policy:
        d = check_keys(data, where, required=("trade_on", "hold", "stop_loss_pips",
                                              "take_profit_pips"))
        return cls(
            trade_on=check_choice(d["trade_on"], _key(where, "trade_on"), TRADE_ON),
            hold=check_choice(d["hold"], _key(where, "hold"), HOLDS),
            stop_loss_pips=check_optional_positive(d["stop_loss_pips"],
                                                   _key(where, "stop_loss_pips")),
            take_profit_pips=check_optional_positive(d["take_profit_pips"],
                                                     _key(where, "take_profit_pips")))


# ------------------------------------------------------------------ costs


@dataclass(frozen=True)
class CostModel:
    """Which spread is paid when, and the financing of positions held overnight.

    ``spread="bid_ask"``: the data's bid and ask; every fill pays half the quoted spread of the
    price it used (a buy at the ask, a sell at the bid). ``spread="mid"``: mid-only data, quoted
    as mid +/- ``half_spread_pips`` (a round trip pays twice the half-spread). ``financing``: a
    :class:`sep_research.financing.FinancingRates` charged on positions held through 17:00 New
    York (see :mod:`sep_research.financing`), or None: explicitly off.
    """

    spread: str = "bid_ask"
    half_spread_pips: float | None = None
    financing: FinancingRates | None = None

    def __post_init__(self) -> None:
        check_choice(self.spread, "costs.spread", SPREADS)
        if self.spread == "bid_ask":
            if self.half_spread_pips is not None:
                raise SpecError("costs.half_spread_pips: must be null when costs.spread is "
                                f"'bid_ask' (the data's bid/ask are used), got "
                                f"{_shown(self.half_spread_pips)}")
        else:
            if self.half_spread_pips is None:
                raise SpecError("costs.half_spread_pips: required when costs.spread is 'mid'")
            object.__setattr__(self, "half_spread_pips", check_number(
                self.half_spread_pips, "costs.half_spread_pips", minimum=0.0))
        if self.financing is not None and not isinstance(self.financing, FinancingRates):
            raise SpecError("costs.financing: expected sep_research.financing.FinancingRates "
                            f"or None (off), got {_shown(self.financing)}")

    @classmethod
    def for_data(cls, has_bid_ask: bool, half_spread_pips: float | None,
                 financing: FinancingRates | None = None) -> CostModel:
        """The cost model of candles: mid +/- ``half_spread_pips`` when one is given (it
        overrides bid/ask), else the data's bid/ask; mid-only data without one is an error
        (a backtest without costs would flatter the strategy). ``financing``: the rates
        charged overnight (None: off)."""
        if half_spread_pips is not None:
            return cls("mid", half_spread_pips, financing)
        if not has_bid_ask:
            raise SpecError("the candles have no bid/ask: pass half_spread_pips (e.g. 0.5 for "
                            "a 1-pip spread) so that the spread is paid")
        return cls("bid_ask", None, financing)

    def describe(self) -> str:
        spread = ("bid/ask from the data" if self.spread == "bid_ask"
                  else f"mid +/- {self.half_spread_pips:g} pip")
        fin = self.financing.describe() if self.financing is not None else "no financing (off)"
        return f"{spread}; {fin}"

    def to_dict(self) -> dict[str, Any]:
        return {"spread": self.spread, "half_spread_pips": self.half_spread_pips,
                "financing": None if self.financing is None else self.financing.to_dict()}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "costs") -> CostModel:
        d = check_keys(data, where, required=("spread", "half_spread_pips", "financing"))
        spread = check_choice(d["spread"], _key(where, "spread"), SPREADS)
        half = d["half_spread_pips"]
        if half is not None:
            half = check_number(half, _key(where, "half_spread_pips"), minimum=0.0)
        financing = None
        if d["financing"] is not None:
            try:
                financing = FinancingRates.from_dict(d["financing"],
                                                     where=_key(where, "financing"))
            except FinancingError as exc:
                raise SpecError(str(exc)) from None
        try:
            return cls(spread, half, financing)
        except SpecError as exc:
            raise SpecError(str(exc).replace("costs.", f"{where}.", 1)) from None


def _given_or_named(data: Any, key: str, given: str | None, what: str, hint: str) -> str:
    """``given``, else the value of ``key`` in the frame's provenance
    (``data.attrs["provenance"]``); SpecError when neither names one or they disagree."""
    prov = getattr(data, "attrs", None)
    prov = prov.get("provenance") if isinstance(prov, Mapping) else None
    named = prov.get(key) if isinstance(prov, Mapping) else None
    if given is None:
        if named is None:
            raise SpecError(f"{key}: {what} name no {key} (no provenance): pass {key}= "
                            f"({hint})")
        return named
    if named is not None and named != given:
        raise SpecError(f"{key}: {given!r} was given but {what} are {named!r} "
                        "(by their provenance)")
    return given


def data_instrument(data: Any, instrument: str | None = None, *, what: str = "the candles"
                    ) -> str:
    """The instrument of candle data: ``instrument`` when given, else the one named by the
    frame's provenance (``data.attrs["provenance"]["instrument"]``). Raises :class:`SpecError`
    when neither names one, or when they disagree (the pip would be wrong)."""
    instrument = _given_or_named(data, "instrument", instrument, what,
                                 "it sets the pip: 0.0001, or 0.01 for JPY pairs")
    try:
        return fx.check_instrument(instrument)
    except fx.FxError as exc:
        raise SpecError(str(exc)) from None


def data_granularity(data: Any, granularity: str | None = None, *,
                     what: str = "the candles") -> str:
    """The granularity of candle data: ``granularity`` when given, else the one its provenance
    names (as :func:`data_instrument` does for the instrument); :class:`SpecError` otherwise."""
    granularity = _given_or_named(data, "granularity", granularity, what, "e.g. 'H1'")
    try:
        return fx.check_granularity(granularity)
    except fx.FxError as exc:
        raise SpecError(f"granularity: {exc}") from None


# ------------------------------------------------------------------ the spec


@dataclass(frozen=True)
class StrategySpec:
    """One strategy: rule and parameters, market, alignment, trading policy and costs."""

    instrument: str
    granularity: str
    rule: str = "seed"
    params: Any = None  # the rule's parameter object; None: the rule's preset
    alignment: str = "causal"
    policy: Policy = field(default_factory=Policy)
    costs: CostModel = field(default_factory=CostModel)

    def __post_init__(self) -> None:
        try:
            fx.check_instrument(self.instrument)
        except fx.FxError as exc:
            raise SpecError(str(exc)) from None
        try:
            fx.check_granularity(self.granularity)
        except fx.FxError as exc:
            raise SpecError(f"granularity: {exc}") from None
        cls = rule_params_class(self.rule)
        if self.params is None:
            object.__setattr__(self, "params", cls())
        elif type(self.params) is not cls:  # a rule's class may extend another's: exact type
            raise SpecError(f"params: expected {cls.__name__} for rule {self.rule!r}, got "
                            f"{type(self.params).__name__}")
        check = getattr(self.params, "check_granularity", None)
        if check is not None:  # a rule whose parameters depend on the candles' granularity
            check(self.granularity, where="signal_params")
        if self.alignment not in TRADING_ALIGNMENTS:
            raise SpecError(f"alignment: {_shown(self.alignment)} is refused: only 'causal' "
                            "may be used by a strategy that trades (legacy alignment looks "
                            "ahead and is for reproducing the seed's headline only)")
        if not isinstance(self.policy, Policy):
            raise SpecError(f"policy: expected a Policy, got {type(self.policy).__name__}")
        if not isinstance(self.costs, CostModel):
            raise SpecError(f"costs: expected a CostModel, got {type(self.costs).__name__}")

    @property
    def pip(self) -> float:
        """Price per pip of the instrument (0.0001, or 0.01 for JPY-quoted pairs)."""
        return fx.pip_size(self.instrument)

    def with_(self, **changes: Any) -> StrategySpec:
        from dataclasses import replace

        return replace(self, **changes)

    def describe(self) -> str:
        return (f"{self.rule} rule on {self.instrument} {self.granularity} ({self.alignment}); "
                f"policy: {self.policy.describe()}; costs: {self.costs.describe()}")

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "signal_params": self.params.to_dict(),
                "instrument": self.instrument, "granularity": self.granularity,
                "alignment": self.alignment, "policy": self.policy.to_dict(),
                "costs": self.costs.to_dict()}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "") -> StrategySpec:
        """Strict: exactly :data:`SPEC_KEYS`, each typed; errors name the key."""
        d = check_keys(data, where, required=SPEC_KEYS)
        return cls._from(d, where)

    @classmethod
    def from_artifact(cls, artifact: Any, *, where: str = "") -> StrategySpec:
        """The spec stored in a model artifact (its :data:`SPEC_KEYS`; the other keys are the
        artifact's evaluation and are not part of the spec)."""
        if not isinstance(artifact, Mapping):
            raise SpecError(f"{where or 'artifact'}: expected an object")
        missing = [k for k in SPEC_KEYS if k not in artifact]
        if missing:
            raise SpecError(f"{where or 'artifact'}: missing key(s) "
                            f"{', '.join(map(repr, missing))}")
        return cls._from({k: artifact[k] for k in SPEC_KEYS}, where)

    @classmethod
    def _from(cls, d: Mapping[str, Any], where: str) -> StrategySpec:
        rule = d["rule"]
        rule_params_class(rule, where=_key(where, "rule"))
        for key in ("instrument", "granularity", "alignment"):
            if not isinstance(d[key], str):
                raise SpecError(f"{_key(where, key)}: expected a string, got "
                                f"{type(d[key]).__name__} {_shown(d[key])}")
        try:
            fx.check_instrument(d["instrument"], name=_key(where, "instrument"))
        except fx.FxError as exc:
            raise SpecError(str(exc)) from None
        try:
            fx.check_granularity(d["granularity"])
        except fx.FxError as exc:
            raise SpecError(f"{_key(where, 'granularity')}: {exc}") from None
        params = rule_params_from_dict(rule, d["signal_params"],
                                       where=_key(where, "signal_params"))
        policy = Policy.from_dict(d["policy"], where=_key(where, "policy"))
        costs = CostModel.from_dict(d["costs"], where=_key(where, "costs"))
        try:
            return cls(instrument=d["instrument"], granularity=d["granularity"], rule=rule,
                       params=params, alignment=d["alignment"], policy=policy, costs=costs)
        except SpecError as exc:
            raise SpecError(f"{where}: {exc}" if where else str(exc)) from None
