"""The seed preset of the QFH signal rule (spec sections 3-5), vectorised over candles.

Public API (arrays or any mapping/frame with ``open high low close volume`` columns; no
pandas needed):

- :class:`SeedParams`: every constant of the rule (weights, thresholds, HC filter, volume
  and temporal factors, volatility multiplier), with the seed's values as defaults.
- :func:`seed_features(data, params=SEED, *, instrument=None, alignment="causal",
  engine="auto")` -> dict of per-candle arrays (``has``, ``coherence``, ``stability``, ...).
- :func:`qfh_features_batch(close, high, low, volume, windows, params=SEED, *, instrument,
  alignment="causal", engine="auto")` -> dict name -> 2-D array ``(n, n_series*n_windows)``.
- :func:`seed_signals(data, params=SEED, *, instrument=None, alignment="causal",
  engine="auto")` -> :class:`SeedSignals` (action int8 +1/-1/0, confidence, hc, features).
- :func:`label_moves(close, *, pip, alignment="causal")` -> the move each candle's signal is
  scored on (pips; NaN where there is none). The one label function: the sweep, the scorer
  (:func:`sep_research.evaluation.metrics.score_signals`) and the reports use it.

**Instrument and pip.** The features measure candle ranges in pips, so they depend on the
instrument: ``instrument`` names it (else the candle frame's provenance must; see
:func:`sep_research.strategy.data_instrument`), and its pip is the price per pip of
:func:`sep_research.fx.pip_size` (0.0001, or 0.01 for JPY pairs). The kernels' parameter
vector holds pips per price unit, :func:`sep_research.fx.pips_per_unit` of that pip (exactly
10000.0 for EUR_USD, so the seed's golden figures are unchanged).

Alignment: ``"causal"`` (the default) uses only data known at the close of candle ``i``;
``"legacy"`` reproduces the original engine's look-ahead and is for reproduction only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from sep_research import fx
from sep_research.kernels import engine as _engine
from sep_research.kernels import qfh
from sep_research.strategy import (
    SpecError,
    check_bool,
    check_int,
    check_keys,
    check_number,
    data_instrument,
)

ALIGNMENTS = ("causal", "legacy")
#: most candles any window of the rule may span (the live runner backfills at most 5000)
MAX_WINDOW = 5000
_INT_FIELDS = ("window", "vol_window", "vm_window", "tf_short", "tf_long")
_BOOL_FIELDS = ("volume_factor", "temporal_factor", "vol_multiplier")


@dataclass(frozen=True)
class SeedParams:
    """Every constant of the seed rule; defaults are the seed preset (spec sections 3, 4)."""

    window: int = 11
    w_s: float = 0.40
    w_c: float = 0.10
    w_e: float = 0.50
    buy_threshold: float = 0.50
    sell_threshold: float = 0.52
    conf_threshold: float = 0.65
    coh_threshold: float = 0.30
    collapse_threshold: float = 0.3
    min_move: float = 0.5
    coh_scale: float = 0.7
    coh_offset: float = 0.15
    vol_window: int = 20
    vol_default: float = 0.5
    stab_vol_weight: float = 0.2
    stab_vol_scale: float = 20.0
    volume_factor: bool = True
    vf_base: float = 0.85
    vf_slope: float = 0.3
    vf_ref: float = 150.0
    vf_lo: float = 0.7
    vf_hi: float = 1.4
    temporal_factor: bool = True
    tf_short: int = 5
    tf_long: int = 15
    tf_tight: float = 0.1
    tf_loose: float = 0.2
    tf_high: float = 1.15
    tf_mid: float = 1.08
    vol_multiplier: bool = True
    vm_window: int = 100
    vm_center: float = 10.0
    vm_slope: float = 0.02
    vm_lo: float = 0.8
    vm_hi: float = 1.5
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if int(self.window) != self.window or not 2 <= self.window <= MAX_WINDOW:
            raise ValueError(f"window must be an integer in 2..{MAX_WINDOW}, got "
                             f"{self.window!r}")
        for name in _INT_FIELDS[1:]:
            v = getattr(self, name)
            if int(v) != v or not 1 <= v <= MAX_WINDOW:
                raise ValueError(f"{name} must be an integer in 1..{MAX_WINDOW}, got {v!r}")
        if self.tf_short > self.tf_long:
            raise ValueError("tf_short must not exceed tf_long")
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{f.name} must be finite, got {v!r}")

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "signal_params") -> SeedParams:
        """Strict, typed: every parameter present, nothing unknown, integers are JSON
        integers (1..5000 candles; window >= 2), booleans are ``true``/``false``, numbers are
        finite (``min_move`` >= 0); errors name the key (``signal_params.window: ...``).
        A rule's parameter class that extends this one types its own fields in
        :meth:`field_from_json`."""
        names = tuple(f.name for f in fields(cls) if f.name != "extra")
        d = check_keys(data, where, required=names)
        values = {name: cls.field_from_json(name, d[name], f"{where}.{name}") for name in names}
        try:
            return cls(**values)
        except ValueError as exc:
            raise SpecError(f"{where}: {exc}") from None

    @classmethod
    def field_from_json(cls, name: str, value: Any, key: str) -> Any:
        """One parameter from its JSON value, typed and bounded (:class:`SpecError` names
        ``key``)."""
        if name in _INT_FIELDS:
            return check_int(value, key, minimum=2 if name == "window" else 1,
                             maximum=MAX_WINDOW)
        if name in _BOOL_FIELDS:
            return check_bool(value, key)
        return check_number(value, key, minimum=0.0 if name == "min_move" else None)

    def with_(self, **changes: Any) -> SeedParams:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown seed parameters: {sorted(unknown)}")
        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d

    def to_vector(self, pip: float) -> np.ndarray:
        """The float64 parameter vector ``prm`` of the kernels (``qfh.P_*`` order) for an
        instrument whose price per pip is ``pip`` (``P_PIP`` holds pips per price unit)."""
        p = np.zeros(qfh.N_PARAMS, dtype=np.float64)
        p[qfh.P_WINDOW] = self.window
        p[qfh.P_WS], p[qfh.P_WC], p[qfh.P_WE] = self.w_s, self.w_c, self.w_e
        p[qfh.P_BUY], p[qfh.P_SELL] = self.buy_threshold, self.sell_threshold
        p[qfh.P_CONF], p[qfh.P_COH] = self.conf_threshold, self.coh_threshold
        p[qfh.P_COLLAPSE], p[qfh.P_MIN_MOVE] = self.collapse_threshold, self.min_move
        p[qfh.P_PIP] = fx.pips_per_unit(pip)
        p[qfh.P_COH_SCALE], p[qfh.P_COH_OFFSET] = self.coh_scale, self.coh_offset
        p[qfh.P_VOL_WINDOW], p[qfh.P_VOL_DEFAULT] = self.vol_window, self.vol_default
        p[qfh.P_STAB_VOL_W], p[qfh.P_STAB_VOL_S] = self.stab_vol_weight, self.stab_vol_scale
        p[qfh.P_VF_ON] = 1.0 if self.volume_factor else 0.0
        p[qfh.P_VF_BASE], p[qfh.P_VF_SLOPE], p[qfh.P_VF_REF] = (
            self.vf_base, self.vf_slope, self.vf_ref)
        p[qfh.P_VF_LO], p[qfh.P_VF_HI] = self.vf_lo, self.vf_hi
        p[qfh.P_TF_ON] = 1.0 if self.temporal_factor else 0.0
        p[qfh.P_TF_SHORT], p[qfh.P_TF_LONG] = self.tf_short, self.tf_long
        p[qfh.P_TF_TIGHT], p[qfh.P_TF_LOOSE] = self.tf_tight, self.tf_loose
        p[qfh.P_TF_HIGH], p[qfh.P_TF_MID] = self.tf_high, self.tf_mid
        p[qfh.P_VM_ON] = 1.0 if self.vol_multiplier else 0.0
        p[qfh.P_VM_WINDOW], p[qfh.P_VM_CENTER] = self.vm_window, self.vm_center
        p[qfh.P_VM_SLOPE], p[qfh.P_VM_LO], p[qfh.P_VM_HI] = (
            self.vm_slope, self.vm_lo, self.vm_hi)
        return p


#: The seed preset (spec sections 3 and 4).
SEED = SeedParams()


def check_alignment(alignment: str) -> str:
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment={alignment!r}: expected 'causal' or 'legacy'")
    return alignment


def ohlcv(data: Any) -> dict[str, np.ndarray]:
    """float64 arrays open/high/low/close/volume from a candle frame or a mapping of arrays."""
    out = {}
    for name in ("open", "high", "low", "close", "volume"):
        try:
            col = data[name]
        except (KeyError, IndexError, TypeError):
            if name == "open":
                continue
            raise ValueError(f"candle data has no {name!r} column") from None
        out[name] = np.ascontiguousarray(np.asarray(col, dtype=np.float64))
    n = out["close"].shape[0]
    for k, v in out.items():
        if v.ndim != 1 or v.shape[0] != n:
            raise ValueError(f"column {k!r} must be 1-D with {n} values, got shape {v.shape}")
    return out


def qfh_features_batch(close, high, low, volume, windows, params: SeedParams = SEED, *,
                       instrument: str, alignment: str = "causal", engine: str = "auto",
                       bits: Any = None) -> dict[str, np.ndarray]:
    """Per-candle features of many series x window lengths: name -> ``(n, n_series*n_win)``.

    Inputs are 1-D (one series) or 2-D ``(n_series, n)`` prices of ``instrument`` (it sets
    the pip of the ranges); column ``s * len(windows) + w`` belongs to series ``s`` and window
    ``windows[w]``. Names: ``qfh.FEATURE_NAMES`` (``has`` is bool, the three counts are float
    with NaN where there are no features). ``bits``: a rule's bits ``(n_series, n - 1)``
    instead of the spec's (:func:`sep_research.kernels.engine.compute_features`).
    """
    check_alignment(alignment)
    prm = params.to_vector(fx.pip_size(data_instrument(None, instrument)))
    out = _engine.compute_features(close, high, low, volume, windows, prm,
                                   alignment=alignment, engine=engine, bits=bits)
    res = {name: out[q] for q, name in enumerate(qfh.FEATURE_NAMES)}
    res["has"] = out[qfh.F_HAS] == 1.0
    res["collapse"] = out[qfh.F_COLLAPSE] == 1.0
    return res


def seed_features(data: Any, params: SeedParams = SEED, *, instrument: str | None = None,
                  alignment: str = "causal", engine: str = "auto") -> dict[str, np.ndarray]:
    """Per-candle features of one series with the preset's window: name -> ``(n,)`` array."""
    inst = data_instrument(data, instrument)
    x = ohlcv(data)
    b = qfh_features_batch(x["close"], x["high"], x["low"], x["volume"], [params.window],
                           params, instrument=inst, alignment=alignment, engine=engine)
    return {k: v[:, 0] for k, v in b.items()}


