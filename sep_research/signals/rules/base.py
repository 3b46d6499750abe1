"""The signal-rule interface: what a rule provides, and what the framework derives from it.

**A rule provides** (one module; the README has a worked example of a few dozen lines):

- its **parameter class**: a frozen dataclass extending :class:`~sep_research.signals.seed.
  SeedParams` (its own fields after the seed's; :meth:`~sep_research.signals.seed.SeedParams.
  field_from_json` types them strictly), whose no-argument constructor is the rule's preset;
- its **scalar bodies**: plain Python, ``math`` only, no allocation, listed in the module's
  ``SCALAR_FUNCTIONS`` (they run as written in the live stream and compiled by
  :func:`sep_research.kernels.rules.compile_rule` for the CPU, numba, and the GPU,
  numba-cuda, re-bound with the QFH bodies of :mod:`sep_research.kernels.qfh`);
- a :class:`Rule` instance named ``RULE``: its ``name``, a one-line ``summary``, its
  ``params_class``, its own **grid fields** (:class:`GridField`: kind, range, the values the
  small and full training grids add), its **presets**, and its kind:

  - :class:`BitsRule`: a *bit body* ``bit(close, j, bp, s) -> 0 | 1`` (the bit of the move
    ``close[j] -> close[j+1]`` under the bit parameters ``bp[s]``, reading at most
    :meth:`BitsRule.lookback` moves back) replaces the spec's bits; the transition metrics,
    features and the seed's decision follow unchanged. Its **bounded history for live** is
    ``max(window + lookback, vol_window, vm_window - 1) + 1`` candles;
  - :class:`DecisionRule`: a *decide body* ``decide(g, k, i, fw, cv) -> (valid, action,
    confidence, hc)`` over per-candle tables the rule builds (:meth:`DecisionRule.tables`),
    and its own live stream and history.

It is **registered** by one line in :data:`sep_research.strategy.RULES` (the one registry).

**The framework derives** for every registered rule, with no further wiring: vectorised
signals (:func:`rule_signals`), the look-ahead check (:func:`sep_research.signals.causality.
check_rule`, ``sep check-causality --rule``), the fused sweep on CPU and GPU
(:func:`sep_research.signals.sweep.prepare_sweep` with ``rule=``: a rule with the seed's
decision gets :func:`sep_research.kernels.engine.run_sweep` on its own feature columns,
threshold-space sweep included; a rule with its own decision gets the exact brute force of
:mod:`sep_research.kernels.rules`: chosen by the rule's kind, automatically), the training
grids and the walk-forward (``sep train --rule``), the artifact (its name and parameters in
the strategy specification), the runner's live stream (:meth:`Rule.stream`, pure Python), the
notebooks' ``rule`` parameter, sweep grids' ``rule:`` key and ``sep rules``. The tests run the
look-ahead check, the live-versus-research parity on real data and the CPU/simulator/GPU
sweep agreement for every registered rule.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sep_research.kernels import engine as _engine
from sep_research.kernels import qfh
from sep_research.signals.seed import (
    MAX_WINDOW,
    SeedParams,
    SeedSignals,
    ohlcv,
    qfh_features_batch,
    signals_from_features,
)

if TYPE_CHECKING:
    from sep_research.signals.grid import ConfigGrid

KINDS = ("int", "float")


@dataclass(frozen=True)
class GridField:
    """One sweepable parameter: ``kind`` (``int`` or ``float``), its range ``low .. high``
    (inclusive; None: unbounded), what it means, and the values a rule's own field adds to the
    small and the full training grids (:mod:`sep_research.training.grid`)."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    doc: str = ""
    small: tuple[float, ...] = ()
    full: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"GridField {self.name!r}: kind must be one of {KINDS}")
        for v in (*self.small, *self.full):
            self.check(np.array([v], dtype=np.float64))

    def check(self, values: np.ndarray) -> None:
        """Raise ValueError (naming the field) unless every value is in range."""
        v = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(v)):
            raise ValueError(f"grid field {self.name!r} holds NaN or infinite values")
        if self.kind == "int":
            bad = (v != np.round(v)) | (v < self.low if self.low is not None else False)
            if np.any(bad):
                got = f", got {v[np.flatnonzero(bad)[0]]:g}"
                raise ValueError(f"grid field {self.name!r} must hold integers >= "
                                 f"{self.low:g}{got}" if self.low is not None else
                                 f"grid field {self.name!r} must hold integers{got}")
        if self.low is not None and np.any(v < self.low):
            raise ValueError(f"grid field {self.name!r} must be >= {self.low:g}, got "
                             f"{v.min():g}")
        if self.high is not None and np.any(v > self.high):
            raise ValueError(f"grid field {self.name!r} must be <= {self.high:g}, got "
                             f"{v.max():g}")

    def describe(self) -> str:
        lo = "" if self.low is None else f"{self.low:g}"
        hi = "" if self.high is None else f"{self.high:g}"
        if lo and hi:
            rng = f"{lo} .. {hi}"
        elif lo:
            rng = f">= {lo}"
        elif hi:
            rng = f"<= {hi}"
        else:
            rng = "any finite value"
        return f"{self.kind}, {rng}"

    def cast(self, value: float) -> int | float:
        return int(value) if self.kind == "int" else float(value)


