"""Credentials: the documented search, the file format, masking and the account rules."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sep_research.oanda.credentials import (
    SEARCH_PATHS,
    Credentials,
    CredentialsError,
    check_environment,
    load_credentials,
    parse_env_file,
    search_paths,
)

SECRET = "abcdef0123456789-SECRET-TOKEN"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_environment_variables_are_used_first() -> None:
    env = {"OANDA_API_KEY": SECRET, "OANDA_ACCOUNT_ID": "101-004-1435156-001",
           "OANDA_ENVIRONMENT": "practice"}
    c = load_credentials(environ=env, search=[])
    assert (c.token, c.account_id, c.environment) == (SECRET, "101-004-1435156-001", "practice")
    assert c.sources["token"] == "environment OANDA_API_KEY"


def test_access_token_alias_and_default_environment() -> None:
    c = load_credentials(environ={"OANDA_ACCESS_TOKEN": SECRET}, search=[])
    assert c.token == SECRET and c.environment == "practice" and c.account_id is None
    both = load_credentials(environ={"OANDA_ACCESS_TOKEN": "other", "OANDA_API_KEY": SECRET},
                            search=[])
    assert both.token == SECRET


def test_file_format_export_quotes_comments(tmp_path: Path) -> None:
    f = write(tmp_path / "OANDA.env", f"""
# OANDA practice credentials
export OANDA_API_KEY="{SECRET}"   # the token
OANDA_ACCOUNT_ID='101-004-1435156-001'
OANDA_ENVIRONMENT = practice  # trailing comment

