"""The OANDA adapter of the broker port: OANDA v20 (or the emulator) through ``oandapyV20``.

Every call goes through :mod:`sep_research.oanda.client` (rate limit, retry rules). Reads are
retried on 429/5xx/network errors; an order POST and a trade close never are: one that fails
ambiguously raises :class:`~sep_research.live.port.AmbiguousOrder`, and
:meth:`OandaBroker.find_order` then reads the account's transactions to learn whether it was
executed.

Market orders are ``FOK`` with ``stopLossOnFill`` / ``takeProfitOnFill`` at the instrument's
display precision and, when the runner sets one, a ``priceBound`` (a fill worse than it is
cancelled by OANDA with ``BOUNDS_VIOLATION``). The client ID goes into both
``clientExtensions`` and ``tradeClientExtensions``, so the order and the trade can be found by
it after a crash.

The transaction readers (:func:`fills_from_transactions`, :func:`financing_from_transactions`,
:func:`result_from_transactions`, :func:`orders_from_transactions`) turn v20 transactions into
the port's values. Financing is OANDA's: its ``DAILY_FINANCING`` transactions (per trade, from
``positionFinancings[].openTradeFinancings``) are the activity the runner journals; the rates
the models were trained with (:meth:`OandaBroker.set_financing`) do not enter here.
"""

from __future__ import annotations

from typing import Any

from sep_research.live.port import (
    Account,
    Activity,
    AmbiguousOrder,
    Broker,
    BrokerError,
    BrokerRecords,
    FillEvent,
    FinancingEvent,
    OrderRequest,
    OrderResult,
    TradeInfo,
)
from sep_research.live.types import InstrumentInfo, parse_time


def _f(x: Any, default: float = 0.0) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return default


def trade_from_oanda(d: dict[str, Any]) -> TradeInfo:
    sl = (d.get("stopLossOrder") or {}).get("price")
    tp = (d.get("takeProfitOrder") or {}).get("price")
    return TradeInfo(
        trade_id=str(d["id"]), instrument=d["instrument"],
        units=int(float(d.get("currentUnits", d.get("initialUnits", 0)))),
        price=_f(d.get("price")), open_time=parse_time(d["openTime"]),
        client_id=(d.get("clientExtensions") or {}).get("id"),
        stop_loss=_f(sl) if sl else None, take_profit=_f(tp) if tp else None,
        unrealized=_f(d.get("unrealizedPL")))


def fills_from_transactions(txs: list[dict[str, Any]]) -> list[FillEvent]:
    """ORDER_FILL transactions as :class:`FillEvent` (client IDs looked up from the order
    transactions in the same list, or from ``tradeOpened.clientExtensions``)."""
    order_client: dict[str, str] = {}
    for tx in txs:
        ext = tx.get("clientExtensions") or {}
        if tx.get("type", "").endswith("_ORDER") and ext.get("id"):
            order_client[str(tx["id"])] = ext["id"]
    out: list[FillEvent] = []
    for tx in txs:
        if tx.get("type") != "ORDER_FILL":
            continue
        opened = None
        to = tx.get("tradeOpened")
        cid = order_client.get(str(tx.get("orderID")))
        if to:
            tcid = (to.get("clientExtensions") or {}).get("id")
            cid = cid or tcid
            opened = TradeInfo(trade_id=str(to["tradeID"]), instrument=tx["instrument"],
                               units=int(float(to["units"])), price=_f(to.get("price",
                                                                          tx.get("price"))),
                               open_time=parse_time(tx["time"]), client_id=tcid or cid)
        closed = []
        for c in (tx.get("tradesClosed") or []) + ([tx["tradeReduced"]]
                                                  if tx.get("tradeReduced") else []):
            closed.append((str(c["tradeID"]), int(float(c["units"])),
                           _f(c.get("price", tx.get("price"))), _f(c.get("realizedPL"))))
        out.append(FillEvent(
            transaction_id=str(tx["id"]), time=parse_time(tx["time"]),
            instrument=tx["instrument"], reason=str(tx.get("reason", "")),
            price=_f(tx.get("price")), units=int(float(tx.get("units", 0))), client_id=cid,
            opened=opened, closed=closed))
    return out


def financing_from_transactions(txs: list[dict[str, Any]]) -> list[FinancingEvent]:
    """DAILY_FINANCING transactions as :class:`FinancingEvent` (each trade's share from
    ``positionFinancings[].openTradeFinancings``)."""
    out: list[FinancingEvent] = []
    for tx in txs:
        if tx.get("type") != "DAILY_FINANCING":
            continue
        shares = []
        for pf in tx.get("positionFinancings") or []:
            inst = str(pf.get("instrument", ""))
            for tf in pf.get("openTradeFinancings") or []:
                shares.append((str(tf["tradeID"]), inst, _f(tf.get("financing"))))
        out.append(FinancingEvent(transaction_id=str(tx["id"]), time=parse_time(tx["time"]),
                                  amount=_f(tx.get("financing")), trades=shares))
    return out


