"""Walk-forward training of the seed rule: choose on a training fold, judge on the next one.

Procedure (:func:`walk_forward`):

1. Per-candle QFH features for every window length of the grid are computed once on the
   whole series. They are causal (each uses only candles up to its own close), so computing
   them on the whole series leaks nothing; legacy alignment is refused here.
2. The candles after a warm-up are cut into ``n_folds + 1`` equal segments; segment ``j``
   (``j >= 1``) is test fold ``j``. Its training range is all earlier candles (``anchored``)
   or the ``train_size`` candles before it (``rolling``, default one segment less the purge), minus a
   **purge** of ``purge`` candles just before the test fold (default 2: a training candle's
   label uses the next close, and its trade runs from the next open to the one after).
3. On each training range the fused sweep kernel scores every configuration, and the
   configuration with the best objective is chosen (ties: the lowest grid row):
   ``net_pips`` (HC net pips after the spread; default), ``hc_accuracy`` or ``sharpe``
   (per-candle Sharpe of HC trades), among configurations with at least ``min_hc`` HC
   signals in training. If none reaches ``min_hc``, the fold **abstains** (no trades) and
   says so; it is never scored as a silent zero.
4. Only the test fold judges the choice: the chosen configuration's per-candle signals
   (:func:`sep_research.signals.seed.seed_signals`) on the test candles are stitched
   together across folds and evaluated by :func:`sep_research.evaluation.metrics.evaluate_signals`
   (fills at bid/ask, Wilson intervals, baselines). The untuned seed preset is evaluated
   on the same candles beside it.
5. Overfitting statistics of the sweep: per-fold Deflated Sharpe Ratio of the in-sample
   choice given the number of configurations, PBO by CSCV over the grid, and Hansen's SPA
   test of the grid against staying flat (see :func:`overfitting_statistics`).

The trade P&L the sweep uses for a signal at candle ``i`` is ``action * (close[i+1] -
close[i])`` in pips minus the full spread at the next open (bid/ask data) or twice the
configured half-spread (mid-only data), charged on **every** HC signal as if each were a
separate one-candle trade. The backtest of the stitched signals fills at the next open at
bid/ask and holds through consecutive signals in the same direction, paying the spread once,
so its net pips are not equal to the sweep's (``FoldResult.test_hc_net_pips`` is the sweep's
figure; the evaluation's ``trading`` block is the backtest's).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sep_research.training.grid import COLUMNS, ConfigGrid, make_grid

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
    if seg < min_test or seg - purge < min_train and train_size is None:
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


@dataclass
class SweepInputs:
    g: np.ndarray
    fw: np.ndarray
    cv: np.ndarray
    pnl_move: np.ndarray  # label move in pips (NaN: none)
    spread: np.ndarray  # full spread paid per trade, pips


def prepare_sweep(
    frame: pd.DataFrame, grid: ConfigGrid, *, pip: float, half_spread_pips: float | None,
    engine: str = "auto",
) -> SweepInputs:
    """Arrays of the fused sweep kernel (see ``sep_research.kernels.qfh.sweep_partial``)."""
    from sep_research.kernels import qfh
    from sep_research.kernels.engine import compute_features
    from sep_research.signals.seed import label_moves, ohlcv

    x = ohlcv(frame)
    n = x["close"].shape[0]
    feat = compute_features(x["close"], x["high"], x["low"], x["volume"], grid.windows,
                            grid.base.to_vector(), alignment="causal", engine=engine)
    fw = np.ascontiguousarray(np.stack([feat[q].T for q in (
        qfh.F_HAS, qfh.F_STABILITY, qfh.F_COHERENCE, qfh.F_PHASE, qfh.F_TF)]))
    fw[0] = np.where(fw[0] == 1.0, 1.0, 0.0)
    move = label_moves(x["close"], alignment="causal", pip=1.0 / pip)
    has_ba = all(c in frame.columns for c in ("bid_open", "ask_open"))
    if has_ba and half_spread_pips is None:
        sp = (frame["ask_open"].to_numpy(np.float64) - frame["bid_open"].to_numpy(np.float64))
        spread = np.r_[sp[1:], sp[-1]] / pip
    else:
        if half_spread_pips is None:
            raise ValueError("the candles have no bid/ask: pass half_spread_pips")
        spread = np.full(n, 2.0 * half_spread_pips)
    cv = np.empty((4, n), dtype=np.float64)
    cv[0] = feat[qfh.F_VF, :, 0]
    cv[1] = feat[qfh.F_VM, :, 0]
    cv[2] = move
    cv[3] = spread
    cv[0:2] = np.nan_to_num(cv[0:2], nan=1.0)  # only read where features exist
    return SweepInputs(grid.kernel_table(), fw, np.ascontiguousarray(cv), move, spread)


def sweep(si: SweepInputs, lo: int, hi: int, *, engine: str = "auto") -> dict[str, np.ndarray]:
    """Per-configuration counts and pip sums over candles ``lo .. hi-1`` as a dict."""
    from sep_research.kernels import qfh
    from sep_research.kernels.engine import run_sweep

    counts, sums = run_sweep(si.g, si.fw, si.cv, int(lo), int(hi), engine=engine)
    out = {name: counts[q] for q, name in enumerate(qfh.SWEEP_COUNTS)}
    out.update({name: sums[q] for q, name in enumerate(qfh.SWEEP_SUMS)})
    out["n_candles"] = np.full(counts.shape[1], hi - lo, dtype=np.int64)
    return out


def per_candle_sharpe(sw: dict[str, np.ndarray]) -> np.ndarray:
    """Per-candle Sharpe of HC trades (P&L 0 on candles without one); NaN where undefined."""
    length = sw["n_candles"].astype(np.float64)
    s1 = sw["hc_sum_pips_net"]
    s2 = sw["hc_sum_pips_net_sq"]
    mean = s1 / length
    var = (s2 - s1 * s1 / length) / (length - 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sr = mean / np.sqrt(var)
    return np.where(var > 1e-12, sr, np.nan)


def objective_values(sw: dict[str, np.ndarray], objective: str) -> np.ndarray:
    if objective == "net_pips":
        return sw["hc_sum_pips_net"].astype(np.float64)
    if objective == "hc_accuracy":
        n = sw["n_hc"].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, sw["n_hc_correct"] / np.where(n > 0, n, 1.0), np.nan)
    if objective == "sharpe":
        return per_candle_sharpe(sw)
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def choose(sw: dict[str, np.ndarray], objective: str, min_hc: int) -> tuple[int | None, str]:
    """Row of the best eligible configuration (first on ties), or (None, reason)."""
    val = objective_values(sw, objective)
    ok = (sw["n_hc"] >= min_hc) & np.isfinite(val)
    if not ok.any():
        most = int(sw["n_hc"].max())
        return None, (f"no configuration reached min_hc={min_hc} HC signals with a defined "
                      f"{objective} (most HC signals of any configuration: {most})")
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


def _iso(ts: Any) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


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
    for j, name in enumerate(COLUMNS):
        vals = [float(grid.table[k, j]) for k in chosen]
        c = Counter(vals)
        v, f = c.most_common(1)[0]
        per[name] = {"distinct": len(c), "modal": v, "modal_share": f / len(vals)}
    out["per_parameter"] = per
    return out


def _hc_pnl(action: np.ndarray, hc: np.ndarray, move: np.ndarray, spread: np.ndarray,
            lo: int, hi: int) -> np.ndarray:
    a = action[lo:hi].astype(np.float64)
    h = hc[lo:hi] & (a != 0) & np.isfinite(move[lo:hi])
    return np.where(h, a * np.nan_to_num(move[lo:hi]) - spread[lo:hi], 0.0)


def overfitting_statistics(
    si: SweepInputs,
    lo: int,
    hi: int,
    *,
    granularity: str,
    n_splits: int = 16,
    spa_reps: int = 500,
    seed: int = 0,
    engine: str = "auto",
    progress: bool = False,
) -> dict[str, Any]:
    """PBO (CSCV) and Hansen's SPA for the whole grid over candles ``lo .. hi-1``.

    PBO: the range is cut into ``n_splits`` equal blocks; each configuration's HC net pips per
    block form the (blocks x configurations) matrix, and selection is by the mean (the
    ``net_pips`` objective without the ``min_hc`` filter). SPA: HC net pips per day-sized
    block (``periods_per_year / 252`` candles, at least 1) against the benchmark of staying
    flat (loss 0); configurations that never trade and duplicate P&L columns are dropped first
    (they cannot beat the benchmark or are the same test).
    """
    from sep_research.evaluation.stats import pbo_cscv, periods_per_year, spa_test

    out: dict[str, Any] = {}
    length = hi - lo
    blocks = np.linspace(lo, hi, n_splits + 1).astype(int)
    from tqdm.auto import tqdm

    if length >= n_splits * 10:
        rows = [sweep(si, blocks[b], blocks[b + 1], engine=engine)["hc_sum_pips_net"]
                for b in tqdm(range(n_splits), desc="PBO blocks", disable=not progress,
                              leave=False)]
        perf = np.vstack(rows)
        out["pbo"] = pbo_cscv(perf, n_splits=n_splits, metric="mean")
        out["pbo"]["range"] = [int(lo), int(hi)]
        out["pbo"]["performance"] = "HC net pips per block (sum), selection by the mean"
        out["pbo"]["interpretation"] = (
            "PBO ranks configurations against each other: it is the share of splits where the "
            "in-sample best falls at or below the out-of-sample median. A low PBO says the "
            "choice generalises relative to the other configurations (for example, choosing "
            "configurations that trade less and so lose less spread), not that it makes money; "
            "see the SPA p-value and the out-of-sample net pips for that.")
    else:
        out["pbo"] = None
        out["pbo_note"] = f"too few candles ({length}) for {n_splits} blocks"
    per_day = max(1, round(periods_per_year(granularity) / 252.0))
    edges = np.arange(lo, hi + 1, per_day)
    if edges.size - 1 >= 10:
        rows = [sweep(si, edges[b], edges[b + 1], engine=engine)["hc_sum_pips_net"]
                for b in tqdm(range(edges.size - 1), desc="SPA periods", disable=not progress,
                              leave=False)]
        pnl = np.vstack(rows)
        active = np.any(pnl != 0.0, axis=0)
        uniq = np.unique(pnl[:, active], axis=1) if active.any() else pnl[:, :0]
        uniq = uniq[:, np.std(uniq, axis=0) > 0] if uniq.size else uniq
        if uniq.shape[1] == 0:
            out["spa"] = None
            out["spa_note"] = "no configuration traded in the range"
        else:
            res = spa_test(np.zeros(pnl.shape[0]), -uniq, reps=spa_reps, seed=seed)
            res["benchmark"] = "flat (no trades)"
            res["period_candles"] = per_day
            res["configurations_in_grid"] = int(pnl.shape[1])
            res["distinct_trading_configurations"] = int(uniq.shape[1])
            out["spa"] = res
    else:
        out["spa"] = None
        out["spa_note"] = f"too few periods of {per_day} candles for the SPA test"
    return out


def _check_objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    return objective


def walk_forward(
    frame: pd.DataFrame,
    *,
    instrument: str,
    granularity: str,
    grid: ConfigGrid | None = None,
    n_folds: int = 5,
    scheme: str = "rolling",
    train_size: int | None = None,
    purge: int = 2,
    objective: str = "net_pips",
    min_hc: int = 30,
    half_spread_pips: float | None = None,
    alignment: str = "causal",
    engine: str = "auto",
    n_random: int = 1000,
    pbo_splits: int = 16,
    spa_reps: int = 500,
    seed: int = 0,
    allow_synthetic: bool = False,
    progress: bool = True,
) -> WalkForwardResult:
    """Walk-forward training and out-of-sample evaluation (see the module docstring).

    ``frame``: a candle frame with provenance (synthetic data is refused unless
    ``allow_synthetic``). ``half_spread_pips`` is required for mid-only data and overrides
    bid/ask when given. Raises ``ValueError`` for legacy alignment, an empty grid, too few
    candles for the folds, an unknown objective or scheme.
    """
    from tqdm.auto import tqdm

    from sep_research.data.candles import (
        check_granularity,
        check_instrument,
        pip_size,
        require_authentic,
    )
    from sep_research.evaluation.metrics import evaluate_signals
    from sep_research.evaluation.stats import deflated_sharpe_ratio
    from sep_research.signals.seed import SEED, seed_signals

    t_start = time.perf_counter()
    if alignment != "causal":
        raise ValueError(
            f"alignment={alignment!r} is refused in training: only 'causal' alignment may "
            "be used to choose or judge a model (legacy alignment looks ahead)")
    _check_objective(objective)
    check_instrument(instrument)
    check_granularity(granularity)
    require_authentic(frame, allow_synthetic=allow_synthetic, what="walk_forward")
    if min_hc < 1:
        raise ValueError(f"min_hc must be >= 1, got {min_hc}")
    pip = pip_size(instrument)
    grid = grid if grid is not None else make_grid()
    if len(grid) == 0:  # ConfigGrid refuses this already; kept for clarity
        raise ValueError("the configuration grid is empty")
    base = grid.base.with_(pip=1.0 / pip)
    grid = ConfigGrid(grid.table, base)
    n = len(frame)
    warmup = int(grid.windows.max()) + 1
    folds = make_folds(n, n_folds, scheme=scheme, warmup=warmup, purge=purge,
                       train_size=train_size, min_train=200)

    t0 = time.perf_counter()
    si = prepare_sweep(frame, grid, pip=pip, half_spread_pips=half_spread_pips, engine=engine)
    t_features = time.perf_counter() - t0
    idx = frame.index
    k_total = len(grid)
    seed_params = SEED.with_(pip=1.0 / pip)
    seed_row = grid.find(seed_params)

    signal_cache: dict[int, Any] = {}

    def signals_of(k: int) -> Any:
        if k not in signal_cache:
            signal_cache[k] = seed_signals(frame, grid.params(k), alignment="causal",
                                           engine=engine)
        return signal_cache[k]

    oos_mask = np.zeros(n, dtype=bool)
    oos_action = np.zeros(n, dtype=np.int8)
    oos_hc = np.zeros(n, dtype=bool)
    results: list[FoldResult] = []
    t_sweep = 0.0
    bar = tqdm(folds, desc=f"walk-forward ({k_total} configurations/fold)", disable=not progress)
    for f in bar:
        (tr_lo, tr_hi), (te_lo, te_hi) = f.train, f.test
        t0 = time.perf_counter()
        sw_tr = sweep(si, tr_lo, tr_hi, engine=engine)
        sw_te = sweep(si, te_lo, te_hi, engine=engine)
        t_sweep += time.perf_counter() - t0
        oos_mask[te_lo:te_hi] = True
        k, note = choose(sw_tr, objective, min_hc)
        dsr = None
        if k is None:
            results.append(FoldResult(
                f.index, f.train, f.test, (_iso(idx[tr_lo]), _iso(idx[tr_hi - 1])),
                (_iso(idx[te_lo]), _iso(idx[te_hi - 1])), None, None,
                "abstained: " + note, None, int(sw_tr["n_hc"].max()), None, None, None, None,
                None))
            continue
        sig = signals_of(k)
        oos_action[te_lo:te_hi] = sig.action[te_lo:te_hi]
        oos_hc[te_lo:te_hi] = sig.hc[te_lo:te_hi]
        obj = float(objective_values(sw_tr, objective)[k])
        te_hc = int(sw_te["n_hc"][k])
        te_net = sw_te["hc_sum_pips_net"]
        rank = float(np.mean(te_net < te_net[k]) + 0.5 * (np.mean(te_net == te_net[k])))
        srs = per_candle_sharpe(sw_tr)
        finite = srs[np.isfinite(srs)]
        pnl = _hc_pnl(sig.action, sig.hc, si.pnl_move, si.spread, tr_lo, tr_hi)
        if np.isfinite(srs[k]) and finite.size >= 2 and np.std(pnl) > 0:
            from scipy import stats as st

            dsr = deflated_sharpe_ratio(
                float(srs[k]), tr_hi - tr_lo, k_total, float(np.var(finite, ddof=1)),
                skew=float(st.skew(pnl)), kurtosis=float(st.kurtosis(pnl, fisher=False)))
            dsr["scope"] = "in-sample choice on the training fold"
        results.append(FoldResult(
            f.index, f.train, f.test, (_iso(idx[tr_lo]), _iso(idx[tr_hi - 1])),
            (_iso(idx[te_lo]), _iso(idx[te_hi - 1])), k, grid.row_dict(k), "",
            obj, int(sw_tr["n_hc"][k]), te_hc, float(te_net[k]),
            float(sw_te["n_hc_correct"][k] / te_hc) if te_hc else None, rank, dsr))

    # the configuration for deployment: chosen the same way on the most recent data
    last_hi = n - 1
    fin_lo = warmup if scheme == "anchored" else max(
        warmup, last_hi - (train_size or (folds[0].train[1] - folds[0].train[0])))
    sw_fin = sweep(si, fin_lo, last_hi, engine=engine)
    k_fin, note_fin = choose(sw_fin, objective, min_hc)
    final = {"train": [_iso(idx[fin_lo]), _iso(idx[last_hi - 1])], "grid_row": k_fin,
             "params": grid.params(k_fin).to_dict() if k_fin is not None else None,
             "note": note_fin or ("chosen by the same objective on the latest training window; "
                                  "no test fold judged this choice itself, the out-of-sample "
                                  "metrics judge the procedure")}

    seed_sig = seed_signals(frame, seed_params, alignment="causal", engine=engine)
    t0 = time.perf_counter()
    common = {"instrument": instrument, "granularity": granularity, "mask": oos_mask,
                  "half_spread_pips": half_spread_pips, "n_random": n_random, "seed": seed,
                  "threshold_pips": base.min_move}
    evaluation = {
        "tuned": evaluate_signals(frame, oos_action, oos_hc, **common),
        "seed": evaluate_signals(frame, seed_sig.action, seed_sig.hc, **common),
    }
    t_eval = time.perf_counter() - t0
    t0 = time.perf_counter()
    overfit = overfitting_statistics(si, warmup, n - 1, granularity=granularity,
                                     n_splits=pbo_splits, spa_reps=spa_reps, seed=seed,
                                     engine=engine, progress=progress)
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
        "grid_size": k_total, "grid_windows": [int(w) for w in grid.windows],
        "seed_preset_grid_row": seed_row, "engine": engine,
        "half_spread_pips": half_spread_pips,
        "price_source": "bid/ask" if half_spread_pips is None else f"mid+/-{half_spread_pips}",
        "alignment": "causal", "n_random": n_random, "pbo_splits": pbo_splits,
        "spa_reps": spa_reps, "seed": seed,
    }
    timings = {"features_s": t_features, "sweeps_s": t_sweep, "evaluation_s": t_eval,
               "overfitting_s": t_overfit, "total_s": time.perf_counter() - t_start}
    return WalkForwardResult(
        instrument=instrument, granularity=granularity, folds=results, oos_mask=oos_mask,
        oos_action=oos_action, oos_hc=oos_hc, seed_action=seed_sig.action,
        seed_hc=seed_sig.hc, evaluation=evaluation, stability=_stability(results, grid),
        overfitting=overfit, final=final, settings=settings, timings=timings)


def compile_kernels(engine: str = "auto") -> dict[str, float]:
    """Compile (JIT) every kernel the walk-forward uses on a tiny synthetic input.

    Returns seconds per step (``features``, ``sweep``, ``signals``, ``backtest``, ``total``),
    so that benchmarks can report compile time apart from run time. The input is labelled
    synthetic and nothing of it is kept.
    """
    from sep_research.backtest.engine import run_backtest
    from sep_research.data.candles import synthetic_candles
    from sep_research.signals.seed import seed_signals
    from sep_research.training.grid import small_grid

    out: dict[str, float] = {}
    t0 = time.perf_counter()
    frame = synthetic_candles(300, granularity="H1", seed=0)
    grid = small_grid()
    t = time.perf_counter()
    si = prepare_sweep(frame, grid, pip=1e-4, half_spread_pips=None, engine=engine)
    out["features"] = time.perf_counter() - t
    t = time.perf_counter()
    sweep(si, 20, 200, engine=engine)
    out["sweep"] = time.perf_counter() - t
    t = time.perf_counter()
    sig = seed_signals(frame, grid.params(0), engine=engine)
    out["signals"] = time.perf_counter() - t
    t = time.perf_counter()
    run_backtest(frame, sig.action, instrument="EUR_USD")
    out["backtest"] = time.perf_counter() - t
    out["total"] = time.perf_counter() - t0
    return out
