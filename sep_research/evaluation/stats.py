"""Statistics for honest evaluation: intervals, Sharpe, drawdown and overfitting tests.

References (the tests check each formula against these):

* Wilson score interval: E. B. Wilson (1927); worked values in R. G. Newcombe, "Two-sided
  confidence intervals for the single proportion", Statistics in Medicine 17 (1998), table II.
* Probabilistic and Deflated Sharpe Ratio: D. H. Bailey and M. López de Prado, "The Deflated
  Sharpe Ratio: Correcting for Selection Bias, Backtest Overfitting and Non-Normality",
  Journal of Portfolio Management 40(5), 2014 (its numerical example is a test here).
* Probability of Backtest Overfitting by combinatorially symmetric cross-validation (CSCV):
  D. H. Bailey, J. M. Borwein, M. López de Prado and Q. J. Zhu, "The Probability of Backtest
  Overfitting", Journal of Computational Finance 20(4), 2017.
* Hansen's Superior Predictive Ability test: P. R. Hansen, "A Test for Superior Predictive
  Ability", JBES 23(4), 2005, computed by :class:`arch.bootstrap.SPA`.
* Holm-Bonferroni adjusted p-values: S. Holm, "A Simple Sequentially Rejective Multiple Test
  Procedure", Scandinavian Journal of Statistics 6(2), 1979 (the worked example of the
  Wikipedia article "Holm-Bonferroni method" and R's ``p.adjust(..., "holm")`` are tests here).

Sharpe ratios here are **per period** unless the name says annualised; annualise with
:func:`periods_per_year`: 252 trading days a year, times the number of candles of the
granularity in 24 hours for intraday granularities (H1: 252 * 24 = 6048, M1: 252 * 1440,
D: 252, W: 52, M: 12).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from scipy import stats as _st

EULER_GAMMA = 0.5772156649015329


def periods_per_year(granularity: str) -> float:
    """Candles per year under the convention stated in the module docstring."""
    from sep_research.fx import GRANULARITY_SECONDS, FxError, check_granularity

    try:
        check_granularity(granularity)
    except FxError as exc:
        raise ValueError(str(exc)) from None
    if granularity == "W":
        return 52.0
    if granularity == "M":
        return 12.0
    return 252.0 * 86400.0 / GRANULARITY_SECONDS[granularity]


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    Raises ``ValueError`` for ``n == 0`` (there is no proportion to bound).
    """
    if n <= 0:
        raise ValueError("wilson_interval: no trials (n == 0), the proportion is undefined")
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: successes must be in [0, n], got {successes} of {n}")
    z = float(_st.norm.ppf(0.5 + confidence / 2.0))
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def sharpe_ratio(returns: Any, *, periods: float = 1.0) -> float | None:
    """Mean over standard deviation (ddof 1) of per-period returns, times ``sqrt(periods)``.

    Returns None (not NaN) when it is undefined: fewer than 2 returns or zero variance.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return None
    sd = float(np.std(r, ddof=1))
    if not sd > 0:
        return None
    return float(np.mean(r)) / sd * math.sqrt(periods)


def sharpe_interval(
    returns: Any, *, periods: float = 1.0, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Asymptotic interval of the Sharpe ratio allowing for skew and kurtosis (Mertens 2002,
    as used by Bailey & López de Prado): ``se = sqrt((1 - g3 SR + (g4 - 1)/4 SR^2) / (T - 1))``
    on the per-period SR, then scaled by ``sqrt(periods)``. None where SR is undefined."""
    r = np.asarray(returns, dtype=np.float64)
    sr = sharpe_ratio(r)
    if sr is None or r.size < 3:
        return None
    g3 = float(_st.skew(r))
    g4 = float(_st.kurtosis(r, fisher=False))
    var = (1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr) / (r.size - 1)
    se = math.sqrt(max(var, 0.0))
    z = float(_st.norm.ppf(0.5 + confidence / 2.0))
    k = math.sqrt(periods)
    return (sr - z * se) * k, (sr + z * se) * k


def max_drawdown(equity: Any) -> float:
    """Largest fall of an equity curve from its running peak (the start counts as 0)."""
    e = np.asarray(equity, dtype=np.float64)
    if e.size == 0:
        return 0.0
    peak = np.maximum.accumulate(np.r_[0.0, e])
    return float(np.max(peak - np.r_[0.0, e]))


def permutation_pvalue(observed: float, null: Any, *, alternative: str = "greater") -> float:
    """``(1 + #{null >= observed}) / (1 + B)`` (or ``<=`` for ``alternative="less"``)."""
    x = np.asarray(null, dtype=np.float64)
    if x.size == 0:
        raise ValueError("permutation_pvalue: no null samples")
    if alternative == "greater":
        count = int(np.sum(x >= observed))
    elif alternative == "less":
        count = int(np.sum(x <= observed))
    else:
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    return (1.0 + count) / (1.0 + x.size)


