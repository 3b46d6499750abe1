"""OANDA credentials: from the environment or an ``OANDA.env`` file found by a fixed search.

Variables
---------
``OANDA_API_KEY``
    The personal access token (``OANDA_ACCESS_TOKEN`` is accepted as an alias; when both are
    set, ``OANDA_API_KEY`` wins).
``OANDA_ACCOUNT_ID``
    The v20 account, e.g. ``101-004-1435156-001`` (practice) or ``001-...`` (live). Optional for
    downloads, required for trading (``load_credentials(require_account=True)``).
``OANDA_ENVIRONMENT``
    ``practice`` (the default when unset), ``live``, or a base URL such as
    ``http://127.0.0.1:8080`` (the local emulator or a test server).

Precedence
----------
1. An explicitly named file (``env_file=`` / ``sep ... --env-file F``): its values win, and the
   file must exist.
2. The process environment.
3. The first ``OANDA.env`` that exists in :func:`search_paths` order:

   ``$SEP_CONFIG_DIR/OANDA.env``, ``./config/OANDA.env``, ``./OANDA.env``,
   ``~/.config/sep/OANDA.env``, and in a container ``/app/config/OANDA.env``.

   Values from that file fill in what the environment does not set.

File format: ``KEY=value`` or ``export KEY=value`` lines, values optionally in single or double
quotes, blank lines and ``#`` comments (whole-line, or after an unquoted value preceded by a
space).

Rules
-----
- The token is never printed or logged: ``repr()`` and ``str()`` of :class:`Credentials` mask it.
- A missing credential raises :class:`CredentialsError`, which names every place searched.
- A practice account ID (``101-``) with the live environment, or a live one (``001-``) with the
  practice environment, is an error. With a URL environment (an emulator) either is accepted.

This module imports only the standard library (the live runner uses it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ENV_FILE_NAME = "OANDA.env"
TOKEN_VARS = ("OANDA_API_KEY", "OANDA_ACCESS_TOKEN")
ACCOUNT_VAR = "OANDA_ACCOUNT_ID"
ENVIRONMENT_VAR = "OANDA_ENVIRONMENT"
CONFIG_DIR_VAR = "SEP_CONFIG_DIR"
CONTAINER_PATH = Path("/app/config") / ENV_FILE_NAME
NAMED_ENVIRONMENTS = ("practice", "live")

#: Human-readable description of the search, in order (see :func:`search_paths`).
SEARCH_PATHS: tuple[str, ...] = (
    "--env-file FILE (explicit; its values win over the environment)",
    "environment: OANDA_API_KEY / OANDA_ACCESS_TOKEN, OANDA_ACCOUNT_ID, OANDA_ENVIRONMENT",
    "$SEP_CONFIG_DIR/OANDA.env",
    "./config/OANDA.env",
    "./OANDA.env",
    "~/.config/sep/OANDA.env",
    "/app/config/OANDA.env (in a container)",
)

_PRACTICE_PREFIX = "101-"
_LIVE_PREFIX = "001-"
_ACCOUNT_RE = re.compile(r"^\d{3}-\d{3}-\d+-\d{3}$")
_LINE_RE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


class CredentialsError(ValueError):
    """Credentials are missing or inconsistent. The message never contains the token."""


def _mask(token: str) -> str:
    return f"<hidden, {len(token)} chars>" if token else "<empty>"


@dataclass(frozen=True)
class Credentials:
    """An OANDA token, account and environment. ``repr``/``str`` never show the token."""

    token: str = field(repr=False)
    account_id: str | None = None
    environment: str = "practice"
    #: where each value came from, e.g. {"token": "environment OANDA_API_KEY"}
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        return (
            f"Credentials(token={_mask(self.token)}, account_id={self.account_id!r}, "
            f"environment={self.environment!r})"
        )

    __str__ = __repr__

    @property
    def is_url(self) -> bool:
        return is_url_environment(self.environment)


def is_url_environment(environment: str) -> bool:
    return environment.startswith(("http://", "https://"))


def check_environment(environment: str) -> str:
    """Return ``environment`` if it is 'practice', 'live' or an http(s) base URL."""
    if not isinstance(environment, str) or not environment:
        raise CredentialsError("OANDA environment is empty: use 'practice', 'live' or a URL")
    env = environment.strip()
    if env.lower() in NAMED_ENVIRONMENTS:
        return env.lower()
    if is_url_environment(env):
        rest = env.split("://", 1)[1].rstrip("/")
        if not rest or "/" in rest or " " in rest:
            raise CredentialsError(
                f"OANDA environment URL {environment!r} must be a base URL such as "
                "'http://127.0.0.1:8080' (no path)"
            )
        return env.rstrip("/")
    raise CredentialsError(
        f"unknown OANDA environment {environment!r}: use 'practice', 'live' or a base URL "
        "such as 'http://127.0.0.1:8080'"
    )


def check_account_environment(account_id: str | None, environment: str) -> None:
    """Refuse a practice account on live and a live account on practice."""
    if not account_id:
        return
    if not _ACCOUNT_RE.match(account_id):
        raise CredentialsError(
            f"OANDA_ACCOUNT_ID {account_id!r} does not look like a v20 account ID "
            "(e.g. 101-004-1435156-001)"
        )
    if environment == "live" and account_id.startswith(_PRACTICE_PREFIX):
        raise CredentialsError(
            f"account {account_id} is a practice account (101-...) but the environment is "
            "'live': set OANDA_ENVIRONMENT=practice or use a live account ID (001-...)"
        )
    if environment == "practice" and account_id.startswith(_LIVE_PREFIX):
        raise CredentialsError(
            f"account {account_id} is a live account (001-...) but the environment is "
            "'practice': set OANDA_ENVIRONMENT=live explicitly to trade a live account"
        )


def in_container() -> bool:
    """True inside Docker/Podman (or when ``container`` is set, as systemd and podman do)."""
    return (
        Path("/.dockerenv").exists()
        or Path("/run/.containerenv").exists()
        or bool(os.environ.get("container"))
    )


def search_paths(
    environ: Mapping[str, str] | None = None,
    *,
    cwd: Path | None = None,
    home: Path | None = None,
    container: bool | None = None,
) -> list[Path]:
    """The ``OANDA.env`` files looked for, in order (an explicit file comes before these)."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    home = Path.home() if home is None else home
    paths: list[Path] = []
    config_dir = environ.get(CONFIG_DIR_VAR)
    if config_dir:
        paths.append(Path(config_dir).expanduser() / ENV_FILE_NAME)
    paths += [cwd / "config" / ENV_FILE_NAME, cwd / ENV_FILE_NAME,
              home / ".config" / "sep" / ENV_FILE_NAME]
    if in_container() if container is None else container:
        paths.append(CONTAINER_PATH)
    return paths


