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

Precedence: one layer
---------------------
The layers, in order:

1. An explicitly named file (``env_file=`` / ``sep ... --env-file F``); it must exist.
2. The process environment.
3. The first ``OANDA.env`` that exists in :func:`search_paths` order:
   ``$SEP_CONFIG_DIR/OANDA.env``, ``./config/OANDA.env``, ``./OANDA.env``,
   ``~/.config/sep/OANDA.env``, and in a container ``/app/config/OANDA.env``.

The token, the account ID and the environment all come from **the first layer that holds a
token**; an account or environment set in another layer is ignored, with a warning naming it.
(Per-variable layering let a stray ``./config/OANDA.env`` holding only
``OANDA_ENVIRONMENT=http://host:port`` send the environment's token to that host.) The one
override is the ``environment=`` argument (``--environment``, the runner config's
``environment``), an explicit choice on the command line or in the named config. Where each
value came from is in :attr:`Credentials.sources` and logged at INFO (the token only by its
length). A plain ``http://`` environment whose host is not on this machine is accepted (an
emulator in another container is a real set-up, and after the one-layer rule only a token stored
beside that URL, or given with it on the command line, can go there) but logged as a WARNING
and kept in :attr:`Credentials.warnings`: the token travels in clear text.

File format: ``KEY=value`` or ``export KEY=value`` lines, values optionally in single or double
quotes, blank lines and ``#`` comments (whole-line, or after an unquoted value preceded by a
space).

Rules
-----
- The token is never printed or logged: ``repr()`` and ``str()`` of :class:`Credentials` mask it,
  and a value refused as an account ID or environment (perhaps a token pasted into the wrong
  variable) is described by its length and kinds of characters, never echoed.
- A missing credential raises :class:`CredentialsError`, which names every place searched.
- A practice account ID (``101-``) with the live environment, or a live one (``001-``) with the
  practice environment, is an error. With a URL environment (an emulator) either is accepted.

This module imports only the standard library (the live runner uses it).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

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
log = logging.getLogger(__name__)
_LINE_RE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


class CredentialsError(ValueError):
    """Credentials are missing or inconsistent. The message never contains the token."""


def _mask(token: str) -> str:
    return f"<hidden, {len(token)} chars>" if token else "<empty>"


def _shape(value: str) -> str:
    """Length and kinds of characters of a value that may be a pasted token, never the value
    itself (finding 7 of the 2026-12 review)."""
    kinds = []
    if any(c.isdigit() for c in value):
        kinds.append("digits")
    if any(c.isalpha() for c in value):
        kinds.append("letters")
    other = sorted({c for c in value if not c.isalnum()})
    if other:
        kinds.append("other characters" if len(other) > 3 else
                     " ".join(repr(c) for c in other))
    return f"{len(value)} characters: {', '.join(kinds) or 'none'}"


@dataclass(frozen=True)
class Credentials:
    """An OANDA token, account and environment. ``repr``/``str`` never show the token."""

    token: str = field(repr=False)
    account_id: str | None = None
    environment: str = "practice"
    #: where each value came from: {"token": "environment OANDA_API_KEY", "account_id": ...,
    #: "environment": ...}
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    #: what load_credentials() warned about (also logged), e.g. plain http off the loopback
    warnings: tuple[str, ...] = field(default=(), compare=False)

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
    """Return ``environment`` if it is 'practice', 'live' or an http(s) base URL.

    An error never echoes the value (a token pasted into ``OANDA_ENVIRONMENT`` must not be
    printed): it shows the value's length and the kinds of characters in it.
    """
    if not isinstance(environment, str) or not environment.strip():
        raise CredentialsError("OANDA environment is empty: use 'practice', 'live' or a URL")
    env = environment.strip()
    if env.lower() in NAMED_ENVIRONMENTS:
        return env.lower()
    if is_url_environment(env):
        rest = env.split("://", 1)[1].rstrip("/")
        if not rest or "/" in rest or " " in rest or "?" in rest or "@" in rest:
            raise CredentialsError(
                f"OANDA environment URL ({_shape(env)}) must be a base URL such as "
                "'http://127.0.0.1:8080' (no path, query or user)"
            )
        return env.rstrip("/")
    raise CredentialsError(
        f"unknown OANDA environment ({_shape(env)}; value not shown): use 'practice', 'live' "
        "or a base URL such as 'http://127.0.0.1:8080'"
    )


