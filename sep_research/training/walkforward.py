"""Walk-forward training of a signal rule: choose on a training fold, judge on the next one.

The rule is the grid's (:attr:`sep_research.signals.grid.ConfigGrid.rule`: the seed rule by
default, or any registered rule, ``sep train --rule``); the untuned baseline beside the tuned
rule is always the seed rule's preset.

Procedure (:func:`walk_forward`):

1. The sweep's inputs (:func:`sep_research.signals.sweep.prepare_sweep`: per-candle QFH
   features for every window length of the grid, labels, the spread charged) are prepared
   once on the whole series. The features are causal (each uses only candles up to its own
   close), so computing them on the whole series leaks nothing; legacy alignment is refused
   here. Every scoring range below is a :func:`~sep_research.signals.sweep.run_prepared` on
   those inputs, in this process or on Dask workers (``client``:
   :func:`sep_research.sweeps.distributed.sweep_ranges`, bit-identical).
2. The candles after a warm-up are cut into ``n_folds + 1`` equal segments; segment ``j``
   (``j >= 1``) is test fold ``j``. Its training range is all earlier candles (``anchored``)
   or the ``train_size`` candles before it (``rolling``, default one segment less the purge), minus
   a **purge** of ``purge`` candles just before the test fold (default 2: a training candle's label
   uses the next close, and its trade runs from the next open to the one after).
3. On each training range the fused sweep kernel scores every configuration, and the
   configuration with the best objective is chosen (ties: the lowest grid row):
   ``net_pips`` (net pips after the spread of the signals the policy trades: HC signals for
   ``trade_on="hc"``, every BUY/SELL for ``"all"``; default), ``hc_accuracy`` (their hit rate)
   or ``sharpe`` (their per-candle Sharpe), among configurations with at least ``min_hc``
   such signals in training. If none reaches ``min_hc``, the fold **abstains** (no trades)
   and says so; it is never scored as a silent zero.
4. Only the test fold judges the choice: the chosen configuration's per-candle signals
   (:func:`sep_research.signals.rules.rule_signals` of the grid's rule) on the test candles
   are stitched together across folds and evaluated by
   :func:`sep_research.evaluation.metrics.evaluate_signals` under the **trading policy** that the
   artifact will carry (``policy``: which signals trade, what a HOLD means, stop-loss and
   take-profit; fills at bid/ask, Wilson intervals, baselines under the same policy). The untuned
   seed preset is evaluated on the same candles beside it.
5. Overfitting statistics of the sweep: per-fold Deflated Sharpe Ratio of the in-sample
   choice given the number of configurations, PBO by CSCV over the grid, and Hansen's SPA
   test of the grid against staying flat
   (:func:`sep_research.training.overfitting.overfitting_statistics`).

**The sweep scores one-candle trades** (:mod:`sep_research.signals.sweep` states its P&L and
spread once): ``action * (close[i+1] - close[i])`` in pips minus the full spread at the next
open, on every traded signal as if each were a separate trade. It cannot model a stop-loss or
take-profit, holding through consecutive signals in the same direction (the backtest pays the
spread once), ``hold="keep"``, or **financing** (the out-of-sample backtests, the baselines
and the selection gap's backtests charge it, :mod:`sep_research.financing`; the selection
does not). The **selection gap** (``WalkForwardResult.selection_gap``,
printed by ``sep train`` and stored in the artifact) measures what that costs: per fold, the
sweep's net pips of the chosen configuration beside the backtest of the same configuration
under the policy, on its training and on its test range.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sep_research.financing import FinancingRates
from sep_research.signals.grid import ConfigGrid, as_grid
from sep_research.strategy import CostModel, Policy, StrategySpec
from sep_research.training.grid import make_grid
from sep_research.training.overfitting import overfitting_statistics, traded_keys

OBJECTIVES = ("net_pips", "hc_accuracy", "sharpe")
SCHEMES = ("rolling", "anchored")


@dataclass(frozen=True)
class Fold:
    index: int
    train: tuple[int, int]  # candle index range [lo, hi) scored in training (purged)
    test: tuple[int, int]  # candle index range [lo, hi) judged out of sample


def make_folds(
    n: int,
    n_folds: int,
    *,
    scheme: str = "rolling",
    warmup: int = 0,
    purge: int = 2,
    train_size: int | None = None,
    min_train: int = 200,
    min_test: int = 50,
) -> list[Fold]:
    """Walk-forward folds over ``n`` candles (see the module docstring)."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if n_folds < 1:
        raise ValueError(f"folds must be >= 1, got {n_folds}")
    if purge < 0 or warmup < 0:
        raise ValueError("purge and warmup must be >= 0")
    usable = n - warmup - 1  # the last candle has no label
    seg = usable // (n_folds + 1)
    if seg < min_test or (seg - purge < min_train and train_size is None):
        raise ValueError(
            f"too few candles for {n_folds} folds: {n} candles give {n_folds + 1} segments of "
            f"{max(seg, 0)} (after a warm-up of {warmup}); each needs at least "
            f"{max(min_test, min_train + purge)}. Use fewer folds or more data.")
    size = seg - purge if train_size is None else int(train_size)
    folds = []
    for j in range(1, n_folds + 1):
        te_lo = warmup + j * seg
        te_hi = warmup + (j + 1) * seg if j < n_folds else n - 1
        tr_hi = te_lo - purge
        tr_lo = warmup if scheme == "anchored" else max(warmup, tr_hi - size)
        if tr_hi - tr_lo < min_train:
            raise ValueError(
                f"fold {j}: training range of {tr_hi - tr_lo} candles is below min_train="
                f"{min_train}; use fewer folds, a larger train_size or more data")
        folds.append(Fold(j - 1, (tr_lo, tr_hi), (te_lo, te_hi)))
    return folds


