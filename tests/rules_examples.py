"""Rules the tests register (monkeypatching ``strategy.RULES``), never shipped:

- ``LEAKY``: a bits rule whose bit of move j is the direction of the *next* move (it reads
  ``close[j + 2]``, one candle ahead): the framework's look-ahead check must catch it;
- ``UNFINISHED_MTF``: the multi-timeframe rule reading the higher-timeframe candle that is
  still forming (the seed's version): caught too;
- ``SEED_DECISION``: the seed rule written as a decision rule (its own decide body, the
  generic brute-force sweep): its sweep must equal the seed rule's bit for bit.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

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
    is_high_confidence,
    seed_decide,
    seed_scores,
)
from sep_research.signals.rules.base import FW_FEATURES, BitsRule, DecisionRule
from sep_research.signals.rules.mtf import MtfRule
from sep_research.signals.seed import SeedParams


def leaky_bit(close, j, bp, s):
    """The direction of move j + 1 (known only at the close of candle j + 2)."""
    if j + 2 < close.shape[0]:
        return 1 if close[j + 2] > close[j + 1] else 0
    return 1 if close[j + 1] > close[j] else 0


def seed_rule_decide(g, k, i, fw, cv):
    w = int(g[k, G_WINDOW_INDEX])
    if fw[0, w, i] == 0.0:
        return 0, 0, math.nan, 0
    coh = fw[2, w, i]
    buy, sell = seed_scores(fw[1, w, i], coh, fw[3, w, i], cv[0, i], fw[4, w, i], g[k, G_WS],
                            g[k, G_WC], g[k, G_WE])
    act, conf = seed_decide(buy, sell, cv[1, i], g[k, G_BUY], g[k, G_SELL])
    hc = 1 if is_high_confidence(act, conf, coh, g[k, G_CONF], g[k, G_COH]) else 0
    return 1, act, conf, hc


SCALAR_FUNCTIONS = ("leaky_bit", "seed_rule_decide")


class LeakyRule(BitsRule):
    name: ClassVar[str] = "leaky"
    summary: ClassVar[str] = "reads one candle ahead (a test of the look-ahead check)"
    body_modules: ClassVar[tuple[str, ...]] = (__name__,)
    bit_body: ClassVar[str] = "leaky_bit"


class UnfinishedMtfRule(MtfRule):
    name: ClassVar[str] = "mtf_unfinished"
    summary: ClassVar[str] = "mtf reading the HTF candle still forming (the seed's version)"

    def htf_index(self, times, htf, *, base_seconds):
        # the bucket that holds each base candle, finished or not
        return (np.searchsorted(htf["start"], times, side="right") - 1).astype(np.int64)


class SeedDecisionRule(DecisionRule):
    name: ClassVar[str] = "seed_decision"
    summary: ClassVar[str] = "the seed rule as a decision rule (generic brute-force sweep)"
    params_class: ClassVar[type] = SeedParams
    body_modules: ClassVar[tuple[str, ...]] = (__name__,)
    decide_body: ClassVar[str] = "seed_rule_decide"
    fw_names: ClassVar[tuple[str, ...]] = ("has", "stability", "coherence", "phase", "tf")
    cv_names: ClassVar[tuple[str, ...]] = ("vf", "vm", "", "")

    def history(self, params, granularity=None):
        return max(params.window, params.vol_window, params.vm_window - 1) + 1

    def tables(self, x, windows, params, *, pip, granularity, alignment, engine):
        feat = _engine.compute_features(x["close"], x["high"], x["low"], x["volume"], windows,
                                        params.to_vector(pip), alignment=alignment,
                                        engine=engine)
        fw = np.ascontiguousarray(np.stack([feat[q].T for q in FW_FEATURES]))
        cv = np.full((4, x["close"].shape[0]), np.nan)
        cv[0] = feat[qfh.F_VF, :, 0]
        cv[1] = feat[qfh.F_VM, :, 0]
        return fw, cv


LEAKY = LeakyRule()
UNFINISHED_MTF = UnfinishedMtfRule()
SEED_DECISION = SeedDecisionRule()

#: name -> registry entry, for monkeypatch.setitem(strategy.RULES, name, entry)
ENTRIES = {"leaky": (__name__, "LEAKY"), "mtf_unfinished": (__name__, "UNFINISHED_MTF"),
           "seed_decision": (__name__, "SEED_DECISION")}