def _unquote(raw: str, path: Path, lineno: int) -> str:
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = raw.find(quote, 1)
        if end < 0:
            raise CredentialsError(f"{path}:{lineno}: unterminated {quote} quote")
        rest = raw[end + 1:].strip()
        if rest and not rest.startswith("#"):
            raise CredentialsError(f"{path}:{lineno}: unexpected text after the quoted value")
        return raw[1:end]
    # inline comment: ' #' after an unquoted value
    cut = re.search(r"\s#", raw)
    return (raw[: cut.start()] if cut else raw).strip()


def parse_env_file(path: str | Path) -> dict[str, str]:
    """Parse a ``KEY=value`` / ``export KEY=value`` file with quotes and ``#`` comments.

    Errors name the file and line but never echo the line (it may hold the token).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CredentialsError(f"cannot read credentials file {path}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _LINE_RE.match(stripped)
        if m is None:
            raise CredentialsError(
                f"{path}:{lineno}: not a KEY=value line (expected e.g. OANDA_API_KEY=...)"
            )
        values[m.group(1)] = _unquote(m.group(2), path, lineno)
    return values


def _pick_token(values: Mapping[str, str]) -> tuple[str, str] | None:
    for var in TOKEN_VARS:
        v = values.get(var, "").strip()
        if v:
            return v, var
    return None


def load_credentials(
    env_file: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    search: Sequence[str | Path] | None = None,
    environment: str | None = None,
    require_account: bool = False,
) -> Credentials:
    """Find the OANDA token, account and environment (see the module docstring for the order).

    ``environ`` replaces ``os.environ`` and ``search`` replaces :func:`search_paths` (tests).
    ``environment`` ('practice', 'live' or a URL), when given, overrides ``OANDA_ENVIRONMENT``
    (it is the ``--environment`` command-line option).
    """
    environ = os.environ if environ is None else environ
    searched: list[str] = []
    layers: list[tuple[str, Mapping[str, str]]] = []

    if env_file is not None:
        path = Path(env_file).expanduser()
        if not path.is_file():
            raise CredentialsError(f"--env-file {path} does not exist or is not a file")
        layers.append((f"file {path}", parse_env_file(path)))
        searched.append(f"--env-file {path}")
    else:
        searched.append("--env-file (not given)")

    layers.append(("environment", environ))
    searched.append(
        "environment variables " + ", ".join((*TOKEN_VARS, ACCOUNT_VAR, ENVIRONMENT_VAR))
    )

    if search is None:
        if not environ.get(CONFIG_DIR_VAR):
            searched.append(f"${CONFIG_DIR_VAR}/{ENV_FILE_NAME} (SEP_CONFIG_DIR not set)")
        candidates = search_paths(environ)
    else:
        candidates = [Path(p) for p in search]
    found: Path | None = None
    for cand in candidates:
        cand = cand.expanduser()
        if found is None and cand.is_file():
            found = cand
            searched.append(f"{cand} (found)")
        elif found is None:
            searched.append(f"{cand} (not found)")
        else:
            searched.append(f"{cand} (not read: an earlier file was found)")
    if found is not None:
        layers.append((f"file {found}", parse_env_file(found)))

    sources: dict[str, str] = {}
    token_hit = None
    for label, values in layers:
        hit = _pick_token(values)
        if hit:
            token_hit = hit[0]
            sources["token"] = f"{label} {hit[1]}"
            break
    if token_hit is None:
        where = "\n  - ".join(searched)
        raise CredentialsError(
            "no OANDA API token found: set OANDA_API_KEY (or OANDA_ACCESS_TOKEN) in the "
            f"environment or in an {ENV_FILE_NAME} file. Searched:\n  - {where}"
        )

    def first(var: str) -> str | None:
        for label, values in layers:
            v = values.get(var, "").strip()
            if v:
                sources[var] = f"{label} {var}"
                return v
        return None

    account = first(ACCOUNT_VAR)
    if environment is not None:
        env = check_environment(environment)
        sources["environment"] = "argument"
    else:
        raw_env = first(ENVIRONMENT_VAR)
        env = check_environment(raw_env) if raw_env else "practice"
        sources.setdefault(ENVIRONMENT_VAR, "default (practice)")
    if require_account and not account:
        where = "\n  - ".join(searched)
        raise CredentialsError(
            f"no OANDA account ID found: set {ACCOUNT_VAR} in the environment or in an "
            f"{ENV_FILE_NAME} file. Searched:\n  - {where}"
        )
    check_account_environment(account, env)
    return Credentials(token=token_hit, account_id=account, environment=env, sources=sources)
