"""The live runner must start without the research stack: importing it in a fresh interpreter
must not load numba, pandas, matplotlib, papermill, Jupyter or Dask."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("numba", "pandas", "matplotlib", "papermill", "jupyter", "jupyter_client",
             "ipykernel", "nbformat", "dask", "distributed", "pyarrow", "scipy", "arch")

MODULES = ("runners.live", "sep_research.live", "sep_research.live.cli",
           "sep_research.live.runner", "sep_research.live.brokers", "sep_research.live.feed",
           "sep_research.live.model", "sep_research.live.status", "sep_research.live.journal",
           "sep_research.live.loop", "sep_research.live.orders", "sep_research.live.reconcile",
           "sep_research.live.view", "sep_research.live.paper", "sep_research.live.oanda_broker",
           "sep_research.live.page", "sep_research.live.page.browser")


@pytest.mark.parametrize("module", MODULES)
def test_live_imports_nothing_heavy(module: str) -> None:
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        # the signal path is imported lazily by the runner: load it too
        "import sep_research.live.model as m; import sep_research.signals.live\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    bad = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN)
    assert not bad, f"{module} pulled in forbidden modules: {bad}"


def test_sep_run_help_is_light() -> None:
    code = ("import sys\nfrom sep_research.cli import build_parser\nbuild_parser()\n"
            "import sep_research.live.cli\n"
            "print(','.join(m for m in ('numba','pandas','matplotlib','dask') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "", f"'sep' parser imports {out.stdout.strip()}"


def test_the_package_never_imports_runners() -> None:
    """``runners/`` holds thin entry points; the package imports nothing from it, neither by an
    import statement nor by name (``importlib.import_module("runners.batch")``)."""
    import ast
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "sep_research"
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value] if re.fullmatch(r"runners(\.\w+)*", node.value) else []
            found += [f"{path.relative_to(root.parent)}:{node.lineno}: {n}" for n in names
                      if n == "runners" or n.startswith("runners.")]
    assert not found, found
    code = ("import sys\nfrom sep_research.cli import build_parser\nbuild_parser()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'runners'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_test_modules_never_import_each_other() -> None:
    """Shared test code lives in helper modules (``tests/live_helpers.py``, ``status_rig.py``,
    ``loopback.py``, ``conftest.py``, ...), never in another test module: importing a test
    module runs its fixtures' and tests' definitions twice and ties unrelated tests together."""
    import ast
    from pathlib import Path

    bad = []
    for path in sorted(Path(__file__).resolve().parent.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0].startswith("test_") or (parts[0] == "tests" and len(parts) > 1
                                                    and parts[1].startswith("test_")):
                    bad.append(f"{path.name}:{node.lineno} imports {name}")
    assert not bad, "test modules import each other: " + "; ".join(bad)
