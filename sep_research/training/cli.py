"""``sep train`` (walk-forward training, writes the model artifact) and ``sep model verify``."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    from sep_research.strategy import RULES

    p = sub.add_parser(
        "train", help="walk-forward training: choose on each fold, judge on the next; "
        "print the out-of-sample table and write the model artifact")
    p.add_argument("--instrument", default="EUR_USD", help="e.g. EUR_USD")
    p.add_argument("--granularity", default="H1", help="e.g. H1, M1, D")
    p.add_argument("--source", choices=("sample", "cache"), default="sample",
                   help="sample: the packaged real EUR_USD H1 sample; cache: the candle cache")
    p.add_argument("--cache-dir", help="cache folder (default: $SEP_CACHE_DIR or ./data/cache)")
    p.add_argument("--folds", type=int, default=5, help="test folds (default 5)")
    p.add_argument("--scheme", choices=("rolling", "anchored"), default="rolling")
    p.add_argument("--objective", choices=("net_pips", "hc_accuracy", "sharpe"),
                   default="net_pips", help="what the sweep maximises on each training fold")
    p.add_argument("--min-hc", type=int, default=30,
                   help="a configuration needs this many HC signals in training (default 30)")
    p.add_argument("--rule", choices=tuple(RULES), default="seed",
                   help="signal rule (default: seed; `sep rules` lists them and their grids)")
    p.add_argument("--grid", choices=("full", "small"), default="full",
                   help="full: 10 000 configurations; small: 72 (quick look); times the "
                   "values of the rule's own grid fields")
    p.add_argument("--engine", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--half-spread-pips", type=float, default=None,
                   help="use mid +/- this half-spread; required when the data has no bid/ask "
                   "(default for mid-only data: 0.5, i.e. a 1-pip spread, stated in the output)")
    p.add_argument("--stop-loss-pips", type=_positive, default=None, metavar="PIPS",
                   help="trading policy: stop-loss this many pips from the entry fill "
                   "(default: none). The out-of-sample backtest, the baselines and the verdict "
                   "use it, and the artifact carries it to the runner")
    p.add_argument("--take-profit-pips", type=_positive, default=None, metavar="PIPS",
                   help="trading policy: take-profit this many pips from the entry fill "
                   "(default: none)")
    p.add_argument("--trade-on", choices=("hc", "all"), default="hc",
                   help="trading policy: which signals trade: hc (high-confidence only, "
                   "default) or all")
    p.add_argument("--hold", choices=("flat", "keep"), default="flat",
                   help="trading policy: what a HOLD means: flat (one-candle trades, default) "
                   "or keep (keep the position)")
    p.add_argument("--financing", choices=("auto", "default", "off"), default="auto",
                   help="overnight financing at 17:00 New York, charged by the out-of-sample "
                   "backtests and the baselines and written into the artifact: auto (rates "
                   "fetched from OANDA with 'sep data rates' into the cache folder, else the "
                   "indicative default table; default), default (the table), off")
    p.add_argument("--random", type=int, default=1000, help="random-baseline draws")
    p.add_argument("--seed", type=int, default=0, help="random seed of the baselines")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--out", required=True, help="model artifact to write (JSON)")
    p.set_defaults(func=_cmd_train)

    m = sub.add_parser("model", help="model artifacts: verify")
    msub = m.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    v = msub.add_parser("verify", help="check an artifact's checksum, form and fields")
    v.add_argument("file", help="model artifact (JSON)")
    v.set_defaults(func=_cmd_verify)


def _positive(text: str) -> float:
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of pips") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of pips, got {text!r}")
    return v


def _load(args: argparse.Namespace):
    from sep_research.fx import check_granularity, check_instrument

    check_instrument(args.instrument, name="--instrument")
    check_granularity(args.granularity)
    if args.source == "sample":
        from sep_research.data import load_sample
        from sep_research.data.sample import SAMPLE_GRANULARITY, SAMPLE_INSTRUMENT

        if (args.instrument, args.granularity) != (SAMPLE_INSTRUMENT, SAMPLE_GRANULARITY):
            raise ValueError(
                f"--source sample holds {SAMPLE_INSTRUMENT} {SAMPLE_GRANULARITY} only; "
                f"got {args.instrument} {args.granularity} (use --source cache)")
        return load_sample()
    from sep_research.data import CandleCache

    return CandleCache(args.cache_dir).load(args.instrument, args.granularity)


def _cmd_train(args: argparse.Namespace) -> int:
    from sep_research.strategy import Policy
    from sep_research.training.artifact import write_artifact
    from sep_research.training.grid import make_grid, small_grid
    from sep_research.training.summary import build_payload, oos_table
    from sep_research.training.walkforward import walk_forward

    frame = _load(args)
    half = args.half_spread_pips
    has_ba = all(c in frame.columns for c in ("bid_open", "ask_open"))
    if half is None and not has_ba:
        half = 0.5
        print("note: the candles have no bid/ask; assuming a 1.0-pip spread "
              "(--half-spread-pips 0.5)", file=sys.stderr)
    grid = make_grid(rule=args.rule) if args.grid == "full" else small_grid(rule=args.rule)
    policy = Policy(trade_on=args.trade_on, hold=args.hold,
                    stop_loss_pips=args.stop_loss_pips, take_profit_pips=args.take_profit_pips)
    print(f"rule: {args.rule} ({len(grid)} configurations); policy: {policy.describe()}",
          file=sys.stderr)
    from sep_research.data import CandleCache
    from sep_research.training.walkforward import resolve_financing

    financing = resolve_financing(args.financing, args.instrument, frame,
                                  folder=CandleCache(args.cache_dir).root)
    print("financing: " + (financing.describe() if financing is not None else "off"),
          file=sys.stderr)
    result = walk_forward(
        frame, instrument=args.instrument, granularity=args.granularity, grid=grid, policy=policy,
        n_folds=args.folds, scheme=args.scheme, objective=args.objective, min_hc=args.min_hc,
        half_spread_pips=half, financing=financing, engine=args.engine, n_random=args.random,
        seed=args.seed, progress=not args.no_progress)
    print(oos_table(result))
    art = write_artifact(args.out, build_payload(result, frame))
    print(f"wrote {args.out} (sha256 {art['sha256'][:16]}...); "
          f"verify with: sep model verify {args.out}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from sep_research.training.artifact import verify_artifact

    res = verify_artifact(args.file)
    if res.unreadable:
        print(f"sep model verify: error: {args.file}: {'; '.join(res.problems)}",
              file=sys.stderr)
        return 2
    if res.ok:
        print(f"OK {args.file} sha256 {res.sha256}")
        return 0
    print(f"FAILED {args.file}:", file=sys.stderr)
    for msg in res.problems:
        print(f"  - {msg}", file=sys.stderr)
    return 1
