"""Sweeps of the seed rule spread over several Dask workers (one per GPU, or CPU processes).

- :mod:`sep_research.sweeps.distributed`: :func:`sweep_distributed` (split by instrument and
  by blocks of configurations, one Dask task per pair, merged back in grid order, bit-identical
  to one :func:`~sep_research.signals.sweep.sweep_seed` call), :func:`gpu_worker_env`,
  :func:`cpu_worker_env`, :func:`plan_blocks`.
- :mod:`sep_research.sweeps.batch`: sweep grid files (``kind: sweep``) for ``sep batch`` and
  the report folders they write (``reports/runs/RUN_ID/``).

Importing this package imports nothing heavy.
"""

from __future__ import annotations

from sep_research._util import lazy_getattr

_LAZY = {
    "sweep_distributed": "sep_research.sweeps.distributed",
    "DistributedSweep": "sep_research.sweeps.distributed",
    "plan_blocks": "sep_research.sweeps.distributed",
    "gpu_worker_env": "sep_research.sweeps.distributed",
    "cpu_worker_env": "sep_research.sweeps.distributed",
    "visible_gpu_ids": "sep_research.sweeps.distributed",
    "load_sweep_grid": "sep_research.sweeps.batch",
    "is_sweep_grid": "sep_research.sweeps.batch",
    "run_sweep_grid": "sep_research.sweeps.batch",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = list(_LAZY)
