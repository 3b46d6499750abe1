"""Execution and accounting: fills, cancels, the orders a fill attaches, P/L, margin and the
account's money.

This module owns every change to an account's money and positions, each written as its
transaction through :class:`~sep_research.emulator.book.TransactionLog`:

- **prices and conversion**: quotes at the instrument's display precision from the replayed
  path; amounts are in the account currency (USD), a pair's quote currency converted with
  :func:`sep_research.fx.conversion_rate` (the pair itself for ``USD_XXX``, else ``XXX_USD`` or
  ``USD_XXX``, which must be loaded) at the mid of the moment;
- **fills** (:meth:`Accounting.execute`): which trades an order closes or reduces (netting
  accounts first-in-first-out, hedging accounts only when asked), the margin check of the
  opening part, the on-fill take-profit / stop-loss checks (``*_ON_FILL_LOSS``, a stop whose
  price the distance would make zero or negative), realised P/L into the trade, the position
  and the balance, and the dependent orders the fill creates or cancels;
- **cancels** and **account opening** (CREATE, CLIENT_CONFIGURE, TRANSFER_FUNDS);
- **daily financing** (:meth:`Accounting.charge_financing`, OANDA's ``DAILY_FINANCING``), called
  by :meth:`sep_research.emulator.venue.Venue.sync` at each rollover (17:00 New York) the clock
  passes, before any fill at or after that instant: every trade open just before the rollover
  pays (or receives) :meth:`sep_research.financing.FinancingRates.amount` of its units, valued at
  the mid close (``(bid + ask) / 2``) of the last stored candle that starts before the rollover,
  for the days :meth:`~sep_research.financing.FinancingRates.days_charged` gives that rollover
  (none on a 0-day rollover: Saturday's and Sunday's by default), in the account currency at the
  same moment's conversion. The rule and the rates are :mod:`sep_research.financing`'s (the
  backtest's); each trade's amount is rounded to the cent's hundredth, a position's and the
  transaction's are the sums of their trades'. The money moves through :meth:`Accounting.credit`
  into the balance and the account's ``financing`` (not its ``pl``, which is the fills' realised
  P/L, as at OANDA), and into each trade's and position side's ``financing``. The account's
  financing mode is ``DAILY``: a fill's own ``financing`` stays ``"0.0000"`` (OANDA's
  second-by-second mode would charge the accrued part at the close).

No commission or slippage is charged (``"0.0000"``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sep_research import fx
from sep_research.emulator.book import ZERO, TransactionLog, VenueAccount, VenueOrder, VenueTrade
from sep_research.emulator.market import Series
from sep_research.emulator.orders import DEPENDENT_TYPES, FILL_REASON, ON_FILL, Attached
from sep_research.emulator.wire import fmt_time, money, qmoney
from sep_research.financing import FinancingRates, rollovers

ONE = Decimal(1)
ACCOUNT_CURRENCY = "USD"


def dec_price(x: float, prec: int) -> Decimal:
    return Decimal(f"{x:.{prec}f}")


def next_rollover_ns(t: int) -> int:
    """The first rollover (17:00 New York, :func:`sep_research.financing.rollovers`) after
    ``t``, in nanoseconds."""
    start = fx.from_ns(t)
    return fx.to_ns(rollovers(start, start + timedelta(days=2))[0])


class Accounting:
    """The money side of the venue (see the module docstring)."""

    def __init__(self, market: dict[str, Series], log: TransactionLog, *,
                 financing: dict[str, FinancingRates | None] | None = None) -> None:
        self.market = market
        self.log = log
        #: each instrument's financing rates (None: no financing for it)
        self.financing: dict[str, FinancingRates | None] = {
            name: (financing or {}).get(name) for name in market}
        known = dict.fromkeys(market, 1.0)
        self._conv: dict[str, str | None] = {}
        for name in market:
            quote = fx.currencies(name)[1]
            if quote == ACCOUNT_CURRENCY:
                self._conv[name] = None
                continue
            if fx.conversion_rate(quote, ACCOUNT_CURRENCY, known) is None:
                raise ValueError(
                    f"instrument {name}: P/L in {quote} cannot be converted to "
                    f"{ACCOUNT_CURRENCY}; also load {quote}_{ACCOUNT_CURRENCY} or "
                    f"{ACCOUNT_CURRENCY}_{quote}")
            direct = f"{quote}_{ACCOUNT_CURRENCY}"
            self._conv[name] = direct if direct in market else f"{ACCOUNT_CURRENCY}_{quote}"

    # -- prices ---------------------------------------------------------------------------
    def price(self, name: str, comp: str, t: int) -> Decimal:
        """Component ``comp`` (M, B, A) of ``name`` at ``t``, at display precision."""
        s = self.market[name]
        v = s.value_at(comp, t)
        return dec_price(v if v is not None else 0.0, s.spec.display_precision)

    def quote_to_usd(self, name: str, t: int) -> Decimal:
        """Account-currency value of one unit of ``name``'s quote currency at ``t``."""
        pair = self._conv[name]
        if pair is None:
            return ONE
        mid = self.market[pair].value_at("M", t)
        if not mid:
            return ONE
        m = dec_price(mid, self.market[pair].spec.display_precision)
        rate = fx.conversion_rate(fx.currencies(name)[1], ACCOUNT_CURRENCY, {pair: float(m)})
        return Decimal(repr(rate)) if rate is not None else ONE

    def stop_price(self, name: str, long: bool, distance: Decimal, t: int) -> Decimal:
        """A stop-loss price from a distance: below the ask for a long trade, above the bid
        for a short one (as OANDA does)."""
        ref = self.price(name, "A" if long else "B", t)
        return ref - distance if long else ref + distance

    # -- valuation ------------------------------------------------------------------------
    def trade_upl(self, tr: VenueTrade, t: int) -> Decimal:
        px = self.price(tr.instrument, "B" if tr.units > 0 else "A", t)
        return qmoney(tr.units * (px - tr.price) * self.quote_to_usd(tr.instrument, t))

    def trade_value(self, tr: VenueTrade, t: int) -> Decimal:
        px = self.price(tr.instrument, "B" if tr.units > 0 else "A", t)
        return qmoney(abs(tr.units) * px * self.quote_to_usd(tr.instrument, t))

    def totals(self, acct: VenueAccount, t: int) -> dict[str, Decimal]:
        """Unrealised P/L, position value, NAV, margin used and margin available."""
        upl = ZERO
        pv = ZERO
        for tr in acct.trades.values():
            if tr.state == "OPEN":
                upl += self.trade_upl(tr, t)
                pv += self.trade_value(tr, t)
        nav = acct.balance + upl
        mu = qmoney(pv * acct.margin_rate)
        return {"upl": upl, "pv": pv, "nav": nav, "mu": mu, "ma": nav - mu}

    # -- money ----------------------------------------------------------------------------
    def credit(self, acct: VenueAccount, amount: Decimal, *, financing: bool = False) -> None:
        """Book realised P/L (``financing``: a financing charge or credit) into the balance and
        the account's ``pl`` (or its ``financing``)."""
        acct.balance += amount
        if financing:
            acct.financing += amount
        else:
            acct.pl += amount

    # -- financing ------------------------------------------------------------------------
    def financing_on(self) -> bool:
        """Whether any instrument has financing rates."""
        return any(r is not None for r in self.financing.values())

    def charge_financing(self, acct: VenueAccount, rollover: datetime) -> dict[str, Any] | None:
        """OANDA's ``DAILY_FINANCING`` at ``rollover`` (a 17:00 New York instant) on the trades
        open now, i.e. just before it (see the module docstring); None when no open trade has
        rates and days to pay. Called inside the rollover's event (the log's time is it)."""
        r_ns = fx.to_ns(rollover)
        positions: list[dict[str, Any]] = []
        total = ZERO
        for name in sorted({tr.instrument for tr in acct.open_trades()}):
            rates = self.financing.get(name)
            if rates is None:
                continue
            days = rates.days_charged(rollover)
            if days == 0:
                continue
            s = self.market[name]
            i = s.locate(r_ns - 1)  # the last stored candle that starts before the rollover
            if i < 0:
                continue
            price = 0.5 * (s.vert["B"][3][i] + s.vert["A"][3][i])
            conv = self.quote_to_usd(name, r_ns - 1)
            trades = []
            pos_total = ZERO
            quote_total = 0.0
            for tr in acct.open_trades(name):
                amount = qmoney(Decimal(repr(rates.amount(tr.units, price, days,
                                                          quote_to_account=float(conv)))))
                quote = rates.amount(tr.units, price, days)
                tr.financing += amount
                side = "long" if tr.initial > 0 else "short"
                acct.pos_fin.setdefault(name, {"long": ZERO, "short": ZERO})[side] += amount
                pos_total += amount
                quote_total += quote
                trades.append({"tradeID": str(tr.id), "financing": money(amount),
                               "quoteFinancing": f"{quote:.6f}",
                               "financingRate": f"{rates.rate(tr.units):.6f}"})
            factor = {"factor": str(conv.quantize(Decimal("0.000000001")))}
            positions.append({"instrument": name, "financing": money(pos_total),
                              "quoteFinancing": f"{quote_total:.6f}",
                              "homeConversionFactors": {"gainQuoteHome": factor,
                                                        "lossQuoteHome": dict(factor)},
                              "accountFinancingMode": "DAILY", "openTradeFinancings": trades})
            total += pos_total
        if not positions:
            return None
        self.credit(acct, total, financing=True)
        return self.log.write(acct, "DAILY_FINANCING", financing=money(total),
                              accountBalance=money(acct.balance), accountFinancingMode="DAILY",
                              positionFinancings=positions)

    def open_account(self, acct: VenueAccount) -> None:
        """CREATE, CLIENT_CONFIGURE and TRANSFER_FUNDS at the account's creation time."""
        with self.log.event(acct, acct.created, new_request=False):
            self.log.write(acct, "CREATE", divisionID=1, siteID=101,
                           accountUserID=acct.user_id,
                           accountNumber=int(acct.id.split("-")[-1]) if acct.id[-1].isdigit()
                           else 1, homeCurrency=ACCOUNT_CURRENCY)
            self.log.write(acct, "CLIENT_CONFIGURE", alias=acct.alias,
                           marginRate=acct.margin_rate_str)
            acct.balance = qmoney(acct.initial_balance)
            self.log.write(acct, "TRANSFER_FUNDS", amount=money(acct.balance),
                           fundingReason="CLIENT_FUNDING", accountBalance=money(acct.balance))

    # -- orders ---------------------------------------------------------------------------
    def cancel(self, acct: VenueAccount, o: VenueOrder, reason: str, **extra: Any
               ) -> dict[str, Any]:
        tx = self.log.write(acct, "ORDER_CANCEL", orderID=str(o.id), clientOrderID=o.client_id,
                            reason=reason, **extra)
        o.w["state"] = "CANCELLED"
        o.w["cancellingTransactionID"] = tx["id"]
        o.w["cancelledTime"] = tx["time"]
        if o.kind in DEPENDENT_TYPES and o.trade_id is not None:
            tr = acct.trades.get(o.trade_id)
            if tr is not None and tr.dep.get(o.kind) == o.id:
                del tr.dep[o.kind]
        return tx

    def _refuse_fill(self, acct: VenueAccount, o: VenueOrder, name: str, remaining: int,
                     px: Decimal, closes: list[tuple[VenueTrade, int]], t: int) -> str | None:
        """Why filling the opening part ``remaining`` at ``px`` is refused, or None."""
        x = self.totals(acct, t)
        freed = sum((qmoney(self.trade_value(tr, t) * Decimal(abs(n)) / abs(tr.units)
                            * acct.margin_rate) for tr, n in closes), ZERO)
        margin = qmoney(abs(remaining) * px * self.quote_to_usd(name, t) * acct.margin_rate)
        if margin > x["ma"] + freed:
            return "INSUFFICIENT_MARGIN"
        long = remaining > 0
        tp = o.on_fill.get("takeProfitOnFill")
        sl = o.on_fill.get("stopLossOnFill")
        if tp is not None and tp.price is not None and (
                (tp.price <= px) if long else (tp.price >= px)):
            return "TAKE_PROFIT_ON_FILL_LOSS"
        if sl is not None and sl.price is not None and (
                (sl.price >= px) if long else (sl.price <= px)):
            return "STOP_LOSS_ON_FILL_LOSS"
        if sl is not None and sl.distance is not None and \
                self.stop_price(name, long, sl.distance, t) <= 0:
            return "STOP_LOSS_ON_FILL_PRICE_DISTANCE_MAXIMUM_EXCEEDED"
        return None

    def execute(self, acct: VenueAccount, o: VenueOrder, name: str, units: int, px: Decimal,
                *, target: VenueTrade | None = None, reason: str | None = None
                ) -> dict[str, Any]:
        """Fill ``units`` at ``px`` for order ``o``; returns the fill or cancel transaction."""
        t = self.log.now()
        prec = self.market[name].spec.display_precision
        conv = self.quote_to_usd(name, t)
        # which trades close or shrink
        closes: list[tuple[VenueTrade, int]] = []
        remaining = units
        if target is not None:
            closes.append((target, units))
            remaining = 0
        else:
            reduce = o.position_fill in ("REDUCE_FIRST", "REDUCE_ONLY") or (
                o.position_fill == "DEFAULT" and not acct.hedging)
            if reduce:
                for tr in acct.open_trades(name):
                    if (tr.units > 0) == (units > 0):
                        continue
                    if remaining == 0:
                        break
                    take = -tr.units if abs(tr.units) <= abs(remaining) else remaining
                    closes.append((tr, take))
                    remaining -= take
            if o.position_fill == "REDUCE_ONLY":
                remaining = 0
        if not closes and remaining == 0:
            return self.cancel(acct, o, "REDUCE_ONLY" if o.position_fill == "REDUCE_ONLY"
                               else "POSITION_CLOSEOUT_FAILED")
        initial_margin = ZERO
        if remaining:
            refused = self._refuse_fill(acct, o, name, remaining, px, closes, t)
            if refused:
                return self.cancel(acct, o, refused)
            initial_margin = qmoney(abs(remaining) * px * conv * acct.margin_rate)
        # the fill
        total_pl = ZERO
        quote_pl = ZERO
        closed_w: list[dict[str, Any]] = []
        reduced_w = None
        fill_id = str(acct.last_id + 1)
        for tr, n in closes:
            pl = qmoney(-n * (px - tr.price) * conv)
            total_pl += pl
            quote_pl += -n * (px - tr.price)
            tr.units += n
            tr.realized += pl
            tr.closing.append(fill_id)
            tr.close_value += abs(n) * px
            tr.closed_units += abs(n)
            side = "long" if tr.initial > 0 else "short"
            acct.pos_pl.setdefault(name, {"long": ZERO, "short": ZERO})[side] += pl
            item = {"tradeID": str(tr.id), "units": str(n), "price": f"{px:.{prec}f}",
                    "realizedPL": money(pl), "financing": "0.0000",
                    "guaranteedExecutionFee": "0.0000", "halfSpreadCost": "0.0000"}
            if tr.client_id:
                item["clientTradeID"] = tr.client_id
            if tr.units == 0:
                tr.state = "CLOSED"
                tr.close_t = t
                closed_w.append(item)
            else:
                reduced_w = item
        self.credit(acct, total_pl)
        opened = None
        if remaining:
            opened = {"tradeID": fill_id, "units": str(remaining), "price": f"{px:.{prec}f}",
                      "guaranteedExecutionFee": "0.0000", "halfSpreadCost": "0.0000",
                      "initialMarginRequired": money(initial_margin)}
            if o.trade_ext:
                opened["clientExtensions"] = dict(o.trade_ext)
        bid = f"{self.price(name, 'B', t):.{prec}f}"
        ask = f"{self.price(name, 'A', t):.{prec}f}"
        factor = str(conv.quantize(Decimal("0.000000001")))
        tx = self.log.write(
            acct, "ORDER_FILL", orderID=str(o.id), clientOrderID=o.client_id, instrument=name,
            units=str(units), requestedUnits=str(units), price=f"{px:.{prec}f}",
            fullVWAP=f"{px:.{prec}f}",
            fullPrice={"type": "PRICE", "timestamp": fmt_time(t),
                       "bids": [{"price": bid, "liquidity": "10000000"}],
                       "asks": [{"price": ask, "liquidity": "10000000"}],
                       "closeoutBid": bid, "closeoutAsk": ask},
            reason=reason or FILL_REASON[o.kind], pl=money(total_pl),
            quotePL=money(quote_pl), financing="0.0000", baseFinancing="0.0000",
            commission="0.0000", guaranteedExecutionFee="0.0000",
            quoteGuaranteedExecutionFee="0.0000", halfSpreadCost="0.0000",
            accountBalance=money(acct.balance),
            gainQuoteHomeConversionFactor=factor, lossQuoteHomeConversionFactor=factor,
            tradeOpened=opened, tradesClosed=closed_w or None, tradeReduced=reduced_w,
        )
        assert tx["id"] == fill_id
        acct.last_fill_t = t
        o.w["state"] = "FILLED"
        o.w["fillingTransactionID"] = tx["id"]
        o.w["filledTime"] = tx["time"]
        if opened:
            o.w["tradeOpenedID"] = fill_id
        if reduced_w:
            o.w["tradeReducedID"] = reduced_w["tradeID"]
        if closed_w:
            o.w["tradeClosedIDs"] = [c["tradeID"] for c in closed_w]
        # dependents of closed trades go
        for tr, _ in closes:
            if tr.state == "CLOSED":
                for kind in list(tr.dep):
                    dep = acct.orders[tr.dep[kind]]
                    if dep is not o and dep.state == "PENDING":
                        self.cancel(acct, dep, "LINKED_TRADE_CLOSED", closedTradeID=str(tr.id),
                                    tradeCloseTransactionID=fill_id)
                tr.dep.clear()
        if opened:
            tr = VenueTrade(int(fill_id), name, remaining, px, t)
            tr.initial_margin = initial_margin
            tr.ext = dict(o.trade_ext) if o.trade_ext else None
            acct.trades[tr.id] = tr
            for key, _, _ in ON_FILL:
                att = o.on_fill.get(key)
                if att is not None:
                    self.create_dependent(acct, tr, att, "ON_FILL", fill_id=fill_id)
        return tx

    def create_dependent(self, acct: VenueAccount, tr: VenueTrade, att: Attached, reason: str,
                         replaces: VenueOrder | None = None, fill_id: str | None = None
                         ) -> dict[str, Any]:
        """A TAKE_PROFIT, STOP_LOSS or TRAILING_STOP_LOSS order on trade ``tr``."""
        t = self.log.now()
        kind = att.kind
        prec = self.market[tr.instrument].spec.display_precision
        fields: dict[str, Any] = {"tradeID": str(tr.id), "clientTradeID": tr.client_id,
                                  "timeInForce": att.tif, "triggerCondition": att.trigger}
        price = att.price
        dist = att.distance
        if kind == "STOP_LOSS" and price is None and dist is not None:
            price = self.stop_price(tr.instrument, tr.units > 0, dist, t)
            fields["distance"] = f"{dist:.{prec}f}"
        if kind == "TRAILING_STOP_LOSS":
            fields["distance"] = f"{dist:.{prec}f}"
        else:
            fields["price"] = f"{price:.{prec}f}"
        if att.gtd is not None:
            fields["gtdTime"] = fmt_time(att.gtd)
        if att.ext:
            fields["clientExtensions"] = dict(att.ext)
        if replaces is not None:
            fields["replacesOrderID"] = str(replaces.id)
        tx = self.log.write(acct, f"{kind}_ORDER", reason=reason,
                            orderFillTransactionID=fill_id, **fields)
        w = {"id": tx["id"], "createTime": tx["time"], "type": kind, "state": "PENDING",
             **{k: v for k, v in fields.items() if v is not None}}
        o = VenueOrder(int(tx["id"]), kind, t, w)
        o.trade_id = tr.id
        o.price = price
        o.distance = dist
        o.trigger = att.trigger
        o.tif = att.tif
        o.gtd = att.gtd
        if kind == "TRAILING_STOP_LOSS":
            assert dist is not None
            ref = float(self.price(tr.instrument, "B" if tr.units > 0 else "A", t))
            o.peak, o.peak_t = ref, t
            stop = ref - float(dist) if tr.units > 0 else ref + float(dist)
            w["trailingStopValue"] = f"{stop:.{prec}f}"
        acct.orders[o.id] = o
        tr.dep[kind] = o.id
        if replaces is not None:
            replaces.w["replacedByOrderID"] = tx["id"]
        return tx
