"""The look-ahead check: change the data after ``t``; nothing at or before ``t`` may change.

Public API::

    check_causality(func, data, *, cuts=None, n_cuts=24, kinds=KINDS, seed=0)
        -> CausalityReport        # .ok, .first (the first offending candle), .summary()
    FEATURE_FUNCTIONS            # name -> func(data, alignment) -> dict of per-candle arrays
    check_preset(data, preset="seed", *, alignment="causal") -> dict[str, CausalityReport]
    check_rule(data, rule="seed", *, preset=None, alignment="causal")
        -> dict[str, CausalityReport]   # any registered rule: its features and its signals

``func(data)`` takes a mapping of 1-D arrays (``open high low close volume``, and ``time`` in
Unix seconds when the data carry times: a frame's index) and returns a mapping name ->
per-candle array of the same length. Times are never changed (only cut by ``truncate``). For every
cut ``t`` and every kind of change (:data:`KINDS`), the data after ``t`` are changed, ``func`` runs
again, and every output at candles ``0..t`` must be identical (NaN equals NaN). Kinds:

- ``truncate``: drop every candle after ``t``;
- ``noise``: random relative noise (about 1e-3) on the prices after ``t``;
- ``shift``: the prices after ``t`` moved 2 % down, so the first move after ``t`` flips;
- ``reverse``: the candles after ``t`` in reverse order;
- ``volume``: the volumes after ``t`` multiplied by random factors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sep_research.signals.presets import PRESETS
from sep_research.signals.seed import (
    SeedParams,
    check_alignment,
    ohlcv,
    qfh_features_batch,
    seed_features,
    seed_signals,
)
from sep_research.strategy import data_instrument

KINDS = ("truncate", "noise", "shift", "reverse", "volume")
PRICES = ("open", "high", "low", "close")


@dataclass(frozen=True)
class Violation:
    name: str  # output that changed
    kind: str  # kind of change to the data after the cut
    cut: int  # t: data after t were changed
    candle: int  # first candle <= t whose output changed
    before: float
    after: float

    def describe(self, times: Any = None) -> str:
        when = f" ({times[self.candle]})" if times is not None else ""
        return (f"candle {self.candle}{when}: '{self.name}' changed from {self.before!r} to "
                f"{self.after!r} when the data after candle {self.cut} were changed "
                f"({self.kind})")


@dataclass
class CausalityReport:
    label: str
    cuts: list[int]
    kinds: tuple[str, ...]
    checked: int = 0  # number of (cut, kind) runs
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def first(self) -> Violation | None:
        """The violation at the earliest candle (then the earliest cut)."""
        if not self.violations:
            return None
        return min(self.violations, key=lambda v: (v.candle, v.cut, v.name))

    def summary(self, times: Any = None) -> str:
        head = (f"{self.label}: {len(self.cuts)} cut points x {len(self.kinds)} kinds of change "
                f"({self.checked} runs)")
        if self.ok:
            return f"{head}: PASS, nothing at or before a cut changed"
        v = self.first
        return f"{head}: FAIL ({len(self.violations)} runs changed the past); first: " + \
            v.describe(times)


def _inputs(data: Any) -> dict[str, np.ndarray]:
    """The candle arrays, with their times (Unix seconds) when the data carry them."""
    from sep_research.data.resample import frame_seconds

    x = ohlcv(data)
    try:
        x["time"] = frame_seconds(data)
    except ValueError:
        pass  # no times: rules that read them refuse such data themselves
    return x


def _perturb(x: dict[str, np.ndarray], t: int, kind: str, rng: np.random.Generator):
    n = x["close"].shape[0]
    if kind == "truncate":
        return {k: v[: t + 1].copy() for k, v in x.items()}
    y = {k: v.copy() for k, v in x.items()}
    after = slice(t + 1, n)
    m = n - t - 1
    if kind == "noise":
        f = 1.0 + rng.normal(0.0, 1e-3, m)
        for k in PRICES:
            if k in y:
                y[k][after] *= f
    elif kind == "shift":
        for k in PRICES:
            if k in y:
                y[k][after] *= 0.98
    elif kind == "reverse":
        for k, v in y.items():
            if k != "time":  # the candles keep their times; their values are reversed
                v[after] = v[after][::-1]
    elif kind == "volume":
        y["volume"][after] = np.round(y["volume"][after] * rng.uniform(0.1, 5.0, m))
    else:
        raise ValueError(f"unknown kind of change {kind!r}; known: {', '.join(KINDS)}")
    if kind != "volume" and "open" in y:
        y["high"] = np.maximum.reduce([y["high"], y["open"], y["close"]])
        y["low"] = np.minimum.reduce([y["low"], y["open"], y["close"]])
    return y


def default_cuts(n: int, n_cuts: int = 24, seed: int = 0) -> list[int]:
    """Cut points over the whole series: early ones (warm-up edges) and spread-out ones."""
    if n < 3:
        raise ValueError(f"need at least 3 candles to check causality, got {n}")
    early = [t for t in (1, 2, 3, 5, 12, 16, 19, 20, 21, 30, 99, 100) if t < n - 1]
    rng = np.random.default_rng(seed)
    spread = np.linspace(0, n - 2, max(2, n_cuts - len(early))).astype(int).tolist()
    extra = rng.integers(0, n - 1, 4).tolist()
    return sorted(set(early + spread + extra))


def _first_change(a: np.ndarray, b: np.ndarray) -> int | None:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        a = a.astype(np.float64)
        b = b.astype(np.float64)
        same = (a == b) | (np.isnan(a) & np.isnan(b))
    else:
        same = a == b
    bad = np.flatnonzero(~same)
    return int(bad[0]) if bad.size else None


def check_causality(func: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]],
                    data: Any, *, cuts: list[int] | None = None, n_cuts: int = 24,
                    kinds: tuple[str, ...] = KINDS, seed: int = 0,
                    label: str = "function") -> CausalityReport:
    """Run ``func`` on the data and on changed futures; report outputs that changed the past."""
    x = _inputs(data)
    n = x["close"].shape[0]
    cuts = default_cuts(n, n_cuts, seed) if cuts is None else sorted({int(t) for t in cuts})
    for t in cuts:
        if not 0 <= t < n - 1:
            raise ValueError(f"cut point {t} is outside 0 .. {n - 2}")
    base = func(x)
    report = CausalityReport(label, cuts, tuple(kinds))
    rng = np.random.default_rng(seed)
    for t in cuts:
        for kind in kinds:
            out = func(_perturb(x, t, kind, rng))
            report.checked += 1
            found: Violation | None = None
            for name, ref in base.items():
                j = _first_change(np.asarray(ref)[: t + 1], np.asarray(out[name])[: t + 1])
                if j is not None and (found is None or j < found.candle):
                    found = Violation(name, kind, t, j, float(np.asarray(ref)[j]),
                                      float(np.asarray(out[name])[j]))
            if found is not None:
                report.violations.append(found)
    return report


# ---- every shipped feature function and preset ------------------------------------------------

def _qfh_batch(windows: tuple[int, ...]) -> Callable:
    def f(x: Mapping[str, np.ndarray], alignment: str, params: SeedParams, engine: str,
          instrument: str):
        b = qfh_features_batch(x["close"], x["high"], x["low"], x["volume"], list(windows),
                               params, instrument=instrument, alignment=alignment,
                               engine=engine)
        return {f"{k}[w={w}]": v[:, j] for k, v in b.items() for j, w in enumerate(windows)}
    return f


def _seed_features(x, alignment, params, engine, instrument):
    return seed_features(x, params, instrument=instrument, alignment=alignment, engine=engine)


def _seed_signals(x, alignment, params, engine, instrument):
    s = seed_signals(x, params, instrument=instrument, alignment=alignment, engine=engine)
    return {"action": s.action, "confidence": s.confidence, "hc": s.hc}


#: name -> f(data, alignment, params, engine, instrument) -> per-candle outputs
FEATURE_FUNCTIONS: dict[str, Callable] = {
    "qfh_features_batch": _qfh_batch((2, 5, 11, 25)),
    "seed_features": _seed_features,
    "seed_signals": _seed_signals,
}


def check_preset(data: Any, preset: str = "seed", *, instrument: str | None = None,
                 alignment: str = "causal", engine: str = "auto",
                 functions: tuple[str, ...] | None = None, n_cuts: int = 24,
                 seed: int = 0) -> dict[str, CausalityReport]:
    """The look-ahead check of every feature function (or those named) under a preset.

    ``instrument``: the candles' instrument (else the frame's provenance names it)."""
    check_alignment(alignment)
    inst = data_instrument(data, instrument)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    params = PRESETS[preset]
    names = functions or tuple(FEATURE_FUNCTIONS)
    reports = {}
    for name in names:
        f = FEATURE_FUNCTIONS[name]
        reports[name] = check_causality(
            lambda x, f=f: f(x, alignment, params, engine, inst), data, n_cuts=n_cuts, seed=seed,
            label=f"{preset}/{name} ({alignment})")
    return reports


def check_rule(data: Any, rule: str = "seed", *, preset: str | None = None,
               instrument: str | None = None, granularity: str | None = None,
               alignment: str = "causal", engine: str = "auto", n_cuts: int = 24,
               seed: int = 0) -> dict[str, CausalityReport]:
    """The look-ahead check of a registered rule (:mod:`sep_research.signals.rules`) under one
    of its presets (None: its default): every function of ``Rule.causality_functions`` (its
    per-candle features and its signals; for the seed rule the shipped feature functions of
    :data:`FEATURE_FUNCTIONS`). ``instrument`` / ``granularity``: else from the provenance."""
    from sep_research.signals.rules.base import get_rule
    from sep_research.strategy import data_granularity

    check_alignment(alignment)
    r = get_rule(rule)
    r.check_alignment(alignment)
    params = r.preset(preset)
    pname = preset or next(iter(r.presets))
    inst = data_instrument(data, instrument)
    gran = data_granularity(data, granularity) if r.needs_times else granularity
    prefix = pname if r.name == "seed" else f"{r.name}:{pname}"
    reports = {}
    for name, f in r.causality_functions().items():
        kw = {"alignment": alignment, "engine": engine, "instrument": inst,
              "granularity": gran}
        reports[name] = check_causality(lambda x, f=f, kw=kw: f(x, params, **kw), data,
                                        n_cuts=n_cuts, seed=seed,
                                        label=f"{prefix}/{name} ({alignment})")
    return reports
