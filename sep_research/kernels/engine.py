"""The engine switch and the array-level entry points of the kernels.

``engine`` is one of:

- ``"auto"``: ``"cuda"`` when a real CUDA GPU is usable, else ``"cpu"`` when numba is
  installed, else ``"python"``;
- ``"cpu"``: numba on the CPU (:mod:`sep_research.kernels.nb`);
- ``"cuda"``: numba-cuda (:mod:`sep_research.kernels.cu`); raises :class:`EngineError` when
  no GPU is usable (under ``NUMBA_ENABLE_CUDASIM=1`` the simulator counts as one, for tests);
- ``"python"``: the uncompiled scalar bodies (slow; what the live runner can use).

Entry points (arrays in, arrays out; no pandas):

- :func:`compute_features` -> float64 ``(N_FEATURES, n, n_series * n_windows)``
- :func:`compute_feature_table` -> some of them, float64 ``(n_selected, n_series * n_windows, n)``
  (the sweep's layout)
- :func:`compute_signals` -> ``(action int8, confidence float64, hc bool)`` of one config
- :func:`run_sweep` -> ``(counts int64 (7, K), sums float64 (4, K))``

Nothing here imports numba at module import time.
"""

from __future__ import annotations

import os

import numpy as np

from sep_research.kernels import qfh

ENGINES = ("auto", "cpu", "cuda", "python")

#: candles per chunk of the sweep's deterministic partial sums (same on CPU and GPU)
SWEEP_CHUNK = 8192


class EngineError(ValueError):
    """The requested engine cannot run here (e.g. ``cuda`` without a GPU)."""


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def cuda_simulated() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


_CUDA_AVAILABLE: dict[bool, bool] = {}


def cuda_available() -> bool:
    """True when numba-cuda can run kernels here (a real GPU, or the simulator). Asked of the
    driver once per process (and simulator setting): it costs about a millisecond, and
    ``engine="auto"`` asks on every call."""
    sim = cuda_simulated()
    if sim not in _CUDA_AVAILABLE:
        _CUDA_AVAILABLE[sim] = _probe_cuda()
    return _CUDA_AVAILABLE[sim]


def _probe_cuda() -> bool:
    if not numba_available():
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # any driver problem means "not available"
        return False


def resolve_engine(engine: str = "auto") -> str:
    """Map ``auto|cpu|cuda|python`` to the engine that will run, or raise EngineError."""
    if engine not in ENGINES:
        raise EngineError(f"engine={engine!r} is unknown: expected one of {', '.join(ENGINES)}")
    if engine == "auto":
        if cuda_available() and not cuda_simulated():
            return "cuda"
        return "cpu" if numba_available() else "python"
    if engine == "cpu" and not numba_available():
        raise EngineError("engine='cpu' needs numba, which is not installed (pip install numba)")
    if engine == "cuda" and not cuda_available():
        raise EngineError(
            "engine='cuda' was requested but no CUDA GPU is usable here "
            "(numba.cuda.is_available() is False); use engine='cpu' or 'auto'"
        )
    return engine


def _as_2d(x, name: str, dtype) -> np.ndarray:
    a = np.asarray(x, dtype=dtype)
    if a.ndim == 1:
        a = a.reshape(1, a.shape[0])  # (not a[None, :]: its stride 0 slows device copies)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D (one series) or 2-D (series, time), got {a.ndim}-D")
    return np.ascontiguousarray(a)


def prepare_inputs(close, high, low, volume) -> dict:
    """Validated 2-D (series, time) inputs and the bits, as the drivers take them."""
    c = _as_2d(close, "close", np.float64)
    h = _as_2d(high, "high", np.float64)
    lo = _as_2d(low, "low", np.float64)
    v = _as_2d(volume, "volume", np.float64)
    for name, a in (("high", h), ("low", lo), ("volume", v)):
        if a.shape != c.shape:
            raise ValueError(f"{name} has shape {a.shape}, close has {c.shape}")
    for name, a in (("close", c), ("high", h), ("low", lo), ("volume", v)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} holds NaN or infinite values")
    bits = (c[:, 1:] > c[:, :-1]).astype(np.int8)
    return {"close": c, "high": h, "low": lo, "volume": v, "bits": np.ascontiguousarray(bits)}