def prepare_sweep(frame: pd.DataFrame, grid: ConfigGrid, *, instrument: str,
                  half_spread_pips: float | None, engine: str = "auto",
                  granularity: str | None = None) -> Any:
    """The sweep's inputs for a configuration grid (:func:`sep_research.signals.sweep.
    prepare_sweep` on the grid's rule, columns and base parameters; causal alignment)."""
    from sep_research.signals.sweep import prepare_sweep as _prepare

    return _prepare(frame, grid, instrument=instrument, granularity=granularity,
                    half_spread_pips=half_spread_pips, alignment="causal", engine=engine)


def _with_length(sw: dict[str, np.ndarray], lo: int, hi: int) -> dict[str, np.ndarray]:
    k = next(iter(sw.values())).shape[0]
    return {**sw, "n_candles": np.full(k, hi - lo, dtype=np.int64)}


def sweep(si: Any, lo: int, hi: int, *, engine: str = "auto") -> dict[str, np.ndarray]:
    """Per-configuration counts and pip sums over candles ``lo .. hi-1`` as a dict (with
    ``n_candles``)."""
    from sep_research.signals.sweep import run_prepared

    return _with_length(run_prepared(si, lo, hi, engine=engine), lo, hi)


def per_candle_sharpe(sw: dict[str, np.ndarray], trade_on: str = "hc") -> np.ndarray:
    """Per-candle Sharpe of the traded signals (P&L 0 on candles without one); NaN where
    undefined."""
    length = sw["n_candles"].astype(np.float64)
    _n, _c, k1, k2 = traded_keys(trade_on)
    s1 = sw[k1]
    s2 = sw[k2]
    mean = s1 / length
    var = (s2 - s1 * s1 / length) / (length - 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sr = mean / np.sqrt(var)
    return np.where(var > 1e-12, sr, np.nan)


def objective_values(sw: dict[str, np.ndarray], objective: str,
                     trade_on: str = "hc") -> np.ndarray:
    kn, kc, k1, _k2 = traded_keys(trade_on)
    if objective == "net_pips":
        return sw[k1].astype(np.float64)
    if objective == "hc_accuracy":
        n = sw[kn].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, sw[kc] / np.where(n > 0, n, 1.0), np.nan)
    if objective == "sharpe":
        return per_candle_sharpe(sw, trade_on)
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def choose(sw: dict[str, np.ndarray], objective: str, min_hc: int,
           trade_on: str = "hc") -> tuple[int | None, str]:
    """Row of the best eligible configuration (first on ties), or (None, reason)."""
    kn = traded_keys(trade_on)[0]
    val = objective_values(sw, objective, trade_on)
    ok = (sw[kn] >= min_hc) & np.isfinite(val)
    if not ok.any():
        most = int(sw[kn].max())
        what = "HC signals" if trade_on == "hc" else "signals"
        return None, (f"no configuration reached min_hc={min_hc} {what} with a defined "
                      f"{objective} (most {what} of any configuration: {most})")
    best = np.where(ok, val, -np.inf)
    return int(np.argmax(best)), ""


