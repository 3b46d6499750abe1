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
    assert have == wanted, (f"only in environment.yml: {have - wanted}; "
                            f"only in pyproject: {wanted - have}")
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


def test_lint_runs_before_the_tests_with_one_pinned_ruff() -> None:
    """`make test` and CI lint first, with the ruff version pinned once (dev extra), the same
    in environment.yml and in the pre-commit hook."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*\blint\b", makefile, re.MULTILINE), "make test must lint first"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci.index("make lint") < ci.index("make test")
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["dev"]
    pins = [r for r in dev if _name(r) == "ruff"]
    assert len(pins) == 1 and "==" in pins[0], f"ruff must be pinned exactly: {pins}"
    version = pins[0].split("==")[1]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed = [d for d in env["dependencies"] if isinstance(d, str)]
    listed += next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert f"ruff=={version}" in listed
    hooks = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"]
    by_repo = {h["repo"].rsplit("/", 1)[-1]: h for h in hooks}
    assert by_repo["ruff-pre-commit"]["rev"] == f"v{version}"
    ids = {hook["id"] for repo in hooks for hook in repo["hooks"]}
    assert {"ruff", "nbstripout", "detect-private-key"} <= ids
