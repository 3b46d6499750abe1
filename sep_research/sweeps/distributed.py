"""A rule's sweep spread over Dask workers: one task per (instrument, block of configs).

::

    sweep_distributed(datasets, grid, *, client=None, rule=None, granularity=None,
                      score_start=0, score_end=None, half_spread_pips=None, params=None,
                      alignment="causal", engine="auto", chunk=8192, cuda_block=128,
                      block_configs=None, n_blocks=None, progress=False) -> DistributedSweep
    sweep_ranges(si, ranges, *, client=None, engine="auto", chunk=8192, n_blocks=None)
        -> list[dict]          # many scoring ranges on one prepared SweepInputs
    plan_blocks(grid, *, rule=None, params=None, block_configs=None, n_blocks=None)
        -> list[np.ndarray]
    gpu_worker_env(n_gpus, *, visible=None, cpus=None) -> (i -> env of worker i)
    cpu_worker_env(n_workers, *, cpus=None) -> (i -> env of worker i)
    visible_gpu_ids() -> list[str]

``datasets`` maps an instrument name to its candles (a candle frame or a mapping of arrays, as
:func:`~sep_research.signals.sweep.sweep_seed` takes them); the instrument (it sets the pip)
is the key when the key is an instrument name, else the one the frame's provenance names.
The spread charged is that of :mod:`sep_research.signals.sweep` (bid/ask at the entry's open,
or ``2 * half_spread_pips`` for mid-only data). ``grid`` is the configuration grid of
``sweep_seed`` (a :class:`~sep_research.signals.grid.ConfigGrid`, or a mapping of
equal-length arrays of the seed rule or of ``rule``; ``params`` replaces its base), the same
for every instrument; each task gets its block as a ``ConfigGrid`` (``grid.rows(idx)``). A
rule that resamples the candles (``mtf``) gets their times and ``granularity`` (else the
datasets' provenance's).

**How the work is split.** The grid's rows are ordered by (window, w_s, w_c, w_e), as
``sweep_seed`` orders them, and cut into contiguous blocks, so that a block needs the features
of one or two window lengths only. Each (instrument, block) is one Dask task that calls
``sweep_seed`` on that block with the given engine; the per-block arrays are put back in grid
order. Each configuration's counts and sums depend on that configuration and the candles only
(features are computed per window, partial sums per configuration in a fixed chunk order), so
the merged result is bit-identical to one ``sweep_seed`` call over the whole grid on the same
engine, whatever the number of workers or blocks (the tests check this on the real sample).

**Data** travels once: each instrument's arrays are scattered to every worker
(``client.scatter(..., broadcast=True)``) before any task is submitted; tasks hold a reference.

**GPUs.** One worker per GPU, each pinned with ``CUDA_VISIBLE_DEVICES`` (see
:func:`gpu_worker_env`, meant for ``sep_research.sweeps.cli.make_cluster(n, worker_env=...)``), and
``engine="cuda"``: inside a worker, numba-cuda sees its one GPU as device 0. Nothing but Dask
and numba-cuda places work; no NCCL, no NVLink multicast.

**Many ranges, features once.** :func:`sweep_ranges` takes inputs prepared once
(:func:`~sep_research.signals.sweep.prepare_sweep`), sends them to every worker once, and
scores every (block of configurations, list of ranges) as one task: the walk-forward's fold,
PBO and SPA sweeps run this way on Dask workers when ``walk_forward(client=...)`` is given,
bit-identical to running them in-process.

Without a ``client`` the tasks run one after another in this process (same results).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sep_research import fx
from sep_research.signals.grid import ConfigGrid
from sep_research.signals.sweep import DATA_COLUMNS, SPREAD_COLUMNS, SweepInputs
from sep_research.strategy import data_instrument

#: largest block of configurations per task by default (GPU memory per task grows with it:
#: 11 partial sums x 8 bytes x candles/chunk per configuration)
MAX_BLOCK_CONFIGS = 131_072
#: blocks per worker by default, so that a slow block does not leave the other workers idle
BLOCKS_PER_WORKER = 2
#: the fields sweep_seed sorts its rows by (the window first: a block needs few windows)
_SORT_FIELDS = ("window", "w_s", "w_c", "w_e")


@dataclass
class DistributedSweep:
    """What :func:`sweep_distributed` returns.

    ``results[instrument]`` holds ``sweep_seed``'s arrays in grid order; ``tasks`` one record per
    task (instrument, block, rows, worker, ``CUDA_VISIBLE_DEVICES``, engine, seconds).
    """

    results: dict[str, dict[str, np.ndarray]]
    n_configs: int
    scored: dict[str, int]
    seconds: float
    n_workers: int
    tasks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def config_candles(self) -> int:
        """Configurations x scored candles, summed over instruments."""
        return int(self.n_configs * sum(self.scored.values()))

    @property
    def rate(self) -> float:
        """Configuration-candles per second of wall time (scatter, tasks and merge)."""
        return self.config_candles / self.seconds if self.seconds > 0 else float("nan")


def plan_blocks(grid: Any, *, rule: str | None = None, params: Any = None,
                block_configs: int | None = None, n_blocks: int | None = None
                ) -> list[np.ndarray]:
    """Row indices of each block: rows ordered by (window, w_s, w_c, w_e), cut into contiguous
    blocks of at most ``block_configs`` rows, or into ``n_blocks`` near-equal blocks (one of
    the two, or neither: one block). Every row is in exactly one block. ``grid``, ``rule``,
    ``params``: as :func:`sep_research.signals.grid.as_grid` takes them (a sort field outside
    the grid's columns has its base's value)."""
    from sep_research.signals.grid import as_grid

    cg = as_grid(grid, rule=rule, params=params)
    k = len(cg)
    if block_configs is not None and n_blocks is not None:
        raise ValueError("give block_configs or n_blocks, not both")
    if block_configs is not None:
        if int(block_configs) < 1:
            raise ValueError(f"block_configs must be at least 1, got {block_configs}")
        n_blocks = -(-k // int(block_configs))
    n_blocks = 1 if n_blocks is None else int(n_blocks)
    if n_blocks < 1:
        raise ValueError(f"n_blocks must be at least 1, got {n_blocks}")
    n_blocks = min(n_blocks, k)
    # np.lexsort: the last key is the primary one
    order = np.lexsort([cg.column(name) for name in reversed(_SORT_FIELDS)])
    return [b for b in np.array_split(order, n_blocks) if b.size]


def default_n_blocks(n_configs: int, n_workers: int) -> int:
    """Blocks for ``n_configs`` on ``n_workers``: at least BLOCKS_PER_WORKER per worker, none
    larger than MAX_BLOCK_CONFIGS."""
    return max(1, min(n_configs, max(BLOCKS_PER_WORKER * max(1, n_workers),
                                     -(-n_configs // MAX_BLOCK_CONFIGS))))


def _payload(data: Any, *, with_spread: bool, with_times: bool = False
             ) -> dict[str, np.ndarray]:
    """The candle columns sweep_seed reads, as plain float64 arrays (what is scattered):
    (open,) high, low, close, volume, the bid/ask opens when the spread comes from them, and
    the times (Unix seconds) for a rule that reads them."""
    out = {}
    if with_times:
        from sep_research.data.resample import frame_seconds

        out["time"] = frame_seconds(data)
        out["open"] = np.ascontiguousarray(np.asarray(data["open"], dtype=np.float64))
    for name in DATA_COLUMNS + (SPREAD_COLUMNS if with_spread else ()):
        try:
            col = data[name]
        except (KeyError, IndexError, TypeError):
            if name in SPREAD_COLUMNS:
                continue
            raise ValueError(f"candle data has no {name!r} column") from None
        out[name] = np.ascontiguousarray(np.asarray(col, dtype=np.float64))
    return out


def _instrument_of(name: str, data: Any, given: str | None = None) -> str:
    """The instrument of one dataset: ``given``, else its key when that is an instrument name,
    else the frame's provenance's (checked against each other)."""
    key = given
    if key is None:
        try:
            key = fx.check_instrument(name)
        except fx.FxError:
            key = None
    try:
        return data_instrument(data, key, what=f"the candles of {name!r}")
    except ValueError as exc:
        raise ValueError(f"datasets[{name!r}]: {exc}") from None


def _sweep_task(data: dict[str, np.ndarray], grid_block: ConfigGrid,
                kwargs: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One task: sweep_seed over one block of configurations (runs on a worker)."""
    from sep_research.kernels.engine import resolve_engine
    from sep_research.signals.sweep import sweep_seed

    t0 = time.perf_counter()
    res = sweep_seed(data, grid_block, **kwargs)
    info = {"seconds": time.perf_counter() - t0, "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "engine": resolve_engine(kwargs.get("engine", "auto"))}
    try:
        from distributed import get_worker

        info["worker"] = str(get_worker().address)
    except (ImportError, ValueError):
        info["worker"] = None
    return res, info


def _per_instrument(value: Any, name: str, default: Any) -> Any:
    if isinstance(value, Mapping):
        return value.get(name, default)
    return default if value is None else value


def sweep_distributed(
    datasets: Mapping[str, Any],
    grid: Any,
    *,
    client: Any = None,
    rule: str | None = None,
    granularity: str | None = None,
    score_start: int | Mapping[str, int] = 0,
    score_end: int | Mapping[str, int] | None = None,
    half_spread_pips: Any = None,
    instrument: str | Mapping[str, str] | None = None,
    params: Any = None,
    alignment: str = "causal",
    engine: str = "auto",
    method: str = "auto",
    chunk: int | None = None,
    cuda_block: int = 128,
    block_configs: int | None = None,
    n_blocks: int | None = None,
    progress: bool = False,
) -> DistributedSweep:
    """Sweep ``grid`` over every instrument of ``datasets`` on the workers of ``client``.

    ``score_start`` / ``score_end`` / ``half_spread_pips`` / ``instrument`` (the instrument of
    a dataset whose key is not one and whose data carry no provenance): one value for all
    datasets or a mapping by dataset; ``score_end=None`` scores up to the last candle that has a
    label. ``engine``: what each worker runs (``"cuda"`` on GPU workers); ``method``: the sweep
    algorithm (:func:`sep_research.kernels.engine.run_sweep`). Blocks: ``block_configs`` rows each,
    or ``n_blocks``, else :func:`default_n_blocks`. See the module docstring.
    """
    from sep_research.kernels.engine import ENGINES, SWEEP_CHUNK
    from sep_research.signals.grid import as_grid
    from sep_research.signals.rules.base import get_rule
    from sep_research.strategy import data_granularity

    cg = as_grid(grid, rule=rule, params=params)
    r = get_rule(cg.rule)
    if not isinstance(datasets, Mapping) or not datasets:
        raise ValueError("datasets must be a non-empty mapping: instrument -> candles")
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r} is unknown: expected one of {', '.join(ENGINES)}")
    k = len(cg)
    n_workers = 1
    if client is not None:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    if block_configs is None and n_blocks is None:
        n_blocks = default_n_blocks(k, n_workers)
    blocks = plan_blocks(cg, block_configs=block_configs, n_blocks=n_blocks)

    t0 = time.perf_counter()
    instruments = {str(name): _instrument_of(str(name), data,
                                             _per_instrument(instrument, str(name), None))
                   for name, data in datasets.items()}
    payloads = {str(name): _payload(data, with_spread=_per_instrument(half_spread_pips,
                                                                      str(name), None) is None,
                                    with_times=r.needs_times)
                for name, data in datasets.items()}
    grans = {str(name): (data_granularity(data, granularity) if r.needs_times else granularity)
             for name, data in datasets.items()}
    jobs = []  # (instrument, block index, kwargs)
    scored = {}
    for name, data in payloads.items():
        n = data["close"].shape[0]
        start = int(_per_instrument(score_start, name, 0))
        end = _per_instrument(score_end, name, None)
        if end is None:
            end = n - 1 if alignment == "causal" else n
        scored[name] = max(0, int(end) - start)
        kwargs = {"score_start": start, "score_end": int(end), "rule": r.name,
                  "granularity": grans[name],
                  "half_spread_pips": _per_instrument(half_spread_pips, name, None),
                  "instrument": instruments[name],
                  "alignment": alignment, "engine": engine, "method": method,
                  "chunk": SWEEP_CHUNK if chunk is None else int(chunk),
                  "cuda_block": int(cuda_block)}
        for b in range(len(blocks)):
            jobs.append((name, b, kwargs))
    block_grids = [cg.rows(idx) for idx in blocks]

    outputs: dict[tuple[str, int], tuple[dict[str, np.ndarray], dict[str, Any]]] = {}
    bar = _progress_bar(len(jobs), progress)
    if client is None:
        for name, b, kwargs in jobs:
            outputs[(name, b)] = _sweep_task(payloads[name], block_grids[b], kwargs)
            bar(1)
    else:
        from distributed import as_completed

        # every worker gets every instrument's arrays once; tasks refer to them
        scattered = dict(zip(payloads, client.scatter(list(payloads.values()), broadcast=True,
                                                      hash=False), strict=True))
        futures = {}
        for name, b, kwargs in jobs:
            fut = client.submit(_sweep_task, scattered[name], block_grids[b], kwargs,
                                key=f"sweep-{name}-{b}-{time.time_ns()}", pure=False)
            futures[fut] = (name, b)
        for fut in as_completed(futures):
            outputs[futures[fut]] = fut.result()
            bar(1)
        client.cancel(list(scattered.values()))
    bar(None)

    results: dict[str, dict[str, np.ndarray]] = {}
    tasks = []
    for name in payloads:
        merged: dict[str, np.ndarray] = {}
        for b, idx in enumerate(blocks):
            res, info = outputs[(name, b)]
            for key, arr in res.items():
                if key not in merged:
                    merged[key] = np.empty(k, dtype=arr.dtype)
                merged[key][idx] = arr
            tasks.append({"instrument": name, "block": b, "rows": int(idx.size), **info})
        results[name] = merged
    return DistributedSweep(results=results, n_configs=k, scored=scored,
                            seconds=time.perf_counter() - t0, n_workers=n_workers, tasks=tasks)


