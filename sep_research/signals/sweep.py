"""The fused parameter sweep of every signal rule: one preparation of its inputs, one cost rule.

Everything that sweeps a rule goes through here: ``sep train`` (the walk-forward), the
notebooks, ``sep batch`` sweep grids and the Dask sweeps of :mod:`sep_research.sweeps`.
The rule is the grid's (:mod:`sep_research.signals.rules`; the seed rule, the spec's, for a
mapping, and its results are unchanged by the others' existence); the rule builds the
kernel's tables and chooses its sweep (the seed's decision: threshold-space or exact brute
force; its own decision: the exact brute force of :mod:`sep_research.kernels.rules`).

Public API::

    prepare_sweep(data, grid, *, rule=None, instrument=None, granularity=None,
                  half_spread_pips=None, params=None, alignment="causal", end=None,
                  engine="auto") -> SweepInputs
    run_prepared(si, lo, hi, *, engine="auto", chunk=8192, cuda_block=128, method="auto")
        -> dict                       # counts and pip sums of one range
    period_net_pips(si, ranges, *, trade_on="hc", engine="auto")
        -> dict[(lo, hi), np.ndarray]  # traded net pips of many ranges in one pass
    sweep_seed(data, grid, *, score_start, score_end, rule=None, instrument=None,
               granularity=None, half_spread_pips=None, params=None, alignment="causal",
               engine="auto", chunk=8192, cuda_block=128, method="auto")
        -> dict[str, np.ndarray]                    # prepare_sweep + run_prepared
    config_signals(data, row, *, rule="seed", instrument=None, granularity=None,
                   params=None, alignment="causal", engine="auto") -> SeedSignals
    sweep_spread_pips(data, *, pip, half_spread_pips=None, alignment="causal") -> np.ndarray

**Grid**: a :class:`~sep_research.signals.grid.ConfigGrid` (``product_grid``, ``make_grid``,
``small_grid``), or a mapping of equal-length 1-D arrays (field -> one value per
configuration) of ``rule`` (default ``"seed"``), converted by
:func:`~sep_research.signals.grid.as_grid`. Its columns are grid fields of the rule (``w_s
w_c w_e buy_threshold sell_threshold conf_threshold coh_threshold window min_move spread`` and
the rule's own; ``sep rules``); a field outside them comes from ``params`` (None: the grid's
base, the rule's default preset for a mapping; ``spread``: 0). ``spread`` is an extra cost in
pips added to the per-candle spread below. Values outside a field's range are an error
naming the field. ``rule``, when given, must be the grid's.

**Instrument**: ``instrument`` (else the frame's provenance) sets the pip, the price per pip
of :func:`sep_research.fx.pip_size`; moves and spreads are in pips of that instrument.
``granularity`` (else the provenance's) is read only by rules that resample the candles.

**What a trade gains (the one definition of the sweep's P&L).** A non-HOLD signal of candle
``i`` is scored as a one-candle trade on its label move ``close[t] -> close[t+1]``
(``t = i`` in causal alignment; ``t = i - 1``, the original's look-ahead scoring, in legacy
alignment; :func:`sep_research.signals.seed.label_moves`), and gains::

    direction * (close[t+1] - close[t]) / pip  -  spread_pips[i]  -  spread

where ``spread_pips[i]`` is **the full spread at the open of candle t + 1**, where the
backtest's entry for that signal fills: ``(ask_open[t+1] - bid_open[t+1]) / pip`` for bid/ask
data, and ``2 * half_spread_pips`` for mid-only data quoted as mid +/- ``half_spread_pips``
(:class:`sep_research.strategy.CostModel`; ``half_spread_pips`` overrides bid/ask when given,
and mid-only data need it). That is the round trip of the backtest's one-candle trade
(half the spread at its entry, half at its exit one open later) priced at its entry's spread.
What the sweep cannot model, and the backtest of the chosen configuration does (training
measures the gap): stop-losses and take-profits, holding through consecutive signals in the
same direction (the spread paid once), ``hold="keep"``, and exits one open later than the
close the label ends on.

**Scoring range**: candles ``score_start <= i < score_end`` are scored. In causal alignment
the data are cut after candle ``score_end`` before any feature is computed, so nothing later
can leak in: the only values after ``score_end - 1`` that are read are ``close[score_end]``
(the label of the last scored candle) and the bid/ask at its open (that trade's entry), so
``score_end <= n - 1``. Legacy alignment is defined on the whole data set (its look-ahead
included).

**Result** (arrays of length K = number of configurations, grid order): ``n_non_hold``,
``n_correct``, ``n_buy``, ``n_sell``, ``n_hc``, ``n_hc_correct``, ``n_hc_buy`` (int64),
``sum_pips_net``, ``sum_pips_net_sq``, ``hc_sum_pips_net``, ``hc_sum_pips_net_sq`` (float64;
squares for a Sharpe-like objective). A signal is *correct* when its move is beyond
``min_move`` pips in its direction (spread not counted), as in the spec's scoring.

**Speed**: :func:`prepare_sweep` computes the features once; :func:`run_prepared` scores any
range of candles on them (the walk-forward scores dozens of ranges on one preparation), and
:meth:`SweepInputs.rows` cuts the configurations into blocks that share the candle arrays
(what :mod:`sep_research.sweeps` sends to Dask workers). The kernel inputs ``g``, ``fw`` and
``cv`` have the layouts of :func:`sep_research.kernels.qfh.sweep_partial`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sep_research import fx
from sep_research.kernels import engine as _engine
from sep_research.kernels import qfh
from sep_research.signals.grid import as_grid
from sep_research.signals.rules.base import Rule, get_rule
from sep_research.signals.seed import (
    SeedSignals,
    check_alignment,
    label_index,
    label_moves,
    ohlcv,
)
from sep_research.strategy import CostModel, SpecError, data_granularity, data_instrument

#: the candle columns the sweep reads (bid/ask opens only for the spread of bid/ask data)
DATA_COLUMNS = ("high", "low", "close", "volume")
SPREAD_COLUMNS = ("bid_open", "ask_open")


def _has_bid_ask(data: Any) -> bool:
    try:
        data["bid_open"]
        data["ask_open"]
    except (KeyError, IndexError, TypeError, ValueError):
        return False
    return True


def sweep_costs(data: Any, half_spread_pips: float | None) -> CostModel:
    """The cost model the sweep charges on these candles (see the module docstring)."""
    try:
        return CostModel.for_data(_has_bid_ask(data), half_spread_pips)
    except SpecError as exc:
        raise ValueError(str(exc)) from None


def sweep_spread_pips(data: Any, *, pip: float, half_spread_pips: float | None = None,
                      alignment: str = "causal") -> np.ndarray:
    """The spread (pips) the sweep charges each candle's signal: the full spread at the open
    of the candle after its label's start (the entry's fill; see the module docstring); NaN
    where the candle has no label."""
    costs = sweep_costs(data, half_spread_pips)
    n = len(np.asarray(data["close"]))
    if costs.spread == "mid":
        full = np.full(n, 2.0 * float(costs.half_spread_pips))
    else:
        full = ((np.asarray(data["ask_open"], dtype=np.float64)
                 - np.asarray(data["bid_open"], dtype=np.float64)) * fx.pips_per_unit(pip))
    t = label_index(n, alignment=alignment)
    return np.where(t >= 0, full[np.minimum(t + 1, n - 1)], np.nan)


@dataclass(frozen=True)
class SweepInputs:
    """Prepared inputs of the fused sweep kernel (layouts: ``qfh.sweep_partial``).

    ``g`` (K, N_GRID) in grid order; ``fw`` (5, windows, m) per-window features; ``cv``
    (4, m) per-candle inputs (``cv[2]`` the label move in pips, ``cv[3]`` the spread in pips,
    NaN where a candle has no label); ``order``: the row order the kernel runs in (by window
    and weights, so that neighbouring rows share their data). ``m`` candles were prepared.
    Another rule's tables may be larger (its feature columns, its own rows and columns);
    ``rule`` names it.
    """

    g: np.ndarray
    fw: np.ndarray
    cv: np.ndarray
    order: np.ndarray
    instrument: str
    alignment: str
    costs: CostModel
    rule: str = "seed"

    @property
    def n_configs(self) -> int:
        return int(self.g.shape[0])

    @property
    def n_candles(self) -> int:
        return int(self.cv.shape[1])

    @property
    def move(self) -> np.ndarray:
        """Label move of each candle in pips (NaN: none)."""
        return self.cv[2]

    @property
    def spread(self) -> np.ndarray:
        """Full spread (pips) charged on each candle's signal (NaN: no label)."""
        return self.cv[3]

    def rows(self, idx: Any) -> SweepInputs:
        """The same candle inputs for the configurations ``idx`` only (a block)."""
        idx = np.asarray(idx, dtype=np.int64)
        sub = self.g[idx]
        return replace(self, g=sub, order=_row_order(sub))


