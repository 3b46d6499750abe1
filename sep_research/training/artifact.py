"""The model artifact: one JSON file with everything needed to trust and reuse a trained model.

Standard library only: the live runner loads artifacts without numpy, numba or pandas.

Layout (schema ``sep-model/3``; every key below is required, ``sha256`` is written last)::

    {
      "schema": "sep-model/3",
      "created_at": "2026-11-24T00:00:00Z",          # ISO UTC
      # the strategy specification (sep_research.strategy.StrategySpec.to_dict()):
      "rule": "seed", "signal_params": {...},         # the rule and every parameter
      "instrument": "EUR_USD", "granularity": "H1",
      "alignment": "causal",                          # anything else is refused
      "policy": {"trade_on": "hc", "hold": "flat",    # what the evaluation below traded
                 "stop_loss_pips": 20.0, "take_profit_pips": null},   # null: off
      "costs": {"spread": "mid", "half_spread_pips": 0.5,   # financing: null only when off
                "financing": {"source": "default-table:2017-07-01", "long_rate": -0.02525,
                              "short_rate": 0.00525, "days": {"MONDAY": 1, ...}}},
      # how it was chosen and judged:
      "objective": {...},                             # how the configuration was chosen
      "selection_gap": {...},                         # sweep objective vs backtest, per fold
      "data": {"provenance": {...}, "sha256": "..."}, # the candles' provenance and content hash
      "windows": {"folds": [{"train": [start, end], "test": [start, end], ...}], ...},
      "metrics": {...},                               # out-of-sample metrics with intervals:
                                                      # direction-only figures first, the
                                                      # seed's metric, trading with financing
      "baselines": {...},                             # the same figures for the baselines,
                                                      # incl. same candles, random direction
      "overfitting": {...},                           # DSR, PBO, SPA (or why not computed)
      "code": {"git_sha": "...", "dirty": false, "version": "0.1.0"},
      "packages": {"numpy": "2.4.0", ...},
      "sha256": "<hex>"                               # over everything else, see below
    }

The strategy keys are validated strictly (:meth:`sep_research.strategy.StrategySpec.from_artifact`:
typed, bounded, no unknown parameter), so an artifact that verifies is one the runner can
trade. An artifact of an older schema (``sep-model/1`` stored no trading policy;
``sep-model/2`` was judged without financing and without the direction-only figures) is refused
with the ``sep train`` command that makes a new one.

Checksum: sha256 of the canonical JSON of the artifact without its ``sha256`` key:
``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
allow_nan=False)`` encoded as UTF-8. The file itself is written in a fixed readable form
(:func:`file_bytes`), and verification also requires the file's bytes to be exactly that form,
so that changing any single byte of the file (even white space) fails verification. (A checksum
is not a signature: whoever can write the file can recompute it; the content checks above are
what keep such an edit from being traded.) NaN and infinity are refused on write: every figure
must be a number or an explicit ``null`` with a reason beside it.

Reading is bounded and done once: only a regular file of at most :data:`MAX_ARTIFACT_BYTES` is
read, in one read, and :func:`load_artifact` returns the object parsed from exactly the bytes
it verified. JSON nested deeper than :data:`MAX_DEPTH` levels is refused with a clear error.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from sep_research._util import JsonInputError, atomic_write_bytes, loads_json
from sep_research.strategy import SPEC_KEYS, SpecError, StrategySpec

SCHEMA = "sep-model/3"
#: schemas that once existed and are refused with the command that retrains, and why
OLD_SCHEMAS: dict[str, str] = {
    "sep-model/1": ("it stores no trading policy, so what it was judged on cannot be "
                    "traded"),
    "sep-model/2": ("it was judged without overnight financing and without the direction-only "
                    "figures, so its out-of-sample figures are not what the runner's P&L will "
                    "show"),
}
CHECKSUM_KEY = "sha256"
REQUIRED_KEYS = (
    "schema", "created_at", *SPEC_KEYS, "objective", "selection_gap", "data", "windows",
    "metrics", "baselines", "overfitting", "code", "packages",
)
#: largest artifact file read (a trained artifact is tens of kilobytes)
MAX_ARTIFACT_BYTES = 16 * 1024 * 1024
#: deepest nesting of objects and arrays accepted
MAX_DEPTH = 64


class ArtifactError(ValueError):
    """The artifact is missing, malformed, tampered with or not allowed (names the file)."""


@dataclass
class VerifyResult:
    path: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    sha256: str | None = None
    #: True when the file could not be read or parsed at all (``sep model verify`` exits 2)
    unreadable: bool = False

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


def retrain_command(artifact: Any, path: str = "MODEL.json") -> str:
    """The ``sep train`` command that makes a current artifact for the same market."""
    from sep_research import fx

    inst, gran = "INSTRUMENT", "GRANULARITY"
    if isinstance(artifact, dict):
        try:
            inst = fx.check_instrument(artifact.get("instrument"))
        except fx.FxError:
            pass
        try:
            gran = fx.check_granularity(artifact.get("granularity"))
        except fx.FxError:
            pass
    return (f"sep train --instrument {inst} --granularity {gran} --source cache "
            f"--out {path}")


def _problems(artifact: Any, path: str = "MODEL.json") -> list[str]:
    if not isinstance(artifact, dict):
        return ["the artifact is not a JSON object"]
    schema = artifact.get("schema", SCHEMA)
    if schema in OLD_SCHEMAS:
        return [(f"schema {schema!r} is no longer supported: {OLD_SCHEMAS[schema]}; retrain "
                 f"to write a {SCHEMA!r} artifact: {retrain_command(artifact, path)} (add "
                 "--stop-loss-pips/--take-profit-pips for the policy you mean to trade)")]
    problems = []
    missing = [k for k in REQUIRED_KEYS if k not in artifact]
    if missing:
        problems.append(f"missing fields: {missing}")
    if schema != SCHEMA:
        problems.append(f"unknown schema {_short(schema)} (expected {SCHEMA!r})")
    if "alignment" in artifact and artifact["alignment"] != "causal":
        problems.append(
            f"alignment is {_short(artifact['alignment'])}: only 'causal' models are allowed "
            "(legacy alignment looks ahead and is for reproduction only)")
    if all(k in artifact for k in SPEC_KEYS):
        view = {k: artifact[k] for k in SPEC_KEYS}
        if view["alignment"] != "causal":
            view["alignment"] = "causal"  # reported above
        try:
            StrategySpec.from_artifact(view)
        except SpecError as exc:
            problems.append(f"strategy: {exc}")
    bad = _find_bad_numbers(artifact)
    if bad:
        problems.append(f"values that are not finite JSON numbers or types at {bad[:5]}")
    return problems


def _short(value: Any) -> str:
    s = repr(value)
    return s if len(s) <= 40 else s[:37] + "..."


def write_artifact(path: str | os.PathLike[str], payload: dict[str, Any]) -> dict[str, Any]:
    """Validate ``payload``, add ``schema`` and the checksum, write atomically; return it.

    Raises :class:`ArtifactError` naming the problem (missing fields, NaN or infinity, a
    non-causal alignment, an invalid strategy). The file is written to a temporary file in the
    same folder and renamed over ``path``, so an existing file is never left half-written.
    """
    art = {k: v for k, v in payload.items() if k != CHECKSUM_KEY}
    art.setdefault("schema", SCHEMA)
    problems = _problems(art, os.fspath(path))
    if problems:
        raise ArtifactError(f"{os.fspath(path)}: refusing to write the artifact: "
                            + "; ".join(problems))
    art[CHECKSUM_KEY] = compute_checksum(art)
    data = file_bytes(art)
    atomic_write_bytes(path, data)
    return art


def read_artifact_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes, read once: a regular file of at most :data:`MAX_ARTIFACT_BYTES`
    (a device such as ``/dev/zero``, a FIFO or a folder is refused before reading)."""
    p = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags)
    except OSError as exc:
        if isinstance(exc, IsADirectoryError):
            raise ArtifactError(f"{p}: not a regular file") from None
        raise ArtifactError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ArtifactError(f"{p}: not a regular file")
        if st.st_size > MAX_ARTIFACT_BYTES:
            raise ArtifactError(f"{p}: larger than {MAX_ARTIFACT_BYTES} bytes "
                                f"({st.st_size}): not a model artifact")
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_ARTIFACT_BYTES:
                raise ArtifactError(f"{p}: larger than {MAX_ARTIFACT_BYTES} bytes: not a "
                                    "model artifact")
            chunks.append(chunk)
    except OSError as exc:
        raise ArtifactError(f"{p}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def parse_artifact_bytes(raw: bytes, path: str = "artifact") -> Any:
    """JSON from an artifact's bytes (:func:`sep_research._util.loads_json`, the one bounded
    parser); :class:`ArtifactError` for bad UTF-8, bad JSON, NaN/Infinity, an integer too long
    to read, or nesting deeper than :data:`MAX_DEPTH` (never a RecursionError)."""
    try:
        return loads_json(raw, what=path, max_depth=MAX_DEPTH, max_bytes=MAX_ARTIFACT_BYTES)
    except JsonInputError as exc:
        raise ArtifactError(str(exc)) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ArtifactError(f"{path}: not valid JSON: {exc}") from None


def _verify(p: str, raw: bytes) -> tuple[VerifyResult, Any]:
    try:
        art = parse_artifact_bytes(raw, p)
    except ArtifactError as exc:
        return VerifyResult(p, False, [str(exc).removeprefix(f"{p}: ")], unreadable=True), None
    if not isinstance(art, dict):
        return VerifyResult(p, False, ["the artifact is not a JSON object"]), None
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
    problems.extend(_problems({k: v for k, v in art.items() if k != CHECKSUM_KEY}, p))
    return (VerifyResult(p, not problems, problems, stored if isinstance(stored, str) else None),
            art)


def verify_artifact(path: str | os.PathLike[str]) -> VerifyResult:
    """Check an artifact file: readable JSON, canonical bytes, checksum, fields, alignment and
    the strategy specification (strict types and bounds)."""
    p = os.fspath(path)
    try:
        raw = read_artifact_bytes(p)
    except ArtifactError as exc:
        return VerifyResult(p, False, [str(exc).removeprefix(f"{p}: ")], unreadable=True)
    return _verify(p, raw)[0]


def load_artifact(path: str | os.PathLike[str], *, verify: bool = True) -> dict[str, Any]:
    """Read an artifact once and return what was parsed from exactly those bytes; with
    ``verify`` (the default) raise :class:`ArtifactError` unless they pass
    :func:`verify_artifact`'s checks. Even without ``verify`` an older schema and a
    non-causal alignment are refused."""
    p = os.fspath(path)
    raw = read_artifact_bytes(p)
    if verify:
        res, art = _verify(p, raw)
        if not res.ok:
            raise ArtifactError(f"{p}: artifact failed verification: " + "; ".join(res.problems))
        return art
    art = parse_artifact_bytes(raw, p)
    if isinstance(art, dict) and art.get("schema") in OLD_SCHEMAS:
        raise ArtifactError(f"{p}: " + _problems(art, p)[0])
    if not isinstance(art, dict) or art.get("alignment") != "causal":
        raise ArtifactError(f"{p}: only artifacts with alignment 'causal' can be loaded")
    return art
