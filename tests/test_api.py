"""The curated top-level API: what its docstring shows runs as written, lazily."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import sep_research


def _example() -> str:
    doc = sep_research.__doc__ or ""
    block = doc.split("::", 1)[1].split("\nThe modules", 1)[0]
    return textwrap.dedent(block)


def test_every_top_level_name_resolves():
    for name in sep_research.__all__:
        assert getattr(sep_research, name) is not None, name


def test_the_docstring_study_runs_as_written(capsys):
    code = _example()
    assert "sep.walk_forward" in code and "sep.load_candles" in code
    ns: dict = {}
    exec(compile(code, "sep_research.__doc__", "exec"), ns)  # noqa: S102 - our own docstring
    assert "edge" in capsys.readouterr().out
    assert ns["wf"].folds and ns["sw"]["n_hc"].shape[0] == 3


def test_import_is_lazy_and_the_runner_stays_light():
    code = ("import sys, sep_research as s; s.load_candles; s.sweep_seed; s.walk_forward; "
            "import sep_research.live; "
            "print(sorted(m for m in ('numba', 'pandas', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    # attribute access imports the research modules (pandas, numba) on purpose ...
    assert "pandas" in out
    bare_code = ("import sys, sep_research, sep_research.live; "
                 "print([m for m in ('numba', 'pandas', 'matplotlib') if m in sys.modules])")
    bare = subprocess.run([sys.executable, "-c", bare_code], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert bare == "[]"  # ... but importing the package and the runner loads none of them