def _ranges_task(si: SweepInputs, rows: np.ndarray, ranges: list[tuple[int, int]],
                 kwargs: dict[str, Any]) -> list[dict[str, np.ndarray]]:
    """One task: the configurations ``rows`` of ``si`` scored over every range (on a worker)."""
    from sep_research.signals.sweep import run_prepared

    sub = si.rows(rows)
    return [run_prepared(sub, lo, hi, **kwargs) for lo, hi in ranges]


def sweep_ranges(si: SweepInputs, ranges: Any, *, client: Any = None, engine: str = "auto",
                 chunk: int | None = None, n_blocks: int | None = None
                 ) -> list[dict[str, np.ndarray]]:
    """:func:`~sep_research.signals.sweep.run_prepared` over each ``(lo, hi)`` of ``ranges``,
    one result per range (grid order), on ``client``'s workers when given.

    The prepared inputs are sent to every worker once; each task scores one block of
    configurations (contiguous in the kernel's row order) over all the ranges. The result is
    bit-identical to the in-process loop whatever the number of workers or blocks."""
    from sep_research.kernels.engine import SWEEP_CHUNK
    from sep_research.signals.sweep import run_prepared

    ranges = [(int(lo), int(hi)) for lo, hi in ranges]
    kwargs = {"engine": engine, "chunk": SWEEP_CHUNK if chunk is None else int(chunk)}
    if client is None:
        return [run_prepared(si, lo, hi, **kwargs) for lo, hi in ranges]
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    nb = default_n_blocks(si.n_configs, n_workers) if n_blocks is None else int(n_blocks)
    blocks = [b for b in np.array_split(si.order, max(1, min(nb, si.n_configs))) if b.size]
    (remote,) = client.scatter([si], broadcast=True, hash=False)
    futures = [client.submit(_ranges_task, remote, rows, ranges, kwargs,
                             key=f"sweep-ranges-{b}-{time.time_ns()}", pure=False)
               for b, rows in enumerate(blocks)]
    outs = client.gather(futures)
    client.cancel([remote])
    merged: list[dict[str, np.ndarray]] = []
    for r in range(len(ranges)):
        res: dict[str, np.ndarray] = {}
        for rows, out in zip(blocks, outs, strict=True):
            for key, arr in out[r].items():
                if key not in res:
                    res[key] = np.empty(si.n_configs, dtype=arr.dtype)
                res[key][rows] = arr
        merged.append(res)
    return merged