def is_loopback_url(url: str) -> bool:
    """True when an http(s) URL's host is on this machine (localhost, 127.0.0.0/8, ::1)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_account_environment(account_id: str | None, environment: str) -> None:
    """Refuse a practice account on live and a live account on practice.

    A value that is not shaped like an account ID is never echoed (it may be a token pasted
    into the wrong variable): only its length and the kinds of characters in it are shown.
    """
    if not account_id:
        return
    if not _ACCOUNT_RE.match(account_id):
        raise CredentialsError(
            f"OANDA_ACCOUNT_ID ({_shape(account_id)}; value not shown) does not look like a "
            "v20 account ID (e.g. 101-004-1435156-001)"
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
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise CredentialsError(
            f"{path}:{line}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"
        ) from None
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

    # The token, the account and the environment come from one layer: the first that holds a
    # token. Per-variable layering let a stray ./config/OANDA.env holding only
    # OANDA_ENVIRONMENT=http://host:port send the environment's token to that host (finding 2
    # of the 2026-12 review); now such a value is ignored, with a warning.
    sources: dict[str, str] = {}
    warnings: list[str] = []
    chosen: tuple[str, Mapping[str, str]] | None = None
    token_hit = None
    for label, values in layers:
        hit = _pick_token(values)
        if hit:
            token_hit, chosen = hit[0], (label, values)
            sources["token"] = f"{label} {hit[1]}"
            break
    if token_hit is None or chosen is None:
        where = "\n  - ".join(searched)
        raise CredentialsError(
            "no OANDA API token found: set OANDA_API_KEY (or OANDA_ACCESS_TOKEN) in the "
            f"environment or in an {ENV_FILE_NAME} file. Searched:\n  - {where}"
        )
    label, values = chosen
    for other, other_values in layers:
        if other == label:
            continue
        for var in (ACCOUNT_VAR, ENVIRONMENT_VAR):
            if other_values.get(var, "").strip() and (
                    environment is None or var != ENVIRONMENT_VAR):
                log.warning("credentials: %s in %s ignored: the token comes from %s, and the "
                            "token, account and environment are taken from one place",
                            var, other, label)

    def layer_value(var: str, key: str) -> str | None:
        v = values.get(var, "").strip()
        if v:
            sources[key] = f"{label} {var}"
            return v
        return None

    account = layer_value(ACCOUNT_VAR, "account_id")
    if account is None:
        sources["account_id"] = f"not set ({ACCOUNT_VAR} not set in the {label})"
    if environment is not None:
        env = check_environment(environment)
        sources["environment"] = "argument (--environment or the runner config)"
    else:
        raw_env = layer_value(ENVIRONMENT_VAR, "environment")
        try:
            env = check_environment(raw_env) if raw_env else "practice"
        except CredentialsError as exc:
            raise CredentialsError(f"{ENVIRONMENT_VAR} from the {label}: {exc}") from None
        if raw_env is None:
            sources["environment"] = (f"default (practice): {ENVIRONMENT_VAR} not set in "
                                      f"the {label}")
    if env.startswith("http://") and not is_loopback_url(env):
        warnings.append(
            f"the OANDA environment {env} ({sources['environment']}) is plain http to a host "
            "off this machine: the token travels in clear text; use https or a loopback "
            "address"
        )
    if require_account and not account:
        where = "\n  - ".join(searched)
        raise CredentialsError(
            f"no OANDA account ID found: set {ACCOUNT_VAR} beside the token ({label}). "
            f"Searched:\n  - {where}"
        )
    check_account_environment(account, env)
    log.info("credentials: token from %s (%d characters); account %s from %s; environment %s "
             "from %s", sources["token"], len(token_hit), account or "-",
             sources["account_id"], env, sources["environment"])
    for w in warnings:
        log.warning("credentials: %s", w)
    return Credentials(token=token_hit, account_id=account, environment=env, sources=sources,
                       warnings=tuple(warnings))
