"""Tables for the reports: data overview, gaps, returns and the spec's bit statistics.

Each function takes a candle frame (see :mod:`sep_research.data.candles`) and returns a small
:class:`pandas.DataFrame`; the figures in :mod:`sep_research.reporting.figures` draw the same
numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _prov(frame: pd.DataFrame):
    from sep_research.data.candles import get_provenance

    return get_provenance(frame)


def data_overview(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per property: source, instrument, range, rows, price components, hash, gaps."""
    from sep_research.data.candles import price_components
    from sep_research.data.gaps import find_gaps

    prov = _prov(frame)
    gaps = find_gaps(frame.index, prov.granularity)
    rows = [
        ("source", prov.source),
        ("instrument", prov.instrument),
        ("granularity", prov.granularity),
        ("first candle", prov.start),
        ("last candle", prov.end),
        ("candles", prov.rows),
        ("price components", price_components(frame)),
        ("sha256", prov.sha256),
        ("gaps outside weekends", len(gaps)),
        ("missing candles in gaps", int(sum(g[2] for g in gaps))),
    ]
    return pd.DataFrame(rows, columns=["property", "value"]).set_index("property")


def gap_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs of missing candles outside the FX weekend: last candle before, first after, count."""
    from sep_research.data.gaps import find_gaps

    gaps = find_gaps(frame.index, _prov(frame).granularity)
    return pd.DataFrame(gaps, columns=["last_before", "first_after", "missing_candles"])


def returns_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Close-to-close moves and candle ranges in pips, and the spread where bid/ask is known."""
    from sep_research.fx import pip_size

    pip = pip_size(_prov(frame).instrument)
    close = frame["close"].to_numpy(dtype=np.float64)
    cols = {
        "close-to-close move": np.diff(close) / pip,
        "candle range (high-low)": (frame["high"] - frame["low"]).to_numpy() / pip,
    }
    if "bid_close" in frame.columns and "ask_close" in frame.columns:
        cols["spread at close"] = (frame["ask_close"] - frame["bid_close"]).to_numpy() / pip
    rows = {}
    for name, x in cols.items():
        if len(x) == 0:
            continue
        rows[name] = {
            "n": len(x), "mean": float(np.mean(x)), "sd": float(np.std(x, ddof=1)) if len(x) > 1
            else np.nan, "p05": float(np.percentile(x, 5)), "median": float(np.median(x)),
            "p95": float(np.percentile(x, 95)), "min": float(np.min(x)), "max": float(np.max(x)),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "pips"
    return out


def bit_table(frame: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """The spec's bits (1 when the next close is higher; ties count as 0) and pair classes
    (null 00, flip 01/10, rupture 11), each with a Wilson interval and the fraction that
    independent fair coin flips would give (``fair_coin``)."""
    from sep_research.evaluation.stats import wilson_interval

    close = frame["close"].to_numpy(dtype=np.float64)
    d = np.diff(close)
    bits = (d > 0).astype(np.int8)
    rows = []

    def add(name: str, hits: np.ndarray, coin: float) -> None:
        n, k = int(hits.size), int(hits.sum())
        lo, hi = wilson_interval(k, n, confidence=confidence) if n else (np.nan, np.nan)
        rows.append({"statistic": name, "count": k, "of": n,
                     "fraction": k / n if n else np.nan, "ci_low": lo, "ci_high": hi,
                     "fair_coin": coin})

    # fair_coin: the fraction expected from independent fair coin flips (no ties).
    add("up bit (next close higher)", bits == 1, 0.5)
    add("tie (counted as down)", d == 0, 0.0)
    if bits.size >= 2:
        a, b = bits[:-1], bits[1:]
        add("null pair (00)", (a == 0) & (b == 0), 0.25)
        add("flip pair (01 or 10)", a != b, 0.5)
        add("rupture pair (11)", (a == 1) & (b == 1), 0.25)
        add("next bit equals last bit", a == b, 0.5)
    return pd.DataFrame(rows).set_index("statistic")


def data_metrics(frame: pd.DataFrame) -> dict[str, float | int | str]:
    """Headline numbers of a candle frame for ``metrics.json`` and the index."""
    from sep_research.data.gaps import find_gaps
    from sep_research.fx import pip_size

    prov = _prov(frame)
    pip = pip_size(prov.instrument)
    close = frame["close"].to_numpy(dtype=np.float64)
    moves = np.diff(close) / pip
    gaps = find_gaps(frame.index, prov.granularity)
    bits = bit_table(frame)["fraction"]
    out: dict[str, float | int | str] = {
        "candles": len(frame),
        "first_candle": prov.start,
        "last_candle": prov.end,
        "gaps": len(gaps),
        "missing_candles": int(sum(g[2] for g in gaps)),
        "move_sd_pips": float(np.std(moves, ddof=1)) if moves.size > 1 else float("nan"),
        "range_median_pips": float(np.median((frame["high"] - frame["low"]).to_numpy()) / pip),
        "up_fraction": float(bits.get("up bit (next close higher)", np.nan)),
        "flip_fraction": float(bits.get("flip pair (01 or 10)", np.nan)),
    }
    if "bid_close" in frame.columns and "ask_close" in frame.columns:
        spread = (frame["ask_close"] - frame["bid_close"]).to_numpy() / pip
        out["spread_median_pips"] = float(np.median(spread))
    return out
