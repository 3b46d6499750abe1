"""The model artifact: checksum, canonical bytes, refusals, atomic write."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sep_research.training.artifact import (
    ArtifactError,
    compute_checksum,
    load_artifact,
    verify_artifact,
    write_artifact,
)


def _payload() -> dict:
    return {
        "created_at": "2026-11-24T00:00:00Z", "instrument": "EUR_USD", "granularity": "H1",
        "alignment": "causal", "preset": "seed",
        "signal_params": {"window": 11, "weights": [0.4, 0.1, 0.5], "buy_threshold": 0.5},
        "objective": {"name": "net_pips", "min_hc": 30},
        "data": {"provenance": {"source": "package:x==1"}, "sha256": "ab" * 32},
        "windows": {"folds": [{"train": ["2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"]}]},
        "metrics": {"hc_accuracy": 0.51, "hc_accuracy_ci": [0.45, 0.57], "sharpe": None,
                    "sharpe_note": "undefined: no trades"},
        "baselines": {"always_long": {"net_pips": -12.5}},
        "overfitting": {"pbo": 0.4},
        "code": {"git_sha": "0" * 40, "dirty": True, "version": "0.1.0"},
        "packages": {"numpy": "2.4.0"},
    }


def test_roundtrip_and_checksum(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    art = write_artifact(path, _payload())
    assert art["sha256"] == compute_checksum(art)
    assert verify_artifact(path).ok
    loaded = load_artifact(path)
    assert loaded == art
    assert loaded["signal_params"]["window"] == 11
    # the checksum is over the canonical JSON of everything but itself
    body = {k: v for k, v in loaded.items() if k != "sha256"}
    import hashlib

    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert hashlib.sha256(canon.encode()).hexdigest() == loaded["sha256"]


def test_changing_any_single_byte_fails_verification(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    write_artifact(path, _payload())
    raw = path.read_bytes()
    bad = tmp_path / "bad.json"
    for i in range(len(raw)):
        for repl in {raw[i] ^ 0x01, ord(" ") if raw[i] != ord(" ") else ord("\t")}:
            bad.write_bytes(raw[:i] + bytes([repl]) + raw[i + 1:])
            res = verify_artifact(bad)
            assert not res.ok, f"byte {i} changed to {repl!r} passed verification"
    with pytest.raises(ArtifactError, match="failed verification"):
        load_artifact(bad)


def test_refusals(tmp_path: Path) -> None:
    p = _payload()
    p["alignment"] = "legacy"
    with pytest.raises(ArtifactError, match="legacy"):
        write_artifact(tmp_path / "a.json", p)
    p = _payload()
    p["metrics"]["hc_accuracy"] = float("nan")
    with pytest.raises(ArtifactError, match="/metrics/hc_accuracy"):
        write_artifact(tmp_path / "a.json", p)
    p = _payload()
    del p["packages"]
    with pytest.raises(ArtifactError, match="packages"):
        write_artifact(tmp_path / "a.json", p)
    assert not (tmp_path / "a.json").exists()
    res = verify_artifact(tmp_path / "missing.json")
    assert not res.ok and "cannot read" in res.problems[0]


def test_legacy_artifact_with_valid_checksum_is_refused_on_load(tmp_path: Path) -> None:
    from sep_research.training.artifact import file_bytes

    art = _payload()
    art["schema"] = "sep-model/1"
    art["alignment"] = "legacy"
    art["sha256"] = compute_checksum(art)
    path = tmp_path / "legacy.json"
    path.write_bytes(file_bytes(art))
    res = verify_artifact(path)
    assert not res.ok and any("legacy" in msg for msg in res.problems)
    with pytest.raises(ArtifactError):
        load_artifact(path, verify=False)


def test_failed_write_keeps_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    write_artifact(path, _payload())
    before = path.read_bytes()
    p = _payload()
    p["metrics"]["x"] = float("inf")
    with pytest.raises(ArtifactError):
        write_artifact(path, p)
    assert path.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.json"]


def test_artifact_module_is_standard_library_only() -> None:
    code = ("import sys, sep_research.training.artifact; "
            "bad=[m for m in ('numpy','numba','pandas','scipy') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
