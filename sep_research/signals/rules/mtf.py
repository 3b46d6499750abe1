"""Multi-timeframe confirmation: a base signal is taken only when the same rule on two higher
granularities agrees, each with its own confidence threshold; only closed HTF candles count.

The seed's system confirmed an M1 signal by M5 and M15 signals ("triple confirmation"), and
read the M5 and M15 candles that were still forming: look-ahead. This rule is causal.

**Definition.** The base candles (granularity ``G``, ``d`` seconds) are resampled to ``htf1``
and ``htf2`` by :mod:`sep_research.data.resample` (buckets aligned to 00:00 UTC). On each of
the three series the *same* seed rule runs with the same parameters (window, weights,
buy/sell thresholds, factors, each series' own ranges, volumes and temporal factor), giving
per candle an action and a confidence (the winning score). For base candle ``i``, the
higher-timeframe vote of ``htf_r`` is the signal of the latest ``htf_r`` candle that has
*closed by the close of candle i* (its end ``<= t_i + d``; :func:`sep_research.data.resample.
closed_index`); before one has closed, or while it has no features, there is no vote.

    action_i = base action  if  base action != HOLD
                                and vote1 == base action and confidence1 >= htf1_conf
                                and vote2 == base action and confidence2 >= htf2_conf
               HOLD         otherwise

The confidence is the base signal's in every case; a signal is high-confidence when it is
confirmed and the base signal passes the seed's HC filter (confidence >= ``conf_threshold``,
coherence >= ``coh_threshold``). A base candle without features has no signal.

**Causality.** Every input of candle ``i`` is known at its close: the base features are the
seed's causal ones; an HTF candle closed by then holds base candles up to ``i`` only (base
candles never overlap), and its signal depends on earlier HTF candles only. The test suite
runs the look-ahead check on this rule and shows that the variant that reads the HTF candle
still forming (the seed's) is caught.

**Parameters**: the seed's, plus ``htf1`` and ``htf2`` (granularities whose length divides a
day and is a multiple of the base's, ``htf1`` shorter than ``htf2``; checked against the
strategy's granularity) and the **grid fields** ``htf1_conf`` and ``htf2_conf`` (0 .. 10; the
small and the full training grids add 0 and 1.0 for each: on the packaged H1 sample the
median confidence of an H4 or D signal is about 1.05, their volume factor being at its cap).
Presets: ``default`` (``H4`` and ``D``, for H1 candles) and ``seed-m1`` (``M5`` and ``M15``, the
seed's triple confirmation, for M1 candles).

**Bounded history for live**: the base stream's candles, and for each HTF ``(its seed
history + 1) x (HTF length / base length)`` base candles (the first bucket a stream sees may
be partial); 2424 H1 candles for the default preset.

**Sweep**: the decision is not the seed's (the confirmation is not a threshold on the base
scores), so it is swept by the exact brute force of :mod:`sep_research.kernels.rules` over
the tables :meth:`MtfRule.tables` builds (features of the three series per window, the HTF
ones mapped to the base candles), on the CPU or the GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from sep_research import fx
from sep_research.data.resample import CandleResampler, closed_index, htf_step, resample_arrays
from sep_research.kernels import engine as _engine
from sep_research.kernels import qfh
from sep_research.kernels.qfh import (
    G_BUY,
    G_COH,
    G_CONF,
    G_SELL,
    G_WC,
    G_WE,
    G_WINDOW_INDEX,
    G_WS,
    N_GRID,
    is_high_confidence,
    seed_decide,
    seed_scores,
)
from sep_research.signals.rules.base import FW_FEATURES, DecisionRule, GridField
from sep_research.signals.seed import SeedParams
from sep_research.strategy import SpecError, check_choice, check_number

#: granularities an HTF may be (their length divides a day)
HTF_CHOICES = tuple(g for g, s in fx.GRANULARITY_SECONDS.items() if 86400 % s == 0)
MAX_CONF = 10.0

# table layout: fw[Q_* + j] for j over FW_FEATURES (has, stability, coherence, phase, tf)
Q_HTF1 = 5
Q_HTF2 = 10
N_FW = 15
# cv rows: 0 vf, 1 vm (base), 2 move, 3 spread, then (vf, vm) of htf1 and htf2
C_VF1 = 4
C_VF2 = 6
N_CV = 8
# grid columns of the own fields
G_HTF1_CONF = N_GRID
G_HTF2_CONF = N_GRID + 1


@dataclass(frozen=True)
class MtfParams(SeedParams):
    """The seed's parameters (used on all three timeframes), the two higher granularities and
    the confidence each vote needs."""

    htf1: str = "H4"
    htf2: str = "D"
    htf1_conf: float = 0.0
    htf2_conf: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("htf1", "htf2"):
            v = getattr(self, name)
            if v not in HTF_CHOICES:
                raise ValueError(f"{name} must be a granularity whose length divides a day "
                                 f"({', '.join(HTF_CHOICES)}), got {v!r}")
        if fx.GRANULARITY_SECONDS[self.htf1] >= fx.GRANULARITY_SECONDS[self.htf2]:
            raise ValueError(f"htf1 ({self.htf1}) must be shorter than htf2 ({self.htf2})")
        for name in ("htf1_conf", "htf2_conf"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= MAX_CONF):
                raise ValueError(f"{name} must be a number in 0..{MAX_CONF:g}, got {v!r}")

    @classmethod
    def field_from_json(cls, name: str, value: Any, key: str) -> Any:
        if name in ("htf1", "htf2"):
            return check_choice(value, key, HTF_CHOICES)
        if name in ("htf1_conf", "htf2_conf"):
            return check_number(value, key, minimum=0.0, maximum=MAX_CONF)
        return super().field_from_json(name, value, key)

    def check_granularity(self, granularity: str, *, where: str = "signal_params") -> None:
        """Both HTFs are higher granularities than ``granularity`` (SpecError naming them)."""
        for name in ("htf1", "htf2"):
            try:
                htf_step(granularity, getattr(self, name), name=f"{where}.{name}")
            except ValueError as exc:
                raise SpecError(str(exc)) from None


# ---- scalar bodies (plain Python; compiled for the CPU and the GPU) ---------------------------

def htf_vote(fw, cv, q0, c0, w, i, ws, wc, we, bt, st):
    """(action, confidence) of the seed rule on the latest closed candle of one higher
    timeframe (rows fw[q0 .. q0+4], cv[c0], cv[c0+1]); (0, NaN) without one."""
    if fw[q0, w, i] == 0.0:
        return 0, math.nan
    buy, sell = seed_scores(fw[q0 + 1, w, i], fw[q0 + 2, w, i], fw[q0 + 3, w, i], cv[c0, i],
                            fw[q0 + 4, w, i], ws, wc, we)
    return seed_decide(buy, sell, cv[c0 + 1, i], bt, st)


def mtf_decide(g, k, i, fw, cv):
    """(valid, action, confidence, hc) of base candle i under configuration g[k]."""
    w = int(g[k, G_WINDOW_INDEX])
    if fw[0, w, i] == 0.0:
        return 0, 0, math.nan, 0
    ws = g[k, G_WS]
    wc = g[k, G_WC]
    we = g[k, G_WE]
    bt = g[k, G_BUY]
    st = g[k, G_SELL]
    coh = fw[2, w, i]
    buy, sell = seed_scores(fw[1, w, i], coh, fw[3, w, i], cv[0, i], fw[4, w, i], ws, wc, we)
    act, conf = seed_decide(buy, sell, cv[1, i], bt, st)
    a1, c1 = htf_vote(fw, cv, Q_HTF1, C_VF1, w, i, ws, wc, we, bt, st)
    a2, c2 = htf_vote(fw, cv, Q_HTF2, C_VF2, w, i, ws, wc, we, bt, st)
    if act == 0 or a1 != act or a2 != act:
        return 1, 0, conf, 0
    if not (c1 >= g[k, G_HTF1_CONF] and c2 >= g[k, G_HTF2_CONF]):
        return 1, 0, conf, 0
    hc = 1 if is_high_confidence(act, conf, coh, g[k, G_CONF], g[k, G_COH]) else 0
    return 1, act, conf, hc


SCALAR_FUNCTIONS = ("htf_vote", "mtf_decide")


def _seconds(time: Any) -> int:
    return fx.parse_time_ns(time, name="time", naive="error") // fx.NS


class MtfSignalStream:
    """The live stream of the rule: the base candles' features, the two HTF resamplers and
    their features, and :func:`mtf_decide` on them, one completed base candle at a time."""

    def __init__(self, params: MtfParams, *, instrument: str, granularity: str) -> None:
        from sep_research.signals.grid import ConfigGrid
        from sep_research.signals.live import FeatureStream

        params.check_granularity(granularity)
        self.params = params
        self.instrument = fx.check_instrument(instrument)
        pip = fx.pip_size(instrument)
        self._base = FeatureStream(params, pip=pip)
        self._htf = []
        for htf in (params.htf1, params.htf2):
            d, s = htf_step(granularity, htf)
            self._htf.append((CandleResampler(d, s), FeatureStream(params, pip=pip)))
        self._last: list = [None, None]
        self._g = ConfigGrid.single(params, rule=RULE.name).kernel_table(
            np.zeros(1, dtype=np.int64))
        self.history = RULE.history(params, granularity)
        self._n = 0
        self._last_time: Any = None

    @property
    def count(self) -> int:
        return self._n

    def update(self, time: Any, open: float, high: float, low: float, close: float,
               volume: float) -> Any:
        from sep_research.signals.live import check_candle, signal_from

        vals = (float(open), float(high), float(low), float(close), float(volume))
        check_candle(time, vals, self._last_time)
        t = _seconds(time)
        self._last_time = time
        index = self._n
        self._n += 1
        out, i = self._base.push(*vals[1:])
        for r, (resampler, feats) in enumerate(self._htf):
            for c in resampler.update(t, *vals):
                o2, i2 = feats.push(c[2], c[3], c[4], c[5])
                self._last[r] = o2[:, i2, 0].copy()
        fw = np.full((N_FW, 1, 1), np.nan)
        cv = np.full((N_CV, 1), np.nan)
        fw[0:5, 0, 0] = out[list(FW_FEATURES), i, 0]
        cv[0, 0] = out[qfh.F_VF, i, 0]
        cv[1, 0] = out[qfh.F_VM, i, 0]
        for r, last in enumerate(self._last):
            q0 = Q_HTF1 + 5 * r
            fw[q0, 0, 0] = 0.0
            if last is not None:
                fw[q0:q0 + 5, 0, 0] = last[list(FW_FEATURES)]
                cv[C_VF1 + 2 * r, 0] = last[qfh.F_VF]
                cv[C_VF1 + 2 * r + 1, 0] = last[qfh.F_VM]
        valid, act, conf, hc = mtf_decide(self._g, 0, 0, fw, cv)
        if valid == 0:
            return signal_from(time, out, i, 0, math.nan, False, index)
        return signal_from(time, out, i, act, conf, bool(hc), index)


class MtfRule(DecisionRule):
    name: ClassVar[str] = "mtf"
    summary: ClassVar[str] = ("multi-timeframe confirmation: a base signal taken only when the "
                              "same rule on two higher granularities (closed candles) agrees")
    params_class: ClassVar[type] = MtfParams
    own_fields: ClassVar[tuple[GridField, ...]] = (
        GridField("htf1_conf", "float", 0.0, MAX_CONF, doc="confidence the htf1 vote needs",
                  small=(0.0, 1.0), full=(0.0, 1.0)),
        GridField("htf2_conf", "float", 0.0, MAX_CONF, doc="confidence the htf2 vote needs",
                  small=(0.0, 1.0), full=(0.0, 1.0)),
    )
    body_modules: ClassVar[tuple[str, ...]] = (__name__,)
    decide_body: ClassVar[str] = "mtf_decide"
    alignments: ClassVar[tuple[str, ...]] = ("causal",)
    needs_times: ClassVar[bool] = True
    fw_names: ClassVar[tuple[str, ...]] = tuple(
        f"{p}{n}" for p in ("", "htf1_", "htf2_")
        for n in ("has", "stability", "coherence", "phase", "tf"))
    cv_names: ClassVar[tuple[str, ...]] = ("vf", "vm", "", "", "htf1_vf", "htf1_vm", "htf2_vf",
                                           "htf2_vm")

    def history(self, params: Any, granularity: str | None = None) -> int:
        if granularity is None:
            raise ValueError("rule 'mtf': the history depends on the base granularity")
        base = max(params.window, params.vol_window, params.vm_window - 1) + 1
        out = base
        for htf in (params.htf1, params.htf2):
            d, s = htf_step(granularity, htf)
            out = max(out, (base + 1) * (s // d))
        return out

    def history_text(self) -> str:
        return ("for each HTF (seed history + 1) x (HTF length / base length) base candles, "
                "at least the seed's")

    def htf_index(self, times: np.ndarray, htf: dict[str, np.ndarray], *,
                  base_seconds: int) -> np.ndarray:
        """The HTF candle each base candle reads: the latest closed by its close (-1: none)."""
        return closed_index(times, htf["end"], base_seconds=base_seconds)

    def tables(self, x, windows, params, *, pip, granularity, alignment, engine):
        self.check_alignment(alignment)
        if granularity is None:
            raise ValueError("rule 'mtf' needs the candles' granularity (granularity=)")
        params.check_granularity(granularity)
        prm = params.to_vector(pip)
        n = x["close"].shape[0]
        nw = windows.size
        # the sweep's five features and the volume factor and multiplier, in its layout
        wanted = (*FW_FEATURES, qfh.F_VF, qfh.F_VM)
        nf = len(FW_FEATURES)
        tab = _engine.compute_feature_table(x["close"], x["high"], x["low"], x["volume"],
                                            windows, prm, wanted, alignment="causal",
                                            engine=engine)
        fw = np.full((N_FW, nw, n), np.nan)
        cv = np.full((N_CV, n), np.nan)
        fw[0:nf] = tab[:nf]
        cv[0] = tab[nf, 0]
        cv[1] = tab[nf + 1, 0]
        for r, htf in enumerate((params.htf1, params.htf2)):
            d, s = htf_step(granularity, htf)
            h = resample_arrays(x["time"], x["open"], x["high"], x["low"], x["close"],
                                x["volume"], base_seconds=d, step=s)
            jj = self.htf_index(x["time"], h, base_seconds=d)
            q0 = Q_HTF1 + 5 * r
            fw[q0] = 0.0
            ok = jj >= 0
            if not ok.any():
                continue
            th = _engine.compute_feature_table(h["close"], h["high"], h["low"], h["volume"],
                                               windows, prm, wanted, alignment="causal",
                                               engine=engine)
            for j in range(nf):
                fw[q0 + j][:, ok] = th[j][:, jj[ok]]
            cv[C_VF1 + 2 * r, ok] = th[nf, 0, jj[ok]]
            cv[C_VF1 + 2 * r + 1, ok] = th[nf + 1, 0, jj[ok]]
        return np.ascontiguousarray(fw), cv

    def stream(self, params, *, instrument, granularity):
        return MtfSignalStream(self.check_params(params), instrument=instrument,
                               granularity=granularity)


RULE = MtfRule({"default": MtfParams(),
                "seed-m1": MtfParams(htf1="M5", htf2="M15")})
