"""Each statistic against a published or hand-computed case."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from sep_research.evaluation import stats as S


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    # Newcombe (1998), Statistics in Medicine 17, table II, method 3 (Wilson score).
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
     (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_newcombe_table(k: int, n: int, lo: float, hi: float) -> None:
    got = S.wilson_interval(k, n)
    assert got[0] == pytest.approx(lo, abs=6e-5)
    assert got[1] == pytest.approx(hi, abs=6e-5)


def test_wilson_matches_scipy_and_spec() -> None:
    for k, n in ((167, 275), (3, 10), (600, 1439)):
        ci = st.binomtest(k, n).proportion_ci(method="wilson")
        assert S.wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)
    lo, hi = S.wilson_interval(167, 275)  # the spec's 60.73 % on 275 HC: "about 55 % to 66 %"
    assert 0.54 < lo < 0.56 and 0.65 < hi < 0.67
    with pytest.raises(ValueError, match="n == 0"):
        S.wilson_interval(0, 0)


def test_deflated_sharpe_matches_paper_example() -> None:
    # Bailey & López de Prado (2014), numerical example: 100 trials, variance of the annualised
    # SRs 1/2, best annualised SR 2.5, five years of daily data (T = 1250, 250 days a year),
    # skew -3, kurtosis 10. The paper reports SR_0 ~ 0.1132 (daily) and DSR ~ 0.9004.
    out = S.deflated_sharpe_ratio(2.5 / math.sqrt(250), 1250, 100, 0.5 / 250, skew=-3,
                                  kurtosis=10)
    assert out["sr0"] == pytest.approx(0.1132, abs=1e-4)
    assert out["dsr"] == pytest.approx(0.9004, abs=1e-3)


def test_psr_and_expected_max_simple_cases() -> None:
    assert S.probabilistic_sharpe_ratio(0.1, 0.1, 100) == pytest.approx(0.5)
    assert S.expected_max_sharpe(1, 0.3) == 0.0
    # the expected max grows with the number of trials
    assert S.expected_max_sharpe(10, 1.0) < S.expected_max_sharpe(1000, 1.0)
    # Monte Carlo check of E[max of N standard normals] (the formula is an approximation)
    rng = np.random.default_rng(0)
    mc = rng.standard_normal((20000, 100)).max(axis=1).mean()
    assert S.expected_max_sharpe(100, 1.0) == pytest.approx(mc, rel=0.03)


def test_sharpe_drawdown_and_annualisation() -> None:
    r = np.array([1.0, -1.0, 2.0, 0.0])
    assert S.sharpe_ratio(r) == pytest.approx(0.5 / np.std(r, ddof=1))
    assert S.sharpe_ratio(r, periods=252) == pytest.approx(0.5 / np.std(r, ddof=1) * 252**0.5)
    assert S.sharpe_ratio(np.ones(5)) is None and S.sharpe_ratio([1.0]) is None
    assert S.max_drawdown([1.0, 3.0, 0.5, 2.0, -1.0, 4.0]) == pytest.approx(4.0)
    assert S.max_drawdown([-2.0, -1.0]) == pytest.approx(2.0)  # from the starting 0
    assert S.periods_per_year("H1") == 252 * 24
    assert S.periods_per_year("M1") == 252 * 24 * 60
    assert S.periods_per_year("D") == 252
    lo, hi = S.sharpe_interval(np.random.default_rng(1).normal(0.1, 1, 2000))
    assert lo < 0.1 < hi and hi - lo == pytest.approx(2 * 1.96 / math.sqrt(1999), rel=0.05)


def test_permutation_pvalue() -> None:
    assert S.permutation_pvalue(5.0, [1.0, 6.0, 5.0, 2.0]) == pytest.approx(3 / 5)
    assert S.permutation_pvalue(0.0, [1.0, 6.0], alternative="less") == pytest.approx(1 / 3)


def test_pbo_hand_computed_case() -> None:
    # Two blocks, three configurations with block means A: (3, -1), B: (1, 1), C: (-2, 2).
    # Train on block 0 -> A is best, ranks 1st of 3 (worst) on block 1 -> w = 1/4, logit < 0.
    # Train on block 1 -> C is best, ranks worst on block 0 -> logit < 0. PBO = 1.
    m = np.array([[3.0, 1.0, -2.0], [-1.0, 1.0, 2.0]])
    out = S.pbo_cscv(m, n_splits=2)
    assert out["pbo"] == 1.0 and out["n_combinations"] == 2
    assert out["logit_median"] == pytest.approx(math.log(1 / 3))
    # B best everywhere... a config that dominates in every block: PBO = 0
    m2 = np.array([[3.0, 1.0, -2.0], [4.0, 1.0, 2.0]])
    assert S.pbo_cscv(m2, n_splits=2)["pbo"] == 0.0


def test_pbo_noise_is_near_half_and_skill_near_zero() -> None:
    rng = np.random.default_rng(3)
    noise = rng.normal(size=(800, 50))
    assert 0.25 < S.pbo_cscv(noise, n_splits=8)["pbo"] < 0.75
    skill = noise.copy()
    skill[:, 7] += 0.5
    assert S.pbo_cscv(skill, n_splits=8)["pbo"] == 0.0
    with pytest.raises(ValueError, match="even"):
        S.pbo_cscv(noise, n_splits=5)


def test_spa_from_arch_detects_skill_and_not_noise() -> None:
    rng = np.random.default_rng(4)
    t = 600
    bench = rng.normal(0, 1, t)
    models = rng.normal(0, 1, (t, 20))
    noise = S.spa_test(bench, models, reps=300, seed=1)
    assert noise["pvalue_consistent"] > 0.1
    models[:, 3] -= 0.5  # lower loss: a superior model
    skill = S.spa_test(bench, models, reps=300, seed=1)
    assert skill["pvalue_consistent"] < 0.01
    assert skill["n_models"] == 20


def _pbo_naive(m: np.ndarray, n_splits: int, metric: str) -> float:
    """The CSCV procedure written out plainly, one split at a time (scipy's rankdata)."""
    import itertools

    t, n = m.shape
    size = t // n_splits
    blocks = m[t - size * n_splits:].reshape(n_splits, size, n)
    logits = []
    for train in itertools.combinations(range(n_splits), n_splits // 2):
        test = [b for b in range(n_splits) if b not in train]
        a = blocks[list(train)].reshape(-1, n)
        b = blocks[test].reshape(-1, n)
        if metric == "mean":
            is_p, oos_p = a.mean(0), b.mean(0)
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                is_p = np.where(a.std(0, ddof=1) > 0, a.mean(0) / a.std(0, ddof=1), 0.0)
                oos_p = np.where(b.std(0, ddof=1) > 0, b.mean(0) / b.std(0, ddof=1), 0.0)
        best = int(np.argmax(is_p))
        w = st.rankdata(oos_p, method="average")[best] / (n + 1)
        logits.append(math.log(w / (1 - w)))
    return float(np.mean(np.asarray(logits) <= 0))


@pytest.mark.parametrize("metric", ["mean", "sharpe"])
def test_pbo_vectorised_matches_naive_loop(metric: str) -> None:
    rng = np.random.default_rng(11)
    m = rng.normal(size=(96, 30)).round(1)  # rounding makes ties
    m[:, 5] = m[:, 2]  # duplicate configurations
    m[:, 9] = 0.0  # a configuration that never trades
    m[:, 12] += 0.15
    for splits in (4, 8):
        got = S.pbo_cscv(m, n_splits=splits, metric=metric)["pbo"]
        assert got == pytest.approx(_pbo_naive(m, splits, metric))


def test_holm_worked_examples() -> None:
    from sep_research.evaluation.stats import holm_adjust

    # Wikipedia, "Holm-Bonferroni method": p = 0.01, 0.04, 0.03, 0.005 at alpha 0.05;
    # hypotheses 1 and 4 are rejected, 2 and 3 are not
    adj = holm_adjust([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [a < 0.05 for a in adj] == [True, False, False, True]
    # R: p.adjust(c(0.01, 0.04, 0.20, 0.03, 0.005, 0.07), "holm")
    assert holm_adjust([0.01, 0.04, 0.20, 0.03, 0.005, 0.07]) == pytest.approx(
        [0.05, 0.12, 0.20, 0.12, 0.03, 0.14])
    # capped at 1, None kept and not counted, one test is itself
    assert holm_adjust([0.6, None, 0.5]) == [pytest.approx(1.0), None, pytest.approx(1.0)]
    assert holm_adjust([0.2]) == [0.2] and holm_adjust([]) == []
    with pytest.raises(ValueError, match="holm_adjust"):
        holm_adjust([0.1, 1.5])


def test_holm_matches_statsmodels() -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    from sep_research.evaluation.stats import holm_adjust

    p = np.random.default_rng(0).uniform(0, 0.2, 25)
    _, theirs, _, _ = multitest.multipletests(p, method="holm")
    assert holm_adjust(p.tolist()) == pytest.approx(theirs.tolist())