#: the seed rule's grid fields (every rule has them: its parameters extend the seed's), with
#: their column in the sweep's grid table (``qfh.G_*``; ``window`` becomes the feature column)
SEED_GRID_FIELDS = (
    GridField("w_s", "float", doc="weight of stability"),
    GridField("w_c", "float", doc="weight of coherence"),
    GridField("w_e", "float", doc="weight of entropy (phase)"),
    GridField("buy_threshold", "float", doc="BUY when buy > this x vm"),
    GridField("sell_threshold", "float", doc="SELL when sell > this x vm"),
    GridField("conf_threshold", "float", doc="high confidence: confidence >= this"),
    GridField("coh_threshold", "float", doc="high confidence: coherence >= this"),
    GridField("window", "int", 2, MAX_WINDOW, doc="bits per window"),
    GridField("min_move", "float", 0.0, doc="a signal is correct when the move is beyond this "
              "many pips in its direction"),
    GridField("spread", "float", doc="extra cost in pips on every traded signal (sweeps only)"),
)
SEED_GRID_COLUMNS = {"w_s": qfh.G_WS, "w_c": qfh.G_WC, "w_e": qfh.G_WE,
                     "buy_threshold": qfh.G_BUY, "sell_threshold": qfh.G_SELL,
                     "conf_threshold": qfh.G_CONF, "coh_threshold": qfh.G_COH,
                     "min_move": qfh.G_MIN_MOVE, "spread": qfh.G_SPREAD}
#: the sweep's feature rows fw[q] of the seed's features, in this order
FW_FEATURES = (qfh.F_HAS, qfh.F_STABILITY, qfh.F_COHERENCE, qfh.F_PHASE, qfh.F_TF)