def legacy_ranges(high: np.ndarray, low: np.ndarray, prm: np.ndarray) -> np.ndarray:
    """Per series: the legacy alignment's mean range (pips) of the last vm-window candles."""
    n = high.shape[1]
    lo = max(0, n - int(prm[qfh.P_VM_WINDOW]))
    return np.array([qfh.range_mean(high[s], low[s], lo, n, prm[qfh.P_PIP])
                     for s in range(high.shape[0])], dtype=np.float64)


def _check_alignment(alignment: str) -> bool:
    if alignment not in ("causal", "legacy"):
        raise ValueError(f"alignment={alignment!r}: expected 'causal' or 'legacy'")
    return alignment == "legacy"


def _feature_args(close, high, low, volume, windows, prm, alignment: str, engine: str, bits):
    """(engine, the drivers' argument tuple, n_series, n, windows) after validation."""
    legacy = _check_alignment(alignment)
    eng = resolve_engine(engine)
    x = prepare_inputs(close, high, low, volume)
    if bits is not None:
        b = _as_2d(bits, "bits", np.int8)
        if b.shape != x["bits"].shape or np.any((b != 0) & (b != 1)):
            raise ValueError(f"bits must be 0/1 of shape {x['bits'].shape} (series, n - 1), "
                             f"got shape {b.shape}")
        x["bits"] = b
    win = np.atleast_1d(np.asarray(windows, dtype=np.int64))
    if win.ndim != 1 or win.size == 0 or np.any(win < 2):
        raise ValueError(f"windows must be a non-empty list of lengths >= 2, got {windows!r}")
    prm = np.ascontiguousarray(prm, dtype=np.float64)
    if prm.shape != (qfh.N_PARAMS,):
        raise ValueError(f"prm must have shape ({qfh.N_PARAMS},), got {prm.shape}")
    ns, n = x["high"].shape
    lr = legacy_ranges(x["high"], x["low"], prm)
    return eng, (x["bits"], x["high"], x["low"], x["volume"], win, legacy, lr, prm), ns, n, win


def _host_features(eng: str, args: tuple, ns: int, n: int, win: np.ndarray) -> np.ndarray:
    out = np.empty((qfh.N_FEATURES, n, ns * win.size), dtype=np.float64)
    if eng == "cpu":
        from sep_research.kernels import nb

        nb.features_into_nb(out, *args)
    else:
        from sep_research.kernels import loops

        loops.features_into(out, *args)
    return out


def compute_features(close, high, low, volume, windows, prm, *, alignment: str = "causal",
                     engine: str = "auto", bits=None) -> np.ndarray:
    """Per-candle features for many series and window lengths in one call.

    ``close, high, low, volume``: 1-D (one series) or 2-D ``(n_series, n)`` arrays.
    ``windows``: window lengths in bits (each >= 2). ``prm``: the parameter vector
    (``SeedParams.to_vector()``). Returns ``out[F_*, i, s * n_windows + w]`` (float64),
    rows are time; candles without features hold ``F_HAS = 0`` and NaN elsewhere.
    ``bits``: the series' bits ``(n_series, n - 1)`` of 0/1, when a rule encodes moves
    otherwise than the spec's ``close[k+1] > close[k]`` (the default).
    """
    eng, args, ns, n, win = _feature_args(close, high, low, volume, windows, prm, alignment,
                                          engine, bits)
    if eng == "cuda":
        from sep_research.kernels import cu

        return cu.features_cu(*args)
    return _host_features(eng, args, ns, n, win)


