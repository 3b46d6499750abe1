"""The fill model: where an order executes and when a stop-loss or take-profit triggers.

Pure Python, standard library only, so that the live runner's paper broker can reuse it without
numba or pandas. The numba backtest (:mod:`sep_research.backtest.nb`) compiles these very
functions with ``numba.njit`` (no retyped copy), so every path applies one set of rules; keep
them to scalar arithmetic that numba compiles (``tests/test_backtest.py`` checks the numba
backtest against the plain-Python reference bit for bit).

Rules
-----
* **Market orders** decided at the close of candle ``t`` execute at the **open of** ``t+1``:
  a buy (opening a long or closing a short) at the **ask**, a sell at the **bid**.
* **Prices without bid/ask:** ``bid = mid - half_spread``, ``ask = mid + half_spread`` with a
  configured half-spread (see :func:`quote_from_mid`).
* **Prices are on the instrument's grid** (its quote precision, one decimal beyond the pip:
  5 decimals for EUR_USD, 3 for USD_JPY; :func:`price_decimals`), as a broker quotes them and
  holds stop and take-profit levels (:func:`on_price_grid`). So a stop exactly at a candle's
  low is a tie that counts as reached, the same for every instrument, rather than a matter
  of floating-point noise.
* **Stop-loss / take-profit** are price levels set from the entry fill:
  long ``stop = entry - sl_pips * pip``, ``take = entry + tp_pips * pip``, on the price grid;
  short the mirror.
  A long is closed by selling, so its levels are checked on the candle's **bid** range; a short is
  closed by buying, so on the **ask** range. The rule is conservative:

  1. a stop already passed at the candle's open (a gap) fills at the open, the worse price;
  2. else a take-profit already passed at the open fills at the take level (no price
     improvement is credited);
  3. else if the stop level lies inside the candle's range the stop fills at its level, **even
     when the take level is inside the range too** (the order of the two inside one candle is
     unknown, so the loss is assumed);
  4. else if the take level lies inside the range the take fills at its level.

  The candle on which a position is entered is checked too (its range starts at the entry open).
* **Cost of a fill:** half the quoted spread of the price component used,
  ``(ask_x - bid_x) / 2`` (for mid +/- half-spread data this is exactly the half-spread).

A disabled level is ``math.nan``: every comparison with NaN is false, so it never triggers.
"""

from __future__ import annotations

import math

#: Exit reason codes shared with the numba backtest.
EXIT_NONE = 0
EXIT_SIGNAL = 1  # the target position changed; closed at the next open
EXIT_STOP = 2  # stop-loss
EXIT_TAKE = 3  # take-profit
EXIT_END = 4  # still open at the last candle: closed at its close
EXIT_REASONS = {EXIT_SIGNAL: "signal", EXIT_STOP: "stop_loss", EXIT_TAKE: "take_profit",
                EXIT_END: "end_of_data"}


def price_decimals(pip: float) -> int:
    """Decimals of an instrument's quotes from its pip (price per pip): one beyond the pip,
    OANDA's ``displayPrecision`` (5 for 0.0001, 3 for 0.01; see
    :func:`sep_research.fx.display_precision`)."""
    if not pip > 0:
        raise ValueError(f"pip must be > 0, got {pip!r}")
    return round(-math.log10(pip)) + 1


def on_price_grid(price: float, decimals: int) -> float:
    """``price`` rounded (half up) to ``decimals`` decimals, the instrument's quote grid.

    Plain arithmetic, so that numba compiles the same operations: the numba backtest and the
    plain-Python paths give the same level to the bit."""
    scale = 10.0 ** decimals
    return math.floor(price * scale + 0.5) / scale


def quote_from_mid(mid: float, half_spread: float) -> tuple[float, float]:
    """(bid, ask) from a mid price and a half-spread in price units."""
    if not half_spread >= 0.0:
        raise ValueError(f"half_spread must be >= 0, got {half_spread!r}")
    return mid - half_spread, mid + half_spread


def entry_price(direction: int, bid: float, ask: float) -> float:
    """Price at which a position of ``direction`` (+1 long, -1 short) is opened."""
    if direction > 0:
        return ask
    if direction < 0:
        return bid
    raise ValueError("direction must be +1 (long) or -1 (short), got 0")


def exit_price(direction: int, bid: float, ask: float) -> float:
    """Price at which a position of ``direction`` is closed: a long sells at the bid."""
    if direction > 0:
        return bid
    if direction < 0:
        return ask
    raise ValueError("direction must be +1 (long) or -1 (short), got 0")


def fill_cost(bid: float, ask: float) -> float:
    """Spread cost of one fill in price units: half the quoted spread."""
    return (ask - bid) / 2.0


def stop_take_levels(
    direction: int,
    entry: float,
    pip: float,
    stop_loss_pips: float | None,
    take_profit_pips: float | None,
    decimals: int,
) -> tuple[float, float]:
    """(stop, take) price levels for a position entered at ``entry``, on the price grid of
    ``decimals`` decimals (:func:`on_price_grid`); NaN where disabled (None or <= 0)."""
    stop = math.nan
    take = math.nan
    if stop_loss_pips is not None and stop_loss_pips > 0:
        stop = on_price_grid(entry - direction * stop_loss_pips * pip, decimals)
    if take_profit_pips is not None and take_profit_pips > 0:
        take = on_price_grid(entry + direction * take_profit_pips * pip, decimals)
    return stop, take


def check_stop_take(
    direction: int,
    stop: float,
    take: float,
    bid_open: float,
    bid_high: float,
    bid_low: float,
    ask_open: float,
    ask_high: float,
    ask_low: float,
) -> tuple[int, float, int]:
    """Apply the conservative stop/take rule to one candle.

    Returns ``(reason, price, component)``: ``reason`` is :data:`EXIT_NONE`, :data:`EXIT_STOP`
    or :data:`EXIT_TAKE`; ``price`` the fill (NaN when none); ``component`` which candle price
    the fill used (0 open, 1 high, 2 low, -1 none), for the spread cost of the fill.
    """
    if direction > 0:  # closed by selling at the bid
        if bid_open <= stop:
            return EXIT_STOP, bid_open, 0
        if bid_open >= take:
            return EXIT_TAKE, take, 0
        if bid_low <= stop:
            return EXIT_STOP, stop, 2
        if bid_high >= take:
            return EXIT_TAKE, take, 1
    elif direction < 0:  # closed by buying at the ask
        if ask_open >= stop:
            return EXIT_STOP, ask_open, 0
        if ask_open <= take:
            return EXIT_TAKE, take, 0
        if ask_high >= stop:
            return EXIT_STOP, stop, 1
        if ask_low <= take:
            return EXIT_TAKE, take, 2
    return EXIT_NONE, math.nan, -1


def fixed_fractional_units(
    balance: float, risk_fraction: float, stop_loss_pips: float, pip: float,
    quote_to_account: float = 1.0,
) -> float:
    """Units such that a stop-loss hit loses about ``risk_fraction`` of ``balance``.

    ``floor(balance * risk_fraction / (stop_loss_pips * pip * quote_to_account))``, and 0 when
    the balance is not positive (no new position is opened with 0 units).
    """
    if not stop_loss_pips > 0:
        raise ValueError("fixed-fractional sizing needs a positive stop_loss_pips")
    if balance <= 0:
        return 0.0
    return float(math.floor(balance * risk_fraction / (stop_loss_pips * pip * quote_to_account)))