def _row_order(g: np.ndarray) -> np.ndarray:
    return np.lexsort((g[:, qfh.G_WE], g[:, qfh.G_WC], g[:, qfh.G_WS], g[:, qfh.G_WINDOW_INDEX]))


def prepare_sweep(data: Any, grid: Any, *, rule: str | None = None,
                  instrument: str | None = None, granularity: str | None = None,
                  half_spread_pips: float | None = None, params: Any = None,
                  alignment: str = "causal", end: int | None = None,
                  engine: str = "auto") -> SweepInputs:
    """Features (once, for every feature column of the grid), labels and spreads of the
    candles ``0 .. end-1`` (default: all), and the grid's kernel table. See the module
    docstring (``grid``, ``rule`` and ``params``: :func:`sep_research.signals.grid.as_grid`)."""
    check_alignment(alignment)
    cg = as_grid(grid, rule=rule, params=params)
    r: Rule = get_rule(cg.rule)
    r.check_alignment(alignment)
    inst = data_instrument(data, instrument)
    gran = data_granularity(data, granularity) if r.needs_times else granularity
    pip = fx.pip_size(inst)
    costs = sweep_costs(data, half_spread_pips)
    x = r.inputs(data)
    n = x["close"].shape[0]
    m = n if end is None else int(end)
    if not 2 <= m <= n:
        raise ValueError(f"end={end}: must be in 2 .. {n} (the number of candles)")
    xm = x if m == n else {k: v[:m] for k, v in x.items()}
    g, fw, cv = r.sweep_tables(xm, cg, pip=pip, granularity=gran, alignment=alignment,
                               engine=engine)
    cv[2] = label_moves(x["close"][:m], pip=pip, alignment=alignment)
    sub = data if m == n else {k: np.asarray(data[k])[:m] for k in (
        ("close", *SPREAD_COLUMNS) if costs.spread == "bid_ask" else ("close",))}
    cv[3] = sweep_spread_pips(sub, pip=pip, half_spread_pips=half_spread_pips,
                              alignment=alignment)
    if not np.all(np.isfinite(cv[3][np.isfinite(cv[2])])):
        raise ValueError("the spread holds NaN or infinite values (bid/ask of the candles)")
    return SweepInputs(g, fw, np.ascontiguousarray(cv), _row_order(g), inst, alignment, costs,
                       r.name)