def _progress_bar(total: int, enabled: bool) -> Callable[[int | None], None]:
    if not enabled:
        return lambda step: None
    import sys

    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="sweep blocks", unit="block", file=sys.stderr)

    def step(n: int | None) -> None:
        if n is None:
            bar.close()
        else:
            bar.update(n)

    return step


# -- worker environments -----------------------------------------------------------------------

def _cpus(cpus: int | None) -> int:
    if cpus is not None:
        return max(1, int(cpus))
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def visible_gpu_ids() -> list[str]:
    """The GPUs this process may use: the entries of ``CUDA_VISIBLE_DEVICES`` when it is set,
    else the devices numba-cuda lists ([] without a usable driver)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        from numba import cuda

        if not cuda.is_available():
            return []
        return [str(d.id) for d in cuda.list_devices()]
    except Exception:  # no driver, no GPUs
        return []


def gpu_worker_env(n_gpus: int, *, visible: list[str] | None = None,
                   cpus: int | None = None) -> Callable[[int], dict[str, str]]:
    """``worker_env`` for ``make_cluster``: worker ``i`` sees only GPU ``visible[i]``.

    ``visible`` defaults to :func:`visible_gpu_ids`; asking for more GPUs than it holds is an
    error. Each worker also gets an equal share of the CPU threads for numba, and NVLink
    multicast stays off (``NCCL_NVLS_ENABLE=0``; nothing here uses NCCL).
    """
    n_gpus = int(n_gpus)
    ids = visible_gpu_ids() if visible is None else [str(v) for v in visible]
    if n_gpus < 1:
        raise ValueError(f"--gpus must be at least 1, got {n_gpus}")
    if n_gpus > len(ids):
        raise ValueError(f"--gpus {n_gpus}: only {len(ids)} GPU(s) visible here "
                         f"({', '.join(ids) or 'none'}; CUDA_VISIBLE_DEVICES="
                         f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    threads = str(max(1, _cpus(cpus) // n_gpus))
    chosen = ids[:n_gpus]

    def env(i: int) -> dict[str, str]:
        return {"CUDA_VISIBLE_DEVICES": chosen[i], "NUMBA_NUM_THREADS": threads,
                "NCCL_NVLS_ENABLE": "0"}

    return env


def cpu_worker_env(n_workers: int, *, cpus: int | None = None) -> Callable[[int], dict[str, str]]:
    """``worker_env`` for CPU workers: an equal share of the CPU threads for numba each, so
    that N workers do not run N x all-cores threads."""
    if int(n_workers) < 1:
        raise ValueError(f"--workers must be at least 1, got {n_workers}")
    threads = str(max(1, _cpus(cpus) // int(n_workers)))
    return lambda i: {"NUMBA_NUM_THREADS": threads}