class Rule:
    """A signal rule (see the module docstring). Subclass :class:`BitsRule` or
    :class:`DecisionRule`; set the class attributes and the methods they name."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    params_class: ClassVar[type] = SeedParams
    own_fields: ClassVar[tuple[GridField, ...]] = ()
    #: ``"seed"``: the seed's decision (threshold-space sweep eligible); ``"own"``: brute force
    decision: ClassVar[str] = "seed"
    #: modules of the rule's scalar bodies (full names; each lists ``SCALAR_FUNCTIONS``)
    body_modules: ClassVar[tuple[str, ...]] = ()
    alignments: ClassVar[tuple[str, ...]] = ("causal", "legacy")
    #: the rule reads candle times (and the base granularity)
    needs_times: ClassVar[bool] = False

    def __init__(self, presets: dict[str, Any] | None = None) -> None:
        self.presets = dict(presets or {"default": self.params_class()})
        for pname, p in self.presets.items():
            if type(p) is not self.params_class:
                raise TypeError(f"rule {self.name!r}: preset {pname!r} is not a "
                                f"{self.params_class.__name__}")

    # -- parameters and grid ---------------------------------------------------------------
    @property
    def grid_fields(self) -> tuple[GridField, ...]:
        return SEED_GRID_FIELDS + tuple(self.own_fields)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.grid_fields)

    @property
    def kernel_fields(self) -> tuple[str, ...]:
        """Own grid fields the sweep kernel's grid table carries after ``qfh.N_GRID`` (a
        decision rule's, which its decide body reads; :meth:`sep_research.signals.grid.
        ConfigGrid.kernel_table`)."""
        return ()

    def field(self, name: str) -> GridField:
        for f in self.grid_fields:
            if f.name == name:
                return f
        raise ValueError(f"rule {self.name!r} has no grid field {name!r}; known: "
                         f"{', '.join(self.field_names)}")

    def preset(self, name: str | None = None) -> Any:
        """A preset by name (None: the first, the rule's default)."""
        if name is None:
            return next(iter(self.presets.values()))
        try:
            return self.presets[name]
        except KeyError:
            raise ValueError(f"rule {self.name!r} has no preset {name!r}; known: "
                             f"{', '.join(self.presets)}") from None

    def check_params(self, params: Any) -> Any:
        if type(params) is not self.params_class:
            raise ValueError(f"params: rule {self.name!r} takes {self.params_class.__name__}, "
                             f"got {type(params).__name__}")
        return params

    def check_alignment(self, alignment: str) -> str:
        if alignment not in self.alignments:
            raise ValueError(f"alignment={alignment!r}: rule {self.name!r} supports "
                             f"{', '.join(map(repr, self.alignments))}")
        return alignment

    def history(self, params: Any, granularity: str | None = None) -> int:
        """Base candles (of ``granularity``) the live stream's signal depends on: fed at least
        these, it gives the research signals whatever the data's start."""
        raise NotImplementedError

    def sources(self) -> tuple[Path, ...]:
        """Source files of the rule's compiled code (they key the kernel cache)."""
        mods = dict.fromkeys((*self.body_modules, type(self).__module__))
        return tuple(Path(importlib.import_module(m).__file__ or "").resolve() for m in mods)

    def kernels(self, target: str, aliases: dict[str, str]) -> dict:
        from sep_research.kernels.rules import compile_rule

        return compile_rule(self.body_modules, aliases, target, self.sources())

    # -- what a rule computes (overridden by the kinds below) ------------------------------
    def inputs(self, data: Any) -> dict[str, np.ndarray]:
        """The candle arrays the rule reads: ``open high low close volume`` (and ``time``,
        Unix seconds, when :attr:`needs_times`)."""
        x = ohlcv(data)
        if self.needs_times:
            from sep_research.data.resample import frame_seconds

            x["time"] = frame_seconds(data)
        return x

    def features(self, x: dict[str, np.ndarray], params: Any, *, instrument: str,
                 granularity: str | None, alignment: str, engine: str) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def signals(self, x: dict[str, np.ndarray], params: Any, *, instrument: str,
                granularity: str | None, alignment: str, engine: str) -> SeedSignals:
        raise NotImplementedError

    def sweep_tables(self, x: dict[str, np.ndarray], grid: ConfigGrid, *, pip: float,
                     granularity: str | None, alignment: str, engine: str
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(g, fw, cv)`` of the fused sweep for the configuration grid ``grid`` (of this
        rule; its base holds the constants); ``g`` is :meth:`ConfigGrid.kernel_table`; ``cv``
        rows 2 and 3 (label move, spread) are filled by :func:`sep_research.signals.sweep.
        prepare_sweep`."""
        raise NotImplementedError

    def run_sweep(self, g: np.ndarray, fw: np.ndarray, cv: np.ndarray, lo: int, hi: int, *,
                  engine: str, chunk: int, block: int, method: str = "auto"
                  ) -> tuple[np.ndarray, np.ndarray]:
        """(counts (7, K), sums (4, K)) of the rows ``g`` over candles lo .. hi-1.
        ``method``: ``auto``, ``brute`` or ``threshold`` (see
        :func:`sep_research.kernels.engine.run_sweep`; a rule without the seed's threshold
        structure has only the brute force)."""
        raise NotImplementedError

    def stream(self, params: Any, *, instrument: str, granularity: str) -> Any:
        """The runner's live stream: ``update(time, open, high, low, close, volume)`` of each
        completed candle returns a :class:`sep_research.signals.live.Signal`."""
        raise NotImplementedError

    def causality_functions(self) -> dict[str, Any]:
        """name -> f(x, params, alignment=, engine=, instrument=, granularity=) -> per-candle
        outputs: what the look-ahead check runs (the features and the signals)."""
        def feats(x, params, **kw):
            return self.features(x, params, **kw)

        def sigs(x, params, **kw):
            s = self.signals(x, params, **kw)
            return {"action": s.action, "confidence": s.confidence, "hc": s.hc}

        return {f"{self.name}_features": feats, f"{self.name}_signals": sigs}

    def describe(self) -> str:
        """What ``sep rules`` prints."""
        p = self.preset()
        base = {f.name for f in fields(SeedParams)}
        own = [f.name for f in fields(p) if f.name not in base]
        decision = "the seed rule's" if self.decision == "seed" else "its own"
        lines = [f"{self.name}: {self.summary}",
                 f"  decision: {decision}; sweep: {self.sweep_method()}",
                 (f"  history for live: {self.history_text()} (default preset on H1 "
                  f"candles: {self.history(p, 'H1')})")]
        if own:
            lines.append("  own parameters (default preset): "
                         + ", ".join(f"{n}={getattr(p, n)!r}" for n in own))
        lines.append("  grid fields:")
        for f in self.grid_fields:
            extra = ""
            if f.small or f.full:
                extra = (f"; small grid {list(f.small)}, full grid {list(f.full)}")
            lines.append(f"    {f.name:15s} {f.describe()}{extra}  ({f.doc})")
        lines.append("  presets: " + ", ".join(self.presets))
        return "\n".join(lines)

    def sweep_method(self) -> str:
        if self.decision == "seed":
            return ("threshold-space or exact brute force per group (auto), CPU and GPU, on "
                    "the rule's feature columns")
        return "exact brute force (the rule's own decision), CPU and GPU"

    def history_text(self) -> str:
        return "max(window, vol_window, vm_window - 1) + 1 candles"

    def __repr__(self) -> str:
        return f"<rule {self.name!r}>"


# ---- bits rules: the rule's bits, the seed's features and decision ----------------------------

class BitsRule(Rule):
    """A rule whose bits come from its bit body (None: the spec's); the rest is the seed's.

    Class attributes: ``bit_body`` (the body's name in ``body_modules[0]``), ``bit_fields``
    (its own grid fields that change the bits: the sweep's feature columns are the pairs of
    window and bit-field values). Methods: :meth:`bit_vector` (``bp`` of a parameter object
    for an instrument whose price per pip is ``pip``) and :meth:`lookback` (moves before
    ``j`` the body reads)."""

    bit_body: ClassVar[str | None] = None
    bit_fields: ClassVar[tuple[str, ...]] = ()

    def bit_vector(self, params: Any, pip: float) -> tuple[float, ...]:
        return ()

    def lookback(self, params: Any) -> int:
        return 0

    def history(self, params: Any, granularity: str | None = None) -> int:
        return max(params.window + self.lookback(params), params.vol_window,
                   params.vm_window - 1) + 1

    def history_text(self) -> str:
        if self.bit_body is None:
            return super().history_text()
        return "max(window + lookback, vol_window, vm_window - 1) + 1 candles"

    def bits(self, close: np.ndarray, plist: list[Any], pip: float,
             engine: str) -> np.ndarray | None:
        """Bits ``(len(plist), n - 1)`` of ``close`` under each parameter object (None: the
        spec's bits). Computed on the CPU (numba) or in plain Python (``engine="python"``):
        they are cheap, and exact on either."""
        if self.bit_body is None:
            return None
        from sep_research.kernels import rules as kr

        target = "python" if _engine.resolve_engine(engine) == "python" else "cpu"
        bp = np.array([self.bit_vector(p, pip) for p in plist], dtype=np.float64)
        return kr.bits(self.kernels(target, {"rule_bit": self.bit_body}), close, bp, target)

    def python_bit(self) -> Any:
        """The bit body as written (plain Python; the live stream runs it)."""
        if self.bit_body is None:
            return None
        return getattr(importlib.import_module(self.body_modules[0]), self.bit_body)

    def features(self, x, params, *, instrument, granularity, alignment, engine):
        from sep_research import fx

        self.check_alignment(alignment)
        bits = self.bits(x["close"], [params], fx.pip_size(instrument), engine)
        b = qfh_features_batch(x["close"], x["high"], x["low"], x["volume"], [params.window],
                               params, instrument=instrument, alignment=alignment,
                               engine=engine, bits=bits)
        return {k: v[:, 0] for k, v in b.items()}

    def signals(self, x, params, *, instrument, granularity, alignment, engine):
        feat = self.features(x, params, instrument=instrument, granularity=granularity,
                             alignment=alignment, engine=engine)
        action, conf, hc = signals_from_features(feat, params, engine=engine)
        return SeedSignals(action, conf, hc, feat, alignment, params, instrument)

    def sweep_tables(self, x, grid, *, pip, granularity, alignment, engine):
        self.check_alignment(alignment)
        params = grid.base
        windows, widx = np.unique(grid.column("window").astype(np.int64), return_inverse=True)
        widx = widx.reshape(-1)
        k = widx.size
        if self.bit_fields:
            keys = np.stack([grid.column(f) for f in self.bit_fields], axis=1)
            uniq, cidx = np.unique(keys, axis=0, return_inverse=True)
            cidx = cidx.reshape(-1)
            plist = [params.with_(**{f: self.field(f).cast(v) for f, v in
                                     zip(self.bit_fields, row, strict=True)}) for row in uniq]
        else:
            cidx = np.zeros(k, dtype=np.int64)
            plist = [params]
        ns = len(plist)
        bits = self.bits(x["close"], plist, pip, engine)

        def series(a: np.ndarray) -> np.ndarray:
            return a if ns == 1 else np.ascontiguousarray(np.tile(a, (ns, 1)))

        # the five features the sweep reads, and the volume factor and multiplier (the same
        # in every column), in the sweep's layout
        tab = _engine.compute_feature_table(
            series(x["close"]), series(x["high"]), series(x["low"]), series(x["volume"]),
            windows, params.to_vector(pip), (*FW_FEATURES, qfh.F_VF, qfh.F_VM),
            alignment=alignment, engine=engine, bits=bits)
        nf = len(FW_FEATURES)
        fw = tab[:nf]
        m = x["close"].shape[0]
        cv = np.full((4, m), np.nan)
        cv[0] = tab[nf, 0]
        cv[1] = tab[nf + 1, 0]
        return grid.kernel_table(cidx * windows.size + widx), fw, cv

    def run_sweep(self, g, fw, cv, lo, hi, *, engine, chunk, block, method="auto"):
        return _engine.run_sweep(g, fw, cv, lo, hi, engine=engine, chunk=chunk, block=block,
                                 method=method)

    def stream(self, params, *, instrument, granularity):
        from sep_research import fx
        from sep_research.signals.live import SeedSignalStream

        return SeedSignalStream(self.check_params(params), instrument=instrument,
                                bit=self.python_bit(),
                                bit_params=self.bit_vector(params, fx.pip_size(instrument)),
                                lookback=self.lookback(params))


# ---- decision rules: the rule's own tables and decision ---------------------------------------

class DecisionRule(Rule):
    """A rule with its own decision body ``decide_body`` (in ``body_modules[0]``), over the
    tables :meth:`tables` builds. Its own grid fields are the grid table's columns
    ``qfh.N_GRID + j`` in the order of :attr:`own_fields`; ``window`` indexes ``fw``'s
    windows. Swept by the exact brute force of :mod:`sep_research.kernels.rules`."""

    decision: ClassVar[str] = "own"
    decide_body: ClassVar[str] = ""
    #: names of the rows of fw (each per window) and of cv, for the look-ahead check
    fw_names: ClassVar[tuple[str, ...]] = ()
    cv_names: ClassVar[tuple[str, ...]] = ()

    def tables(self, x: dict[str, np.ndarray], windows: np.ndarray, params: Any, *,
               pip: float, granularity: str | None, alignment: str, engine: str
               ) -> tuple[np.ndarray, np.ndarray]:
        """``fw (Q, len(windows), n)`` and ``cv (C, n)`` (rows 2, 3 free for the label move
        and the spread) that the decide body reads."""
        raise NotImplementedError

    @property
    def kernel_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.own_fields)

    def _target(self, engine: str, *, sweep: bool) -> str:
        eng = _engine.resolve_engine(engine)
        if eng == "cuda" and not sweep:
            return "cpu"  # one configuration's signals: the CPU is the right tool
        return eng

    def _one(self, x, params, *, instrument, granularity, alignment, engine):
        from sep_research import fx
        from sep_research.signals.grid import ConfigGrid

        self.check_params(params)
        self.check_alignment(alignment)
        fw, cv = self.tables(x, np.array([params.window], dtype=np.int64), params,
                             pip=fx.pip_size(instrument), granularity=granularity,
                             alignment=alignment, engine=engine)
        g = ConfigGrid.single(params, rule=self.name).kernel_table(np.zeros(1, dtype=np.int64))
        return g, fw, cv

    def features(self, x, params, *, instrument, granularity, alignment, engine):
        _g, fw, cv = self._one(x, params, instrument=instrument, granularity=granularity,
                               alignment=alignment, engine=engine)
        out = {name: fw[q, 0] for q, name in enumerate(self.fw_names)}
        out.update({name: cv[q] for q, name in enumerate(self.cv_names) if name})
        return out

    def signals(self, x, params, *, instrument, granularity, alignment, engine):
        from sep_research.kernels import rules as kr

        g, fw, cv = self._one(x, params, instrument=instrument, granularity=granularity,
                              alignment=alignment, engine=engine)
        target = self._target(engine, sweep=False)
        ns = self.kernels(target, {"rule_decide": self.decide_body})
        action, conf, hc = kr.signals(ns, g, fw, cv, target)
        feat = {name: fw[q, 0] for q, name in enumerate(self.fw_names)}
        feat["has"] = fw[0, 0] == 1.0
        return SeedSignals(action, conf, hc, feat, alignment, params, instrument)

    def sweep_tables(self, x, grid, *, pip, granularity, alignment, engine):
        windows, widx = np.unique(grid.column("window").astype(np.int64), return_inverse=True)
        fw, cv = self.tables(x, windows, grid.base, pip=pip, granularity=granularity,
                             alignment=alignment, engine=engine)
        return grid.kernel_table(widx.reshape(-1)), fw, cv

    def run_sweep(self, g, fw, cv, lo, hi, *, engine, chunk, block, method="auto"):
        from sep_research.kernels import rules as kr

        if method == "threshold":
            raise ValueError(f"rule {self.name!r} has its own decision: it has no "
                             "threshold-space sweep (method='auto' or 'brute')")
        if method not in ("auto", "brute"):
            raise ValueError(f"method={method!r}: expected 'auto', 'brute' or 'threshold'")

        target = self._target(engine, sweep=True)
        ns = self.kernels(target, {"rule_decide": self.decide_body})
        return kr.sweep(ns, g, fw, cv, lo, hi, target, chunk=chunk, block=block)


# ---- the registry and the framework's entry points -------------------------------------------

def get_rule(name: Any) -> Rule:
    """The rule registered under ``name`` in :data:`sep_research.strategy.RULES`."""
    from sep_research.strategy import rule_object

    r = rule_object(name)
    if not isinstance(r, Rule):
        raise TypeError(f"strategy.RULES[{name!r}] is not a sep_research.signals.rules.Rule")
    return r


def rule_names() -> tuple[str, ...]:
    from sep_research.strategy import RULES

    return tuple(RULES)


def rule_signals(data: Any, params: Any = None, *, rule: str = "seed",
                 instrument: str | None = None, granularity: str | None = None,
                 alignment: str = "causal", engine: str = "auto") -> SeedSignals:
    """One configuration's per-candle signals of any registered rule (action, confidence,
    hc, features), as :func:`sep_research.signals.seed.seed_signals` gives the seed rule's.

    ``params``: the rule's parameter object (None: its default preset); ``instrument`` and
    ``granularity``: else from the frame's provenance (a rule that reads times needs both)."""
    from sep_research.strategy import data_granularity, data_instrument

    r = get_rule(rule)
    params = r.preset() if params is None else r.check_params(params)
    inst = data_instrument(data, instrument)
    gran = data_granularity(data, granularity) if r.needs_times else granularity
    return r.signals(r.inputs(data), params, instrument=inst, granularity=gran,
                     alignment=alignment, engine=engine)
