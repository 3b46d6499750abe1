"""Overfitting statistics of a walk-forward's sweep: PBO by CSCV over the whole grid and
Hansen's SPA test of the grid against staying flat (the Deflated Sharpe Ratio of each fold's
choice is computed by the walk-forward itself, :mod:`sep_research.training.walkforward`).

Both read each configuration's traded net pips over many consecutive short ranges (the PBO
blocks and the SPA's day-sized periods, :func:`overfitting_ranges`), which
:func:`sep_research.signals.sweep.period_net_pips` computes in one pass each.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def traded_keys(trade_on: str) -> tuple[str, str, str, str]:
    """(count, correct, sum, sum of squares) keys of the signals a policy trades."""
    if trade_on == "hc":
        return "n_hc", "n_hc_correct", "hc_sum_pips_net", "hc_sum_pips_net_sq"
    return "n_non_hold", "n_correct", "sum_pips_net", "sum_pips_net_sq"


def overfitting_ranges(lo: int, hi: int, *, granularity: str, n_splits: int = 16
                       ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The PBO blocks and the SPA periods over candles ``lo .. hi-1`` (either may be empty:
    too few candles)."""
    from sep_research.evaluation.stats import periods_per_year

    blocks = np.linspace(lo, hi, n_splits + 1).astype(int)
    pbo = ([(int(blocks[b]), int(blocks[b + 1])) for b in range(n_splits)]
           if hi - lo >= n_splits * 10 else [])
    per_day = max(1, round(periods_per_year(granularity) / 252.0))
    edges = np.arange(lo, hi + 1, per_day)
    spa = ([(int(edges[b]), int(edges[b + 1])) for b in range(edges.size - 1)]
           if edges.size - 1 >= 10 else [])
    return pbo, spa


def overfitting_statistics(
    si: Any,
    lo: int,
    hi: int,
    *,
    granularity: str,
    n_splits: int = 16,
    spa_reps: int = 500,
    seed: int = 0,
    engine: str = "auto",
    trade_on: str = "hc",
    sweeps: dict[tuple[int, int], dict[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """PBO (CSCV) and Hansen's SPA for the whole grid over candles ``lo .. hi-1``.

    PBO: the range is cut into ``n_splits`` equal blocks; each configuration's traded net pips
    per block (HC signals for ``trade_on="hc"``) form the (blocks x configurations) matrix,
    and selection is by the mean (the ``net_pips`` objective without the ``min_hc`` filter).
    SPA: net pips per day-sized block (``periods_per_year / 252`` candles, at least 1) against
    the benchmark of staying flat (loss 0); configurations that never trade and duplicate P&L
    columns are dropped first (they cannot beat the benchmark or are the same test).
    ``sweeps``: results already computed per range (:func:`overfitting_ranges`); missing ones
    are swept here.
    """
    from sep_research.evaluation.stats import pbo_cscv, spa_test

    key = traded_keys(trade_on)[2]
    have = dict(sweeps or {})
    pbo_ranges, spa_ranges = overfitting_ranges(lo, hi, granularity=granularity,
                                                n_splits=n_splits)
    def net(ranges: list[tuple[int, int]], desc: str) -> np.ndarray:
        missing = [r for r in ranges if r not in have]
        if missing:  # the blocks are consecutive: one pass over their candles
            from sep_research.signals.sweep import period_net_pips

            for r, v in period_net_pips(si, missing, trade_on=trade_on,
                                        engine=engine).items():
                have[r] = {key: v}
        return np.vstack([have[r][key] for r in ranges])

    out: dict[str, Any] = {}
    length = hi - lo
    if pbo_ranges:
        perf = net(pbo_ranges, "PBO blocks")
        out["pbo"] = pbo_cscv(perf, n_splits=n_splits, metric="mean")
        out["pbo"]["range"] = [int(lo), int(hi)]
        out["pbo"]["performance"] = "traded net pips per block (sum), selection by the mean"
        out["pbo"]["interpretation"] = (
            "PBO ranks configurations against each other: it is the share of splits where the "
            "in-sample best falls at or below the out-of-sample median. A low PBO says the "
            "choice generalises relative to the other configurations (for example, choosing "
            "configurations that trade less and so lose less spread), not that it makes money; "
            "see the SPA p-value and the out-of-sample net pips for that.")
    else:
        out["pbo"] = None
        out["pbo_note"] = f"too few candles ({length}) for {n_splits} blocks"
    if spa_ranges:
        per_day = spa_ranges[0][1] - spa_ranges[0][0]
        pnl = net(spa_ranges, "SPA periods")
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
        out["spa_note"] = "too few periods of a day's candles for the SPA test"
    return out
