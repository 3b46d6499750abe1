"""Report figures (matplotlib, no pyplot: every function returns a ``Figure`` that renders with
the Agg canvas, so batch runs need no display).

Data: :func:`price_figure`, :func:`returns_figure`, :func:`gaps_figure`, :func:`bits_figure`.
Results: :func:`equity_figure` (out-of-sample equity against baselines),
:func:`signals_on_price_figure`, :func:`accuracy_figure` (hit rates with intervals against
baselines), :func:`heatmap_figure` (a metric over two parameters), :func:`timings_figure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

_BASELINE_STYLE = {"linestyle": "--", "linewidth": 1.0}


def _figure(width: float = 9.0, height: float = 4.0, **kw: Any) -> Figure:
    return Figure(figsize=(width, height), layout="constrained", **kw)


def _title(frame: pd.DataFrame) -> str:
    from sep_research.data.candles import get_provenance

    p = get_provenance(frame)
    return f"{p.instrument} {p.granularity} ({p.source})"


# -- data ------------------------------------------------------------------------------------
def price_figure(frame: pd.DataFrame) -> Figure:
    """Mid close over time, with the tick volume below."""
    fig = _figure(9.0, 4.5)
    ax, axv = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.plot(frame.index, frame["close"], linewidth=0.7, color="C0", label="mid close")
    if "bid_close" in frame.columns and "ask_close" in frame.columns:
        ax.fill_between(frame.index, frame["bid_close"], frame["ask_close"], color="C1",
                        alpha=0.3, linewidth=0, label="bid-ask")
    ax.set_ylabel("price")
    ax.set_title(_title(frame))
    ax.legend(loc="upper left", fontsize=8)
    axv.fill_between(frame.index, frame["volume"].to_numpy(dtype=float), step="mid",
                     color="0.5", linewidth=0)
    axv.set_ylabel("tick volume")
    return fig


def returns_figure(frame: pd.DataFrame, *, max_lag: int = 24) -> Figure:
    """Distribution of close-to-close moves (pips) and their autocorrelation by lag."""
    from sep_research.data.candles import get_provenance
    from sep_research.fx import pip_size

    pip = pip_size(get_provenance(frame).instrument)
    moves = np.diff(frame["close"].to_numpy(dtype=np.float64)) / pip
    fig = _figure(9.0, 3.5)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.hist(moves, bins=80, color="C0", density=True, label="observed")
    if moves.size > 1 and np.std(moves) > 0:
        x = np.linspace(moves.min(), moves.max(), 200)
        mu, sd = moves.mean(), moves.std(ddof=1)
        ax1.plot(x, np.exp(-0.5 * ((x - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)),
                 color="C3", label="normal, same mean and sd")
    ax1.set_xlabel("close-to-close move (pips)")
    ax1.set_ylabel("density")
    ax1.legend(fontsize=8)
    lags = np.arange(1, max(1, min(max_lag, moves.size - 2)) + 1)
    acf = [np.corrcoef(moves[:-k], moves[k:])[0, 1] if moves.size > k + 2 else np.nan
           for k in lags]
    ax2.bar(lags, acf, color="C0")
    band = 1.96 / np.sqrt(max(moves.size, 1))
    ax2.axhspan(-band, band, color="0.85", label="95% band for no correlation")
    ax2.set_xlabel("lag (candles)")
    ax2.set_ylabel("autocorrelation")
    ax2.legend(fontsize=8)
    fig.suptitle(f"Returns: {_title(frame)}")
    return fig


def gaps_figure(frame: pd.DataFrame) -> Figure:
    """Candles per day, with the gaps outside weekends marked in red."""
    from sep_research.data.gaps import find_gaps

    gran = frame.attrs.get("provenance", {}).get("granularity", "")
    gaps = find_gaps(frame.index, gran) if gran else []
    per_day = pd.Series(1, index=frame.index).resample("1D").sum()
    fig = _figure(9.0, 3.0)
    ax = fig.subplots()
    ax.bar(per_day.index, per_day.to_numpy(), width=1.0, color="C0", label="candles per day")
    for i, (a, b, _n) in enumerate(gaps):
        ax.axvspan(pd.Timestamp(a), pd.Timestamp(b), color="C3", alpha=0.4,
                   label="gap outside weekend" if i == 0 else None)
    ax.set_ylabel("candles")
    ax.set_title(f"Coverage: {len(gaps)} gap(s) outside weekends, "
                 f"{sum(g[2] for g in gaps)} missing candle(s)")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def bits_figure(frame: pd.DataFrame, bit_stats: pd.DataFrame | None = None, *,
                window: int = 500) -> Figure:
    """The spec's bit statistics with Wilson intervals, and the rolling fraction of up bits."""
    from sep_research.reporting.tables import bit_table

    table = bit_stats if bit_stats is not None else bit_table(frame)
    fig = _figure(9.0, 3.5)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.2, 1])
    y = np.arange(len(table))
    frac = table["fraction"].to_numpy()
    err = np.vstack([frac - table["ci_low"].to_numpy(), table["ci_high"].to_numpy() - frac])
    ax1.barh(y, frac, xerr=err, color="C0", capsize=3)
    ax1.set_yticks(y, table.index, fontsize=8)
    ax1.invert_yaxis()
    if "fair_coin" in table.columns:
        ax1.scatter(table["fair_coin"].to_numpy(), y, marker="|", s=300, color="C3", zorder=3,
                    label="fair coin")
        ax1.set_xlim(0.0, max(0.75, float(np.nanmax(table["ci_high"])) + 0.05))
        ax1.legend(fontsize=8, loc="upper right")
    ax1.set_xlabel("fraction (95% Wilson interval)")
    bits = (np.diff(frame["close"].to_numpy(dtype=np.float64)) > 0).astype(float)
    w = max(2, min(window, bits.size))
    roll = pd.Series(bits, index=frame.index[1:]).rolling(w).mean()
    ax2.plot(roll.index, roll.to_numpy(), color="C0", linewidth=0.8)
    ax2.axhline(0.5, color="0.3", **_BASELINE_STYLE)
    ax2.set_ylabel(f"up bits, rolling {w}")
    ax2.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.suptitle(f"Bit statistics: {_title(frame)}")
    return fig