@dataclass
class FoldResult:
    index: int
    train: tuple[int, int]
    test: tuple[int, int]
    train_times: tuple[str, str]
    test_times: tuple[str, str]
    chosen: int | None
    params: dict[str, Any] | None
    note: str
    train_objective: float | None
    train_n_hc: int
    test_n_hc: int | None
    test_hc_net_pips: float | None
    test_hc_accuracy: float | None
    test_rank_pct: float | None  # share of configurations the chosen one beat out of sample
    dsr: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class WalkForwardResult:
    """Everything :func:`walk_forward` found; figures are out of sample unless named train."""

    instrument: str
    granularity: str
    folds: list[FoldResult]
    oos_mask: np.ndarray  # bool (n,): candles judged out of sample
    oos_action: np.ndarray  # int8 (n,): stitched out-of-sample signals of the tuned rule
    oos_hc: np.ndarray  # bool (n,)
    seed_action: np.ndarray
    seed_hc: np.ndarray
    evaluation: dict[str, Any]  # {"tuned": evaluate_signals(...), "seed": ...}
    stability: dict[str, Any]
    overfitting: dict[str, Any]
    final: dict[str, Any]  # the configuration chosen on the latest data (for deployment)
    settings: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)  # what the evaluation traded
    costs: CostModel = field(default_factory=CostModel)  # which spread it paid
    spec: StrategySpec | None = None  # the deployable strategy (None: nothing was chosen)
    selection_gap: dict[str, Any] = field(default_factory=dict)  # sweep vs backtest


def _iso(ts: Any) -> str:
    from sep_research.data.candles import isoformat

    return isoformat(ts)


def _stability(folds: list[FoldResult], grid: ConfigGrid) -> dict[str, Any]:
    chosen = [f.chosen for f in folds if f.chosen is not None]
    out: dict[str, Any] = {"folds": len(folds), "folds_with_choice": len(chosen),
                           "folds_abstained": len(folds) - len(chosen)}
    if not chosen:
        out["note"] = "no fold chose a configuration"
        return out
    cnt = Counter(chosen)
    mode, freq = cnt.most_common(1)[0]
    out["distinct_configurations"] = len(cnt)
    out["modal_configuration"] = grid.row_dict(mode)
    out["modal_share"] = freq / len(chosen)
    per = {}
    for j, name in enumerate(grid.fields):
        vals = [float(grid.table[k, j]) for k in chosen]
        c = Counter(vals)
        v, f = c.most_common(1)[0]
        per[name] = {"distinct": len(c), "modal": v, "modal_share": f / len(vals)}
    out["per_parameter"] = per
    return out


def _traded_pnl(action: np.ndarray, hc: np.ndarray, move: np.ndarray, spread: np.ndarray,
                lo: int, hi: int, trade_on: str = "hc") -> np.ndarray:
    """Per-candle P&L (pips) the sweep scores for the signals a policy trades, 0 elsewhere."""
    a = action[lo:hi].astype(np.float64)
    h = (a != 0) & np.isfinite(move[lo:hi])
    if trade_on == "hc":
        h &= hc[lo:hi]
    return np.where(h, a * np.nan_to_num(move[lo:hi]) - np.nan_to_num(spread[lo:hi]), 0.0)


def _check_objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    return objective


