"""``sep data ...``: put candles in the cache, list, verify and summarise them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any) -> None:
    data = sub.add_parser("data", help="candles: sample, fetch, import, list, verify, summary; "
                          "financing rates")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    def common_cache(p: argparse.ArgumentParser) -> None:
        p.add_argument("--cache-dir", help="cache folder (default: $SEP_CACHE_DIR or ./data/cache)")

    p = dsub.add_parser("sample", help="put a packaged real sample (default: EUR_USD H1 mid from "
                        "the backtesting package) in the cache")
    p.add_argument("--name", default=None,
                   help="which packaged sample (see --list; default backtesting-eurusd-h1)")
    p.add_argument("--list", action="store_true",
                   help="list the packaged samples and their provenance, cache nothing")
    common_cache(p)
    p.set_defaults(func=_cmd_sample)

    p = dsub.add_parser("list", help="show what is cached, with provenance")
    common_cache(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_list)

    p = dsub.add_parser("verify", help="recompute hashes of cached files and report gaps")
    common_cache(p)
    p.add_argument("--max-gaps", type=int, default=10, help="gaps to list per dataset")
    p.set_defaults(func=_cmd_verify)

    p = dsub.add_parser("import", help="import an OANDA candle JSON or a CSV file into the cache")
    p.add_argument("file", help="JSON ({'candles': [...]} or a list of candles) or CSV")
    p.add_argument("--instrument", required=True, help="e.g. EUR_USD")
    p.add_argument("--granularity", required=True, help="e.g. M1, H1, D")
    p.add_argument("--tz", default="UTC", help="time zone of times without an offset (default UTC)")
    common_cache(p)
    p.set_defaults(func=_cmd_import)

    p = dsub.add_parser("fetch", help="download candles from OANDA (or an emulator) into the cache")
    p.add_argument("--instrument", required=True)
    p.add_argument("--granularity", required=True)
    p.add_argument("--start", required=True, help="UTC date or time, e.g. 2024-01-01")
    p.add_argument("--end", required=True, help="UTC date or time (exclusive)")
    p.add_argument("--price", default="MBA", help="price components: any of M, B, A (default MBA)")
    p.add_argument(
        "--environment", default=None,
        help="practice, live or a base URL such as http://127.0.0.1:8090 "
        "(default: OANDA_ENVIRONMENT, else practice)",
    )
    p.add_argument("--env-file", help="OANDA.env file with the credentials")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    common_cache(p)
    p.set_defaults(func=_cmd_fetch)

    p = dsub.add_parser("rates", help="fetch OANDA's financing rates of instruments into the "
                        "cache folder (sep train --financing auto uses them)")
    p.add_argument("--instrument", required=True, action="append",
                   help="e.g. EUR_USD (repeat for more)")
    p.add_argument("--environment", default=None,
                   help="practice, live or a base URL (default: OANDA_ENVIRONMENT, else practice)")
    p.add_argument("--env-file", help="OANDA.env file with the credentials")
    common_cache(p)
    p.set_defaults(func=_cmd_rates)

    p = dsub.add_parser("summary", help="load, validate and summarise candles")
    p.add_argument("--source", default="sample", help="sample, cache or a file path")
    p.add_argument("--instrument", default="EUR_USD")
    p.add_argument("--granularity", default="H1")
    p.add_argument("--cache-source", default=None,
                   help="with --source cache: which cached source, e.g. file:NAME.csv "
                   "(needed when two of one kind are cached)")
    common_cache(p)
    p.set_defaults(func=_cmd_summary)


def _cache(args: argparse.Namespace) -> Any:
    from sep_research.data.cache import CandleCache

    return CandleCache(args.cache_dir)


def _prov_lines(prov: Any, indent: str = "  ") -> list[str]:
    return [
        f"{indent}source       {prov.source}",
        (f"{indent}instrument   {prov.instrument}   granularity {prov.granularity}   "
        f"price {prov.price}"),
        f"{indent}range        {prov.start} .. {prov.end}   ({prov.rows} candles)",
        f"{indent}sha256       {prov.sha256}",
        f"{indent}obtained     {prov.obtained_at}",
    ] + ([f"{indent}note         {prov.note}"] if prov.note else [])


def _cmd_sample(args: argparse.Namespace) -> int:
    from sep_research.data.sample import DEFAULT_SAMPLE, SAMPLES, load_sample

    if args.list:
        for spec in SAMPLES.values():
            default = " (the default)" if spec.name == DEFAULT_SAMPLE else ""
            print(f"{spec.name}{default}: {spec.instrument} {spec.granularity}, "
                  f"{spec.price.upper()} prices")
            print(f"  package  {spec.distribution}   file {spec.file}")
            print(f"  times    {spec.times}")
            print(f"  note     {spec.note}")
        return 0
    frame = load_sample(args.name or DEFAULT_SAMPLE)
    cache = _cache(args)
    prov = cache.write(frame)
    extra = prov.extra
    print(f"cached the packaged sample {extra.get('sample', DEFAULT_SAMPLE)} in {cache.root}:")
    print("\n".join(_prov_lines(prov)))
    for key in ("file", "licence", "price", "times"):
        if key in extra:
            print(f"  {key:<12} {extra[key]}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    cache = _cache(args)
    infos = cache.list()
    if args.json:
        print(json.dumps([{"path": str(i.path), **i.provenance.to_dict()} for i in infos],
                         indent=2))
        return 0
    if not infos:
        print(f"the cache {cache.root} is empty (try 'sep data sample')")
        return 0
    print(f"cache {cache.root}: {len(infos)} dataset(s)")
    for info in infos:
        p = info.provenance
        print(f"\n{p.instrument} {p.granularity}  [{p.source}]  {len(info.files)} file(s)")
        print("\n".join(_prov_lines(p)))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    cache = _cache(args)
    reports = cache.verify()
    if not reports:
        print(f"the cache {cache.root} is empty")
        return 0
    bad = 0
    for rep in reports:
        p = rep.dataset.provenance
        status = "ok" if rep.ok else "FAILED"
        print(f"{p.instrument} {p.granularity} [{p.source}]: {status}, {len(rep.gaps)} gap(s) "
              "outside weekends")
        for problem in rep.problems:
            print(f"  problem: {problem}")
        for a, b, n in rep.gaps[: args.max_gaps]:
            print(f"  gap: {n} candle(s) missing between {a} and {b}")
        if len(rep.gaps) > args.max_gaps:
            print(f"  ... and {len(rep.gaps) - args.max_gaps} more gap(s)")
        bad += not rep.ok
    return 1 if bad else 0


def _cmd_import(args: argparse.Namespace) -> int:
    from sep_research.data.files import read_candle_file

    frame = read_candle_file(
        args.file, instrument=args.instrument, granularity=args.granularity, tz=args.tz
    )
    read = len(frame)
    incomplete = int((~frame["complete"].to_numpy(dtype=bool)).sum())
    if read == incomplete:
        print(f"sep data import: {args.file}: read {read} candles, {incomplete} incomplete "
              "('complete': false): nothing was stored (only complete candles are stored)",
              file=sys.stderr)
        return 1
    cache = _cache(args)
    prov = cache.write(frame)
    dropped = f" ({incomplete} incomplete, not stored)" if incomplete else ""
    print(f"stored {read - incomplete} of {read} candles from {args.file}{dropped}; "
          "dataset now:")
    print("\n".join(_prov_lines(prov)))
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from sep_research.data.fetch import fetch_candles

    report = fetch_candles(
        args.instrument, args.granularity, args.start, args.end,
        price=args.price, environment=args.environment, env_file=args.env_file,
        cache=_cache(args), progress=not args.no_progress,
    )
    print(report)
    return 0


def _cmd_rates(args: argparse.Namespace) -> int:
    from sep_research.data.fetch import fetch_financing

    cache = _cache(args)
    got = fetch_financing(args.instrument, environment=args.environment,
                          env_file=args.env_file, cache=cache)
    for inst, rates in got.items():
        print(f"{inst}: {rates.describe()}")
    print(f"stored in {cache.root / 'financing.json'}")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from sep_research.data.load import load_candles
    from sep_research.data.summary import summarise

    frame = load_candles(
        args.source, args.instrument, args.granularity, cache_dir=args.cache_dir,
        cache_source=args.cache_source,
    )
    print(summarise(frame))
    return 0


def main() -> None:  # pragma: no cover
    sys.exit(0)
