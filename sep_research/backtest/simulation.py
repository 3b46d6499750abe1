"""Backtest of target positions on a candle frame: fills at bid/ask, equity, costs.

Use :func:`run_backtest` on a candle frame (see :mod:`sep_research.data.candles`), or
:func:`backtest_arrays` on bid/ask arrays (the array-level entry point evaluation uses: same
kernel, same checks, no frames), and a target direction per candle (+1 long, -1 short, 0 flat)
decided at that candle's **close**. The fill rules are in :mod:`sep_research.backtest.fills`; in
short: orders execute at the next candle's open, buys at the ask and sells at the bid; stops and
take-profits are checked on each candle's bid/ask range with a conservative rule (stop first when
both are inside one candle). After a stop or take-profit exit the backtest stays flat until the
target direction changes (no re-entry on the same, still-standing signal). A position still open at
the last candle is closed at that candle's close (bid for a long, ask for a short).

Equity is marked at each candle's close at the price the position would be closed at (bid for a
long, ask for a short), so the spread of an open position is already counted.

**Financing** (``financing=``, a :class:`sep_research.financing.FinancingRates`; off when None):
a position held through a rollover (17:00 New York) is charged or credited
``price x rate x days / 365`` per unit (:mod:`sep_research.financing` states the rule and its
sources), with the days of :func:`candle_financing_days`: the rollovers after a candle's open
up to the next candle's open fall to that candle, and the position held at its close pays them
(valued at its mid close). Financing is realised at the rollover (it enters the equity there),
counted in each trade's ``pips`` and ``pnl`` and shown apart as ``financing_pips`` /
``financing_pnl`` per trade and ``financing_pips`` / ``financing_ccy`` in total (signed: negative
is a charge). A position stopped out inside the candle that holds the rollover is not charged (for
candles on the hour the rollover is at the candle's close, after any stop inside it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sep_research.backtest.fills import EXIT_REASONS, on_price_grid, price_decimals
from sep_research.financing import FinancingRates
from sep_research.fx import pip_size

_ASK = ("ask_open", "ask_high", "ask_low", "ask_close")
_BID = ("bid_open", "bid_high", "bid_low", "bid_close")
_MID = ("open", "high", "low", "close")


@dataclass
class BacktestResult:
    """What :func:`run_backtest` returns.

    ``trades``: one row per closed trade with columns ``entry_time, exit_time, entry_index,
    exit_index, direction, units, entry_price, exit_price, pips, pnl, cost_pips, cost_pnl,
    financing_pips, financing_pnl, exit_reason``. ``pips`` are per trade (not scaled by units)
    and already net of the spread (the fills are at bid/ask) and of the financing the trade
    accrued; ``pnl`` is in account currency (units * price move * ``quote_to_account``, plus
    its financing). ``equity_pips``/``equity_ccy``: cumulative P&L marked at each close
    (starting from 0; add ``initial_balance`` for the account balance). ``position``: signed
    units held at each close. ``costs_pips``/``costs_ccy``: the spread paid (half the spread per
    fill), already inside the net figures; ``financing_pips``/``financing_ccy``: the financing
    (signed, negative = a charge), already inside them too.
    """

    trades: pd.DataFrame
    equity_pips: pd.Series
    equity_ccy: pd.Series
    position: pd.Series
    costs_pips: float
    costs_ccy: float
    initial_balance: float
    price_source: str  # "bid/ask" or "mid+/-half_spread"
    settings: dict[str, Any] = field(default_factory=dict)
    financing_pips: float = 0.0
    financing_ccy: float = 0.0

    @property
    def n_trades(self) -> int:
        return len(self.trades)

    @property
    def net_pips(self) -> float:
        return float(self.equity_pips.iloc[-1]) if len(self.equity_pips) else 0.0

    @property
    def net_pnl(self) -> float:
        return float(self.equity_ccy.iloc[-1]) if len(self.equity_ccy) else 0.0


def quote_arrays(
    frame: pd.DataFrame, *, half_spread_pips: float | None = None, pip: float
) -> tuple[np.ndarray, np.ndarray, str]:
    """(bid, ask, source): float64 (n, 4) arrays of open, high, low, close.

    Uses the frame's bid/ask columns when it has them and ``half_spread_pips`` is None;
    otherwise mid +/- ``half_spread_pips * pip``, on the instrument's price grid
    (:func:`sep_research.backtest.fills.on_price_grid`, as a broker quoting mid +/- a
    half-spread publishes them). A frame without bid/ask and no half-spread is an error (a
    backtest without costs would flatter the strategy).
    """
    has_ba = all(c in frame.columns for c in (*_BID, *_ASK))
    if has_ba and half_spread_pips is None:
        bid = np.ascontiguousarray(frame[list(_BID)].to_numpy(dtype=np.float64))
        ask = np.ascontiguousarray(frame[list(_ASK)].to_numpy(dtype=np.float64))
        return bid, ask, "bid/ask"
    if half_spread_pips is None:
        raise ValueError(
            "the candles have no bid/ask columns: pass half_spread_pips (e.g. 0.5 for a "
            "1-pip spread) so that the spread is paid"
        )
    if not (np.isfinite(half_spread_pips) and half_spread_pips >= 0):
        raise ValueError(f"half_spread_pips must be a finite number >= 0, got {half_spread_pips!r}")
    mid = frame[list(_MID)].to_numpy(dtype=np.float64)
    hs = half_spread_pips * pip
    grid = np.vectorize(on_price_grid, otypes=[np.float64])
    decimals = price_decimals(pip)
    return (np.ascontiguousarray(grid(mid - hs, decimals)),
            np.ascontiguousarray(grid(mid + hs, decimals)), f"mid+/-{half_spread_pips:g}pip")


def rollover_candles(times: Any, *, granularity: str) -> tuple[np.ndarray, np.ndarray]:
    """Where the rollovers of candles fall: ``(candle, rollover_ns)`` int64 arrays, one entry
    per rollover (17:00 New York, :func:`sep_research.financing.rollovers`) after the first
    candle's open and up to the last candle's end, ``candle`` = the candle whose open precedes
    it and whose next candle opens at or after it. ``times``: candle open times (tz-aware,
    strictly increasing); ``granularity`` gives the last candle's end."""
    from sep_research import financing as fin
    from sep_research.fx import GRANULARITY_SECONDS, check_granularity, from_ns

    check_granularity(granularity)
    idx = pd.DatetimeIndex(times)
    if idx.tz is None:
        raise ValueError("times: candle times must be timezone-aware UTC")
    ns = idx.tz_convert("UTC").as_unit("ns").asi8
    if ns.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if ns.size > 1 and not (np.diff(ns) > 0).all():
        raise ValueError("times: candle times must be strictly increasing")
    end = int(ns[-1]) + GRANULARITY_SECONDS[granularity] * 1_000_000_000
    rolls = fin.rollovers(from_ns(int(ns[0])), from_ns(end))
    r_ns = np.array([pd.Timestamp(r).value for r in rolls], dtype=np.int64)
    return np.searchsorted(ns, r_ns, side="left").astype(np.int64) - 1, r_ns