def result_from_transactions(client_id: str, txs: list[dict[str, Any]]) -> OrderResult | None:
    """What became of the order named ``client_id``, from a list of transactions."""
    oid = None
    order_tx: dict[str, Any] = {}
    for tx in txs:
        if (tx.get("clientExtensions") or {}).get("id") == client_id and \
                tx.get("type", "").endswith("ORDER"):
            oid = str(tx["id"])
            order_tx = tx
            break
        if tx.get("type", "").endswith("ORDER_REJECT") and \
                (tx.get("clientExtensions") or {}).get("id") == client_id:
            return OrderResult(client_id, "rejected", reason=str(tx.get("rejectReason", "")),
                               instrument=tx.get("instrument"),
                               units=int(_f(tx.get("units"))))
    if oid is None:
        return None
    inst, units = order_tx.get("instrument"), int(_f(order_tx.get("units")))
    for tx in txs:
        if tx.get("type") == "ORDER_FILL" and str(tx.get("orderID")) == oid:
            evs = fills_from_transactions([t for t in txs if str(t.get("id")) == oid] + [tx])
            return OrderResult(client_id, "filled", order_id=oid, fill=evs[0] if evs else None,
                               instrument=inst, units=units)
        if tx.get("type") == "ORDER_CANCEL" and str(tx.get("orderID")) == oid:
            return OrderResult(client_id, "cancelled", order_id=oid,
                               reason=str(tx.get("reason", "")), instrument=inst, units=units)
    return OrderResult(client_id, "unknown", order_id=oid, reason="created, no fill seen yet",
                       instrument=inst, units=units)


def orders_from_transactions(txs: list[dict[str, Any]]) -> dict[str, OrderResult]:
    """The outcome of every order named by a client ID in ``txs``."""
    cids = []
    for tx in txs:
        cid = (tx.get("clientExtensions") or {}).get("id")
        if cid and tx.get("type", "").endswith(("ORDER", "ORDER_REJECT")) and cid not in cids:
            cids.append(cid)
    out = {}
    for cid in cids:
        res = result_from_transactions(cid, txs)
        if res is not None:
            out[cid] = res
    return out


