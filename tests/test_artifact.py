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

#: every parameter of the seed preset, as an artifact stores them
SEED_PARAMS = {
    "window": 11, "w_s": 0.4, "w_c": 0.1, "w_e": 0.5, "buy_threshold": 0.5,
    "sell_threshold": 0.52, "conf_threshold": 0.65, "coh_threshold": 0.3,
    "collapse_threshold": 0.3, "min_move": 0.5, "coh_scale": 0.7, "coh_offset": 0.15,
    "vol_window": 20, "vol_default": 0.5, "stab_vol_weight": 0.2, "stab_vol_scale": 20.0,
    "volume_factor": True, "vf_base": 0.85, "vf_slope": 0.3, "vf_ref": 150.0, "vf_lo": 0.7,
    "vf_hi": 1.4, "temporal_factor": True, "tf_short": 5, "tf_long": 15, "tf_tight": 0.1,
    "tf_loose": 0.2, "tf_high": 1.15, "tf_mid": 1.08, "vol_multiplier": True,
    "vm_window": 100, "vm_center": 10.0, "vm_slope": 0.02, "vm_lo": 0.8, "vm_hi": 1.5,
}


def _payload() -> dict:
    return {
        "created_at": "2026-11-24T00:00:00Z", "instrument": "EUR_USD", "granularity": "H1",
        "alignment": "causal", "preset": "seed", "rule": "seed",
        "signal_params": dict(SEED_PARAMS),
        "policy": {"trade_on": "hc", "hold": "flat", "stop_loss_pips": None,
                   "take_profit_pips": None},
        "costs": {"spread": "mid", "half_spread_pips": 0.5, "financing": None},
        "selection_gap": {"train_gap_pips": 1.5},
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


@pytest.mark.parametrize("module", ["sep_research.training.artifact", "sep_research.strategy",
                                    "sep_research.financing"])
def test_artifact_and_strategy_modules_are_standard_library_only(module: str) -> None:
    code = (f"import sys, {module}; "
            "bad=[m for m in ('numpy','numba','pandas','scipy') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _rechecksummed(tmp_path: Path, name: str, edit) -> Path:
    """A valid artifact edited by ``edit(art)`` and given a fresh checksum (a checksum is not
    a signature: anyone can recompute it)."""
    from sep_research.training.artifact import file_bytes

    art = write_artifact(tmp_path / "good.json", _payload())
    art = json.loads(json.dumps(art))
    edit(art)
    art.pop("sha256")
    art["sha256"] = compute_checksum(art)
    path = tmp_path / name
    path.write_bytes(file_bytes(art))
    return path


def _set(path: str, value):
    def edit(art):
        *keys, last = path.split(".")
        d = art
        for k in keys:
            d = d[k]
        d[last] = value
    return edit


# finding 13 of the 2026-12 review: every one of these verified OK and broke the runner
UNUSABLE = [
    ("signal_params.window", 11.0, "signal_params.window"),
    ("signal_params.w_s", "0.4", "signal_params.w_s"),
    ("signal_params.window", [11], "signal_params.window"),
    ("signal_params.buy_threshold", True, "signal_params.buy_threshold"),
    ("signal_params.window", 10**12, "signal_params.window"),
    ("signal_params.volume_factor", "no", "signal_params.volume_factor"),
    ("signal_params.pip", 1e4, "'pip'"),
    ("instrument", 123, "instrument"),
    ("instrument", "../../etc/passwd", "instrument"),
    ("granularity", "X9", "granularity"),
    ("policy.trade_on", "no", "policy.trade_on"),
    ("policy.stop_loss_pips", -5, "policy.stop_loss_pips"),
    ("policy.stop_loss_pips", True, "policy.stop_loss_pips"),
    ("policy.hold", "sometimes", "policy.hold"),
    ("costs.financing", 0.1, "costs.financing"),
    ("costs.spread", "free", "costs.spread"),
]


@pytest.mark.parametrize(("key", "value", "named"), UNUSABLE,
                         ids=[f"{k}={v!r}" for k, v, _ in UNUSABLE])
def test_rechecksummed_unusable_artifact_fails_verification_naming_the_key(
        tmp_path: Path, key: str, value, named: str) -> None:
    """Finding 13 of the 2026-12 review: an artifact re-checksummed after an edit that the
    runner cannot use fails `sep model verify`, naming the key."""
    path = _rechecksummed(tmp_path, "bad.json", _set(key, value))
    res = verify_artifact(path)
    assert not res.ok, f"{key}={value!r} verified OK"
    assert any(named in p for p in res.problems), res.problems
    with pytest.raises(ArtifactError, match="failed verification"):
        load_artifact(path)


def test_load_parses_the_bytes_it_verified(tmp_path: Path, monkeypatch) -> None:
    """Finding 16 of the 2026-12 review (TOCTOU): load_artifact verified the file, then read it
    again. Swap the file for an unverified one right after the checksum is computed: what is
    returned must be what was verified."""
    import sep_research.training.artifact as A

    path = tmp_path / "m.json"
    good = write_artifact(path, _payload())
    evil = _payload()
    evil["signal_params"]["buy_threshold"] = 0.0
    evil_bytes = A.file_bytes({**evil, "schema": good["schema"], "sha256": "0" * 64})
    real = A.compute_checksum

    def swap_after_checksum(art):
        out = real(art)
        path.write_bytes(evil_bytes)
        return out

    monkeypatch.setattr(A, "compute_checksum", swap_after_checksum)
    loaded = load_artifact(path)
    assert loaded == good
    assert loaded["signal_params"]["buy_threshold"] == 0.5


def test_deep_nesting_is_a_clear_error(tmp_path: Path) -> None:
    # finding 18 (artifact part): a deeply nested file raised RecursionError with a traceback
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    res = verify_artifact(path)
    assert not res.ok and "nested" in " ".join(res.problems)
    with pytest.raises(ArtifactError, match="nested"):
        load_artifact(path)
    out = subprocess.run([sys.executable, "-m", "sep_research.cli", "model", "verify",
                          str(path)], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2, out.stderr
    assert "nested" in out.stderr and "Traceback" not in out.stderr
    # nesting just deep enough to pass the parser but not the depth limit
    obj: list = []
    for _ in range(200):
        obj = [obj]
    path.write_text(json.dumps({"a": obj}))
    res = verify_artifact(path)
    assert not res.ok and "nested" in " ".join(res.problems)


def test_reads_are_bounded_to_regular_files_of_limited_size(tmp_path: Path) -> None:
    from sep_research.training.artifact import MAX_ARTIFACT_BYTES

    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(MAX_ARTIFACT_BYTES + 1)  # sparse: nothing is written
    res = verify_artifact(big)
    assert not res.ok and "larger than" in res.problems[0]
    for special in ("/dev/zero", str(tmp_path)):
        res = verify_artifact(special)
        assert not res.ok and "not a regular file" in res.problems[0], res.problems
        with pytest.raises(ArtifactError, match="not a regular file"):
            load_artifact(special)


def test_schema_1_artifact_is_refused_with_the_retrain_command(tmp_path: Path) -> None:
    from sep_research.training.artifact import file_bytes

    art = _payload()
    for key in ("rule", "policy", "costs", "selection_gap"):
        del art[key]
    art["signal_params"]["pip"] = 1e4
    art["schema"] = "sep-model/1"
    art["sha256"] = compute_checksum(art)
    path = tmp_path / "old.json"
    path.write_bytes(file_bytes(art))
    res = verify_artifact(path)
    assert not res.ok
    text = " ".join(res.problems)
    assert "sep-model/1" in text
    assert "sep train --instrument EUR_USD --granularity H1" in text
    with pytest.raises(ArtifactError, match="sep train"):
        load_artifact(path, verify=False)


def test_schema_2_artifact_is_refused_with_the_reason_and_the_retrain_command(
        tmp_path: Path) -> None:
    from sep_research.training.artifact import file_bytes

    art = _payload()
    art["schema"] = "sep-model/2"
    art["sha256"] = compute_checksum(art)
    path = tmp_path / "v2.json"
    path.write_bytes(file_bytes(art))
    text = " ".join(verify_artifact(path).problems)
    assert "'sep-model/2' is no longer supported" in text and "without overnight financing" in text
    assert "sep train --instrument EUR_USD --granularity H1" in text
    with pytest.raises(ArtifactError, match="sep-model/3"):
        load_artifact(path, verify=False)


def test_financing_round_trips_through_the_artifact(tmp_path: Path) -> None:
    from sep_research.financing import default_rates
    from sep_research.strategy import StrategySpec

    p = _payload()
    p["costs"]["financing"] = default_rates("EUR_USD").to_dict()
    write_artifact(tmp_path / "m.json", p)
    spec = StrategySpec.from_artifact(load_artifact(tmp_path / "m.json"))
    assert spec.costs.financing == default_rates("EUR_USD")
    p["costs"]["financing"]["days"]["WEDNESDAY"] = 3.5
    with pytest.raises(ArtifactError, match=r"costs.financing.days.WEDNESDAY"):
        write_artifact(tmp_path / "bad.json", p)


def test_the_spec_round_trips_through_the_artifact(tmp_path: Path) -> None:
    from sep_research.strategy import StrategySpec

    p = _payload()
    p["policy"]["stop_loss_pips"] = 20.0
    art = write_artifact(tmp_path / "m.json", p)
    spec = StrategySpec.from_artifact(load_artifact(tmp_path / "m.json"))
    assert spec.policy.stop_loss_pips == 20.0 and spec.policy.take_profit_pips is None
    assert spec.costs.half_spread_pips == 0.5 and spec.pip == 0.0001
    assert spec.params.window == 11
    assert {k: art[k] for k in spec.to_dict()} == spec.to_dict()
