"""Set-up files agree with each other: pyproject.toml, environment.yml, Makefile, .ci/run."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in ("research", "dev"):
        wanted |= {_name(r) for r in extras[extra] if not r.startswith("sep-research")}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pip_names = {_name(p) for p in pip if not p.startswith("-e")}
    have = (conda | pip_names) - {"python", "pip"}
    # dask[distributed] in pip is dask + distributed in conda
    if "dask" in wanted:
        wanted.add("distributed")
    assert have == wanted, f"only in environment.yml: {have - wanted}; only in pyproject: {wanted - have}"
    assert "conda-forge" in env["channels"]


def test_oandapyv20_dependencies_are_explicit() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {_name(d) for d in deps}
    assert {"oandapyv20", "requests", "six"} <= names


def test_live_runner_install_stays_small() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(d) for d in project["dependencies"]}
    assert not core & {"numba", "pandas", "matplotlib", "jupyterlab", "papermill", "dask"}


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert re.search(r"^make test$", ci, re.MULTILINE)
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test", "lab", "help"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE)
