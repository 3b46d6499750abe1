"""SEP Research: QFH bit-transition signals, honest evaluation and an OANDA runner.

The top-level package imports nothing heavy, so that the headless runner
(``sep_research.live``) starts quickly and without numba, pandas or Jupyter.
"""

__version__ = "0.1.0"
