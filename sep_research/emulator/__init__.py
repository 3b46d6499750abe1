"""A faithful OANDA v20 emulator on loopback, with a replay clock and fault injection.

A real HTTP/1.1 server that the unchanged ``oandapyV20`` client talks to: REST and streams on
one port, accounts, candles, pricing, orders, trades, positions and transactions, replaying
stored real candles. Used by the project's tests (downloader, live runner, demo) and by users
rehearsing the runner (``sep emulator --help``).

Python API::

    from sep_research.emulator import Emulator, EmulatorConfig, make_api

    with Emulator(EmulatorConfig(source="sample")) as emu:   # 127.0.0.1, ephemeral port
        emu.base_url, emu.port, emu.token, emu.account_id      # connection facts
        api = emu.api(request_params={"timeout": 5})            # an oandapyV20.API for it
        emu.clock.advance(candles=1)                             # replay clock, by hand ...
        emu.clock.advance(seconds=90); emu.clock.set("2017-09-13T00:00:00Z")
        emu.clock.run(60.0); emu.clock.pause()                   # ... or at 60x real time
        emu.clock.now()                                          # tz-aware UTC datetime
        emu.set_faults("429:0.1,slow:0.2@1.5,seed=3")            # fault injection on/off
        emu.transactions()                                       # copy of the account's log
    # leaving the block calls emu.stop(): streams end with a clean final chunk

    proc = Emulator.spawn(EmulatorConfig(speed=60))   # same, in a child process
    proc.base_url, proc.port, proc.api(), proc.advance(candles=2), proc.set_faults("cut")
    proc.stop()   # SIGTERM, clean;  proc.kill(): SIGKILL, abrupt

    api = make_api("http://127.0.0.1:8090", "TOKEN")  # registers TRADING_ENVIRONMENTS["local-8090"]

``EmulatorConfig`` fields (all optional): ``candles={"EUR_USD": frame}`` or ``source="sample"``
(default) / ``"cache"`` (with ``cache_dir``, ``granularity``), ``instruments``, ``start``
(default: the middle of the data), ``speed`` (0 = manual clock), ``balance`` (100000 USD),
``token``, ``account_id`` (``101-001-0000000-001``), ``extra_accounts``, ``foreign_token``
(None; tests only: a second token with its own account ``foreign_account_id``, which the main
token may not touch: 403), ``hedging`` (False: netting, FIFO), ``margin_rate`` ("0.02"),
``half_spread_pips`` (0.7, used where the data has no bid/ask), ``faults`` (SPEC, see
:mod:`sep_research.emulator.faults`), ``heartbeat_s`` (5), ``price_interval_s`` (0.25),
``host``, ``port`` (0 = ephemeral), ``max_connections`` (256), ``idle_timeout_s`` (60),
``header_timeout_s`` (30), ``financing`` (``"default"``: the project's indicative table at
the data's first candle; ``"off"``; or rates per instrument, see :class:`~.app.EmulatorConfig`).

Behaviour in brief:

- Candles: every granularity that is a whole multiple of the stored one (H1 -> H2 .. H12, D,
  W, M with OANDA's 17:00 New York alignment); finer ones answer ``Invalid value specified for
  'granularity'``. The candle holding the clock has ``complete: false`` and the OHLC of the
  deterministic price path so far (see :mod:`sep_research.emulator.market`); ``from`` is
  inclusive (``includeFirst``), ``to`` exclusive.
- Prices and fills follow that path; bid/ask from the data or mid -/+ the half-spread. Gaps of
  12 hours or more between stored candles (weekends) halt the market: ``tradeable: false``,
  market orders cancelled with ``MARKET_HALTED``.
- Transactions: one ID sequence per account starting with CREATE, CLIENT_CONFIGURE and
  TRANSFER_FUNDS; times are replay-clock times, so runs are deterministic.
- Answers carry the fields of OANDA's v20 reference with their wire types and links
  (``relatedTransactionIDs``, ``lastTransactionID``, ``batchID``, ``orderFillTransactionID``
  of orders created on fill, ``replacesOrderID``/``replacedByOrderID``; ``Location`` on 201,
  ``Link`` on lists cut by ``count``); ``tests/test_emulator_fields.py`` pins each endpoint.
  A take-profit or stop set on a trade at a price already reached fills in the same answer.
- Financing: OANDA's ``DAILY_FINANCING`` at each 17:00 New York rollover on the trades open
  just before it (a fill at the rollover itself comes after it), with the days each weekday
  charges (three on Wednesday for the weekend, none on Saturday and Sunday), at the rates of
  :mod:`sep_research.financing` (the backtest's rule); it moves the balance and the account's,
  trades' and positions' ``financing`` (not ``pl``), and the instruments endpoint serves the
  rates as each instrument's ``financing`` object (``sep emulator --financing``). The account's
  financing mode is ``DAILY`` (no accrued financing at a fill); no holiday calendar.
- Not emulated: commission and slippage (``"0.0000"``), partial fills, FIFO rejections of
  explicit trade closes, OANDA's own rate limits (120 requests/s, 20 streams; use the ``429``
  fault instead), ``smooth`` candles (accepted, ignored), order and position books (404),
  pricing ``homeConversions``, instruments' ``commission``, financing modes other than daily.
- Admin (not v20, the main token only): ``GET/POST /_emulator/clock`` (``advance_candles``,
  ``advance_seconds``, ``set``, ``speed``) and ``POST /_emulator/faults`` (``spec``).
- Bounds: at most ``max_connections`` connections (one more gets 503), reads bounded in time,
  bodies read only after authentication and at most 64 KiB, every number and time of a
  request checked before anything changes (400 with ``errorMessage``, never 500).

Modules: :mod:`~.app` (the emulator object, config, child process), :mod:`~.server` (HTTP,
auth, faults, streams), :mod:`~.routes` (the endpoints), :mod:`~.venue` (the trading engine),
:mod:`~.orders` (requests read into typed orders), :mod:`~.matching` (triggers on the price
path), :mod:`~.accounting` (fills, P/L, margin), :mod:`~.book` (accounts and the transaction
log), :mod:`~.views` (JSON shapes), :mod:`~.market` (replayed candles), :mod:`~.clock`,
:mod:`~.faults`, :mod:`~.wire` (request values and errors).
"""

from __future__ import annotations

from sep_research._util import lazy_getattr

_LAZY = {
    "Emulator": "sep_research.emulator.app",
    "EmulatorConfig": "sep_research.emulator.app",
    "EmulatorProcess": "sep_research.emulator.app",
    "make_api": "sep_research.emulator.app",
    "ReplayClock": "sep_research.emulator.clock",
    "FaultSpec": "sep_research.emulator.faults",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["Emulator", "EmulatorConfig", "EmulatorProcess", "FaultSpec", "ReplayClock",
           "make_api"]
