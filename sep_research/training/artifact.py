"""The model artifact: one JSON file with everything needed to trust and reuse a trained model.

Standard library only: the live runner loads artifacts without numpy, numba or pandas.

Layout (schema ``sep-model/1``; every key is required, ``sha256`` is written last)::

    {
      "schema": "sep-model/1",
      "created_at": "2026-11-24T00:00:00Z",          # ISO UTC
      "instrument": "EUR_USD", "granularity": "H1",
      "alignment": "causal",                          # anything else is refused
      "preset": "seed",                               # signal preset the parameters belong to
      "signal_params": {...},                         # full parameters the live runner needs
      "objective": {...},                             # how the configuration was chosen
      "data": {"provenance": {...}, "sha256": "..."}, # the candles' provenance and content hash
      "windows": {"folds": [{"train": [start, end], "test": [start, end], ...}], ...},
      "metrics": {...},                               # out-of-sample metrics with intervals
      "baselines": {...},                             # the same figures for the baselines
      "overfitting": {...},                           # DSR, PBO, SPA (or why not computed)
      "code": {"git_sha": "...", "dirty": false, "version": "0.1.0"},
      "packages": {"numpy": "2.4.0", ...},
      "sha256": "<hex>"                               # over everything else, see below
    }

Checksum: sha256 of the canonical JSON of the artifact without its ``sha256`` key:
``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
allow_nan=False)`` encoded as UTF-8. The file itself is written in a fixed readable form
(:func:`file_bytes`), and verification also requires the file's bytes to be exactly that form,
so that changing any single byte of the file (even white space) fails verification.
NaN and infinity are refused on write: every figure must be a number or an explicit
``null`` with a reason beside it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sep_research._util import atomic_write_bytes

SCHEMA = "sep-model/1"
CHECKSUM_KEY = "sha256"
REQUIRED_KEYS = (
    "schema", "created_at", "instrument", "granularity", "alignment", "preset",
    "signal_params", "objective", "data", "windows", "metrics", "baselines", "overfitting",
    "code", "packages",
)


class ArtifactError(ValueError):
    """The artifact is missing, malformed, tampered with or not allowed (names the file)."""


@dataclass
class VerifyResult:
    path: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    sha256: str | None = None

    def __bool__(self) -> bool:
        return self.ok


def canonical_json(obj: Any) -> bytes:
    """The canonical serialisation the checksum is computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("utf-8")


def file_bytes(artifact: dict[str, Any]) -> bytes:
    """The exact bytes an artifact file holds: sorted keys, one-space indent, final newline."""
    return (json.dumps(artifact, sort_keys=True, indent=1, ensure_ascii=True,
                       allow_nan=False) + "\n").encode("utf-8")


def compute_checksum(artifact: dict[str, Any]) -> str:
    body = {k: v for k, v in artifact.items() if k != CHECKSUM_KEY}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _find_bad_numbers(obj: Any, where: str = "") -> list[str]:
    bad: list[str] = []
    if isinstance(obj, float):
        if not math.isfinite(obj):
            bad.append(where or "<root>")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                bad.append(f"{where}/{k!r} (non-string key)")
            bad.extend(_find_bad_numbers(v, f"{where}/{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            bad.extend(_find_bad_numbers(v, f"{where}[{i}]"))
    elif not (obj is None or isinstance(obj, (str, int, bool))):
        bad.append(f"{where} (type {type(obj).__name__} is not JSON)")
    return bad


def _problems(artifact: Any) -> list[str]:
    if not isinstance(artifact, dict):
        return ["the artifact is not a JSON object"]
    problems = []
    missing = [k for k in REQUIRED_KEYS if k not in artifact]
    if missing:
        problems.append(f"missing fields: {missing}")
    if artifact.get("schema", SCHEMA) != SCHEMA:
        problems.append(f"unknown schema {artifact.get('schema')!r} (expected {SCHEMA!r})")
    if "alignment" in artifact and artifact["alignment"] != "causal":
        problems.append(
            f"alignment is {artifact['alignment']!r}: only 'causal' models are allowed "
            "(legacy alignment looks ahead and is for reproduction only)")
    if "signal_params" in artifact and not isinstance(artifact["signal_params"], dict):
        problems.append("signal_params must be an object")
    bad = _find_bad_numbers(artifact)
    if bad:
        problems.append(f"values that are not finite JSON numbers or types at {bad[:5]}")
    return problems


def write_artifact(path: str | os.PathLike[str], payload: dict[str, Any]) -> dict[str, Any]:
    """Validate ``payload``, add ``schema`` and the checksum, write atomically; return it.

    Raises :class:`ArtifactError` naming the problem (missing fields, NaN or infinity, a
    non-causal alignment). The file is written to a temporary file in the same folder and
    renamed over ``path``, so an existing file is never left half-written.
    """
    art = {k: v for k, v in payload.items() if k != CHECKSUM_KEY}
    art.setdefault("schema", SCHEMA)
    problems = _problems(art)
    if problems:
        raise ArtifactError(f"{os.fspath(path)}: refusing to write the artifact: "
                            + "; ".join(problems))
    art[CHECKSUM_KEY] = compute_checksum(art)
    data = file_bytes(art)
    atomic_write_bytes(path, data)
    return art


def verify_artifact(path: str | os.PathLike[str]) -> VerifyResult:
    """Check an artifact file: readable JSON, canonical bytes, checksum, fields, alignment."""
    p = os.fspath(path)
    try:
        raw = Path(p).read_bytes()
    except OSError as exc:
        return VerifyResult(p, False, [f"cannot read: {exc.strerror or exc}"])
    try:
        art = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return VerifyResult(p, False, [f"not valid JSON: {exc}"])
    if not isinstance(art, dict):
        return VerifyResult(p, False, ["the artifact is not a JSON object"])
    problems = []
    stored = art.get(CHECKSUM_KEY)
    if not isinstance(stored, str):
        problems.append(f"no {CHECKSUM_KEY!r} checksum field")
    else:
        try:
            actual = compute_checksum(art)
        except ValueError as exc:  # NaN/inf in a hand-edited file
            actual = None
            problems.append(f"cannot serialise for the checksum: {exc}")
        if actual is not None and actual != stored:
            problems.append("checksum mismatch: the content was changed after it was written")
    try:
        if file_bytes(art) != raw:
            problems.append("the file is not in its canonical form (edited after writing?)")
    except ValueError:
        pass
    problems.extend(_problems({k: v for k, v in art.items() if k != CHECKSUM_KEY}))
    return VerifyResult(p, not problems, problems, stored if isinstance(stored, str) else None)


def load_artifact(path: str | os.PathLike[str], *, verify: bool = True) -> dict[str, Any]:
    """Read an artifact; with ``verify`` (the default) raise :class:`ArtifactError` unless
    :func:`verify_artifact` passes. Even without ``verify`` a non-causal alignment is refused."""
    p = os.fspath(path)
    if verify:
        res = verify_artifact(p)
        if not res.ok:
            raise ArtifactError(f"{p}: artifact failed verification: " + "; ".join(res.problems))
    try:
        art = json.loads(Path(p).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ArtifactError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{p}: not valid JSON: {exc}") from None
    if not isinstance(art, dict) or art.get("alignment") != "causal":
        raise ArtifactError(f"{p}: only artifacts with alignment 'causal' can be loaded")
    return art