def _range_net_pips(frame: pd.DataFrame, sig: Any, policy: Policy, lo: int, hi: int, *,
                    pip: float, bid: np.ndarray, ask: np.ndarray,
                    financing: FinancingRates | None = None,
                    financing_days: np.ndarray | None = None) -> float:
    """Backtest net pips of the trades one configuration's signals of candles ``lo .. hi-1``
    make under ``policy`` (the rest of the series flat), financing included when charged."""
    from sep_research.backtest.simulation import backtest_arrays
    from sep_research.evaluation.metrics import policy_targets

    m = np.zeros(len(frame), dtype=bool)
    m[lo:hi] = True
    tgt = policy_targets(sig.action, sig.hc, policy, m)
    bt = backtest_arrays(tgt, bid, ask, pip=pip, stop_loss_pips=policy.stop_loss_pips,
                         take_profit_pips=policy.take_profit_pips, financing=financing,
                         financing_days=financing_days)
    return float(bt.trade_pips.sum())


def resolve_financing(financing: FinancingRates | str | None, instrument: str,
                      frame: pd.DataFrame, *, folder: Any = None) -> FinancingRates | None:
    """The financing a run charges: rates as given; ``"default"``: the indicative default
    table at the data's first candle (:func:`sep_research.financing.default_rates`);
    ``"auto"``: rates fetched from OANDA into ``folder`` (the candle cache) when there are
    some, else the default table; ``"off"`` or None: explicitly off."""
    from sep_research import financing as fin

    if financing is None or financing == "off":
        return None
    if isinstance(financing, fin.FinancingRates):
        return financing
    first = frame.index[0].to_pydatetime() if len(frame) else None
    if financing == "default":
        return fin.default_rates(instrument, first)
    if financing == "auto":
        return fin.rates_for(instrument, at=first, folder=folder)
    raise ValueError(f"financing must be FinancingRates, 'auto', 'default', 'off' or None, "
                     f"got {financing!r}")


