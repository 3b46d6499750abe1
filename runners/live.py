"""Entry point of the headless live runner: ``python -m runners.live --model A.json --config
runner.yaml [--paper] [--live]`` (the same as ``sep run``). The logic is in
:mod:`sep_research.live`; this file only starts it."""

from __future__ import annotations

import sys

from sep_research.live.cli import main

if __name__ == "__main__":
    sys.exit(main())