def run_prepared(si: SweepInputs, lo: int, hi: int, *, engine: str = "auto",
                 chunk: int = _engine.SWEEP_CHUNK, cuda_block: int = 128,
                 method: str = "auto") -> dict[str, np.ndarray]:
    """Per-configuration counts and pip sums over candles ``lo .. hi-1`` (grid order).

    ``chunk`` (candles per partial sum) and ``cuda_block`` change no count; ``chunk`` changes
    the sums' rounding only (the same on every engine). ``method``: the sweep algorithm
    (``auto``: chosen per group from the grid's shape; ``brute``; ``threshold``; see
    :func:`sep_research.kernels.engine.run_sweep`)."""
    lo, hi = int(lo), int(hi)
    if not 0 <= lo <= hi <= si.n_candles:
        raise ValueError(f"range [{lo}, {hi}) is outside the {si.n_candles} prepared candles")
    counts, sums = get_rule(si.rule).run_sweep(si.g[si.order], si.fw, si.cv, lo, hi,
                                               engine=engine, chunk=chunk, block=cuda_block,
                                               method=method)
    k = si.n_configs
    res: dict[str, np.ndarray] = {}
    for q, name in enumerate(qfh.SWEEP_COUNTS):
        res[name] = np.empty(k, dtype=np.int64)
        res[name][si.order] = counts[q]
    for q, name in enumerate(qfh.SWEEP_SUMS):
        res[name] = np.empty(k, dtype=np.float64)
        res[name][si.order] = sums[q]
    return res


