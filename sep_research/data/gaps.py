"""Gaps in a candle series: runs of missing candles while the FX market was open.

The market's hours are the one rule of :func:`sep_research.fx.market_open` (Sunday 17:00 to
Friday 17:00 New York): a weekend is not a gap; a holiday with no candles is (and says so).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sep_research import fx
from sep_research.data.candles import GRANULARITY_SECONDS, isoformat

_HOUR_NS = 3600 * 10**9


def _market_open_mask(times: pd.DatetimeIndex, step: pd.Timedelta) -> np.ndarray:
    """For each candle ``[t, t + step)``: is the market open at some moment of it?

    Market hours change only on whole UTC hours (17:00 New York is a whole hour in UTC), so
    :func:`sep_research.fx.market_open` is asked once per distinct hour; for ``step`` up to a
    day (the weekend closure is about two days) a candle is open somewhere exactly when it is
    open at its first or its last moment.
    """
    ns = times.as_unit("ns").asi8
    if not len(ns):
        return np.zeros(0, dtype=bool)
    first = ns - ns % _HOUR_NS
    last_ns = ns + step.value - 1
    last = last_ns - last_ns % _HOUR_NS
    hours = np.unique(np.r_[first, last])
    is_open = {int(h): fx.market_open(fx.from_ns(int(h))) for h in hours}
    look = np.vectorize(is_open.__getitem__, otypes=[bool])
    return look(first) | look(last)


def find_gaps(index: pd.DatetimeIndex, granularity: str) -> list[tuple[str, str, int]]:
    """Runs of missing candles that are not wholly inside a weekend closure (the market hours
    of :func:`sep_research.fx.market_open`); a holiday is a gap."""
    if len(index) < 2 or granularity in ("W", "M"):
        return []
    step = pd.Timedelta(seconds=GRANULARITY_SECONDS[granularity])
    ns = index.as_unit("ns").asi8
    diffs = np.diff(ns)
    out = []
    for pos in np.flatnonzero(diffs > step.value):
        a, b = index[pos], index[pos + 1]
        missing = pd.date_range(a + step, b - step, freq=step)
        missing = missing[_market_open_mask(missing, step)]
        if len(missing):
            out.append((isoformat(a), isoformat(b), len(missing)))
    return out