def compute_feature_table(close, high, low, volume, windows, prm, features, *,
                          alignment: str = "causal", engine: str = "auto",
                          bits=None) -> np.ndarray:
    """The features ``features`` (indices ``F_*``) in the sweep's column-major layout:
    ``out[j, s * n_windows + w, i] = compute_features(...)[features[j], i, s * n_windows + w]``,
    float64, C-contiguous; the same values bit for bit.

    On the GPU only these features come back to the host, already in this layout (the other
    features and the transposition never leave the device): the sweep reads five of the
    twenty, and copying all of them was most of a distributed block's time
    (``bench/results/multigpu-2026-12-01-h200.md``)."""
    rows = np.asarray(features, dtype=np.int64).reshape(-1)
    if rows.size == 0 or np.any((rows < 0) | (rows >= qfh.N_FEATURES)):
        raise ValueError(f"features must be indices F_* in 0 .. {qfh.N_FEATURES - 1}, "
                         f"got {features!r}")
    eng, args, ns, n, win = _feature_args(close, high, low, volume, windows, prm, alignment,
                                          engine, bits)
    if eng == "cuda":
        from sep_research.kernels import cu

        return cu.feature_table_cu(*args, rows)
    out = _host_features(eng, args, ns, n, win)
    return np.ascontiguousarray(out[rows].transpose(0, 2, 1))


def compute_signals(feat: np.ndarray, col: int, ws: float, wc: float, we: float, bt: float,
                    st: float, ct: float, cht: float, *, engine: str = "auto"):
    """(action int8, confidence float64, hc bool) per candle of one configuration."""
    eng = resolve_engine(engine)
    n = feat.shape[1]
    action = np.zeros(n, dtype=np.int8)
    conf = np.empty(n, dtype=np.float64)
    hc = np.zeros(n, dtype=np.bool_)
    args = (action, conf, hc, feat, int(col), float(ws), float(wc), float(we), float(bt),
            float(st), float(ct), float(cht))
    if eng in ("cpu", "cuda"):  # one configuration: the CPU is the right tool
        from sep_research.kernels import nb

        nb.signals_into_nb(*args)
    else:
        from sep_research.kernels import loops

        loops.signals_into(*args)
    return action, conf, hc