@dataclass
class SeedSignals:
    """Per-candle output of the seed rule for one configuration (arrays of length n)."""

    action: np.ndarray  # int8: +1 BUY, -1 SELL, 0 HOLD (also where there are no features)
    confidence: np.ndarray  # winning score (NaN where there are no features)
    hc: np.ndarray  # bool: high confidence
    features: dict[str, np.ndarray]
    alignment: str
    params: SeedParams
    instrument: str

    @property
    def has(self) -> np.ndarray:
        return self.features["has"]

    @property
    def coherence(self) -> np.ndarray:
        return self.features["coherence"]

    @property
    def pip(self) -> float:
        """Price per pip of the instrument the signals were computed for."""
        return fx.pip_size(self.instrument)


def signals_from_features(feat: Mapping[str, np.ndarray], params: SeedParams = SEED, *,
                          engine: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(action, confidence, hc) of one configuration from :func:`seed_features` output."""
    table = np.empty((qfh.N_FEATURES, len(feat["has"]), 1), dtype=np.float64)
    for q, name in enumerate(qfh.FEATURE_NAMES):
        table[q, :, 0] = feat[name]
    return _engine.compute_signals(table, 0, params.w_s, params.w_c, params.w_e,
                                   params.buy_threshold, params.sell_threshold,
                                   params.conf_threshold, params.coh_threshold, engine=engine)


def seed_signals(data: Any, params: SeedParams = SEED, *, instrument: str | None = None,
                 alignment: str = "causal", engine: str = "auto") -> SeedSignals:
    """The seed rule's per-candle signals (one configuration), for backtests and scoring.

    ``instrument``: the candles' instrument (sets the pip), else from the frame's provenance.
    """
    inst = data_instrument(data, instrument)
    feat = seed_features(data, params, instrument=inst, alignment=alignment, engine=engine)
    action, conf, hc = signals_from_features(feat, params, engine=engine)
    return SeedSignals(action, conf, hc, feat, alignment, params, inst)


def label_moves(close, *, pip: float, alignment: str = "causal") -> np.ndarray:
    """Move (pips) that candle i's signal is scored on; NaN where it has none.

    ``pip``: price per pip (:func:`sep_research.fx.pip_size`); the price difference is
    multiplied by :func:`sep_research.fx.pips_per_unit` of it (exactly 10000.0 for 0.0001).
    causal: ``(c[i+1] - c[i]) / pip``. legacy (the original's scoring): the p-th signal
    (p = i - 1, features start at candle 1) is scored on ``(c[p+1] - c[p]) / pip``, a move
    inside its own window.
    """
    check_alignment(alignment)
    c = np.asarray(close, dtype=np.float64)
    mv = np.full(c.shape[0], np.nan)
    d = (c[1:] - c[:-1]) * fx.pips_per_unit(pip)
    if alignment == "causal":
        mv[:-1] = d
    else:
        mv[1:] = d
    return mv


def label_index(n: int, *, alignment: str = "causal") -> np.ndarray:
    """Index t of the move ``c[t] -> c[t+1]`` each candle is scored on (-1: none)."""
    i = np.arange(n)
    t = i if alignment == "causal" else i - 1
    return np.where((t >= 0) & (t + 1 < n), t, -1)