def holm_adjust(pvalues: Any) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With the ``m`` p-values that are not None sorted ascending, ``p_(1) <= ... <= p_(m)``, the
    adjusted value of ``p_(i)`` is ``max_{j <= i} min(1, (m - j + 1) p_(j))``; rejecting where
    it is below ``alpha`` controls the family-wise error rate at ``alpha`` under any dependence
    between the tests. None entries (no p-value) stay None and do not count in ``m``.
    """
    ps = list(pvalues)
    idx = [i for i, p in enumerate(ps) if p is not None]
    vals = np.asarray([float(ps[i]) for i in idx], dtype=np.float64)
    if not (np.isfinite(vals).all() and ((vals >= 0) & (vals <= 1)).all()):
        raise ValueError(f"holm_adjust: p-values must be in [0, 1] or None, got {ps!r}"[:300])
    out: list[float | None] = [None] * len(ps)
    m = vals.size
    if m == 0:
        return out
    order = np.argsort(vals, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * vals[order])
    adj = np.maximum.accumulate(scaled)
    for rank, k in enumerate(order):
        out[idx[k]] = float(adj[rank])
    return out


def expected_max_sharpe(n_trials: int, sr_variance: float) -> float:
    """Expected maximum of ``n_trials`` Sharpe ratios with true value 0 and variance
    ``sr_variance`` (Bailey & López de Prado 2014, eq. for SR_0)."""
    if n_trials < 1:
        raise ValueError("n_trials must be >= 1")
    if sr_variance < 0:
        raise ValueError("sr_variance must be >= 0")
    if n_trials == 1:
        return 0.0
    g = EULER_GAMMA
    q1 = _st.norm.ppf(1.0 - 1.0 / n_trials)
    q2 = _st.norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(sr_variance) * ((1.0 - g) * q1 + g * q2)


def probabilistic_sharpe_ratio(
    sr: float, sr_benchmark: float, n_obs: int, *, skew: float = 0.0, kurtosis: float = 3.0
) -> float:
    """PSR: probability that the true per-period SR exceeds ``sr_benchmark``.

    ``kurtosis`` is the plain (not excess) kurtosis, 3 for a normal distribution.
    """
    if n_obs < 2:
        raise ValueError("n_obs must be >= 2")
    denom = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if not denom > 0:
        raise ValueError("PSR undefined: non-positive variance term (check skew/kurtosis)")
    z = (sr - sr_benchmark) * math.sqrt(n_obs - 1.0) / math.sqrt(denom)
    return float(_st.norm.cdf(z))


def deflated_sharpe_ratio(
    sr: float,
    n_obs: int,
    n_trials: int,
    sr_variance: float,
    *,
    skew: float = 0.0,
    kurtosis: float = 3.0,
) -> dict[str, float]:
    """Deflated Sharpe Ratio of a strategy selected as the best of ``n_trials``.

    ``sr`` is the selected strategy's per-period SR over ``n_obs`` returns, ``sr_variance`` the
    variance of the per-period SRs across the trials. Returns ``{"dsr", "sr0", "sr", ...}``:
    ``dsr`` = PSR of ``sr`` against ``sr0`` = :func:`expected_max_sharpe`.
    """
    sr0 = expected_max_sharpe(n_trials, sr_variance)
    dsr = probabilistic_sharpe_ratio(sr, sr0, n_obs, skew=skew, kurtosis=kurtosis)
    return {"dsr": dsr, "sr0": sr0, "sr": float(sr), "n_obs": int(n_obs),
            "n_trials": int(n_trials), "sr_variance": float(sr_variance),
            "skew": float(skew), "kurtosis": float(kurtosis)}


def pbo_cscv(
    performance: Any, *, n_splits: int = 16, metric: str = "mean"
) -> dict[str, Any]:
    """Probability of Backtest Overfitting by CSCV (Bailey, Borwein, López de Prado, Zhu).

    ``performance`` is a (T, N) matrix: T periods (rows, in time order) by N configurations.
    Rows are cut into ``n_splits`` (even) contiguous blocks of equal size (the first
    ``T mod n_splits`` rows are dropped). For each of the C(S, S/2) ways to pick half the blocks
    as "in sample", the configuration best in sample by ``metric`` ("mean" or "sharpe") is
    ranked out of sample among all N: ``w = rank / (N + 1)`` (rank 1 = worst, average rank on
    ties), ``logit = ln(w / (1 - w))``. PBO is the share of splits with ``logit <= 0``, that is
    where the in-sample best is at or below the out-of-sample median.
    """
    m = np.asarray(performance, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError("performance must be a 2-D (periods x configurations) matrix")
    t, n = m.shape
    if n < 2:
        raise ValueError("PBO needs at least 2 configurations")
    if n_splits < 2 or n_splits % 2:
        raise ValueError(f"n_splits must be an even number >= 2, got {n_splits}")
    if t < n_splits:
        raise ValueError(f"PBO needs at least n_splits={n_splits} periods, got {t}")
    if not np.isfinite(m).all():
        raise ValueError("performance matrix has NaN or infinite values")
    size = t // n_splits
    m = m[t - size * n_splits:]
    if metric not in ("mean", "sharpe"):
        raise ValueError(f"metric must be 'mean' or 'sharpe', got {metric!r}")
    blocks = m.reshape(n_splits, size, n)
    s1 = blocks.sum(axis=1)  # (S, N) sufficient statistics per block
    s2 = (blocks * blocks).sum(axis=1)
    # identical configurations give identical figures: keep one of each, with its multiplicity
    _, first, mult = np.unique(np.vstack([s1, s2]), axis=1, return_index=True,
                               return_counts=True)
    order = np.argsort(first)  # keep the original order, so ties go to the earliest column
    keep = first[order]
    mult = mult[order].astype(np.float64)
    s1 = s1[:, keep]
    s2 = s2[:, keep]
    half = n_splits // 2
    rows_per_half = half * size
    if metric == "sharpe" and rows_per_half < 2:
        raise ValueError("metric='sharpe' needs at least 2 periods in each half")
    combos = np.array(list(itertools.combinations(range(n_splits), half)), dtype=np.int64)
    member = np.zeros((combos.shape[0], n_splits))
    member[np.arange(combos.shape[0])[:, None], combos] = 1.0

    def score(sel: np.ndarray) -> np.ndarray:
        a = sel @ s1
        if metric == "mean":
            return a / rows_per_half
        b = sel @ s2
        mu = a / rows_per_half
        var = (b - rows_per_half * mu * mu) / (rows_per_half - 1)
        sd = np.sqrt(np.maximum(var, 0.0))
        return np.where(sd > 1e-300, mu / np.where(sd > 1e-300, sd, 1.0), 0.0)

    logits = np.empty(combos.shape[0])
    chunk = max(1, 2_000_000 // keep.size)
    for c0 in range(0, combos.shape[0], chunk):
        sel = member[c0:c0 + chunk]
        is_perf = score(sel)
        oos_perf = score(1.0 - sel)
        best = np.argmax(is_perf, axis=1)
        v = oos_perf[np.arange(sel.shape[0]), best][:, None]
        # average rank (1 = worst) of the in-sample best among the out-of-sample figures
        rank = (oos_perf < v) @ mult + ((oos_perf == v) @ mult + 1) / 2.0
        w = rank / (n + 1.0)
        logits[c0:c0 + chunk] = np.log(w / (1.0 - w))
    lg = logits
    return {"pbo": float(np.mean(lg <= 0.0)), "n_splits": n_splits,
            "n_combinations": int(lg.size), "n_configurations": n, "metric": metric,
            "logit_median": float(np.median(lg))}


def spa_test(
    benchmark_losses: Any,
    model_losses: Any,
    *,
    block_size: int | None = None,
    reps: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Hansen's SPA test through :class:`arch.bootstrap.SPA` (stationary bootstrap).

    H0: no model has a lower expected loss than the benchmark. Losses are "lower is better"
    (pass minus the P&L). Returns the lower, consistent and upper p-values; Hansen recommends
    the consistent one.
    """
    from arch.bootstrap import SPA

    b = np.asarray(benchmark_losses, dtype=np.float64)
    mdl = np.asarray(model_losses, dtype=np.float64)
    if mdl.ndim == 1:
        mdl = mdl[:, None]
    if b.ndim != 1 or mdl.shape[0] != b.shape[0]:
        raise ValueError("benchmark_losses must be (T,) and model_losses (T, K) with the same T")
    if b.shape[0] < 10:
        raise ValueError(f"SPA needs at least 10 periods, got {b.shape[0]}")
    if not (np.isfinite(b).all() and np.isfinite(mdl).all()):
        raise ValueError("SPA losses have NaN or infinite values")
    if block_size is None:
        block_size = max(1, round(b.shape[0] ** (1.0 / 3.0)))
    spa = SPA(b, mdl, block_size=block_size, reps=reps, bootstrap="stationary",
              seed=np.random.default_rng(seed))
    spa.compute()
    pv = spa.pvalues
    return {"pvalue_consistent": float(pv["consistent"]), "pvalue_lower": float(pv["lower"]),
            "pvalue_upper": float(pv["upper"]), "n_models": int(mdl.shape[1]),
            "n_periods": int(b.shape[0]), "block_size": int(block_size), "reps": int(reps)}