# -- results ---------------------------------------------------------------------------------
def equity_figure(
    curves: Mapping[str, pd.Series], *, title: str = "Out-of-sample equity",
    unit: str = "pips", folds: Sequence[Any] | None = None, strategy: str | None = None,
) -> Figure:
    """Cumulative P&L curves (strategy and baselines), fold boundaries as vertical lines.

    ``strategy`` names the curve drawn solid and thick; the others are drawn dashed.
    """
    if not curves:
        raise ValueError("equity_figure: no curves given")
    strategy = strategy or next(iter(curves))
    fig = _figure(9.0, 4.0)
    ax = fig.subplots()
    for i, (name, s) in enumerate(curves.items()):
        style = {"linewidth": 1.6} if name == strategy else _BASELINE_STYLE
        ax.plot(s.index, s.to_numpy(), label=name, color=f"C{i}", **style)
    for j, t in enumerate(folds or []):
        ax.axvline(pd.Timestamp(t), color="0.6", linewidth=0.6,
                   label="fold start" if j == 0 else None)
    ax.axhline(0.0, color="0.3", linewidth=0.6)
    ax.set_ylabel(f"cumulative P&L ({unit})")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def signals_on_price_figure(
    frame: pd.DataFrame, actions: Any, *, last: int | None = 300, title: str = ""
) -> Figure:
    """Mid close with buy (+1) and sell (-1) signals marked; the last ``last`` candles."""
    a = np.asarray(actions)
    if a.shape[0] != len(frame):
        raise ValueError(f"signals_on_price_figure: {a.shape[0]} actions for {len(frame)} candles")
    if last is not None and len(frame) > last:
        frame, a = frame.iloc[-last:], a[-last:]
    fig = _figure(9.0, 3.8)
    ax = fig.subplots()
    close = frame["close"].to_numpy()
    ax.plot(frame.index, close, color="0.4", linewidth=0.8, label="mid close")
    for val, marker, color, name in ((1, "^", "C2", "buy"), (-1, "v", "C3", "sell")):
        m = a == val
        ax.scatter(frame.index[m], close[m], marker=marker, color=color, s=22, label=
                   f"{name} ({int(m.sum())})", zorder=3)
    ax.set_title(title or f"Signals on price: {_title(frame)}")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def accuracy_figure(
    table: pd.DataFrame, *, title: str = "Directional accuracy out of sample",
    reference: float | None = 0.5, value: str = "hit_rate",
    xlabel: str = "hit rate (95% interval)",
) -> Figure:
    """Hit rates with intervals, one bar per row (strategy and baselines).

    ``table``: index = names; columns ``value`` (default ``hit_rate``), ``ci_low``, ``ci_high``
    and optionally ``n`` (shown in the labels) and ``null_low``/``null_high`` (a baseline's
    2.5-97.5 % range for that row, drawn as a black bracket on its bar, e.g. the same candles
    with random directions).
    """
    missing = {value, "ci_low", "ci_high"} - set(table.columns)
    if missing:
        raise ValueError(f"accuracy_figure: table lacks columns {sorted(missing)}")
    fig = _figure(8.0, 0.9 + 0.45 * len(table))
    ax = fig.subplots()
    y = np.arange(len(table))
    p = table[value].to_numpy(dtype=float)
    err = np.vstack([p - table["ci_low"].to_numpy(dtype=float),
                     table["ci_high"].to_numpy(dtype=float) - p])
    colors = ["C0"] + ["0.6"] * (len(table) - 1)
    ax.barh(y, p, xerr=err, color=colors, capsize=3)
    if {"null_low", "null_high"} <= set(table.columns):
        lo_n = table["null_low"].to_numpy(dtype=float)
        hi_n = table["null_high"].to_numpy(dtype=float)
        ok = np.isfinite(lo_n) & np.isfinite(hi_n)
        if ok.any():
            ax.hlines(y[ok] + 0.3, lo_n[ok], hi_n[ok], color="k", lw=2.5,
                      label="same candles, random direction (2.5-97.5%)")
            ax.legend(fontsize=7, loc="lower right")
    labels = [f"{name} (n={int(n)})" if "n" in table.columns and pd.notna(n) else str(name)
              for name, n in zip(table.index, table["n"] if "n" in table.columns
                                 else [None] * len(table), strict=True)]
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    if reference is not None:
        ax.axvline(reference, color="0.3", **_BASELINE_STYLE)
    lo = np.nanmin(table["ci_low"].to_numpy(dtype=float)) if len(table) else 0.0
    hi = np.nanmax(table["ci_high"].to_numpy(dtype=float)) if len(table) else 1.0
    pad = max(0.02, 0.1 * (hi - lo))
    ax.set_xlim(max(0.0, lo - pad), min(1.0, hi + pad))
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return fig


