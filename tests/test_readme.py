"""Every cheap command in the README works as written (the expensive ones have their own tests:
make demo, sep batch, sep train, sep data fetch against a candle server)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SEED = ROOT.parent / "shared" / "data" / "seed-reference" / "O-test-2.json"

# Commands copied from the README, run in order in one fresh cache and reports folder.
CHEAP = [
    ".venv/bin/sep data sample",
    ".venv/bin/sep data list",
    ".venv/bin/sep data verify",
    ".venv/bin/sep data summary",
    ".venv/bin/sep batch runners/grids/sample-exploration.yaml --dry-run",
    ".venv/bin/sep run --print-config",
]


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
    return [line.split("#")[0].strip() for b in blocks for line in b.splitlines() if line.strip()]


def _run(cmd: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(cmd)
    assert argv[0] == ".venv/bin/sep"
    argv = [sys.executable, "-m", "sep_research", *argv[1:]]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
                          check=False)


def test_readme_shows_the_two_commands() -> None:
    cmds = _readme_commands()
    assert "make demo" in cmds and "make test" in cmds


@pytest.mark.slow
def test_cheap_readme_commands_run_as_written(tmp_path: Path) -> None:
    cmds = _readme_commands()
    env = dict(os.environ, SEP_CACHE_DIR=str(tmp_path / "cache"),
               SEP_REPORTS_DIR=str(tmp_path / "reports"))
    for cmd in CHEAP:
        assert cmd in cmds, f"not in the README any more: {cmd}"
        r = _run(cmd, env)
        assert r.returncode == 0, f"{cmd}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    listed = _run(".venv/bin/sep data list", env).stdout
    assert "package:backtesting==" in listed


def test_reproduce_seed_as_in_the_readme() -> None:
    if not SEED.is_file():
        pytest.skip(f"seed reference data not present ({SEED})")
    cmd = ".venv/bin/sep reproduce-seed --data ../shared/data/seed-reference/O-test-2.json"
    assert cmd.removeprefix(".venv/bin/") in README
    r = _run(cmd, dict(os.environ))
    assert r.returncode == 0, r.stderr
    # the README's table is what the command prints
    for figure in ("1439", "41.83", "275", "238", "60.73", "19.1", "43.64"):
        assert figure in r.stdout and figure in README