class OandaBroker(Broker):
    """OANDA v20 through :mod:`sep_research.oanda.client` (see the module docstring)."""

    name = "oanda"

    def __init__(self, api: Any, account_id: str, *, environment: str = "practice",
                 limiter: Any = None, on_retry: Any = None, retries: int = 5) -> None:
        from sep_research.oanda import client as oc

        self._oc = oc
        self.api = api
        self.account_id = account_id
        self.environment = environment
        self.limiter = limiter
        self.on_retry = on_retry
        self.retries = retries
        self._currency = "USD"

    def _get(self, endpoint: Any) -> Any:
        return self._oc.request_with_retry(self.api, endpoint, limiter=self.limiter,
                                           retries=self.retries, on_retry=self.on_retry)

    def identity(self) -> tuple[str, str]:
        return self.environment, self.account_id

    def resume(self, records: BrokerRecords) -> None:
        """The account's own state is the truth: nothing to rebuild."""

    def price_text(self, info: InstrumentInfo, value: float) -> str:
        return info.price(value)

    def instrument_info(self, names: list[str]) -> dict[str, InstrumentInfo]:
        from oandapyV20.endpoints import accounts

        r = self._get(accounts.AccountInstruments(self.account_id,
                                                  params={"instruments": ",".join(names)}))
        got = {d["name"]: InstrumentInfo.from_oanda(d) for d in r.get("instruments", [])}
        missing = [n for n in names if n not in got]
        if missing:
            raise BrokerError(f"the account cannot trade {', '.join(missing)}")
        return got

    def account(self) -> Account:
        from oandapyV20.endpoints import accounts

        r = self._get(accounts.AccountSummary(self.account_id))
        a = r["account"]
        self._currency = a.get("currency", self._currency)
        return Account(balance=_f(a.get("balance")), nav=_f(a.get("NAV")),
                       unrealized=_f(a.get("unrealizedPL")), currency=self._currency,
                       last_transaction_id=str(r.get("lastTransactionID")
                                               or a.get("lastTransactionID")),
                       open_trade_count=int(a.get("openTradeCount", 0)))

    def market_order(self, req: OrderRequest) -> OrderResult:
        from oandapyV20.endpoints import orders

        order: dict[str, Any] = {
            "type": "MARKET", "instrument": req.instrument, "units": str(int(req.units)),
            "timeInForce": "FOK", "positionFill": "DEFAULT",
            "clientExtensions": {"id": req.client_id, "tag": req.tag},
            "tradeClientExtensions": {"id": req.client_id, "tag": req.tag},
        }
        if req.stop_loss:
            order["stopLossOnFill"] = {"price": req.stop_loss, "timeInForce": "GTC"}
        if req.take_profit:
            order["takeProfitOnFill"] = {"price": req.take_profit, "timeInForce": "GTC"}
        if req.price_bound:
            order["priceBound"] = req.price_bound
        ep = orders.OrderCreate(self.account_id, data={"order": order})
        try:
            r = self._oc.request_with_retry(self.api, ep, limiter=self.limiter, retries=0)
        except self._oc.OandaError as exc:
            if exc.code == 400 and isinstance(exc.body, dict):
                rej = exc.body.get("orderRejectTransaction") or {}
                return OrderResult(req.client_id, "rejected", order_id=rej.get("id"),
                                   reason=str(rej.get("rejectReason")
                                              or exc.body.get("errorCode") or exc.message),
                                   instrument=req.instrument, units=req.units)
            if isinstance(exc, self._oc.AuthError) or exc.kind is self._oc.ErrorKind.BAD_REQUEST:
                raise BrokerError(str(exc)) from None
            raise AmbiguousOrder(f"order {req.client_id}: {exc}") from None
        except ValueError as exc:  # unexpected success status
            raise AmbiguousOrder(f"order {req.client_id}: {exc}") from None
        return self._result(req, r)

    def _result(self, req: OrderRequest, r: dict[str, Any]) -> OrderResult:
        cid = req.client_id
        create = r.get("orderCreateTransaction") or {}
        oid = str(create.get("id")) if create.get("id") else None
        kw = {"instrument": req.instrument, "units": req.units}
        if r.get("orderFillTransaction"):
            txs = [create, r["orderFillTransaction"]]
            ev = fills_from_transactions(txs)
            return OrderResult(cid, "filled", order_id=oid, fill=ev[0] if ev else None, **kw)
        if r.get("orderCancelTransaction"):
            return OrderResult(cid, "cancelled", order_id=oid,
                               reason=str(r["orderCancelTransaction"].get("reason", "")), **kw)
        if r.get("orderRejectTransaction"):
            return OrderResult(cid, "rejected",
                               reason=str(r["orderRejectTransaction"].get("rejectReason", "")),
                               **kw)
        return OrderResult(cid, "cancelled", order_id=oid, reason="no fill in the response",
                           **kw)

    def transactions_since(self, txid: str) -> tuple[list[dict[str, Any]], str]:
        """Transactions after ``txid`` (all pages) and the account's last transaction ID."""
        from oandapyV20.endpoints import transactions

        out: list[dict[str, Any]] = []
        cur = str(txid)
        while True:
            r = self._get(transactions.TransactionsSinceID(self.account_id,
                                                           params={"id": cur}))
            batch = r.get("transactions", [])
            out.extend(batch)
            last = str(r.get("lastTransactionID", cur))
            if not batch or int(batch[-1]["id"]) >= int(last):
                return out, last
            cur = str(batch[-1]["id"])

    def activity_since(self, transaction_id: str) -> Activity:
        txs, last = self.transactions_since(transaction_id or "0")
        return Activity(last_transaction_id=last, fills=fills_from_transactions(txs),
                        orders=orders_from_transactions(txs),
                        financing=financing_from_transactions(txs))

    def find_order(self, client_id: str, since_transaction_id: str | None
                   ) -> OrderResult | None:
        txs, _ = self.transactions_since(since_transaction_id or "0")
        return result_from_transactions(client_id, txs)

    def close_trade(self, trade_id: str, *, client_id: str | None = None) -> FillEvent | None:
        from oandapyV20.endpoints import trades

        ep = trades.TradeClose(self.account_id, tradeID=trade_id)
        try:
            r = self._oc.request_with_retry(self.api, ep, limiter=self.limiter, retries=0)
        except self._oc.OandaError as exc:
            if exc.code == 404:
                return None  # already closed (e.g. by its stop)
            if exc.code == 400 and isinstance(exc.body, dict):
                raise BrokerError(f"close trade {trade_id}: {exc.message}") from None
            raise AmbiguousOrder(f"close trade {trade_id}: {exc}") from None
        fill = r.get("orderFillTransaction")
        if not fill:
            return None
        evs = fills_from_transactions([r.get("orderCreateTransaction") or {}, fill])
        if evs:
            evs[0].client_id = client_id
        return evs[0] if evs else None

    def open_trades(self) -> list[TradeInfo]:
        from oandapyV20.endpoints import trades

        r = self._get(trades.OpenTrades(self.account_id))
        return [trade_from_oanda(d) for d in r.get("trades", [])]