def heatmap_figure(
    results: pd.DataFrame, *, x: str, y: str, value: str, title: str = "",
    fmt: str = "{:.3f}", cmap: str = "viridis",
) -> Figure:
    """A metric over two parameters (the mean where several rows share a cell)."""
    for col in (x, y, value):
        if col not in results.columns:
            raise ValueError(f"heatmap_figure: no column {col!r} in the results")
    pivot = results.pivot_table(index=y, columns=x, values=value, aggfunc="mean")
    fig = _figure(1.6 + 0.9 * max(3, pivot.shape[1]), 1.2 + 0.5 * max(3, pivot.shape[0]))
    ax = fig.subplots()
    im = ax.imshow(pivot.to_numpy(dtype=float), cmap=cmap, aspect="auto", origin="lower")
    ax.set_xticks(range(pivot.shape[1]), [str(c) for c in pivot.columns], fontsize=8)
    ax.set_yticks(range(pivot.shape[0]), [str(r) for r in pivot.index], fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    vals = pivot.to_numpy(dtype=float)
    finite = vals[np.isfinite(vals)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for (i, j), v in np.ndenumerate(vals):
        if np.isfinite(v):
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7,
                    color="k" if v > mid else "w")
    fig.colorbar(im, ax=ax, label=value)
    shared = len(results) > pivot.size
    ax.set_title(title or f"{value} by {x} and {y}" + (" (mean over the other parameters)"
                                                        if shared else ""), fontsize=9)
    return fig


def timings_figure(timings: pd.DataFrame, *, title: str = "Engine timings") -> Figure:
    """Seconds per engine (and size): ``timings`` with columns ``engine``, ``n``, ``seconds``."""
    missing = {"engine", "n", "seconds"} - set(timings.columns)
    if missing:
        raise ValueError(f"timings_figure: table lacks columns {sorted(missing)}")
    fig = _figure(6.5, 3.5)
    ax = fig.subplots()
    for i, (engine, grp) in enumerate(timings.groupby("engine", sort=False)):
        g = grp.sort_values("n")
        ax.plot(g["n"], g["seconds"], marker="o", color=f"C{i}", label=str(engine))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("candles")
    ax.set_ylabel("seconds")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig
