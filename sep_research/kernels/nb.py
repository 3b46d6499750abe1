"""numba CPU twins of the scalar bodies and loop drivers (names ending in ``_nb``).

Importing this module imports numba; nothing imports it at package import time. Every
function of :data:`sep_research.kernels.qfh.SCALAR_FUNCTIONS` is available here as
``<name>_nb`` (compiled with ``njit``), and the drivers of
:mod:`sep_research.kernels.loops` as ``features_into_nb``, ``signals_into_nb`` and
``sweep_into_nb`` (``njit(parallel=True)``, ``prange`` over elements or configurations).
Compiled without fastmath, so no floating-point contraction or reordering happens.

Every compiled function is cached on disk by :mod:`sep_research.kernels.cache` (outside the
source tree, keyed by a hash of all kernel sources and the compiler versions), so a second
process loads machine code instead of compiling it.
"""

from __future__ import annotations

import numba

from sep_research.kernels import cache
from sep_research.kernels.loops import PARALLEL_DRIVERS, rebind


def _decorate(name: str, func):
    # numba's own cache=True would key a driver's cache to loops.py alone, though it inlines
    # bodies from qfh.py, fixed.py and thresholds.py: a change there could run stale code.
    # The kernel cache is keyed to all of them (see sep_research.kernels.cache).
    disp = numba.njit(parallel=name in PARALLEL_DRIVERS, cache=False, nogil=True)(func)
    return cache.attach(disp)


_NS = rebind(_decorate, prange_impl=numba.prange)

transition_counts_nb = _NS["transition_counts"]
entropy_of_counts_nb = _NS["entropy_of_counts"]
base_coherence_nb = _NS["base_coherence"]
damping_and_template_nb = _NS["damping_and_template"]
window_metrics_nb = _NS["window_metrics"]
window_span_nb = _NS["window_span"]
range_mean_nb = _NS["range_mean"]
volume_factor_nb = _NS["volume_factor"]
vol_multiplier_nb = _NS["vol_multiplier"]
candle_features_nb = _NS["candle_features"]
temporal_factor_at_nb = _NS["temporal_factor_at"]
seed_scores_nb = _NS["seed_scores"]
seed_decide_nb = _NS["seed_decide"]
signal_at_nb = _NS["signal_at"]
sweep_partial_nb = _NS["sweep_partial"]
features_into_nb = _NS["features_into"]
signals_into_nb = _NS["signals_into"]
sweep_into_nb = _NS["sweep_into"]
sweep_exact_into_nb = _NS["sweep_exact_into"]
tsweep_into_nb = _NS["tsweep_into"]
period_net_into_nb = _NS["period_net_into"]
