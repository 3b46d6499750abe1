"""The broker port's names and its two adapters, in one import for callers that want all.

The port (:class:`Broker`, its values and errors, :func:`client_id`) is
:mod:`sep_research.live.port`; the adapters are :class:`PaperBroker`
(:mod:`sep_research.live.paper`) and :class:`OandaBroker` (:mod:`sep_research.live.oanda_broker`).
This module defines nothing of its own.
"""

from __future__ import annotations

from sep_research.live.oanda_broker import (
    OandaBroker,
    fills_from_transactions,
    financing_from_transactions,
    orders_from_transactions,
    result_from_transactions,
    trade_from_oanda,
)
from sep_research.live.paper import PaperBroker
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
    client_id,
    exit_may_have_fired,
)

__all__ = ["Account", "Activity", "AmbiguousOrder", "Broker", "BrokerError", "BrokerRecords",
           "FillEvent", "FinancingEvent", "OandaBroker", "OrderRequest", "OrderResult",
           "PaperBroker", "TradeInfo", "client_id", "exit_may_have_fired",
           "fills_from_transactions", "financing_from_transactions", "orders_from_transactions",
           "result_from_transactions", "trade_from_oanda"]
