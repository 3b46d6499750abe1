"""The notebooks follow the conventions: numbered names, a second cell tagged ``parameters``
with one ``name = default  # meaning`` per line that papermill can read, an ``output_dir``
parameter for batch runs, and no outputs committed. (``make test`` also executes them with
nbval; this file checks their form.)"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from sep_research.reporting.grid import notebook_parameters

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LINE = re.compile(r"^[a-z_][a-z0-9_]* = .+  # \S.*$")


def test_there_are_notebooks() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"01-data-exploration.ipynb", "02-qfh-kernels.ipynb", "03-training-run.ipynb",
            "04-seed-headline.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_conventions(path: Path) -> None:
    assert re.fullmatch(r"\d\d-[a-z0-9-]+\.ipynb", path.name), path.name
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.cells[0].cell_type == "markdown"
    params = nb.cells[1]
    assert params.cell_type == "code" and "parameters" in params.metadata.get("tags", [])
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [1], "exactly one parameters cell, the second"
    lines = [ln for ln in params.source.splitlines() if ln.strip()]
    bad = [ln for ln in lines if not LINE.match(ln) or ln.count("=") != 1]
    assert not bad, f"lines not of the form 'name = default  # meaning': {bad}"
    declared = notebook_parameters(path)  # raises when papermill cannot read a line
    assert len(declared) == len(lines)
    assert "output_dir" in declared and declared["output_dir"].default == ""
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "commit without outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_hold_no_logic(path: Path) -> None:
    """Thin notebooks: no function or class definitions, no chdir, no hard-coded paths."""
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"^\s*(def|class) ", code, re.MULTILINE)
    assert "chdir" not in code and "/work/" not in code
