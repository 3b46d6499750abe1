"""A plain-text summary of a candle frame: provenance, gaps, returns, spreads and bit statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sep_research.data.candles import (
    OHLC_PRICE_KEY,
    get_provenance,
    pip_size,
    price_components,
)


def bit_statistics(close: np.ndarray) -> dict[str, float]:
    """The spec's bits (1 if the next mid close is higher, ties count as 0) and pair classes."""
    bits = (np.diff(close) > 0).astype(np.int8)
    out = {"bits": float(len(bits)), "up_fraction": float(bits.mean()) if len(bits) else np.nan,
           "tie_fraction": float((np.diff(close) == 0).mean()) if len(bits) else np.nan}
    if len(bits) >= 2:
        a, b = bits[:-1], bits[1:]
        out["null_fraction"] = float(((a == 0) & (b == 0)).mean())
        out["flip_fraction"] = float((a != b).mean())
        out["rupture_fraction"] = float(((a == 1) & (b == 1)).mean())
    return out


def summarise(frame: pd.DataFrame) -> str:
    from sep_research.data.gaps import find_gaps

    prov = get_provenance(frame)
    pip = pip_size(prov.instrument)
    close = frame["close"].to_numpy()
    moves = np.diff(close) / pip
    rng = (frame["high"] - frame["low"]).to_numpy() / pip
    gaps = find_gaps(frame.index, prov.granularity)
    lines = [
        f"{prov.instrument} {prov.granularity} from {prov.source}",
        (f"  {prov.rows} candles, {prov.start} .. {prov.end}, price components "
        f"{price_components(frame)}, sha256 {prov.sha256[:16]}…"),
    ] + ([(f"  open .. close are {prov.extra[OHLC_PRICE_KEY].upper()} prices (no mid in this "
           "data)")] if prov.extra.get(OHLC_PRICE_KEY, "mid") != "mid" else []) + [
        "  validation: passed (sorted unique UTC times on the grid, finite prices, "
        "low<=open,close<=high"
        + (", bid<=ask)" if "bid_close" in frame.columns and "ask_close" in frame.columns else ")"),
        f"  gaps outside weekends: {len(gaps)}"
        + (f" (largest: {max(g[2] for g in gaps)} candles)" if gaps else ""),
        (f"  close-to-close move (pips): mean {moves.mean():+.3f}, sd {moves.std(ddof=1):.2f}, "
        f"|move| <= 0.5 pip in {100 * np.mean(np.abs(moves) <= 0.5):.1f}% of candles"),
        f"  candle range (pips): median {np.median(rng):.1f}, "
        f"95th pct {np.percentile(rng, 95):.1f}",
    ]
    if "bid_close" in frame.columns and "ask_close" in frame.columns:
        spread = (frame["ask_close"] - frame["bid_close"]).to_numpy() / pip
        lines.append(f"  spread at close (pips): median {np.median(spread):.2f}, "
                     f"95th pct {np.percentile(spread, 95):.2f}")
    else:
        lines.append("  spread: no bid/ask in this data (research adds a configured half-spread)")
    bs = bit_statistics(close)
    if "null_fraction" in bs:
        lines.append(
            f"  bits: up {100 * bs['up_fraction']:.1f}% (ties {100 * bs['tie_fraction']:.1f}% "
            f"count as down); pairs null {100 * bs['null_fraction']:.1f}%, flip "
            f"{100 * bs['flip_fraction']:.1f}%, rupture {100 * bs['rupture_fraction']:.1f}%"
        )
    return "\n".join(lines)
