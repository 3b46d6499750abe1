"""Tables and figures for the QFH notebooks (02-qfh-kernels, 04-seed-headline).

- :func:`feature_summary`, :func:`features_figure`: the QFH metrics per window on real data.
- :func:`engine_timings`: seconds per kernel engine and size (compile time apart).
- :func:`lookahead_demo`, :func:`lookahead_figure`: a visible look-ahead check: the data
  after a cut are changed, and the outputs at or before the cut are compared.
- :func:`load_seed_reference`, :func:`seed_headline_table`, :func:`seed_headline_figure`,
  :func:`cumulative_hits_figure`: the seed's headline in legacy and causal alignment.

The computations are the signals package's (:mod:`sep_research.signals`); this module only
arranges them into tables and figures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

#: The QFH metrics shown by default (names as returned by ``qfh_features_batch``).
METRICS = ("entropy", "coherence", "stability", "rupture", "flip", "null")
_ARRAYS = ("open", "high", "low", "close", "volume")


def _arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {k: frame[k].to_numpy() for k in _ARRAYS}


def _instrument(frame: pd.DataFrame) -> str:
    """The frame's instrument (its provenance names it; it sets the pip of the features)."""
    from sep_research.strategy import data_instrument

    return data_instrument(frame)


def _pct(x: float | None) -> float:
    return np.nan if x is None else 100.0 * x


def qfh_features(frame: pd.DataFrame, windows: Sequence[int], *, engine: str = "auto",
                 alignment: str = "causal") -> dict[str, np.ndarray]:
    """``qfh_features_batch`` of a candle frame under the seed parameters."""
    from sep_research.signals import SEED, qfh_features_batch

    x = _arrays(frame)
    return qfh_features_batch(x["close"], x["high"], x["low"], x["volume"], list(windows), SEED,
                              instrument=_instrument(frame), alignment=alignment, engine=engine)


