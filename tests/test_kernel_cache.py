"""The on-disk cache of the compiled kernels (sep_research.kernels.cache).

It must live outside the source tree, follow the environment, never load machine code
compiled from other sources (the key hashes every kernel source and the compiler
versions), and survive several processes compiling into one empty folder at once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sep_research.kernels import cache

ROOT = Path(__file__).resolve().parents[1]


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SEP_NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.base_dir() == tmp_path / "xdg" / "sep-research" / "numba"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.base_dir() == tmp_path / "home" / ".cache" / "sep-research" / "numba"
    monkeypatch.setenv("SEP_NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert cache.base_dir() == tmp_path / "mine"
    d = cache.cache_dir()
    assert d.parent == tmp_path / "mine" and len(d.name) == 20
    assert ROOT not in d.parents  # never inside the source tree
    assert cache.enabled()
    for off in ("0", "false", "off"):
        monkeypatch.setenv("SEP_NUMBA_CACHE", off)
        assert not cache.enabled()


def test_key_covers_every_kernel_source(tmp_path):
    names = {p.name for p in cache.SOURCE_FILES}
    assert {"qfh.py", "fixed.py", "thresholds.py", "loops.py", "nb.py", "cache.py"} <= names
    copies = []
    for p in cache.SOURCE_FILES:
        shutil.copy(p, tmp_path / p.name)
        copies.append(tmp_path / p.name)
    assert cache.source_key(copies) == cache.source_key()
    for c in copies:  # one changed byte in any file gives another key
        data = c.read_bytes()
        c.write_bytes(data + b"#")
        assert cache.source_key(copies) != cache.source_key()
        c.write_bytes(data)


def _tiny(x):
    return x * 2.0 + 1.0


def test_a_changed_key_never_loads_old_machine_code(monkeypatch, tmp_path):
    import numba

    monkeypatch.setenv("SEP_NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "kernel_source.py"
    src.write_text("version 1")

    def fresh():
        cache._CLASSES.clear()
        cache._KEYS.clear()
        return cache.attach(numba.njit(cache=False)(_tiny), sources=(src,))

    d1 = fresh()
    assert d1(1.5) == 4.0
    assert sum(d1.stats.cache_misses.values()) == 1
    folder1 = Path(d1.stats.cache_path)
    assert folder1.parent == tmp_path / "cache"
    d2 = fresh()
    assert d2(1.5) == 4.0 and sum(d2.stats.cache_hits.values()) == 1  # loaded, not compiled
    # a changed source: another folder, a fresh compile
    src.write_text("version 2")
    d3 = fresh()
    assert d3(1.5) == 4.0 and sum(d3.stats.cache_hits.values()) == 0
    assert Path(d3.stats.cache_path) != folder1
    # the same folder with a different freshness stamp: the old index is ignored
    monkeypatch.setattr(cache, "cache_dir", lambda files=None: folder1)
    d4 = fresh()
    assert d4(1.5) == 4.0 and sum(d4.stats.cache_hits.values()) == 0
    # switched off: the dispatcher keeps numba's null cache
    monkeypatch.setenv("SEP_NUMBA_CACHE", "0")
    d5 = fresh()
    assert type(d5._cache).__name__ == "NullCache"


_CHILD = r"""
import hashlib, json, sys
import numpy as np
from sep_research.data import load_sample
from sep_research.kernels import nb
from sep_research.signals.grid import product_grid
from sep_research.signals.sweep import sweep_seed
x = load_sample()
# 4 groups of 60 threshold rows (threshold sweep) and one single row (exact brute force)
grid = product_grid(window=[5, 11], buy_threshold=[0.45, 0.48, 0.5, 0.52, 0.55],
                    sell_threshold=[0.47, 0.5, 0.52], w_s=[0.3, 0.4],
                    conf_threshold=[0.6, 0.65, 0.7, 0.75])
h = hashlib.sha256()
res = sweep_seed(x, grid, score_start=30, score_end=3000, half_spread_pips=0.5, engine="cpu")
res1 = sweep_seed(x, {"window": [7], "buy_threshold": [0.5]}, score_start=30,
                  score_end=3000, half_spread_pips=0.5, engine="cpu")
for r in (res, res1):
    for k in sorted(r):
        h.update(np.ascontiguousarray(r[k]).tobytes())
stats = {n: [sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values())]
         for n, d in (("features", nb.features_into_nb), ("tsweep", nb.tsweep_into_nb),
                      ("exact", nb.sweep_exact_into_nb))}
