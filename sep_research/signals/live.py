"""Incremental, pure-Python seed signals for the live runner (no numba, no pandas).

::

    stream = SeedSignalStream(SEED, instrument="EUR_USD")
    sig = stream.update(time, open, high, low, close, volume)   # a completed candle
    sig.action            # "BUY" | "SELL" | "HOLD"
    sig.high_confidence   # bool

Each ``update`` takes the newest *completed* candle of ``instrument`` (it sets the pip of the
candle ranges) and returns the causal signal of that candle, computed from a bounded history
(``max(window, vol_window, vm_window - 1) + 1`` candles and the last ``tf_long`` coherence
values) by the same scalar code that the numba
and CUDA kernels compile (:mod:`sep_research.kernels.qfh`). A test checks that the stream's
decisions equal the vectorised :func:`sep_research.signals.seed.seed_signals` candle for
candle on real data.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from sep_research import fx
from sep_research.kernels import qfh
from sep_research.signals.seed import SEED, SeedParams

ACTIONS = {1: "BUY", -1: "SELL", 0: "HOLD"}


@dataclass(frozen=True)
class Signal:
    """The seed rule's signal for one completed candle."""

    time: Any
    action: str  # BUY | SELL | HOLD
    direction: int  # +1, -1, 0
    confidence: float  # winning score (NaN without features)
    coherence: float
    stability: float
    entropy: float
    phase: float
    rupture: float
    high_confidence: bool
    has_features: bool
    index: int  # how many candles the stream had seen before this one


class SeedSignalStream:
    """Causal seed signals, one completed candle at a time, from a bounded history."""

    def __init__(self, params: SeedParams = SEED, *, instrument: str) -> None:
        self.params = params
        self.instrument = fx.check_instrument(instrument)
        self._prm = params.to_vector(fx.pip_size(instrument))
        self._hist = max(params.window, params.vol_window, params.vm_window - 1) + 1
        self._candles: deque = deque(maxlen=self._hist)  # (high, low, close, volume)
        self._cohs: deque = deque(maxlen=params.tf_long)
        self._n = 0  # candles seen
        self._n_feat = 0  # candles with features seen
        self._last_time: Any = None

    @property
    def count(self) -> int:
        return self._n

    def update(self, time: Any, open: float, high: float, low: float, close: float,
               volume: float) -> Signal:
        """Add the newest completed candle and return its causal signal."""
        vals = (float(open), float(high), float(low), float(close), float(volume))
        if not all(math.isfinite(v) for v in vals):
            raise ValueError(f"candle at {time!r} has a NaN or infinite value: {vals}")
        if self._last_time is not None and time is not None and not time > self._last_time:
            raise ValueError(f"candle time {time!r} is not after the previous {self._last_time!r}")
        self._last_time = time
        self._candles.append(vals[1:])
        i_abs = self._n
        self._n += 1
        m = len(self._candles)
        i = m - 1  # local index of the newest candle; exact because the buffer is long enough
        high_a = np.array([c[0] for c in self._candles])
        low_a = np.array([c[1] for c in self._candles])
        close_a = np.array([c[2] for c in self._candles])
        vol_a = np.array([c[3] for c in self._candles])
        bits = (close_a[1:] > close_a[:-1]).astype(np.int8)
        out = np.full((qfh.N_FEATURES, m, 1), np.nan)
        # legacy_range is unused in causal alignment
        qfh.candle_features(out, 0, i, bits, high_a, low_a, vol_a, m, self.params.window,
                            False, 0.0, self._prm)
        if out[qfh.F_HAS, i, 0] == 0.0:
            return Signal(time, "HOLD", 0, math.nan, math.nan, math.nan, math.nan, math.nan,
                          math.nan, False, False, i_abs)
        coh = out[qfh.F_COHERENCE, i, 0]
        # temporal factor from the previous feature candles' coherence
        prev = list(self._cohs)
        tb = np.full((qfh.N_FEATURES, len(prev) + 1, 1), np.nan)
        tb[qfh.F_HAS, :, 0] = 1.0
        tb[qfh.F_COHERENCE, : len(prev), 0] = prev
        tb[qfh.F_COHERENCE, len(prev), 0] = coh
        p = self._n_feat
        tf = qfh.temporal_factor_at(tb, 0, len(prev), len(prev) - p, self._prm)
        self._cohs.append(coh)
        self._n_feat += 1
        out[qfh.F_TF, i, 0] = tf
        prm = self.params
        act, conf, hc = qfh.signal_at(i, 0, out, prm.w_s, prm.w_c, prm.w_e, prm.buy_threshold,
                                      prm.sell_threshold, prm.conf_threshold, prm.coh_threshold)
        return Signal(time, ACTIONS[int(act)], int(act), float(conf), float(coh),
                      float(out[qfh.F_STABILITY, i, 0]), float(out[qfh.F_ENTROPY, i, 0]),
                      float(out[qfh.F_PHASE, i, 0]), float(out[qfh.F_RUPTURE, i, 0]),
                      bool(hc), True, i_abs)