def feature_summary(features: dict[str, np.ndarray], windows: Sequence[int],
                    metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean, sd and quantiles of each metric for each window, over candles with features."""
    rows = []
    has = features["has"].astype(bool)
    for name in metrics:
        for j, w in enumerate(windows):
            v = features[name][has[:, j], j]
            v = v[np.isfinite(v)]
            if v.size == 0:
                continue
            rows.append({"metric": name, "window": int(w), "candles": int(v.size),
                         "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1
                         else np.nan, "p05": float(np.percentile(v, 5)),
                         "median": float(np.median(v)), "p95": float(np.percentile(v, 95))})
    return pd.DataFrame(rows).set_index(["metric", "window"])


def features_figure(frame: pd.DataFrame, features: dict[str, np.ndarray],
                    windows: Sequence[int], metrics: Sequence[str] = ("entropy", "coherence",
                                                                      "stability"),
                    *, last: int = 400) -> Figure:
    """The metrics over the last ``last`` candles (one line per window), price on top."""
    n = len(frame)
    lo = max(0, n - last)
    idx = frame.index[lo:]
    fig = Figure(figsize=(9.0, 1.8 * (len(metrics) + 1)), layout="constrained")
    axes = fig.subplots(len(metrics) + 1, 1, sharex=True)
    axes[0].plot(idx, frame["close"].to_numpy()[lo:], color="0.3", linewidth=0.8)
    axes[0].set_ylabel("mid close")
    for ax, name in zip(axes[1:], metrics, strict=True):
        for j, w in enumerate(windows):
            ax.plot(idx, features[name][lo:, j], linewidth=0.8, color=f"C{j}", label=f"window {w}")
        ax.set_ylabel(name)
    axes[1].legend(fontsize=7, ncols=len(windows), loc="upper left")
    fig.suptitle(f"QFH metrics (causal), last {n - lo} candles")
    return fig


def engine_timings(frame: pd.DataFrame, windows: Sequence[int], sizes: Sequence[int], *,
                   engines: Sequence[str] | None = None, repeats: int = 3,
                   python_max: int = 2000) -> pd.DataFrame:
    """Best-of-``repeats`` seconds of ``qfh_features_batch`` per engine and candle count.

    ``engines``: default ``python`` (sizes up to ``python_max`` only: it is slow), ``cpu``
    and, where a real GPU is usable, ``cuda``. The first call of each compiled engine (its
    compile or load time) is reported separately in ``first_call_s`` and not in ``seconds``.
    """
    from sep_research.kernels.engine import cuda_available, cuda_simulated

    if engines is None:
        engines = ["python", "cpu"] + (["cuda"] if cuda_available() and not cuda_simulated()
                                       else [])
    rows = []
    for eng in engines:
        first = None
        for n in sorted(int(s) for s in sizes):
            if n > len(frame) or (eng == "python" and n > python_max):
                continue
            part = frame.iloc[-n:]
            if first is None:
                t0 = time.perf_counter()
                qfh_features(part, windows, engine=eng)
                first = time.perf_counter() - t0
            best = np.inf
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                qfh_features(part, windows, engine=eng)
                best = min(best, time.perf_counter() - t0)
            rows.append({"engine": eng, "n": n, "windows": len(windows), "seconds": best,
                         "candles_per_s": n * len(windows) / best, "first_call_s": first})
    return pd.DataFrame(rows)


def _shift_future(x: dict[str, np.ndarray], cut: int) -> dict[str, np.ndarray]:
    """The prices after ``cut`` moved 2 % down (the first move after the cut becomes a fall)."""
    y = {k: v.copy() for k, v in x.items()}
    for k in ("open", "high", "low", "close"):
        y[k] = y[k].astype(np.float64)
        y[k][cut + 1:] *= 0.98
    return y


def lookahead_demo(frame: pd.DataFrame, *, cuts: Sequence[int], engine: str = "auto",
                   outputs: Sequence[str] = ("coherence", "stability", "confidence", "action"),
                   ) -> pd.DataFrame:
    """For each alignment and cut: does any output at candles ``<= cut`` change when the
    prices after the cut are moved 2 % down? One row per (alignment, cut, output), with the
    first changed candle and its value before and after."""
    from sep_research.signals import SEED, seed_signals

    x = _arrays(frame)
    inst = _instrument(frame)
    rows = []
    for alignment in ("legacy", "causal"):
        base = seed_signals(x, SEED, instrument=inst, alignment=alignment, engine=engine)
        for cut in cuts:
            if not 0 <= cut < len(frame) - 1:
                raise ValueError(f"cut {cut} is outside 0 .. {len(frame) - 2}")
            alt = seed_signals(_shift_future(x, cut), SEED, instrument=inst,
                               alignment=alignment, engine=engine)
            for name in outputs:
                a = _output(base, name)[: cut + 1].astype(float)
                b = _output(alt, name)[: cut + 1].astype(float)
                diff = ~((a == b) | (np.isnan(a) & np.isnan(b)))
                j = int(np.flatnonzero(diff)[0]) if diff.any() else None
                rows.append({"alignment": alignment, "cut": int(cut), "output": name,
                             "past_changed": j is not None,
                             "first_changed_candle": j,
                             "before": float(a[j]) if j is not None else np.nan,
                             "after": float(b[j]) if j is not None else np.nan})
    return pd.DataFrame(rows)


def _output(sig: Any, name: str) -> np.ndarray:
    if name in ("action", "confidence", "hc"):
        return np.asarray(getattr(sig, name))
    return np.asarray(sig.features[name])


def lookahead_summary(demo: pd.DataFrame) -> pd.DataFrame:
    """Cuts at which the past changed, per alignment and output (0 everywhere = causal)."""
    g = demo.groupby(["alignment", "output"], sort=False)["past_changed"]
    out = pd.DataFrame({"cuts": g.size(), "cuts_where_past_changed": g.sum()})
    out["verdict"] = np.where(out["cuts_where_past_changed"] == 0, "PASS", "FAIL: look-ahead")
    return out


def lookahead_figure(frame: pd.DataFrame, *, cut: int, output: str = "coherence",
                     engine: str = "auto", before: int = 30, after: int = 8) -> Figure:
    """One cut made visible: ``output`` on the real data and with the prices after the cut
    moved 2 % down, legacy (left) and causal (right). Red marks: candles at or before the
    cut whose value changed, i.e. the past depended on the future."""
    from sep_research.signals import SEED, seed_signals

    x = _arrays(frame)
    inst = _instrument(frame)
    lo, hi = max(0, cut - before), min(len(frame), cut + after + 1)
    t = np.arange(lo, hi) - cut
    fig = Figure(figsize=(9.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, alignment in zip(axes, ("legacy", "causal"), strict=True):
        a = _output(seed_signals(x, SEED, instrument=inst, alignment=alignment,
                                 engine=engine), output)
        b = _output(seed_signals(_shift_future(x, cut), SEED, instrument=inst,
                                 alignment=alignment, engine=engine), output)
        a, b = a[lo:hi].astype(float), b[lo:hi].astype(float)
        ax.plot(t, a, marker="o", markersize=3, color="C0", label="real data")
        ax.plot(t, b, marker="x", markersize=4, color="C1", linestyle="--",
                label="prices after the cut moved 2% down")
        changed = (t <= 0) & ~((a == b) | (np.isnan(a) & np.isnan(b)))
        if changed.any():
            ax.scatter(t[changed], b[changed], s=120, facecolors="none", edgecolors="C3",
                       linewidths=2, zorder=4, label="past changed (look-ahead)")
        ax.axvspan(0.5, t[-1] + 0.5, color="0.9", label="future (after the cut)")
        ax.axvline(0.5, color="0.3", linewidth=0.8)
        verdict = f"FAIL: {int(changed.sum())} past value(s) changed" if changed.any() \
            else "PASS: the past did not change"
        ax.set_title(f"{alignment}: {verdict}", fontsize=10)
        ax.set_xlabel("candles relative to the cut")
    axes[0].set_ylabel(output)
    handles = {h.get_label(): h for ax in axes for h in ax.get_legend_handles_labels()[0]}
    fig.legend(list(handles.values()), list(handles), fontsize=8, ncols=4,
               loc="outside lower center")
    fig.suptitle(f"Look-ahead check at candle {cut} ({frame.index[cut]})")
    return fig


# -- the seed headline (04) ------------------------------------------------------------------
def load_seed_reference(reference_dir: str | os.PathLike[str] | None, data_file: str, *,
                        instrument: str = "EUR_USD", granularity: str = "M1"
                        ) -> pd.DataFrame | None:
    """The seed's reference candles, or None (with the reason printed) when absent.

    Times off the granularity grid are accepted: the seed's file has them at :33 s.
    """
    from sep_research.data import read_candle_file
    from sep_research.reporting.paths import seed_reference_dir

    path = seed_reference_dir(reference_dir or None) / data_file
    if not path.is_file():
        print(f"seed reference data not present ({path}): the rest of this notebook is skipped")
        return None
    return read_candle_file(path, instrument=instrument, granularity=granularity,
                            check_grid=False)


def seed_headline(frame: pd.DataFrame, *, engine: str = "auto", shuffles: int = 1000,
                  seed: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The seed preset scored as the spec does, in legacy and causal alignment.

    Returns the table (one row per alignment plus the shuffled-causal baseline, accuracies
    in percent with 95 % Wilson intervals; beside the spec's figures the direction-only HC
    accuracy, right / decided, and the same candles with random directions: mean, 2.5-97.5 %
    and p over ``shuffles`` draws) and the signals per alignment.
    """
    from sep_research.signals.cli import reproduce, shuffled_baseline

    rows, sigs = [], {}
    for alignment in ("legacy", "causal"):
        r = reproduce(frame, alignment, engine=engine, n_draws=shuffles)
        rd = r["same_candles_random_direction"] or {}
        dci = r["hc_direction_accuracy_ci95"] or (None, None)
        sc = r["_unrounded"]
        sigs[alignment] = r["_signals"]
        ci = sc["hc_hit_rate_ci95"] or (None, None)
        rows.append({"rule": f"seed, {alignment} alignment", "hc_signals": sc["n_hc"],
                     "hc_correct": sc["hc_hits"], "hc_accuracy": _pct(sc["hc_hit_rate"]),
                     "ci_low": _pct(ci[0]), "ci_high": _pct(ci[1]),
                     "signal_rate": _pct(sc["signal_rate"]),
                     "profitability_score": r["profitability_score"],
                     "overall_accuracy": _pct(sc["hit_rate"]),
                     "base_rate": 100.0 * sc["base_rate_up"], "non_hold": sc["n_signals"],
                     "hc_decided": sc["n_hc_decided"],
                     "hc_direction_accuracy": _pct(sc["hc_direction_rate"]),
                     "direction_ci_low": dci[0], "direction_ci_high": dci[1],
                     "same_candles_random_direction": rd.get("mean"),
                     "random_direction_low": rd.get("low"),
                     "random_direction_high": rd.get("high"),
                     "p_direction": rd.get("pvalue")})
    sh = shuffled_baseline(frame, sigs["causal"], n=shuffles, seed=seed)
    rows.append({"rule": f"causal signals shuffled ({sh['n']}x)", "hc_signals": rows[1][
        "hc_signals"], "hc_accuracy": sh["mean"], "ci_low": sh["low"], "ci_high": sh["high"],
        "base_rate": rows[1]["base_rate"]})
    return pd.DataFrame(rows).set_index("rule"), sigs


def seed_headline_figure(table: pd.DataFrame) -> Figure:
    """HC accuracy (%) with intervals: legacy, causal and shuffled, the base rate and 50 %."""
    from sep_research.reporting.figures import accuracy_figure

    acc = pd.DataFrame({"hit_rate": table["hc_accuracy"] / 100.0,
                        "ci_low": table["ci_low"] / 100.0, "ci_high": table["ci_high"] / 100.0,
                        "n": table["hc_signals"]}, index=table.index)
    fig = accuracy_figure(acc, title="HC accuracy of the seed preset: legacy vs causal",
                          reference=0.5)
    ax = fig.axes[0]
    base = float(table["base_rate"].iloc[0]) / 100.0
    ax.axvline(base, color="C3", linestyle=":", label=f"base rate {100 * base:.1f}% "
               "(next move > +0.5 pip)")
    ax.set_xlim(min(ax.get_xlim()[0], base - 0.03), max(ax.get_xlim()[1], 0.7))
    ax.legend(fontsize=8, loc="lower right")
    return fig


def cumulative_hits_figure(frame: pd.DataFrame, signals: dict[str, Any]) -> Figure:
    """Correct HC signals minus the count a coin with the base rate would get, over time.

    A rule with an edge climbs steadily; the legacy line climbs because its window holds the
    move it is scored on.
    """
    from sep_research.signals import label_moves

    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    ax = fig.subplots()
    for i, (alignment, sig) in enumerate(signals.items()):
        mv = label_moves(frame["close"], alignment=alignment, pip=sig.pip)
        mm = sig.params.min_move
        scored = sig.has & ~np.isnan(mv) & (sig.action != 0) & sig.hc
        ok = ((sig.action == 1) & (mv > mm)) | ((sig.action == -1) & (mv < -mm))
        # what the same BUY/SELL calls would score by chance: P(up) for BUY, P(down) for SELL
        valid = sig.has & ~np.isnan(mv)
        p_up = float(np.mean(mv[valid] > mm))
        p_dn = float(np.mean(mv[valid] < -mm))
        expect = np.where(sig.action == 1, p_up, p_dn)
        excess = np.cumsum(np.where(scored, ok.astype(float) - expect, 0.0))
        ax.plot(frame.index, excess, color=f"C{i}", label=f"{alignment}: {int(scored.sum())} "
                f"HC signals")
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.set_ylabel("correct HC signals minus chance")
    ax.set_title("Where the 60.73 % comes from: cumulative excess hits")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def reference_path(reference_dir: str | None, data_file: str) -> Path:
    from sep_research.reporting.paths import seed_reference_dir

    return seed_reference_dir(reference_dir or None) / data_file
