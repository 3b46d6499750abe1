"""Entry point of batch runs: ``python -m runners.batch GRID.yaml [...]`` (the same as
``sep batch``). The logic is in :mod:`sep_research.sweeps.cli`; this file only starts it."""

from __future__ import annotations

import sys

from sep_research.sweeps.cli import main

if __name__ == "__main__":
    sys.exit(main())
