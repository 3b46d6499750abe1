"""``python -m sep_research`` is the ``sep`` command."""

import sys

from sep_research.cli import main

sys.exit(main())