def run_sweep(g: np.ndarray, fw: np.ndarray, cv: np.ndarray, score_start: int, score_end: int,
              *, engine: str = "auto", chunk: int = SWEEP_CHUNK, block: int = 128,
              method: str = "auto"):
    """The fused sweep on prepared arrays (see :func:`qfh.sweep_partial` for the layouts).

    Returns ``(counts int64 (7, K), sums float64 (4, K))`` in the order of
    ``qfh.SWEEP_COUNTS`` and ``qfh.SWEEP_SUMS``. ``block`` is the CUDA block size.

    ``method`` (see :mod:`sep_research.kernels.plan`): ``"auto"`` (default) sweeps each group
    of rows that share window and weights in threshold space
    (:mod:`~sep_research.kernels.thresholds`) or by the brute force, whichever is cheaper,
    with exact fixed-point sums (:mod:`~sep_research.kernels.fixed`) either way, so the
    bits of a row depend on nothing but the row and the candles; ``"threshold"`` forces the
    threshold-space sweep; ``"brute"`` is the reference: the float brute force of earlier
    versions, whose sums depend on ``chunk`` by rounding. Counts are the same in all three.
    """
    from sep_research.kernels import fixed as _fixed
    from sep_research.kernels import plan as _plan

    eng = resolve_engine(engine)
    if not 1 <= int(chunk) < 2**21:
        raise ValueError(f"chunk={chunk}: must be in 1 .. 2**21 - 1 (the packed counters)")
    if not 1 <= int(block) <= 1024:
        raise ValueError(f"block={block}: CUDA block size must be in 1 .. 1024")
    if method not in _plan.METHODS:
        raise ValueError(f"method={method!r} is unknown: expected one of "
                         f"{', '.join(_plan.METHODS)}")
    g = np.ascontiguousarray(g, dtype=np.float64)
    fw = np.ascontiguousarray(fw, dtype=np.float64)
    cv = np.ascontiguousarray(cv, dtype=np.float64)
    lo, hi, chunk, block = int(score_start), int(score_end), int(chunk), int(block)
    p = _plan.plan_sweep(g, cv, lo, hi, method)
    if eng == "cuda":
        from sep_research.kernels import cu

        return cu.sweep_planned_cu(p, g, fw, cv, lo, hi, chunk, block)
    k = g.shape[0]
    counts = np.zeros((len(qfh.SWEEP_COUNTS), k), dtype=np.int64)
    sums = np.zeros((len(qfh.SWEEP_SUMS), k), dtype=np.float64)
    if eng == "cpu":
        from sep_research.kernels import nb as mod

        brute, exact, tsweep = mod.sweep_into_nb, mod.sweep_exact_into_nb, mod.tsweep_into_nb
    else:
        from sep_research.kernels import loops as mod

        brute, exact, tsweep = mod.sweep_into, mod.sweep_exact_into, mod.tsweep_into
    for rows, fn in ((p.brute, brute), (p.exact, exact)):
        if rows.size == 0:
            continue
        sub = np.ascontiguousarray(g[rows])
        c = np.zeros((len(qfh.SWEEP_COUNTS), rows.size), dtype=np.int64)
        s = np.zeros((len(qfh.SWEEP_SUMS), rows.size), dtype=np.float64)
        if fn is brute:
            fn(c, s, sub, fw, cv, lo, hi, chunk)
        else:
            fn(c, s, np.zeros((_fixed.N_LIMBS, rows.size), dtype=np.int64), sub, fw, cv, lo,
               hi, chunk)
        counts[:, rows] = c
        sums[:, rows] = s
    for b in p.batches:
        h = np.zeros(b.cells, dtype=np.int64)
        tsweep(counts, sums, h, b.tg, b.tw, b.tv, b.td, b.tp, b.rows, fw, cv, lo, hi)
    return counts, sums


def run_period_net(g: np.ndarray, fw: np.ndarray, cv: np.ndarray, edges, *,
                   hc_only: bool, engine: str = "auto") -> np.ndarray:
    """Traded net pips of every row per period, ``(len(edges) - 1, K)`` float64, in one pass
    (:func:`loops.period_net_into`): period ``p`` is candles ``edges[p] .. edges[p + 1] - 1``,
    ``edges`` increasing. ``hc_only``: HC signals only (``hc_sum_pips_net``), else every
    non-HOLD signal (``sum_pips_net``). Runs on the CPU for every engine but ``python`` (a
    pass over the candles per row with a few hundred outputs is not worth a GPU launch)."""
    eng = resolve_engine(engine)
    e = np.ascontiguousarray(np.asarray(edges, dtype=np.int64))
    if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) < 0) or e[0] < 0 \
            or e[-1] > np.asarray(cv).shape[1]:
        raise ValueError("edges must be an increasing list of at least two candle indices "
                         "within the prepared candles")
    g = np.ascontiguousarray(g, dtype=np.float64)
    out = np.zeros((e.size - 1, g.shape[0]), dtype=np.float64)
    if eng == "python":
        from sep_research.kernels import loops as mod

        mod.period_net_into(out, g, np.ascontiguousarray(fw, dtype=np.float64),
                            np.ascontiguousarray(cv, dtype=np.float64), e, bool(hc_only))
    else:
        from sep_research.kernels import nb

        nb.period_net_into_nb(out, g, np.ascontiguousarray(fw, dtype=np.float64),
                              np.ascontiguousarray(cv, dtype=np.float64), e, bool(hc_only))
    return out
