"""Incremental, pure-Python seed signals for the live runner (no numba, no pandas).

::

    stream = SeedSignalStream(SEED, instrument="EUR_USD")
    sig = stream.update(time, open, high, low, close, volume)   # a completed candle
    sig.action            # "BUY" | "SELL" | "HOLD"
    sig.high_confidence   # bool

Each ``update`` takes the newest *completed* candle of ``instrument`` (it sets the pip of the
candle ranges) and returns the causal signal of that candle, computed from a bounded history
(``max(window, vol_window, vm_window - 1) + 1`` candles and the last ``tf_long`` coherence
values; :class:`FeatureStream`) by the same scalar code that the numba
and CUDA kernels compile (:mod:`sep_research.kernels.qfh`). A test checks that the stream's
decisions equal the vectorised :func:`sep_research.signals.seed.seed_signals` candle for
candle on real data. Every registered rule's stream (``Rule.stream``, :mod:`sep_research.
signals.rules`) is built from :class:`FeatureStream` and its rule's scalar bodies.
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


class FeatureStream:
    """Causal per-candle features of the seed's feature body (:func:`qfh.candle_features` and
    :func:`qfh.temporal_factor_at`), one completed candle at a time, from a bounded history:
    ``max(window + lookback, vol_window, vm_window - 1) + 1`` candles and the last
    ``tf_long`` coherence values.

    ``bit``: a rule's bit body ``bit(close, j, bp, 0)`` with ``bp = [bit_params]`` (its bits
    replace the spec's ``close[j+1] > close[j]``), reading at most ``lookback`` moves before
    move ``j``; None: the spec's bits."""

    def __init__(self, params: SeedParams, *, pip: float, bit: Any = None,
                 bit_params: tuple = (), lookback: int = 0) -> None:
        self.params = params
        self._prm = params.to_vector(pip)
        self._bit = bit
        self._bp = np.array([list(bit_params) or [0.0]], dtype=np.float64)
        self.history = max(params.window + int(lookback), params.vol_window,
                           params.vm_window - 1) + 1
        self._candles: deque = deque(maxlen=self.history)  # (high, low, close, volume)
        self._cohs: deque = deque(maxlen=params.tf_long)
        self._n_feat = 0  # candles with features seen

    def push(self, high: float, low: float, close: float, volume: float) -> tuple:
        """Add a completed candle; returns ``(out, i)``: its features are ``out[F_*, i, 0]``
        (the temporal factor included; ``out[F_HAS, i, 0] == 0``: none)."""
        self._candles.append((high, low, close, volume))
        m = len(self._candles)
        i = m - 1  # local index of the newest candle; exact because the buffer is long enough
        high_a = np.array([c[0] for c in self._candles])
        low_a = np.array([c[1] for c in self._candles])
        close_a = np.array([c[2] for c in self._candles])
        vol_a = np.array([c[3] for c in self._candles])
        if self._bit is None:
            bits = (close_a[1:] > close_a[:-1]).astype(np.int8)
        else:  # only the newest window's bits are read by the feature body
            bits = np.zeros(max(0, m - 1), dtype=np.int8)
            for j in range(max(0, m - 1 - self.params.window), m - 1):
                bits[j] = self._bit(close_a, j, self._bp, 0)
        out = np.full((qfh.N_FEATURES, m, 1), np.nan)
        # legacy_range is unused in causal alignment
        qfh.candle_features(out, 0, i, bits, high_a, low_a, vol_a, m, self.params.window,
                            False, 0.0, self._prm)
        if out[qfh.F_HAS, i, 0] == 0.0:
            return out, i
        coh = out[qfh.F_COHERENCE, i, 0]
        # temporal factor from the previous feature candles' coherence
        prev = list(self._cohs)
        tb = np.full((qfh.N_FEATURES, len(prev) + 1, 1), np.nan)
        tb[qfh.F_HAS, :, 0] = 1.0
        tb[qfh.F_COHERENCE, : len(prev), 0] = prev
        tb[qfh.F_COHERENCE, len(prev), 0] = coh
        p = self._n_feat
        out[qfh.F_TF, i, 0] = qfh.temporal_factor_at(tb, 0, len(prev), len(prev) - p, self._prm)
        self._cohs.append(coh)
        self._n_feat += 1
        return out, i


def check_candle(time: Any, vals: tuple, last_time: Any) -> None:
    """A completed candle's values are finite and its time is after the previous one's."""
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"candle at {time!r} has a NaN or infinite value: {vals}")
    if last_time is not None and time is not None and not time > last_time:
        raise ValueError(f"candle time {time!r} is not after the previous {last_time!r}")


def signal_from(time: Any, out: np.ndarray, i: int, act: int, conf: float, hc: bool,
                index: int) -> Signal:
    """The :class:`Signal` of a decided candle whose features are ``out[F_*, i, 0]``."""
    if out[qfh.F_HAS, i, 0] == 0.0:
        return Signal(time, "HOLD", 0, math.nan, math.nan, math.nan, math.nan, math.nan,
                      math.nan, False, False, index)
    return Signal(time, ACTIONS[int(act)], int(act), float(conf),
                  float(out[qfh.F_COHERENCE, i, 0]), float(out[qfh.F_STABILITY, i, 0]),
                  float(out[qfh.F_ENTROPY, i, 0]), float(out[qfh.F_PHASE, i, 0]),
                  float(out[qfh.F_RUPTURE, i, 0]), bool(hc), True, index)


class SeedSignalStream:
    """Causal seed signals, one completed candle at a time, from a bounded history.

    ``bit``, ``bit_params``, ``lookback``: a bits rule's bit body (see :class:`FeatureStream`);
    the decision is the seed's."""

    def __init__(self, params: SeedParams = SEED, *, instrument: str, bit: Any = None,
                 bit_params: tuple = (), lookback: int = 0) -> None:
        self.params = params
        self.instrument = fx.check_instrument(instrument)
        self._features = FeatureStream(params, pip=fx.pip_size(instrument), bit=bit,
                                       bit_params=bit_params, lookback=lookback)
        self._n = 0  # candles seen
        self._last_time: Any = None

    @property
    def count(self) -> int:
        return self._n

    @property
    def history(self) -> int:
        """Candles the stream keeps (what its signals can depend on)."""
        return self._features.history

    def update(self, time: Any, open: float, high: float, low: float, close: float,
               volume: float) -> Signal:
        """Add the newest completed candle and return its causal signal."""
        vals = (float(open), float(high), float(low), float(close), float(volume))
        check_candle(time, vals, self._last_time)
        self._last_time = time
        i_abs = self._n
        self._n += 1
        out, i = self._features.push(*vals[1:])
        if out[qfh.F_HAS, i, 0] == 0.0:
            return signal_from(time, out, i, 0, math.nan, False, i_abs)
        prm = self.params
        act, conf, hc = qfh.signal_at(i, 0, out, prm.w_s, prm.w_c, prm.w_e, prm.buy_threshold,
                                      prm.sell_threshold, prm.conf_threshold, prm.coh_threshold)
        return signal_from(time, out, i, act, conf, hc, i_abs)