def period_net_pips(si: SweepInputs, ranges: Any, *, trade_on: str = "hc",
                    engine: str = "auto") -> dict[tuple[int, int], np.ndarray]:
    """Traded net pips (``hc_sum_pips_net`` for ``trade_on="hc"``, else ``sum_pips_net``) of
    every configuration (grid order) over each ``(lo, hi)`` of ``ranges``.

    Runs of consecutive ranges (each starting where the last ended, as the PBO blocks and
    SPA periods of the walk-forward do) take one pass over their candles
    (:func:`sep_research.kernels.engine.run_period_net`) instead of one sweep each; the
    figures are the float sums of each range in candle order (within rounding of
    :func:`run_prepared`'s exact sums). Rules with their own decision are swept range by
    range through :func:`run_prepared`."""
    if trade_on not in ("hc", "all"):
        raise ValueError(f"trade_on must be 'hc' or 'all', got {trade_on!r}")
    key = "hc_sum_pips_net" if trade_on == "hc" else "sum_pips_net"
    todo = [(int(a), int(b)) for a, b in ranges]
    for a, b in todo:
        if not 0 <= a <= b <= si.n_candles:
            raise ValueError(f"range [{a}, {b}) is outside the {si.n_candles} prepared candles")
    out: dict[tuple[int, int], np.ndarray] = {}
    if get_rule(si.rule).decision != "seed":
        for r in todo:
            out[r] = run_prepared(si, *r, engine=engine)[key]
        return out
    runs: list[list[tuple[int, int]]] = []
    for r in todo:
        if runs and runs[-1][-1][1] == r[0]:
            runs[-1].append(r)
        else:
            runs.append([r])
    g = si.g[si.order]
    for run in runs:
        edges = [run[0][0]] + [b for _a, b in run]
        per = _engine.run_period_net(g, si.fw, si.cv, edges, hc_only=trade_on == "hc",
                                     engine=engine)
        for j, r in enumerate(run):
            v = np.empty(si.n_configs, dtype=np.float64)
            v[si.order] = per[j]
            out[r] = v
    return out


def sweep_seed(data: Any, grid: Any, *, score_start: int, score_end: int,
               rule: str | None = None,
               instrument: str | None = None, granularity: str | None = None,
               half_spread_pips: float | None = None, params: Any = None,
               alignment: str = "causal", engine: str = "auto",
               chunk: int = _engine.SWEEP_CHUNK, cuda_block: int = 128,
               method: str = "auto") -> dict[str, np.ndarray]:
    """Per-configuration counts and pip sums of a rule (the seed rule by default), without
    per-config signals.

    See the module docstring for the grid, the scoring range, what a trade gains (the spread
    charged: bid/ask at the entry's open, or ``2 * half_spread_pips``) and the result's keys.
    Non-grid constants come from ``params`` (None: the grid's base; a mapping's: the rule's
    default preset); ``rule`` (None: the grid's; a mapping's: ``"seed"``).
    """
    check_alignment(alignment)
    n = ohlcv(data)["close"].shape[0]
    score_start, score_end = int(score_start), int(score_end)
    limit = n - 1 if alignment == "causal" else n
    if not 0 <= score_start <= score_end <= limit:
        raise ValueError(
            f"score range [{score_start}, {score_end}) is invalid for {n} candles: need "
            f"0 <= score_start <= score_end <= {limit} (the last scored candle needs the "
            "next close as its label)")
    # causal: cut the data after the label of the last scored candle, so nothing later can
    # leak in. legacy is defined on the whole data set (its look-ahead included): no cut.
    m = min(n, score_end + 1) if alignment == "causal" else n
    si = prepare_sweep(data, grid, rule=rule, instrument=instrument, granularity=granularity,
                       half_spread_pips=half_spread_pips, params=params, alignment=alignment,
                       end=max(m, 2), engine=engine)
    return run_prepared(si, score_start, min(score_end, si.n_candles), engine=engine,
                        chunk=chunk, cuda_block=cuda_block, method=method)


def config_signals(data: Any, row: Mapping[str, Any], *, rule: str = "seed",
                   instrument: str | None = None, granularity: str | None = None,
                   params: Any = None, alignment: str = "causal",
                   engine: str = "auto") -> SeedSignals:
    """Per-candle (action, confidence, hc) of ONE grid configuration, for the backtest.

    ``row``: a mapping of grid fields of ``rule`` to values (``ConfigGrid.row_dict``; for a
    grid's row ``grid.params(k)`` is the parameter object itself); the extra ``spread``
    field, if any, is ignored here (it only enters pip sums).
    """
    from sep_research.signals.rules.base import rule_signals

    r = get_rule(rule)
    params = r.preset() if params is None else r.check_params(params)
    changes = {k: v for k, v in dict(row).items() if k != "spread"}
    unknown = set(changes) - set(r.field_names)
    if unknown:
        raise ValueError(f"unknown grid fields {sorted(unknown)}")
    changes = {k: r.field(k).cast(v) for k, v in changes.items()}
    return rule_signals(data, params.with_(**changes), rule=rule, instrument=instrument,
                        granularity=granularity, alignment=alignment, engine=engine)
