"""``sep emulator``: run the OANDA v20 emulator in the foreground."""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """\
fault SPEC: comma-separated KIND[:RATE][@SECONDS][xCOUNT] items and an optional seed=N.
  429          answer 429 Too Many Requests
  503          answer 503 Service Unavailable (non-JSON body)
  slow         wait SECONDS (default 2) before answering
  stall        a stream stops sending (no heartbeats) SECONDS (default 1) after opening
  cut          a stream is cut mid-chunk SECONDS (default 1) after opening
  drop-order   an order request is carried out but never answered; the connection is
               held until the client gives up (or SECONDS, default 30) and then closed
RATE (0..1, default 1) is the chance per eligible request; xCOUNT limits the hits.
Example: --faults '429:0.1,503:0.05,slow:0.1@2.0,stall:0.5,cut:0.2,drop-order:1.0x1,seed=7'

Point a client at it: TRADING_ENVIRONMENTS["local"] = {"api": URL, "stream": URL} with
oandapyV20, or sep_research.emulator.make_api(URL, TOKEN).
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "emulator", help="run the local OANDA v20 emulator (REST + streams, replayed candles)",
        description="Run a faithful OANDA v20 emulator on loopback, replaying real candles.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--port", type=int, default=8090, help="TCP port (default 8090; 0 = any)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--token", required=True, help="the bearer token clients must send")
    p.add_argument("--account-id", default="101-001-0000000-001",
                   help="account ID (OANDA form, default 101-001-0000000-001)")
    p.add_argument("--instruments", default=None,
                   help="comma-separated instruments (default: all the source holds)")
    p.add_argument("--source", choices=("sample", "cache"), default="sample",
                   help="candles: the packaged real sample or the local cache (default sample)")
    p.add_argument("--cache-dir", default=None, help="cache folder for --source cache")
    p.add_argument("--granularity", default=None,
                   help="stored granularity to replay from the cache (default: the finest)")
    p.add_argument("--start", default=None,
                   help="replay start, ISO UTC (default: the middle of the data)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="replay speed, times real time (default 1; 0 = frozen)")
    p.add_argument("--balance", type=float, default=100000.0, help="account balance in USD")
    p.add_argument("--hedging", action="store_true", help="hedging account (default netting)")
    p.add_argument("--half-spread-pips", type=float, default=0.7,
                   help="half-spread around mid where the data has no bid/ask (default 0.7)")
    p.add_argument("--faults", default=None, metavar="SPEC", help="fault injection, see below")
    p.add_argument("--financing", default="default", metavar="default|off|FILE.json",
                   help="daily financing at 17:00 New York (DAILY_FINANCING transactions): "
                   "'default' the project's indicative table at the data's first candle, 'off' "
                   "none, or a JSON file {\"EUR_USD\": {\"source\": ..., \"long_rate\": ..., "
                   "\"short_rate\": ..., \"days\": {...}} or null, ...} (default: default)")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~sep_research.emulator.app.EmulatorConfig` of ``sep emulator``: only the
    token given (no second, foreign account: that is for tests alone)."""
    from sep_research.emulator.app import EmulatorConfig
    from sep_research.emulator.faults import FaultSpec

    FaultSpec.parse(args.faults)  # a bad SPEC is a user error before anything starts
    return EmulatorConfig(financing=financing_option(args.financing),
        source=args.source, cache_dir=args.cache_dir, granularity=args.granularity,
        instruments=tuple(args.instruments.split(",")) if args.instruments else None,
        start=args.start, speed=args.speed, balance=args.balance, token=args.token,
        account_id=args.account_id, hedging=args.hedging, faults=args.faults,
        half_spread_pips=args.half_spread_pips,
        host=args.host, port=args.port,
    )


def financing_option(value: str) -> Any:
    """``--financing``: ``default``, ``off`` or a JSON file of rates per instrument (read and
    checked here; errors name the option and the file)."""
    import json
    from pathlib import Path

    from sep_research.emulator.app import FINANCING_MODES, check_financing

    if value in FINANCING_MODES:
        return value
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"--financing {value!r}: expected 'default', 'off' or a JSON file of "
                         "rates per instrument (no such file)")
    try:
        data = json.loads(path.read_bytes()[: 1 << 20])
    except (OSError, ValueError) as exc:
        raise ValueError(f"--financing {value}: not a JSON file of rates ({exc})") from None
    try:
        return check_financing(data)
    except ValueError as exc:
        raise ValueError(f"--financing {value}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from sep_research.emulator.app import Emulator, serve_forever

    emu = Emulator(config_from_args(args))
    emu.start()
    print(f"OANDA v20 emulator at {emu.base_url}  account {emu.account_id}  "
          f"instruments {','.join(emu.instruments)}  clock {emu.clock.iso()} x{args.speed:g}"
          f"  financing {_financing_text(emu)}"
          + (f"  faults {args.faults}" if args.faults else ""), flush=True)
    print("Ctrl-C to stop", flush=True)
    serve_forever(emu, ready_line=False)
    return 0


def _financing_text(emu: Any) -> str:
    parts = [f"{n} " + ("off" if r is None else r.describe().removeprefix("financing "))
             for n, r in emu.financing.items()]
    return "; ".join(parts)
