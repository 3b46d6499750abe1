"""QFH numeric kernels: scalar bodies written once, run as plain Python, numba CPU or CUDA.

Layout (see each module's docstring):

- :mod:`~sep_research.kernels.qfh`: the spec's math as plain-Python scalar functions
  (no numba, no numpy calls); the live runner runs these directly;
- :mod:`~sep_research.kernels.fixed`: exact fixed-point pip sums (scalar bodies) and the
  brute force that accumulates them;
- :mod:`~sep_research.kernels.thresholds`: the threshold-space sweep (scalar bodies);
- :mod:`~sep_research.kernels.plan`: which rows of a sweep grid go to which method (numpy);
- :mod:`~sep_research.kernels.loops`: loop drivers (features, one config's signals, the
  fused sweeps) over the scalar bodies;
- :mod:`~sep_research.kernels.nb`: numba CPU twins (``*_nb``), imported only when used,
  cached on disk by :mod:`~sep_research.kernels.cache`;
- :mod:`~sep_research.kernels.cu`: numba-cuda twins (``*_cu``) and kernels, imported only
  when used;
- :mod:`~sep_research.kernels.engine`: the engine switch (``auto | cpu | cuda | python``)
  and the array entry points ``compute_features``, ``compute_feature_table``,
  ``compute_signals``, ``run_sweep``.

``import sep_research.kernels`` imports neither numba nor pandas.
"""

from sep_research.kernels.engine import (
    ENGINES,
    EngineError,
    compute_feature_table,
    compute_features,
    compute_signals,
    cuda_available,
    resolve_engine,
    run_sweep,
)

__all__ = ["ENGINES", "EngineError", "compute_feature_table", "compute_features",
           "compute_signals", "cuda_available", "resolve_engine", "run_sweep"]
