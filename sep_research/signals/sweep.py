"""The fused parameter sweep of the seed rule, for research and walk-forward training.

Public API::

    sweep_seed(data, grid, *, score_start, score_end, spread_pips=None, params=SEED,
               alignment="causal", engine="auto", chunk=8192, cuda_block=128)
        -> dict[str, np.ndarray]
    config_signals(data, row, *, params=SEED, alignment="causal", engine="auto") -> SeedSignals
    product_grid(**values) -> numpy structured array (the cartesian product)
    spread_from(data, *, pip=1e4, default=0.0) -> np.ndarray

**Grid**: a numpy structured array or a mapping of equal-length 1-D arrays, one row per
configuration, with any of the fields in :data:`GRID_FIELDS` (others are an error):
``w_s w_c w_e buy_threshold sell_threshold conf_threshold coh_threshold window min_move
spread``. A missing field takes its value from ``params`` (``spread``: 0). ``spread`` is an
extra cost in pips added to the per-candle spread.

**Scoring range**: candles ``score_start <= i < score_end`` are scored. Features of a candle
use all the history before it (the data are cut after candle ``score_end`` before any
feature is computed, so nothing later can leak in; causal alignment only); the only value
after ``score_end - 1`` that is read is ``close[score_end]``, the one-step label of the last
scored candle, so ``score_end <= n - 1``.

**A pip gained** by a non-HOLD signal of candle ``i`` (causal alignment) is
``direction * (close[i+1] - close[i]) * pip - spread_pips[i] - spread``: the mid-price move
over the next candle, in pips, signed by the signal (BUY +1, SELL -1), less the full
bid/ask spread at candle ``i``'s close (entering at ask/bid and leaving at bid/ask costs
half a spread each way) and less the grid's extra ``spread``. In legacy alignment the
move is the legacy scoring's ``close[i] - close[i-1]`` and the spread that of candle
``i - 1``.

**Result** (arrays of length K = number of configurations): ``n_non_hold``, ``n_correct``,
``n_buy``, ``n_sell``, ``n_hc``, ``n_hc_correct``, ``n_hc_buy`` (int64), ``sum_pips_net``,
``sum_pips_net_sq``, ``hc_sum_pips_net``, ``hc_sum_pips_net_sq`` (float64; squares for a
Sharpe-like objective). A signal is *correct* when its move is beyond ``min_move`` pips in
its direction (spread not counted), as in the spec's scoring.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sep_research.kernels import engine as _engine
from sep_research.kernels import qfh
from sep_research.signals.seed import (
    SEED,
    SeedParams,
    SeedSignals,
    check_alignment,
    label_index,
    label_moves,
    ohlcv,
    seed_signals,
)

GRID_FIELDS = ("w_s", "w_c", "w_e", "buy_threshold", "sell_threshold", "conf_threshold",
               "coh_threshold", "window", "min_move", "spread")
_GRID_COLUMN = {"w_s": qfh.G_WS, "w_c": qfh.G_WC, "w_e": qfh.G_WE, "buy_threshold": qfh.G_BUY,
                "sell_threshold": qfh.G_SELL, "conf_threshold": qfh.G_CONF,
                "coh_threshold": qfh.G_COH, "min_move": qfh.G_MIN_MOVE, "spread": qfh.G_SPREAD}


def product_grid(**values: Any) -> np.ndarray:
    """The cartesian product of the given field values as a structured array (one row each)."""
    unknown = set(values) - set(GRID_FIELDS)
    if unknown:
        raise ValueError(f"unknown grid fields {sorted(unknown)}; known: {', '.join(GRID_FIELDS)}")
    names = list(values)
    axes = [np.atleast_1d(np.asarray(values[k], dtype=np.float64)) for k in names]
    mesh = np.meshgrid(*axes, indexing="ij")
    out = np.empty(mesh[0].size, dtype=[(k, np.float64) for k in names])
    for k, m in zip(names, mesh, strict=True):
        out[k] = m.ravel()
    return out


def _grid_columns(grid: Any, params: SeedParams) -> dict[str, np.ndarray]:
    if isinstance(grid, np.ndarray) and grid.dtype.names:
        cols = {k: np.asarray(grid[k]) for k in grid.dtype.names}
    elif isinstance(grid, Mapping):
        cols = {k: np.atleast_1d(np.asarray(v)) for k, v in grid.items()}
    else:
        raise ValueError("grid must be a numpy structured array or a mapping of equal-length "
                         "arrays (field -> values)")
    unknown = set(cols) - set(GRID_FIELDS)
    if unknown:
        raise ValueError(f"unknown grid fields {sorted(unknown)}; known: {', '.join(GRID_FIELDS)}")
    sizes = {k: v.shape for k, v in cols.items()}
    if not cols or len(set(sizes.values())) != 1 or next(iter(sizes.values()))[0:1] == (0,):
        raise ValueError(f"grid fields must be non-empty 1-D arrays of one length, got {sizes}")
    k = next(iter(cols.values())).shape[0]
    full = {}
    for name in GRID_FIELDS:
        if name in cols:
            full[name] = cols[name].astype(np.float64).ravel()
        else:
            default = 0.0 if name == "spread" else float(getattr(params, name))
            full[name] = np.full(k, default)
        if not np.all(np.isfinite(full[name])):
            raise ValueError(f"grid field {name!r} holds NaN or infinite values")
    w = full["window"]
    if np.any(w < 2) or np.any(w != np.round(w)):
        raise ValueError("grid field 'window' must hold integers >= 2")
    return full


def spread_from(data: Any, *, pip: float = 1e4, default: float = 0.0) -> np.ndarray:
    """Per-candle spread in pips: ``(ask_close - bid_close) * pip`` when the data have bid and
    ask, else ``default`` everywhere."""
    n = len(np.asarray(data["close"]))
    try:
        ask = np.asarray(data["ask_close"], dtype=np.float64)
        bid = np.asarray(data["bid_close"], dtype=np.float64)
    except (KeyError, IndexError, TypeError):
        return np.full(n, float(default))
    return (ask - bid) * pip


def sweep_seed(data: Any, grid: Any, *, score_start: int, score_end: int,
               spread_pips: Any = None, params: SeedParams = SEED, alignment: str = "causal",
               engine: str = "auto", chunk: int = _engine.SWEEP_CHUNK,
               cuda_block: int = 128) -> dict[str, np.ndarray]:
    """Per-configuration counts and pip sums of the seed rule, without per-config signals.

    See the module docstring for the grid, the scoring range, what a pip gained is and the
    result's keys. ``spread_pips``: None (from bid/ask when the data have them, else 0), a
    number, or an array of one value per candle. Non-grid constants come from ``params``.
    ``chunk`` (candles per partial sum) and ``cuda_block`` (threads per block) change no
    count; ``chunk`` changes the sums' rounding only (the same on every engine).
    """
    check_alignment(alignment)
    x = ohlcv(data)
    n = x["close"].shape[0]
    score_start, score_end = int(score_start), int(score_end)
    limit = n - 1 if alignment == "causal" else n
    if not 0 <= score_start <= score_end <= limit:
        raise ValueError(
            f"score range [{score_start}, {score_end}) is invalid for {n} candles: need "
            f"0 <= score_start <= score_end <= {limit} (the last scored candle needs the "
            "next close as its label)")
    if spread_pips is None:
        spread = spread_from(data, pip=params.pip)
    else:
        spread = np.broadcast_to(np.asarray(spread_pips, dtype=np.float64), (n,)).copy()
    if not np.all(np.isfinite(spread)):
        raise ValueError("spread_pips holds NaN or infinite values")
    cols = _grid_columns(grid, params)
    k = cols["window"].shape[0]
    windows, widx = np.unique(cols["window"].astype(np.int64), return_inverse=True)

    # causal: cut the data after the label of the last scored candle, so nothing later can
    # leak in. legacy is defined on the whole data set (its look-ahead included): no cut.
    m = min(n, score_end + 1) if alignment == "causal" else n
    feat = _engine.compute_features(x["close"][:m], x["high"][:m], x["low"][:m],
                                    x["volume"][:m], windows, params.to_vector(),
                                    alignment=alignment, engine=engine)
    fw = np.stack([feat[qfh.F_HAS].T, feat[qfh.F_STABILITY].T, feat[qfh.F_COHERENCE].T,
                   feat[qfh.F_PHASE].T, feat[qfh.F_TF].T])
    mv = label_moves(x["close"][:m], alignment=alignment, pip=params.pip)
    t = label_index(m, alignment=alignment)
    sp = np.where(t >= 0, spread[np.maximum(t, 0)], np.nan)
    cv = np.stack([feat[qfh.F_VF, :, 0], feat[qfh.F_VM, :, 0], mv, sp])
    g = np.zeros((k, qfh.N_GRID), dtype=np.float64)
    for name, c in _GRID_COLUMN.items():
        g[:, c] = cols[name]
    g[:, qfh.G_WINDOW_INDEX] = widx
    # rows sorted by window and weights, so that blocks of rows share their candle data and
    # scores (any order gives the same per-row results)
    order = np.lexsort((cols["w_e"], cols["w_c"], cols["w_s"], widx))
    counts, sums = _engine.run_sweep(g[order], fw, cv, score_start, min(score_end, m),
                                     engine=engine, chunk=chunk, block=cuda_block)
    res: dict[str, np.ndarray] = {}
    for q, name in enumerate(qfh.SWEEP_COUNTS):
        res[name] = np.empty(k, dtype=np.int64)
        res[name][order] = counts[q]
    for q, name in enumerate(qfh.SWEEP_SUMS):
        res[name] = np.empty(k, dtype=np.float64)
        res[name][order] = sums[q]
    return res


def config_signals(data: Any, row: Mapping[str, Any], *, params: SeedParams = SEED,
                   alignment: str = "causal", engine: str = "auto") -> SeedSignals:
    """Per-candle (action, confidence, hc) of ONE grid configuration, for the backtest.

    ``row``: a mapping (or a structured-array row) with grid fields; the extra ``spread``
    field, if any, is ignored here (it only enters pip sums).
    """
    if isinstance(row, np.void):
        row = {k: row[k] for k in row.dtype.names}
    changes = {k: v for k, v in dict(row).items() if k != "spread"}
    unknown = set(changes) - set(GRID_FIELDS)
    if unknown:
        raise ValueError(f"unknown grid fields {sorted(unknown)}")
    if "window" in changes:
        changes["window"] = int(changes["window"])
    changes = {k: (v if k == "window" else float(v)) for k, v in changes.items()}
    return seed_signals(data, params.with_(**changes), alignment=alignment, engine=engine)
