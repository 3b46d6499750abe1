"""The ``sep`` command line.

Each area of the package owns its sub-commands in a small ``cli`` module with a
``register(subparsers)`` function. Those modules import nothing heavy at import
time: handlers import what they need when they run, so ``sep run`` (the live
runner) never loads numba, pandas or matplotlib.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Sub-command modules, in the order they appear in ``sep --help``.
COMMAND_MODULES: list[str] = [
    "sep_research.data.cli",
    "sep_research.emulator.cli",
    "sep_research.signals.cli",
    "sep_research.training.cli",
    "sep_research.demo",
    "sep_research.live.cli",
    "sep_research.sweeps.cli",
]


class CliError(Exception):
    """An error the user can fix; printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    from sep_research import __version__

    parser = argparse.ArgumentParser(
        prog="sep",
        description="SEP Research: QFH signals, honest evaluation, OANDA emulator and runner.",
    )
    parser.add_argument("--version", action="version", version=f"sep-research {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except CliError as exc:
        print(f"sep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        # Validation errors name the bad file or argument themselves.
        print(f"sep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        # Broker errors that survived their retries (e.g. OANDA 503s) are not bugs: no traceback.
        from sep_research.oanda.client import OandaError

        if not isinstance(exc, OandaError):
            raise
        print(f"sep {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    # ``python -m sep_research.cli``: run the imported module's main, so that its exception
    # classes (CliError) are the ones handlers raise, not copies in ``__main__``.
    from sep_research.cli import main as _main

    sys.exit(_main())
