"""Shared fixtures. The seed's reference data is read from ../shared and never copied here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED_DIR = Path(os.environ.get("SEP_SEED_REFERENCE",
                               ROOT.parent / "shared" / "data" / "seed-reference"))
SEED_O_TEST = SEED_DIR / "O-test-2.json"
SEED_EURUSD_M1 = SEED_DIR / "eur_usd_m1_48h.json"


def seed_file(path: Path) -> Path:
    """Return a seed-reference file, or skip the test when the folder is absent."""
    if not path.is_file():
        pytest.skip(f"seed reference data not present ({path})")
    return path


@pytest.fixture
def seed_o_test() -> Path:
    return seed_file(SEED_O_TEST)


@pytest.fixture
def seed_eurusd_m1() -> Path:
    return seed_file(SEED_EURUSD_M1)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder, also exported as SEP_CACHE_DIR for CLI calls."""
    d = tmp_path / "cache"
    monkeypatch.setenv("SEP_CACHE_DIR", str(d))
    return d


@pytest.fixture
def fast_oanda_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generous process-wide OANDA rate limiters, so that tests do not wait on them."""
    from sep_research.oanda import client as oclient

    monkeypatch.setattr(oclient, "_default_limiters", {
        "request": oclient.RateLimiter(10_000, 10_000),
        "connection": oclient.RateLimiter(10_000, 10_000),
    })