""")
    values = parse_env_file(f)
    assert values == {"OANDA_API_KEY": SECRET, "OANDA_ACCOUNT_ID": "101-004-1435156-001",
                      "OANDA_ENVIRONMENT": "practice"}


def test_hash_inside_quotes_is_kept(tmp_path: Path) -> None:
    f = write(tmp_path / "OANDA.env", 'OANDA_API_KEY="abc#def"\nOTHER=a#b\n')
    assert parse_env_file(f) == {"OANDA_API_KEY": "abc#def", "OTHER": "a#b"}


def test_malformed_file_names_line_without_echoing_it(tmp_path: Path) -> None:
    f = write(tmp_path / "OANDA.env", f"OANDA_ACCOUNT_ID=1\n{SECRET}\n")
    with pytest.raises(CredentialsError, match=r"OANDA.env:2") as exc:
        parse_env_file(f)
    assert SECRET not in str(exc.value)
    f2 = write(tmp_path / "b" / "OANDA.env", f'OANDA_API_KEY="{SECRET}\n')
    with pytest.raises(CredentialsError, match="unterminated") as exc:
        parse_env_file(f2)
    assert SECRET not in str(exc.value)


def test_search_order_first_existing_file_wins(tmp_path: Path) -> None:
    cwd, home, cfg = tmp_path / "work", tmp_path / "home", tmp_path / "cfgdir"
    paths = search_paths({"SEP_CONFIG_DIR": str(cfg)}, cwd=cwd, home=home, container=True)
    assert paths == [cfg / "OANDA.env", cwd / "config" / "OANDA.env", cwd / "OANDA.env",
                     home / ".config" / "sep" / "OANDA.env", Path("/app/config/OANDA.env")]
    assert search_paths({}, cwd=cwd, home=home, container=False) == paths[1:4]
    # fill the later places first, then earlier ones, checking which one is read
    for i, p in reversed(list(enumerate(paths[:4]))):
        write(p, f"OANDA_API_KEY=token-{i}\n")
        c = load_credentials(environ={}, search=paths[:4])
        assert c.token == f"token-{i}"
        assert c.sources["token"] == f"file {p} OANDA_API_KEY"


def test_environment_beats_searched_file_but_file_fills_gaps(tmp_path: Path) -> None:
    f = write(tmp_path / "OANDA.env",
              "OANDA_API_KEY=from-file\nOANDA_ACCOUNT_ID=101-004-1435156-001\n")
    c = load_credentials(environ={"OANDA_API_KEY": SECRET}, search=[f])
    assert c.token == SECRET and c.account_id == "101-004-1435156-001"


def test_explicit_env_file_wins_and_must_exist(tmp_path: Path) -> None:
    f = write(tmp_path / "mine.env", "OANDA_API_KEY=explicit\n")
    c = load_credentials(f, environ={"OANDA_API_KEY": SECRET}, search=[])
    assert c.token == "explicit"
    with pytest.raises(CredentialsError, match="--env-file .*missing.env"):
        load_credentials(tmp_path / "missing.env", environ={"OANDA_API_KEY": SECRET})


def test_sep_config_dir_is_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "cfg" / "OANDA.env", f"OANDA_API_KEY={SECRET}\n")
    monkeypatch.chdir(tmp_path)
    c = load_credentials(environ={"SEP_CONFIG_DIR": str(tmp_path / "cfg")})
    assert c.token == SECRET


def test_missing_token_names_every_place_searched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(CredentialsError) as exc:
        load_credentials(environ={"OANDA_ACCOUNT_ID": "101-004-1435156-001"})
    msg = str(exc.value)
    for piece in ("--env-file", "OANDA_API_KEY", "OANDA_ACCESS_TOKEN", "SEP_CONFIG_DIR",
                  str(tmp_path / "config" / "OANDA.env"), str(tmp_path / "OANDA.env"),
                  str(tmp_path / "home" / ".config" / "sep" / "OANDA.env")):
        assert piece in msg, piece


def test_require_account(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="OANDA_ACCOUNT_ID"):
        load_credentials(environ={"OANDA_API_KEY": SECRET}, search=[], require_account=True)


@pytest.mark.parametrize(
    ("account", "env", "ok"),
    [
        ("101-004-1435156-001", "practice", True),
        ("001-004-1435156-001", "live", True),
        ("101-004-1435156-001", "live", False),
        ("001-004-1435156-001", "practice", False),
        ("001-004-1435156-001", None, False),  # unset environment means practice
        ("101-004-1435156-001", "http://127.0.0.1:8080", True),
        ("001-004-1435156-001", "http://127.0.0.1:8080", True),
    ],
)
def test_account_environment_rule(account: str, env: str | None, ok: bool) -> None:
    environ = {"OANDA_API_KEY": SECRET, "OANDA_ACCOUNT_ID": account}
    if env:
        environ["OANDA_ENVIRONMENT"] = env
    if ok:
        assert load_credentials(environ=environ, search=[]).account_id == account
    else:
        with pytest.raises(CredentialsError, match="account") as exc:
            load_credentials(environ=environ, search=[])
        assert SECRET not in str(exc.value)


def test_environment_argument_overrides_and_is_checked() -> None:
    environ = {"OANDA_API_KEY": SECRET, "OANDA_ACCOUNT_ID": "101-004-1435156-001",
               "OANDA_ENVIRONMENT": "practice"}
    with pytest.raises(CredentialsError, match="practice account"):
        load_credentials(environ=environ, search=[], environment="live")
    c = load_credentials(environ=environ, search=[], environment="http://127.0.0.1:9/")
    assert c.environment == "http://127.0.0.1:9"


@pytest.mark.parametrize("bad", ["", "demo", "ftp://x", "http://host:1/v3", "LIVE "])
def test_bad_environment(bad: str) -> None:
    if bad.strip().lower() == "live":
        assert check_environment(bad) == "live"
        return
    with pytest.raises(CredentialsError, match="environment"):
        check_environment(bad)


def test_bad_account_id_shape() -> None:
    with pytest.raises(CredentialsError, match="does not look like"):
        load_credentials(environ={"OANDA_API_KEY": SECRET, "OANDA_ACCOUNT_ID": "12345"},
                         search=[])


def test_token_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = load_credentials(environ={"OANDA_API_KEY": SECRET}, search=[])
    for text in (repr(c), str(c), f"{c}", repr([c]), repr(dict(c.sources)), caplog.text):
        assert SECRET not in text
    assert "hidden" in repr(c)
    assert "Credentials(" in repr(Credentials("x"))


def test_search_paths_are_documented() -> None:
    text = " ".join(SEARCH_PATHS)
    for piece in ("--env-file", "$SEP_CONFIG_DIR/OANDA.env", "./config/OANDA.env",
                  "./OANDA.env", "~/.config/sep/OANDA.env", "/app/config/OANDA.env"):
        assert piece in text