def walk_forward(
    frame: pd.DataFrame,
    *,
    instrument: str,
    granularity: str,
    grid: ConfigGrid | Mapping[str, Any] | None = None,
    rule: str | None = None,
    policy: Policy | None = None,
    n_folds: int = 5,
    scheme: str = "rolling",
    train_size: int | None = None,
    purge: int = 2,
    objective: str = "net_pips",
    min_hc: int = 30,
    half_spread_pips: float | None = None,
    financing: FinancingRates | str | None = "default",
    alignment: str = "causal",
    engine: str = "auto",
    n_random: int = 1000,
    pbo_splits: int = 16,
    spa_reps: int = 500,
    seed: int = 0,
    allow_synthetic: bool = False,
    progress: bool = True,
    client: Any = None,
) -> WalkForwardResult:
    """Walk-forward training and out-of-sample evaluation (see the module docstring).

    ``frame``: a candle frame with provenance (synthetic data is refused unless
    ``allow_synthetic``). ``grid``: a :class:`~sep_research.signals.grid.ConfigGrid` (or a
    mapping of equal-length arrays, :func:`~sep_research.signals.grid.as_grid`); ``rule``: the
    signal rule (default: the grid's; without a grid,
    :func:`~sep_research.training.grid.make_grid` of this rule, else of the seed rule). ``policy``:
    the trading policy evaluated and written into the result's
    :class:`~sep_research.strategy.StrategySpec` (default: HC signals only, one-candle trades, no
    stop). ``half_spread_pips`` is required for mid-only data and overrides bid/ask when given.
    ``financing``: overnight financing charged by the out-of-sample backtests, the baselines and
    the selection gap's backtests (:func:`resolve_financing`: rates, ``"default"`` (the default)
    the indicative table, ``"auto"``, or None / ``"off"``); it is written into the strategy's cost
    model. The sweep that chooses does not model it (see :data:`NOT_MODELLED_BY_SWEEP`).
    ``client``: a Dask client to run the sweeps on (same results). Raises ``ValueError`` for legacy
    alignment, an empty grid, too few candles for the folds, an unknown objective or scheme, or an
    instrument other than the frame's.
    """
    from tqdm.auto import tqdm

    from sep_research import fx
    from sep_research.backtest.simulation import quote_arrays
    from sep_research.data.candles import require_authentic
    from sep_research.evaluation.metrics import evaluate_signals
    from sep_research.evaluation.stats import deflated_sharpe_ratio
    from sep_research.signals.rules.base import rule_signals
    from sep_research.signals.seed import SEED, seed_signals
    from sep_research.strategy import SpecError, data_instrument

    t_start = time.perf_counter()
    if alignment != "causal":
        raise ValueError(
            f"alignment={alignment!r} is refused in training: only 'causal' alignment may "
            "be used to choose or judge a model (legacy alignment looks ahead)")
    _check_objective(objective)
    try:
        fx.check_instrument(instrument)
        fx.check_granularity(granularity)
    except fx.FxError as exc:
        raise ValueError(str(exc)) from None
    data_instrument(frame, instrument)  # the frame's provenance must agree
    require_authentic(frame, allow_synthetic=allow_synthetic, what="walk_forward")
    if min_hc < 1:
        raise ValueError(f"min_hc must be >= 1, got {min_hc}")
    policy = Policy() if policy is None else policy
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be a sep_research.strategy.Policy, got {policy!r}")
    trade_on = policy.trade_on
    has_ba = all(c in frame.columns for c in ("bid_open", "bid_high", "bid_low", "bid_close",
                                              "ask_open", "ask_high", "ask_low", "ask_close"))
    rates = resolve_financing(financing, instrument, frame)
    try:
        costs = CostModel.for_data(has_ba, half_spread_pips, rates)
    except SpecError as exc:
        raise ValueError(str(exc)) from None
    pip = fx.pip_size(instrument)
    grid = make_grid(rule=rule or "seed") if grid is None else as_grid(grid, rule=rule)
    rule = grid.rule
    base = grid.base
    n = len(frame)
    warmup = int(grid.windows.max()) + 1
    folds = make_folds(n, n_folds, scheme=scheme, warmup=warmup, purge=purge,
                       train_size=train_size, min_train=200)

    t0 = time.perf_counter()
    si = prepare_sweep(frame, grid, instrument=instrument, half_spread_pips=half_spread_pips,
                       engine=engine, granularity=granularity)
    t_features = time.perf_counter() - t0
    idx = frame.index
    k_total = len(grid)
    seed_row = grid.find(SEED)
    bid, ask, _source = quote_arrays(frame, half_spread_pips=half_spread_pips, pip=pip)
    from sep_research.backtest.simulation import candle_financing_days

    fin_days = (candle_financing_days(frame.index, rates, granularity=granularity)
                if rates is not None else None)

    # every scoring range of the run, swept on the inputs prepared once
    last_hi = n - 1
    fin_lo = warmup if scheme == "anchored" else max(
        warmup, last_hi - (train_size or (folds[0].train[1] - folds[0].train[0])))
    # (the PBO blocks and SPA periods are consecutive: overfitting_statistics takes them in
    # one pass each, here, whether or not the folds run on Dask workers)
    wanted = list(dict.fromkeys([r for f in folds for r in (f.train, f.test)]
                                + [(fin_lo, last_hi)]))
    t0 = time.perf_counter()
    if client is None:
        from sep_research.signals.sweep import run_prepared

        outs = [run_prepared(si, lo, hi, engine=engine) for lo, hi in wanted]
    else:  # on the Dask workers of sep_research.sweeps (bit-identical)
        from sep_research.sweeps.distributed import sweep_ranges

        outs = sweep_ranges(si, wanted, client=client, engine=engine)
    swept = {r: _with_length(out, *r) for r, out in zip(wanted, outs, strict=True)}
    t_sweep = time.perf_counter() - t0

    signal_cache: dict[int, Any] = {}

    def signals_of(k: int) -> Any:
        if k not in signal_cache:
            signal_cache[k] = rule_signals(frame, grid.params(k), rule=rule,
                                           instrument=instrument, granularity=granularity,
                                           alignment="causal", engine=engine)
        return signal_cache[k]

    kn, kc, k1, _k2 = traded_keys(trade_on)
    oos_mask = np.zeros(n, dtype=bool)
    oos_action = np.zeros(n, dtype=np.int8)
    oos_hc = np.zeros(n, dtype=bool)
    results: list[FoldResult] = []
    gap_rows: list[dict[str, Any]] = []
    bar = tqdm(folds, desc=f"walk-forward ({k_total} configurations/fold)", disable=not progress)
    for f in bar:
        (tr_lo, tr_hi), (te_lo, te_hi) = f.train, f.test
        sw_tr, sw_te = swept[f.train], swept[f.test]
        oos_mask[te_lo:te_hi] = True
        k, note = choose(sw_tr, objective, min_hc, trade_on)
        dsr = None
        if k is None:
            results.append(FoldResult(
                f.index, f.train, f.test, (_iso(idx[tr_lo]), _iso(idx[tr_hi - 1])),
                (_iso(idx[te_lo]), _iso(idx[te_hi - 1])), None, None,
                "abstained: " + note, None, int(sw_tr[kn].max()), None, None, None, None,
                None))
            continue
        sig = signals_of(k)
        oos_action[te_lo:te_hi] = sig.action[te_lo:te_hi]
        oos_hc[te_lo:te_hi] = sig.hc[te_lo:te_hi]
        obj = float(objective_values(sw_tr, objective, trade_on)[k])
        te_hc = int(sw_te[kn][k])
        te_net = sw_te[k1]
        rank = float(np.mean(te_net < te_net[k]) + 0.5 * (np.mean(te_net == te_net[k])))
        srs = per_candle_sharpe(sw_tr, trade_on)
        finite = srs[np.isfinite(srs)]
        pnl = _traded_pnl(sig.action, sig.hc, si.move, si.spread, tr_lo, tr_hi, trade_on)
        if np.isfinite(srs[k]) and finite.size >= 2 and np.std(pnl) > 0:
            from scipy import stats as st

            dsr = deflated_sharpe_ratio(
                float(srs[k]), tr_hi - tr_lo, k_total, float(np.var(finite, ddof=1)),
                skew=float(st.skew(pnl)), kurtosis=float(st.kurtosis(pnl, fisher=False)))
            dsr["scope"] = "in-sample choice on the training fold"
        gap_rows.append({
            "fold": f.index, "grid_row": k,
            "train_sweep_net_pips": float(sw_tr[k1][k]),
            "train_backtest_net_pips": _range_net_pips(
                frame, sig, policy, tr_lo, tr_hi, pip=pip, bid=bid, ask=ask,
                financing=rates, financing_days=fin_days),
            "test_sweep_net_pips": float(te_net[k]),
            "test_backtest_net_pips": _range_net_pips(
                frame, sig, policy, te_lo, te_hi, pip=pip, bid=bid, ask=ask,
                financing=rates, financing_days=fin_days)})
        results.append(FoldResult(
            f.index, f.train, f.test, (_iso(idx[tr_lo]), _iso(idx[tr_hi - 1])),
            (_iso(idx[te_lo]), _iso(idx[te_hi - 1])), k, grid.row_dict(k), "",
            obj, int(sw_tr[kn][k]), te_hc, float(te_net[k]),
            float(sw_te[kc][k] / te_hc) if te_hc else None, rank, dsr))

    # the configuration for deployment: chosen the same way on the most recent data
    sw_fin = swept[(fin_lo, last_hi)]
    k_fin, note_fin = choose(sw_fin, objective, min_hc, trade_on)
    final = {"train": [_iso(idx[fin_lo]), _iso(idx[last_hi - 1])], "grid_row": k_fin,
             "params": grid.params(k_fin).to_dict() if k_fin is not None else None,
             "note": note_fin or ("chosen by the same objective on the latest training window; "
                                  "no test fold judged this choice itself, the out-of-sample "
                                  "metrics judge the procedure")}
    spec = (StrategySpec(instrument=instrument, granularity=granularity, rule=rule,
                         params=grid.params(k_fin), policy=policy, costs=costs)
            if k_fin is not None else None)

    seed_sig = seed_signals(frame, SEED, instrument=instrument, alignment="causal",
                            engine=engine)
    t0 = time.perf_counter()
    common = {"instrument": instrument, "granularity": granularity, "mask": oos_mask,
              "half_spread_pips": half_spread_pips, "n_random": n_random, "seed": seed,
              "threshold_pips": base.min_move, "policy": policy, "financing": rates}
    evaluation = {
        "tuned": evaluate_signals(frame, oos_action, oos_hc, **common),
        "seed": evaluate_signals(frame, seed_sig.action, seed_sig.hc, **common),
    }
    t_eval = time.perf_counter() - t0
    t0 = time.perf_counter()
    overfit = overfitting_statistics(si, warmup, n - 1, granularity=granularity,
                                     n_splits=pbo_splits, spa_reps=spa_reps, seed=seed,
                                     engine=engine, trade_on=trade_on,
                                     sweeps=swept)
    t_overfit = time.perf_counter() - t0
    dsrs = [r.dsr["dsr"] for r in results if r.dsr is not None]
    overfit["dsr_per_fold"] = [r.dsr for r in results]
    overfit["dsr_median"] = float(np.median(dsrs)) if dsrs else None
    if not dsrs:
        overfit["dsr_note"] = "undefined in every fold (no fold chose a trading configuration)"
    overfit["n_configurations"] = k_total
    ranks = [r.test_rank_pct for r in results if r.test_rank_pct is not None]
    overfit["oos_rank_of_choice_mean"] = float(np.mean(ranks)) if ranks else None
    settings = {
        "objective": objective, "min_hc": min_hc, "scheme": scheme, "n_folds": n_folds,
        "purge": purge, "train_size": train_size, "warmup": warmup,
        "rule": rule, "grid_size": k_total, "grid_windows": [int(w) for w in grid.windows],
        "grid_fields": list(grid.fields),
        "seed_preset_grid_row": seed_row, "engine": engine,
        "half_spread_pips": half_spread_pips,
        "price_source": ("bid/ask from the data" if costs.spread == "bid_ask"
                         else f"mid +/- {costs.half_spread_pips:g} pip"),
        "financing": None if rates is None else rates.to_dict(),
        "financing_in_selection": False,
        "alignment": "causal", "n_random": n_random, "pbo_splits": pbo_splits,
        "spa_reps": spa_reps, "seed": seed, "policy": policy.to_dict(),
        "costs": costs.to_dict(),
    }
    timings = {"features_s": t_features, "sweeps_s": t_sweep, "evaluation_s": t_eval,
               "overfitting_s": t_overfit, "total_s": time.perf_counter() - t_start}
    return WalkForwardResult(
        instrument=instrument, granularity=granularity, folds=results, oos_mask=oos_mask,
        oos_action=oos_action, oos_hc=oos_hc, seed_action=seed_sig.action,
        seed_hc=seed_sig.hc, evaluation=evaluation, stability=_stability(results, grid),
        overfitting=overfit, final=final, settings=settings, timings=timings, policy=policy,
        costs=costs, spec=spec, selection_gap=selection_gap(gap_rows, policy, rates))


