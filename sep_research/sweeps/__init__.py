"""Sweeps of the seed rule spread over several Dask workers (one per GPU, or CPU processes).

- :mod:`sep_research.sweeps.distributed`: :func:`sweep_distributed` (split by instrument and
  by blocks of configurations, one Dask task per pair, merged back in grid order, bit-identical
  to one :func:`~sep_research.signals.sweep.sweep_seed` call), :func:`sweep_ranges` (many
  scoring ranges on inputs prepared once: the walk-forward on Dask), :func:`gpu_worker_env`,
  :func:`cpu_worker_env`, :func:`plan_blocks`.
- :mod:`sep_research.sweeps.batch`: running sweep grid files (``kind: sweep``; their schema,
  shared with notebook grids, is :mod:`sep_research.reporting.grid_schema`) for ``sep batch``
  and the report folders they write (``reports/runs/RUN_ID/``).
- :mod:`sep_research.sweeps.cli`: ``sep batch`` itself: :func:`run_batch` (papermill runs of a
  notebook grid on Dask), :func:`run_sweep_batch`, :func:`make_cluster` (the one place worker
  processes are made).

Importing this package imports nothing heavy.
"""

from __future__ import annotations

from sep_research._util import lazy_getattr

_LAZY = {
    "sweep_distributed": "sep_research.sweeps.distributed",
    "sweep_ranges": "sep_research.sweeps.distributed",
    "DistributedSweep": "sep_research.sweeps.distributed",
    "plan_blocks": "sep_research.sweeps.distributed",
    "gpu_worker_env": "sep_research.sweeps.distributed",
    "cpu_worker_env": "sep_research.sweeps.distributed",
    "visible_gpu_ids": "sep_research.sweeps.distributed",
    "load_sweep_grid": "sep_research.reporting.grid_schema",
    "read_batch_grid": "sep_research.reporting.grid_schema",
    "run_sweep_grid": "sep_research.sweeps.batch",
    "run_batch": "sep_research.sweeps.cli",
    "run_sweep_batch": "sep_research.sweeps.cli",
    "make_cluster": "sep_research.sweeps.cli",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = list(_LAZY)
