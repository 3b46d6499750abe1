"""On-disk cache of the numba-compiled kernels, outside the source tree and safe to share.

numba's own ``cache=True`` keys a function's cache to the mtime of *its* source file. The
loop drivers (:mod:`~sep_research.kernels.loops`) inline scalar bodies from other files
(:mod:`~sep_research.kernels.qfh`, ``fixed``, ``thresholds``), so a change there would not
invalidate a cached driver: it could run stale code. Here every compiled function of
:mod:`~sep_research.kernels.nb` is cached under one folder named by a hash of

- the bytes of every source file the compiled code comes from (:data:`SOURCE_FILES`, this
  file included), and
- the numba, llvmlite, numpy and Python versions,

and the index's freshness stamp is that same hash: a changed body, anywhere, means another
folder and a fresh compile; it can never load old machine code. numba's index still checks
the signature, the target CPU (its "magic tuple") and the function's own bytecode.

**Where**: ``$SEP_NUMBA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/sep-research/numba``, else
``~/.cache/sep-research/numba``; then ``<hash>/`` below it (:func:`cache_dir`).
``SEP_NUMBA_CACHE=0`` switches the cache off (every process compiles, as before). A folder
that cannot be created or written is not an error: the kernels then compile in memory.
Old ``<hash>`` folders are left in place (one per kernel version; delete them freely).

**Several processes at once** (Dask workers starting together on an empty cache): numba
writes each file to a unique temporary name and renames it into place, so a reader sees a
whole file or none. numba numbers data files per index entry, so two processes that add
different signatures of one function at once could both claim number 1 and leave the index
pointing at the other's machine code; here a data file is named by a hash of its index key
(signature, CPU, bytecode) instead, so concurrent writers can only overwrite a file with an
equivalent one, and the worst a race can do is drop an index entry (a later recompile).
Data are written before the index that points at them.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import ClassVar

_HERE = Path(__file__).resolve().parent
#: the sources of the compiled code (their bytes make the cache key)
SOURCE_FILES = tuple(_HERE / f for f in ("qfh.py", "fixed.py", "thresholds.py", "loops.py",
                                          "nb.py", "cache.py"))


def enabled() -> bool:
    """False when ``SEP_NUMBA_CACHE`` is ``0`` (or ``false``/``no``/``off``)."""
    return os.environ.get("SEP_NUMBA_CACHE", "1").strip().lower() not in ("0", "false", "no",
                                                                           "off")


def base_dir() -> Path:
    """The cache root (see the module docstring), before the version folder."""
    env = os.environ.get("SEP_NUMBA_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return root / "sep-research" / "numba"


def source_key(files=SOURCE_FILES) -> str:
    """Hex digest over the given source files' bytes and the compiler's versions."""
    import llvmlite
    import numba
    import numpy

    h = hashlib.sha256()
    for p in files:
        data = Path(p).read_bytes()
        h.update(Path(p).name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    h.update(f"numba {numba.__version__} llvmlite {llvmlite.__version__} numpy "
             f"{numpy.__version__} python {sys.version}".encode())
    return h.hexdigest()


_KEYS: dict[tuple[Path, ...], str] = {}


def _key(files: tuple[Path, ...] = SOURCE_FILES) -> str:
    if files not in _KEYS:
        _KEYS[files] = source_key(files)
    return _KEYS[files]


def cache_dir(files: tuple[Path, ...] = SOURCE_FILES) -> Path:
    """The folder of this version of ``files``: ``base_dir() / source_key(files)[:20]``."""
    return base_dir() / _key(files)[:20]


def _bases(target: str):
    """(numba's caching module, the cache implementation and the cache class) for ``target``:
    numba's CPU cache, or numba-cuda's kernel cache (whose caching module is its own copy in
    numba-cuda 0.2x-0.3x, numba's in older numba)."""
    if target == "cpu":
        from numba.core import caching

        return caching, caching.CompileResultCacheImpl, caching.FunctionCache
    if target == "cuda":
        import importlib

        from numba.cuda.dispatcher import CUDACache, CUDACacheImpl

        caching = importlib.import_module(CUDACacheImpl.__mro__[1].__module__)
        return caching, CUDACacheImpl, CUDACache
    raise ValueError(f"target={target!r}: expected 'cpu' or 'cuda'")


def _numba_cache_classes(files: tuple[Path, ...], target: str = "cpu"):
    """numba cache classes with our locator and data-file naming for the sources ``files``
    (``target`` "cuda": numba-cuda's kernel cache, in a ``cuda/`` folder of its own)."""
    caching, impl_base, cache_base = _bases(target)
    folder = str(cache_dir(files) if target == "cpu" else cache_dir(files) / target)
    stamp = _key(files)

    class KernelLocator(caching._CacheLocator):
        """Every function of these sources lives in one folder; its freshness stamp is the
        sources' key."""

        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._path = folder
            self._stamp = stamp

        def get_cache_path(self):
            return self._path

        def get_source_stamp(self):
            return self._stamp

        def get_disambiguator(self):
            return str(self._lineno)

        @classmethod
        def from_function(cls, py_func, py_file):
            self = cls(py_func, py_file)
            try:
                self.ensure_cache_path()
            except OSError:
                return None
            return self

    class KeyedIndexDataCacheFile(caching.IndexDataCacheFile):
        """Data files named by a hash of their index key; data saved before the index."""

        def save(self, key, data):
            digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
            name = f"{self._index_name[:-4]}.{digest}.nbc"
            self._save_data(name, data)
            overloads = self._load_index()
            if overloads.get(key) != name:
                overloads[key] = name
                self._save_index(overloads)

    class KernelCacheImpl(impl_base):
        _locator_classes: ClassVar[list] = [KernelLocator]

    class KernelFunctionCache(cache_base):
        _impl_class = KernelCacheImpl

        def __init__(self, py_func):
            super().__init__(py_func)
            self._cache_file = KeyedIndexDataCacheFile(
                cache_path=self._cache_path, filename_base=self._impl.filename_base,
                source_stamp=self._impl.locator.get_source_stamp())

    return KernelFunctionCache


_CLASSES: dict[tuple[tuple[Path, ...], str], type] = {}


def attach(dispatcher, sources: tuple[Path, ...] = SOURCE_FILES, *, target: str = "cpu"):
    """Give a numba dispatcher (compiled with ``cache=False``) the on-disk cache keyed to
    the bytes of ``sources`` (every file its compiled code comes from; default: the QFH
    kernels); returns it. Leaves it uncached when the cache is off or its folder cannot be
    made. Other packages' kernels (the backtest) pass their own source files.

    ``target="cuda"``: a numba-cuda kernel (``cuda.jit``); its cache holds the linked code
    per compute capability (numba-cuda's index key), so a second process launches without
    compiling. The CUDA simulator's kernels have nothing to cache and are returned as
    they are."""
    if not enabled():
        return dispatcher
    if target == "cuda" and not hasattr(dispatcher, "enable_caching"):
        return dispatcher  # the CUDA simulator
    files = tuple(Path(p).resolve() for p in sources)
    try:
        cache_dir(files)
        if (files, target) not in _CLASSES:
            _CLASSES[files, target] = _numba_cache_classes(files, target)
        dispatcher._cache = _CLASSES[files, target](dispatcher.py_func)
    except (OSError, RuntimeError, ImportError):
        pass  # no writable folder: compile in memory, as numba does without a cache
    return dispatcher