def candle_financing_days(times: Any, rates: FinancingRates | None, *,
                          granularity: str) -> np.ndarray:
    """Days of financing charged per candle (float64, one per candle): the days of the
    rollovers that :func:`rollover_candles` assigns to it, by ``rates``'s weekday schedule
    (all 0 when ``rates`` is None)."""
    n = len(times)
    days = np.zeros(n, dtype=np.float64)
    if rates is None or n == 0:
        return days
    from sep_research.fx import from_ns

    candle, r_ns = rollover_candles(times, granularity=granularity)
    w = np.array([rates.days_charged(from_ns(int(r))) for r in r_ns], dtype=np.float64)
    np.add.at(days, candle, w)
    return days


def _pip_for(frame: pd.DataFrame, instrument: str | None, pip: float | None) -> float:
    if pip is not None:
        if not pip > 0:
            raise ValueError(f"pip must be > 0, got {pip!r}")
        return float(pip)
    if instrument is None:
        prov = frame.attrs.get("provenance") or {}
        instrument = prov.get("instrument") if isinstance(prov, dict) else None
    if instrument is None:
        raise ValueError("pass instrument= or pip= (the frame has no provenance naming one)")
    return pip_size(instrument)


def check_target(target: Any, n: int) -> np.ndarray:
    arr = np.asarray(target)
    if arr.shape != (n,):
        raise ValueError(f"target must have one value per candle ({n}), got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError("target has NaN or infinite values")
    if not np.isin(arr, (-1, 0, 1)).all():
        raise ValueError("target must hold only -1 (short), 0 (flat) and +1 (long)")
    return np.ascontiguousarray(arr.astype(np.int8))


@dataclass(frozen=True)
class ArrayBacktest:
    """What :func:`backtest_arrays` returns (plain arrays; rows of ``trades_*`` are trades).

    ``trades_i`` int64 ``(n_trades, 4)``: entry index, exit index, direction, exit reason
    (:data:`sep_research.backtest.fills.EXIT_REASONS`); ``trades_f`` float64 ``(n_trades, 9)``:
    units, entry price, exit price, pips, pnl, cost pips, cost pnl, financing pips, financing
    pnl. ``position``, ``equity_pips``, ``equity_ccy``: per candle, as in
    :class:`BacktestResult`; ``financing_pips``/``financing_ccy``: total financing (signed).
    """

    trades_i: np.ndarray
    trades_f: np.ndarray
    position: np.ndarray
    equity_pips: np.ndarray
    equity_ccy: np.ndarray
    costs_pips: float
    costs_ccy: float
    financing_pips: float = 0.0
    financing_ccy: float = 0.0

    @property
    def n_trades(self) -> int:
        return int(self.trades_i.shape[0])

    @property
    def trade_pips(self) -> np.ndarray:
        """Net pips of each trade (fills at bid/ask, so after the spread; financing
        included)."""
        return self.trades_f[:, 3]

    @property
    def trade_financing_pips(self) -> np.ndarray:
        """Financing pips of each trade (already inside :attr:`trade_pips`)."""
        return self.trades_f[:, 7]


def backtest_arrays(
    target: Any,
    bid: np.ndarray,
    ask: np.ndarray,
    *,
    pip: float,
    units: float | Any = 1.0,
    sizing: str = "fixed",
    risk_fraction: float = 0.01,
    initial_balance: float = 10_000.0,
    quote_to_account: float = 1.0,
    stop_loss_pips: float | None = None,
    take_profit_pips: float | None = None,
    financing: FinancingRates | None = None,
    financing_days: Any = None,
) -> ArrayBacktest:
    """The backtest on arrays: ``target`` (-1/0/+1 per candle, decided at its close), ``bid``
    and ``ask`` float64 ``(n, 4)`` (open, high, low, close; :func:`quote_arrays` makes them),
    ``pip`` the price per pip. ``financing`` (rates, or None: off) needs ``financing_days``,
    the days charged per candle (:func:`candle_financing_days` of the candles' times). The
    other arguments are those of :func:`run_backtest`; bad values raise ``ValueError`` naming
    the argument."""
    arr = np.asarray(target)
    if arr.ndim != 1:
        raise ValueError(f"target must be 1-D (one value per candle), got shape {arr.shape}")
    tgt = check_target(arr, arr.shape[0])
    n = tgt.shape[0]
    if n < 2:
        raise ValueError(f"a backtest needs at least 2 candles, got {n}")
    if not (isinstance(pip, (int, float)) and np.isfinite(pip) and pip > 0):
        raise ValueError(f"pip must be a finite price per pip > 0, got {pip!r}")
    bid = np.ascontiguousarray(bid, dtype=np.float64)
    ask = np.ascontiguousarray(ask, dtype=np.float64)
    for name, arr in (("bid", bid), ("ask", ask)):
        if arr.shape != (n, 4):
            raise ValueError(f"{name} must be (n, 4) open/high/low/close for {n} candles, got "
                             f"{arr.shape}")
    from sep_research.backtest.nb import SIZING_FIXED, SIZING_FIXED_FRACTIONAL, backtest_nb

    if sizing == "fixed":
        mode = SIZING_FIXED
        u = np.broadcast_to(np.asarray(units, dtype=np.float64), (n,)).copy()
        if not np.isfinite(u).all() or (u < 0).any():
            raise ValueError("units must be finite and >= 0")
    elif sizing == "fixed_fractional":
        mode = SIZING_FIXED_FRACTIONAL
        if stop_loss_pips is None or not stop_loss_pips > 0:
            raise ValueError("sizing='fixed_fractional' needs stop_loss_pips > 0")
        if not 0 < risk_fraction <= 1:
            raise ValueError(f"risk_fraction must be in (0, 1], got {risk_fraction!r}")
        u = np.zeros(n, dtype=np.float64)
    else:
        raise ValueError(f"sizing must be 'fixed' or 'fixed_fractional', got {sizing!r}")
    for name, val in (("stop_loss_pips", stop_loss_pips), ("take_profit_pips", take_profit_pips)):
        if val is not None and (isinstance(val, bool) or not (np.isfinite(val) and val > 0)):
            raise ValueError(f"{name} must be a positive number or None, got {val!r}")
    if not quote_to_account > 0:
        raise ValueError(f"quote_to_account must be > 0, got {quote_to_account!r}")
    sl = float(stop_loss_pips) if stop_loss_pips is not None else 0.0
    tp = float(take_profit_pips) if take_profit_pips is not None else 0.0
    if financing is None:
        if financing_days is not None:
            raise ValueError("financing_days was given without financing (the rates)")
        days = np.zeros(n, dtype=np.float64)
        long_rate = short_rate = 0.0
    else:
        if not isinstance(financing, FinancingRates):
            raise ValueError("financing must be a sep_research.financing.FinancingRates or "
                             f"None, got {financing!r}")
        if financing_days is None:
            raise ValueError("financing needs financing_days (candle_financing_days of the "
                             "candles' times)")
        days = np.ascontiguousarray(financing_days, dtype=np.float64)
        if days.shape != (n,) or not np.isfinite(days).all() or (days < 0).any():
            raise ValueError(f"financing_days must be {n} finite day counts >= 0, got shape "
                             f"{days.shape}")
        long_rate, short_rate = financing.long_rate, financing.short_rate
    ti, tf, nt, position, eq_pips, eq_ccy, costs, fin = backtest_nb(
        tgt, u, bid, ask, float(pip), sl, tp, mode, float(risk_fraction),
        float(initial_balance), float(quote_to_account), price_decimals(pip),
        days, float(long_rate), float(short_rate),
    )
    return ArrayBacktest(ti[:nt], tf[:nt], position, eq_pips, eq_ccy, float(costs[0]),
                         float(costs[1]), float(fin[0]), float(fin[1]))


def run_backtest(
    frame: pd.DataFrame,
    target: Any,
    *,
    instrument: str | None = None,
    pip: float | None = None,
    units: float | Any = 1.0,
    sizing: str = "fixed",
    risk_fraction: float = 0.01,
    initial_balance: float = 10_000.0,
    quote_to_account: float = 1.0,
    half_spread_pips: float | None = None,
    stop_loss_pips: float | None = None,
    take_profit_pips: float | None = None,
    financing: FinancingRates | None = None,
    granularity: str | None = None,
) -> BacktestResult:
    """Backtest target directions on candles; see the module docstring for the rules.

    Parameters
    ----------
    frame: candle frame (mid prices, and bid/ask where the data has them).
    target: one of -1/0/+1 per candle, decided at that candle's close.
    instrument, pip: the pip size (price per pip) comes from ``pip``, else from the instrument
        (0.01 for JPY pairs, else 0.0001), else from the frame's provenance.
    units: fixed units per position, a scalar or one value per candle (the units of an entry
        decided at that close). Used when ``sizing="fixed"``.
    sizing: ``"fixed"`` or ``"fixed_fractional"`` (units = floor(balance * risk_fraction /
        (stop_loss_pips * pip * quote_to_account)); needs ``stop_loss_pips``).
    quote_to_account: account-currency value of one unit of the quote currency (1 for a USD
        account trading EUR_USD). Assumed constant.
    half_spread_pips: use mid +/- this half-spread instead of the frame's bid/ask; required when
        the frame has no bid/ask.
    stop_loss_pips, take_profit_pips: distances from the entry fill; None disables.
    financing: overnight financing rates (:class:`sep_research.financing.FinancingRates`) or
        None (off); charged at the rollovers between the candles' times (see the module
        docstring). ``granularity`` (else the frame's provenance) gives the last candle's end.
    """
    n = len(frame)
    if n < 2:
        raise ValueError(f"a backtest needs at least 2 candles, got {n}")
    tgt = check_target(target, n)
    pip_value = _pip_for(frame, instrument, pip)
    bid, ask, source = quote_arrays(frame, half_spread_pips=half_spread_pips, pip=pip_value)
    days = None
    if financing is not None:
        if granularity is None:
            prov = frame.attrs.get("provenance") or {}
            granularity = prov.get("granularity") if isinstance(prov, dict) else None
        if granularity is None:
            raise ValueError("financing needs granularity= (the frame has no provenance "
                             "naming one): it sets the last candle's end")
        days = candle_financing_days(frame.index, financing, granularity=granularity)
    bt = backtest_arrays(tgt, bid, ask, pip=pip_value, units=units, sizing=sizing,
                         risk_fraction=risk_fraction, initial_balance=initial_balance,
                         quote_to_account=quote_to_account, stop_loss_pips=stop_loss_pips,
                         take_profit_pips=take_profit_pips, financing=financing,
                         financing_days=days)
    idx = frame.index
    ti, tf, nt = bt.trades_i, bt.trades_f, bt.n_trades
    trades = pd.DataFrame(
        {
            "entry_time": idx[ti[:, 0]] if nt else pd.DatetimeIndex([], tz="UTC"),
            "exit_time": idx[ti[:, 1]] if nt else pd.DatetimeIndex([], tz="UTC"),
            "entry_index": ti[:, 0],
            "exit_index": ti[:, 1],
            "direction": ti[:, 2].astype(np.int8),
            "units": tf[:, 0],
            "entry_price": tf[:, 1],
            "exit_price": tf[:, 2],
            "pips": tf[:, 3],
            "pnl": tf[:, 4],
            "cost_pips": tf[:, 5],
            "cost_pnl": tf[:, 6],
            "financing_pips": tf[:, 7],
            "financing_pnl": tf[:, 8],
            "exit_reason": [EXIT_REASONS[int(r)] for r in ti[:, 3]],
        }
    )
    u = np.broadcast_to(np.asarray(units, dtype=np.float64), (n,)) if sizing == "fixed" else None
    return BacktestResult(
        trades=trades,
        equity_pips=pd.Series(bt.equity_pips, index=idx, name="equity_pips"),
        equity_ccy=pd.Series(bt.equity_ccy, index=idx, name="equity_ccy"),
        position=pd.Series(bt.position, index=idx, name="position"),
        costs_pips=bt.costs_pips,
        costs_ccy=bt.costs_ccy,
        initial_balance=float(initial_balance),
        price_source=source,
        settings={
            "pip": pip_value, "sizing": sizing, "units": None if u is None else (
                float(u[0]) if np.all(u == u[0]) else "per-candle"),
            "risk_fraction": risk_fraction if sizing == "fixed_fractional" else None,
            "quote_to_account": quote_to_account, "half_spread_pips": half_spread_pips,
            "stop_loss_pips": stop_loss_pips, "take_profit_pips": take_profit_pips,
            "financing": None if financing is None else financing.to_dict(),
        },
        financing_pips=bt.financing_pips,
        financing_ccy=bt.financing_ccy,
    )


def positions_from_actions(actions: Any, *, hold: str = "flat") -> np.ndarray:
    """Target directions from per-candle actions (+1 BUY, -1 SELL, 0 HOLD).

    ``hold="flat"``: HOLD means no position (each signal is a one-candle trade, matching the
    one-candle scoring horizon). ``hold="keep"``: HOLD keeps the previous target.
    """
    a = np.asarray(actions)
    if not np.isin(a, (-1, 0, 1)).all():
        raise ValueError("actions must hold only -1 (SELL), 0 (HOLD), +1 (BUY)")
    a = a.astype(np.int8)
    if hold == "flat":
        return a.copy()
    if hold == "keep":
        out = a.copy()
        for i in range(1, len(out)):
            if out[i] == 0:
                out[i] = out[i - 1]
        return out
    raise ValueError(f"hold must be 'flat' or 'keep', got {hold!r}")