print(json.dumps({"hash": h.hexdigest(), "stats": stats}))
"""


def _children(n: int, cache_root: Path) -> list[dict]:
    env = dict(os.environ, SEP_NUMBA_CACHE_DIR=str(cache_root), PYTHONPATH=str(ROOT),
               NUMBA_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    out = []
    for p in procs:
        so, se = p.communicate(timeout=900)
        assert p.returncode == 0, se[-3000:]
        out.append(json.loads(so.strip().splitlines()[-1]))
    return out


@pytest.mark.slow
def test_processes_compiling_at_once_into_an_empty_cache(tmp_path):
    first = _children(3, tmp_path)  # three at once, nothing cached yet
    assert len({r["hash"] for r in first}) == 1
    # each compiled it or, when another had already saved it, loaded it; one at least compiled
    for name in ("features", "tsweep", "exact"):
        assert all(sum(r["stats"][name]) == 1 for r in first), (name, first)
    assert sum(r["stats"]["tsweep"][1] for r in first) >= 1
    (later,) = _children(1, tmp_path)
    assert later["hash"] == first[0]["hash"]
    for name, (hits, misses) in later["stats"].items():
        assert hits == 1 and misses == 0, name  # loaded from the cache, none compiled
    files = list(tmp_path.rglob("*.nbc"))
    assert files and not list(tmp_path.rglob("*.tmp.*"))
    assert np.all([f.stat().st_size > 0 for f in files])


def test_cuda_kernels_get_the_keyed_cache_in_a_folder_of_their_own(monkeypatch, tmp_path):
    """A numba-cuda kernel (real dispatcher, no GPU needed to build it) gets numba-cuda's
    cache class with our locator: the sources' folder, a ``cuda/`` folder below it, the
    sources' key as freshness stamp; the CUDA simulator's kernels are left as they are."""
    import numba
    from numba import cuda

    numba_cuda = pytest.importorskip("numba.cuda.dispatcher")

    monkeypatch.setenv("SEP_NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "kernel_source.py"
    src.write_text("version 1")
    cache._CLASSES.clear()
    cache._KEYS.clear()

    def kern(out):
        out[0] = 1.0

    d = cache.attach(cuda.jit(kern), sources=(src,), target="cuda")
    assert isinstance(d._cache, numba_cuda.CUDACache)
    assert Path(d._cache.cache_path) == cache.cache_dir((src.resolve(),)) / "cuda"
    assert d._cache._cache_file._source_stamp == cache.source_key((src.resolve(),))
    # the CPU flavour of the same sources is another class, in the sources' own folder
    c = cache.attach(numba.njit(cache=False)(_tiny), sources=(src,))
    assert Path(c.stats.cache_path) == cache.cache_dir((src.resolve(),))

    class Simulated:  # the simulator's FakeCUDAKernel has no cache to give
        pass

    sim = Simulated()
    assert cache.attach(sim, sources=(src,), target="cuda") is sim
    with pytest.raises(ValueError, match="target"):
        cache._bases("tpu")


_GPU_CHILD = r"""
import hashlib, json, time
import numpy as np
t0 = time.perf_counter()
from sep_research.data import load_sample
from sep_research.kernels import cu
from sep_research.signals.grid import product_grid
from sep_research.signals.sweep import sweep_seed
x = load_sample()
grid = product_grid(window=[5, 11], buy_threshold=[0.45, 0.5, 0.55], sell_threshold=[0.47, 0.5],
                    conf_threshold=[0.6, 0.7])
h = hashlib.sha256()
for method in ("auto", "brute"):
    r = sweep_seed(x, grid, score_start=30, score_end=3000, half_spread_pips=0.5,
                   engine="cuda", method=method)
    for k in sorted(r):
        h.update(np.ascontiguousarray(r[k]).tobytes())
hits = sum(sum(k.stats.cache_hits.values()) for k in cu.KERNELS)
misses = sum(sum(k.stats.cache_misses.values()) for k in cu.KERNELS)
print(json.dumps({"hash": h.hexdigest(), "hits": hits, "misses": misses,
                  "seconds": time.perf_counter() - t0}))
"""


def _real_gpu() -> bool:
    from sep_research.kernels import engine

    return engine.cuda_available() and not engine.cuda_simulated()


@pytest.mark.gpu
@pytest.mark.skipif(not _real_gpu(), reason="needs a real CUDA GPU")
def test_a_second_process_launches_cached_cuda_kernels(tmp_path):
    path = os.pathsep.join([str(ROOT)] + [q for q in [os.environ.get("PYTHONPATH")] if q])
    env = dict(os.environ, SEP_NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=path)
    runs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", _GPU_CHILD], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600, check=False)
        assert r.returncode == 0, r.stderr[-3000:]
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    first, second = runs
    print(f"CUDA kernel cache: first process {first}, second {second}")
    assert first["misses"] > 0
    assert second["misses"] == 0 and second["hits"] == first["misses"]
    assert second["hash"] == first["hash"]  # the cached kernels compute the same bits
    assert list((tmp_path).rglob("cuda/*.nbc"))
