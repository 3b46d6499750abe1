"""``sep run``: the headless live runner (also ``python -m runners.live``).

::

    sep run --model ARTIFACT.json [--model ...] --config runner.yaml [--paper] [--live]

Start-up order, each step failing with a clear message and exit status 2 before any order
can be placed: the runner config (schema), the model artifact(s) (checksum, causal alignment,
instrument and granularity traded by the config), credentials (not needed with ``--paper``
and a file feed), the environment/account rule (a practice account never on live and the
reverse; a live account only with ``--live``), the journal (a corrupt one is left untouched).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", required=False, default=[],
                   metavar="ARTIFACT.json",
                   help="model artifact; one per instrument of the config (repeat the option)")
    p.add_argument("--config", metavar="runner.yaml", help="runner configuration (YAML)")
    p.add_argument("--paper", action="store_true",
                   help="paper trading with the backtest's fill model (no orders at OANDA)")
    p.add_argument("--live", action="store_true",
                   help="required to trade a live (real money) account")
    p.add_argument("--env-file", default=None, help="OANDA.env file with the credentials")
    p.add_argument("--journal", default=None, help="override the journal path of the config")
    p.add_argument("--status-host", default=None,
                   help="override status.host (0.0.0.0 in a container: the token is then "
                        "required for everything but /health and the page)")
    p.add_argument("--status-port", type=int, default=None,
                   help="override status.port (0: any free port)")
    p.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--print-config", action="store_true",
                   help="print every key with its default, description and limits (YAML) and exit")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("run", help="run the live trading runner (paper, practice, live)",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=handle)


def _error(msg: str) -> Exception:
    try:
        from sep_research.cli import CliError

        return CliError(msg)
    except ImportError:  # pragma: no cover
        return ValueError(msg)


def build(args: argparse.Namespace) -> Any:
    """Validate everything and assemble a :class:`~sep_research.live.runner.Runner`."""
    from sep_research.live.config import ConfigError, load_config
    from sep_research.live.journal import Journal, JournalError, JournalFull
    from sep_research.live.model import ModelError, load_models, warmup_for

    if not args.config:
        raise _error("--config runner.yaml is required")
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise _error(f"invalid runner config:\n{exc}") from None
    over = {k: v for k, v in (("host", getattr(args, "status_host", None)),
                              ("port", args.status_port)) if v is not None}
    if over:
        cfg = cfg.model_copy(update={"status": cfg.status.model_copy(update=over)})
    try:
        models = load_models(args.model, cfg.instruments, cfg.granularity, risk=cfg.risk,
                             warmup=cfg.feed.warmup_candles)
    except (ModelError, ValueError) as exc:
        raise _error(f"model refused: {exc}") from None
    # the history the rules need (feed.warmup_candles: null), fixed before the feed starts
    cfg = cfg.model_copy(update={"feed": cfg.feed.model_copy(
        update={"warmup_candles": warmup_for(models, cfg.feed.warmup_candles)})})

    from sep_research.live.logs import setup_logging

    status_token = os.environ.get(cfg.status.token_env) or None
    broker, feed, mode, secrets = _broker_and_feed(cfg, args)
    setup_logging(cfg.logging.level, cfg.logging.file,
                  secrets=tuple(s for s in (*secrets, status_token) if s))
    from sep_research.live.status import is_loopback

    if cfg.status.enabled and not is_loopback(cfg.status.host) and not status_token:
        raise _error(f"status.host {cfg.status.host} is not a loopback address: set "
                     f"{cfg.status.token_env} to a token (every request but /health and the page "
                     "must then carry it)")
    try:
        journal = Journal(args.journal or cfg.journal)
    except JournalFull:
        raise  # not for a person to fix by hand: handle() exits 1, systemd retries
    except JournalError as exc:
        raise _error(str(exc)) from None
    from sep_research.live.runner import Runner

    runner = Runner(cfg, models, broker, feed, journal, mode=mode, status_token=status_token,
                    model_paths=list(args.model))
    if hasattr(feed, "on_retry"):
        feed.on_retry = runner.on_retry
    if hasattr(broker, "on_retry"):
        broker.on_retry = runner.on_retry
    return runner


def _broker_and_feed(cfg: Any, args: argparse.Namespace) -> tuple[Any, Any, str, list[str]]:
    from sep_research.live.brokers import OandaBroker, PaperBroker
    from sep_research.live.feed import FeedError, FileFeed, OandaFeed, read_candle_json
    from sep_research.live.types import InstrumentInfo

    paper = None
    if args.paper:
        paper = PaperBroker(balance=cfg.paper.initial_balance, currency=cfg.paper.currency,
                            half_spread_pips=cfg.paper.half_spread_pips,
                            quote_to_account=cfg.risk.quote_to_account)
    if cfg.feed.source == "file":
        if paper is None:
            raise _error("feed.source 'file' replays candles for a dry run: use it with --paper")
        try:
            series = {i: read_candle_json(cfg.feed.files[i], i) for i in cfg.instruments}
        except FeedError as exc:
            raise _error(str(exc)) from None
        hs = {i: cfg.paper.half_spread_pips * InstrumentInfo.default(i).pip
              for i in cfg.instruments}
        return paper, FileFeed(series, cfg.granularity_seconds, half_spread=hs), "paper", []

    from sep_research.oanda.client import RateLimiter, make_api
    from sep_research.oanda.credentials import CredentialsError, load_credentials

    try:
        creds = load_credentials(args.env_file, environment=cfg.environment,
                                 require_account=paper is None)
    except CredentialsError as exc:
        hint = ("" if paper is None else "\n(paper mode without credentials: use feed.source: "
                "file with feed.files)")
        raise _error(f"credentials: {exc}{hint}") from None
    acct = creds.account_id
    live_account = bool(acct and acct.startswith("001-"))
    if paper is None and (creds.environment == "live" or live_account) and not args.live:
        raise _error(f"account {acct} on {creds.environment} is a live (real money) account: "
                     "pass --live to trade it")
    limiter = RateLimiter(cfg.feed.request_rate, max(1, int(cfg.feed.request_rate)))
    api = make_api(creds.token, creds.environment)
    if creds.is_url:
        # a loopback emulator: skip requests' per-call proxy/netrc lookup (4 ms a call)
        api.client.trust_env = False
    server_clock = creds.is_url
    feed = OandaFeed(api, acct, cfg.instruments, cfg.granularity, cfg.granularity_seconds,
                     poll_interval=cfg.feed.poll_interval_s, warmup=cfg.feed.warmup_candles,
                     backfill_max=cfg.feed.backfill_max, price=cfg.feed.price,
                     use_stream=cfg.feed.use_stream,
                     stall_timeout=cfg.feed.stall_timeout_s,
                     reconnect_base=cfg.feed.reconnect_base_s,
                     reconnect_max=cfg.feed.reconnect_max_s, limiter=limiter,
                     server_clock=server_clock)
    if paper is not None:
        return paper, feed, "paper", [creds.token]
    broker = OandaBroker(api, acct, environment=creds.environment, limiter=limiter)
    mode = "live" if live_account or creds.environment == "live" else "practice"
    return broker, feed, mode, [creds.token]


def handle(args: argparse.Namespace) -> int:
    """``sep run``: exit 0 after a clean stop, 2 for what needs a person (configuration,
    artifact, credentials, a journal of another account or a corrupt one), 1 otherwise (a
    full disk, a crash: systemd restarts the runner)."""
    from sep_research.live.journal import JournalFull

    try:
        return _handle(args)
    except JournalFull as exc:
        print(f"sep run: error: {exc}", file=sys.stderr)
        return 1


def _handle(args: argparse.Namespace) -> int:
    if getattr(args, "print_config", False):
        from sep_research.live.config import default_config_yaml

        sys.stdout.write(default_config_yaml())
        return 0
    # SIGTERM/SIGINT during start-up: finish starting (reconciliation included), then stop
    holder: dict[str, Any] = {}

    def on_signal(*_: Any) -> None:
        holder["stop"] = True
        if "runner" in holder:
            holder["runner"].stop(grace=holder["runner"].cfg.shutdown_timeout_s)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    from sep_research.live.runner import needs_human

    runner = build(args)
    holder["runner"] = runner
    if holder.get("stop"):
        runner.stop(grace=runner.cfg.shutdown_timeout_s)
    try:
        runner.start()
    except Exception as exc:
        runner.shutdown()
        if needs_human(exc):
            raise _error(_human_message(exc)) from None
        raise
    if runner.status_port is not None:
        print(f"status API: http://{runner.cfg.status.host}:{runner.status_port}",
              file=sys.stderr, flush=True)
    try:
        runner.run(max_steps=args.max_steps)
    except Exception as exc:
        if needs_human(exc):
            raise _error(_human_message(exc)) from None
        raise
    finally:
        runner.journal.close()
    return 0


def _human_message(exc: BaseException) -> str:
    from sep_research.live.journal import JournalError
    from sep_research.live.runner import NeedsHuman

    if isinstance(exc, (NeedsHuman, JournalError)):
        return f"needs a person: {exc}"
    return f"the broker refused the credentials: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sep run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return handle(args)
    except (ValueError, PermissionError, FileNotFoundError) as exc:
        print(f"sep run: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # CliError and the like
        if type(exc).__name__ == "CliError":
            print(f"sep run: error: {exc}", file=sys.stderr)
            return 2
        raise
