"""Child-process entry point: ``python -m sep_research.emulator.child CONFIG.pickle``."""

from __future__ import annotations

import pickle
import sys


def main(argv: list[str]) -> int:
    from sep_research.emulator.app import Emulator, serve_forever

    with open(argv[0], "rb") as fh:
        config = pickle.load(fh)  # noqa: S301 - written by EmulatorProcess in the parent (0600), never user input
    serve_forever(Emulator(config))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