#: what the sweep's one-candle scoring leaves out of a backtest of the same signals
NOT_MODELLED_BY_SWEEP = (
    "stop-loss and take-profit exits",
    ("holding through consecutive signals in the same direction (the backtest pays the "
     "spread once per position, the sweep once per signal)"),
    "hold='keep' (a HOLD keeps the position)",
    ("fills at the next open and exits one open later (the sweep scores the close-to-close "
     "move) and, with bid/ask data, the exit's own spread"),
    ("overnight financing (the backtest charges it on positions held through 17:00 New York; "
     "the sweep's one-candle trades do not)"),
)


def selection_gap(rows: list[dict[str, Any]], policy: Policy,
                  financing: FinancingRates | None = None) -> dict[str, Any]:
    """Sweep objective (net pips of the chosen configuration as the sweep scores it) against
    the backtest of the same configuration under ``policy`` (and ``financing``), per fold and
    in total."""
    out: dict[str, Any] = {
        "policy": policy.describe(),
        "sweep_scores": "one-candle trades on the policy's signals: close-to-close mid move "
                        "less the full spread at the next open",
        "not_modelled_by_sweep": list(NOT_MODELLED_BY_SWEEP),
        "stop_modelled_by_sweep": False,
        "financing_modelled_by_sweep": False,
        "backtest_financing": None if financing is None else financing.describe(),
        "per_fold": rows,
    }
    for part in ("train", "test"):
        sw = float(sum(r[f"{part}_sweep_net_pips"] for r in rows))
        bt = float(sum(r[f"{part}_backtest_net_pips"] for r in rows))
        out[f"{part}_sweep_net_pips"] = sw
        out[f"{part}_backtest_net_pips"] = bt
        out[f"{part}_gap_pips"] = bt - sw
    if not rows:
        out["note"] = "no fold chose a configuration: nothing to compare"
    return out
