"""Reconciliation on start: bring the journal in line with the account before any decision.

:func:`reconcile` runs once, before the feed starts:

1. **Whose journal is this?** The journal records the broker's environment and account ID
   (its ``meta``); a journal written for another account or environment is refused, and so is
   an account whose last transaction ID is *below* the journal's (a reset or replaced account:
   the journal's history is not this account's). Both need a human: :class:`NeedsHuman`.
2. The broker adapter gets what the journal knows (:meth:`~sep_research.live.port.Broker.resume`:
   the paper broker rebuilds itself from it).
3. The account's activity since the journal's transaction cursor is read. An **empty journal
   against an account with history** (a new journal, or one whose unsynced tail was lost in a
   power cut) imports the whole history: fills, positions, and every order named by a ``sep-``
   client ID, so an order placed before the loss is recognised and never sent again.
4. Every order still ``intent``/``unknown`` is looked up in that activity: found -> adopted
   with its real outcome, not found -> ``abandoned`` (it never reached the broker). A close
   carries no client ID at OANDA: it is confirmed by its trade being closed.
5. Fills since the cursor (stops, take-profits, our own fills) are applied, then the daily
   financing since the cursor (each trade's share).
6. Open trades: ours are adopted, ``sep-`` trades the journal lost are adopted, others are
   flagged as foreign (never touched); journal positions the account no longer holds are
   closed.
7. The cursor moves to the last transaction read.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime

from sep_research.live.journal import Journal
from sep_research.live.orders import OrderDesk
from sep_research.live.port import Account, Activity, Broker, BrokerRecords, OrderResult, TradeInfo
from sep_research.live.state import Metrics
from sep_research.live.types import fmt_time, parse_time

log = logging.getLogger("sep_research.live")


class NeedsHuman(RuntimeError):
    """The runner must not go on by itself: the message says what a person has to decide."""


def check_identity(journal: Journal, broker: Broker) -> None:
    """Refuse a journal written for another account or environment; record it on first use."""
    env, account_id = broker.identity()
    had_env, had_acct = journal.get_meta("environment"), journal.get_meta("account_id")
    if had_acct is not None and (had_acct != account_id or had_env != env):
        raise NeedsHuman(
            f"journal {journal.path} belongs to account {had_acct} on {had_env}, not "
            f"{account_id} on {env}: use that account, or give this account its own journal "
            "(journal: in the runner config, or --journal)")
    if had_acct is None:
        journal.set_meta("environment", env)
        journal.set_meta("account_id", account_id)


def broker_records(journal: Journal) -> BrokerRecords:
    closed = journal.positions("closed")
    trades = [TradeInfo(trade_id=p["trade_id"], instrument=p["instrument"], units=p["units"],
                        price=p["entry_price"], open_time=parse_time(p["opened_at"]),
                        client_id=p["client_id"], stop_loss=p["stop_loss"],
                        take_profit=p["take_profit"])
              for p in journal.positions("open")]
    done = {o["client_id"]: OrderResult(o["client_id"], o["state"], o["order_id"])
            for o in journal.orders() if o["state"] not in ("intent", "unknown")}
    return BrokerRecords(open_trades=trades,
                         realized_pl=sum(p["pl"] or 0.0 for p in closed)
                         + journal.financing_total(),
                         orders=done, last_transaction_id=journal.max_transaction_id(),
                         financing_through=journal.financing_through())


def reconcile(journal: Journal, broker: Broker, desk: OrderDesk, metrics: Metrics,
              clock: Callable[[], datetime]) -> Account:
    """See the module docstring; returns the account as read at the end."""
    check_identity(journal, broker)
    broker.resume(broker_records(journal))
    acct = broker.account()
    last = journal.last_transaction_id
    broker_last = int(acct.last_transaction_id or 0)
    if last is not None and broker_last < int(last):
        raise NeedsHuman(
            f"the account's last transaction ID ({broker_last}) is below the journal's "
            f"({last}): the account was reset or replaced, so journal {journal.path} does not "
            "describe it. Move the journal aside (keep it) to start afresh on this account")
    history = last is None and broker_last > 0
    activity = broker.activity_since(last or "0") if (last is not None or history) else \
        Activity(last_transaction_id=acct.last_transaction_id)
    if history:
        _import_history(journal, desk, activity)
    _resolve_open_orders(journal, broker, desk, metrics, activity)
    for ev in activity.fills:
        desk.apply_fill(ev, history=history)
    for fe in activity.financing:
        desk.apply_financing(fe)
    _match_open_trades(journal, broker, clock)
    if activity.last_transaction_id:
        journal.set_last_transaction_id(activity.last_transaction_id)
    return broker.account()


def _import_history(journal: Journal, desk: OrderDesk, activity: Activity) -> None:
    """An empty journal against an account with history: journal the orders the runner named
    (so none is ever sent again) and say so."""
    n = 0
    for cid, res in activity.orders.items():
        if not cid.startswith("sep-") or journal.order(cid) is not None:
            continue
        opened = res.fill.opened if res.fill is not None else None
        journal.adopt_order(cid, instrument=res.instrument or "", units=res.units,
                            state=res.state, order_id=res.order_id,
                            trade_id=opened.trade_id if opened else None,
                            time=res.fill.time if res.fill is not None else None,
                            reason="imported from the account's transactions")
        n += 1
    journal.record_decision(
        "reconcile", True, f"empty journal on an account with history: imported "
        f"{len(activity.fills)} fill(s), {len(activity.financing)} daily financing(s) and {n} "
        "runner order(s) from its transactions",
        detail={"last_transaction_id": activity.last_transaction_id})


def _resolve_open_orders(journal: Journal, broker: Broker, desk: OrderDesk, metrics: Metrics,
                         activity: Activity) -> None:
    open_now = {t.trade_id for t in broker.open_trades()}
    closed_in_activity = activity.closed_trade_ids
    for o in journal.orders(states=("intent", "unknown")):
        if o["purpose"] == "close":
            # a trade close carries no client ID: look at the trade itself
            gone = o["trade_id"] in closed_in_activity or (o["trade_id"] and
                                                           o["trade_id"] not in open_now)
            state = "filled" if gone else "abandoned"
            journal.update_order(o["client_id"], state, reason="reconciled")
            journal.record_decision(
                "reconcile", True, "close confirmed in the account" if gone else
                "close never reached the broker: abandoned", instrument=o["instrument"],
                detail={"client_id": o["client_id"], "trade_id": o["trade_id"]})
            continue
        res = activity.orders.get(o["client_id"])
        if res is None:
            journal.update_order(o["client_id"], "abandoned",
                                 reason="not found in the account's transactions")
            journal.record_decision("reconcile", True, "order never reached the "
                                    "broker: abandoned", instrument=o["instrument"],
                                    detail={"client_id": o["client_id"]})
        else:
            desk.apply_result(res, o["instrument"])
            journal.record_decision("reconcile", True, f"order adopted: {res.state}",
                                    instrument=o["instrument"],
                                    detail={"client_id": o["client_id"]})
            metrics.inc("orders_adopted")


def _match_open_trades(journal: Journal, broker: Broker, clock: Callable[[], datetime]) -> None:
    known = {p["trade_id"]: p for p in journal.positions("open")}
    ours = journal.all_client_ids()
    live_ids = set()
    for t in broker.open_trades():
        live_ids.add(t.trade_id)
        if t.trade_id in known:
            continue
        if t.client_id and t.client_id in ours:
            origin, why = "runner", "adopted a trade the runner placed"
        elif t.client_id and t.client_id.startswith("sep-"):
            origin, why = "adopted", "adopted a runner trade the journal did not know"
        else:
            origin, why = "foreign", "flagged a trade the runner did not place (not managed)"
        journal.open_position(trade_id=t.trade_id, instrument=t.instrument, units=t.units,
                              entry_price=t.price, stop_loss=t.stop_loss,
                              take_profit=t.take_profit, client_id=t.client_id, origin=origin,
                              opened_at=t.open_time)
        journal.record_decision("reconcile", True, why, instrument=t.instrument, rule=origin,
                                detail={"trade_id": t.trade_id})
    for tid in known:
        if tid not in live_ids:
            journal.close_position(tid, exit_price=math.nan, pl=0.0,
                                   reason="closed while the runner was away",
                                   closed_at=fmt_time(clock()))
            log.warning("trade %s is no longer at the broker and no fill was seen for it", tid)
