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


def test_environment_beats_searched_file_and_values_are_not_mixed(tmp_path: Path) -> None:
    f = write(tmp_path / "OANDA.env",
              "OANDA_API_KEY=from-file\nOANDA_ACCOUNT_ID=101-004-1435156-001\n")
    c = load_credentials(environ={"OANDA_API_KEY": SECRET}, search=[f])
    assert c.token == SECRET and c.account_id is None  # the file's account is not borrowed
    c = load_credentials(environ={"OANDA_ACCOUNT_ID": "101-004-9999999-001"}, search=[f])
    assert c.token == "from-file" and c.account_id == "101-004-1435156-001"  # the file's


def test_explicit_env_file_wins_and_must_exist(tmp_path: Path) -> None:
    f = write(tmp_path / "mine.env", "OANDA_API_KEY=explicit\n")
    c = load_credentials(f, environ={"OANDA_API_KEY": SECRET}, search=[])
    assert c.token == "explicit"
    with pytest.raises(CredentialsError, match=r"--env-file .*missing.env"):
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


# ----------------------------------------------------------------- review findings 2, 7 and 20

REAL = "0f3a9c1d2e4b5a6978812233445566778899aabbccddeeff0011223344556677-fake"  # token-shaped


def test_stray_env_file_cannot_redirect_the_environment_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding 2: with the token in the environment, a ./config/OANDA.env holding only
    OANDA_ENVIRONMENT=http://host:port sent that token to the host. The token, account and
    environment now come from one layer; the stray value is ignored with a warning."""
    caplog.set_level(logging.INFO, logger="sep_research.oanda.credentials")
    write(tmp_path / "config" / "OANDA.env", "OANDA_ENVIRONMENT=http://127.0.0.1:18431\n")
    write(tmp_path / "OANDA.env", "OANDA_ENVIRONMENT=http://10.1.2.3:80\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    environ = {"OANDA_API_KEY": REAL, "OANDA_ACCOUNT_ID": "101-001-1234567-001"}
    c = load_credentials(environ=environ)
    assert c.environment == "practice" and c.token == REAL
    assert c.sources["environment"] == ("default (practice): OANDA_ENVIRONMENT not set in the "
                                        "environment")
    ignored = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("config/OANDA.env" in r.getMessage() and "ignored" in r.getMessage()
               for r in ignored)
    assert REAL not in caplog.text
    # the URL travels only with the token stored beside it
    write(tmp_path / "config" / "OANDA.env",
          "OANDA_API_KEY=emulator-token\nOANDA_ENVIRONMENT=http://127.0.0.1:18431\n")
    c = load_credentials(environ={})
    assert (c.token, c.environment) == ("emulator-token", "http://127.0.0.1:18431")
    # an account ID in another layer is not borrowed either
    write(tmp_path / "config" / "OANDA.env", "OANDA_ACCOUNT_ID=101-001-7654321-001\n")
    assert load_credentials(environ={"OANDA_API_KEY": REAL}).account_id is None


def test_stray_url_reaches_no_listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 2, end to end: the client built from the loaded credentials aims at the
    environment's host, not at a listener named in a stray ./config/OANDA.env."""
    from sep_research.oanda.client import base_urls

    write(tmp_path / "config" / "OANDA.env", "OANDA_ENVIRONMENT=http://127.0.0.1:18431\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    c = load_credentials(environ={"OANDA_API_KEY": REAL})
    assert "127.0.0.1" not in base_urls(c.environment)["api"]
    assert base_urls(c.environment)["api"].startswith("https://")


def test_every_source_is_logged_never_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding 2: nothing said where the environment came from; each value's source is now
    logged (the token only by its length)."""
    caplog.set_level(logging.INFO, logger="sep_research.oanda.credentials")
    f = write(tmp_path / "OANDA.env", f"OANDA_API_KEY={REAL}\n"
              "OANDA_ACCOUNT_ID=101-004-1435156-001\nOANDA_ENVIRONMENT=practice\n")
    c = load_credentials(environ={}, search=[f])
    assert c.sources == {"token": f"file {f} OANDA_API_KEY",
                         "account_id": f"file {f} OANDA_ACCOUNT_ID",
                         "environment": f"file {f} OANDA_ENVIRONMENT"}
    text = caplog.text
    assert f"token from file {f} OANDA_API_KEY ({len(REAL)} characters)" in text
    assert f"environment practice from file {f} OANDA_ENVIRONMENT" in text
    assert REAL not in text and REAL not in repr(c)
    c = load_credentials(environ={"OANDA_API_KEY": REAL}, search=[],
                         environment="http://127.0.0.1:9")
    assert c.sources["environment"] == "argument (--environment or the runner config)"


@pytest.mark.parametrize(("url", "warns"), [
    ("http://127.0.0.1:8090", False), ("http://localhost:8090", False),
    ("http://[::1]:8090", False), ("http://127.1.2.3:1", False),
    ("https://emulator.internal:8443", False),
    ("http://emulator.internal:8090", True), ("http://10.0.0.5:8090", True),
    ("http://127.0.0.1.evil.example:80", True),
])
def test_plain_http_off_loopback_warns(url: str, warns: bool,
                                       caplog: pytest.LogCaptureFixture) -> None:
    """Finding 2: any http(s) URL was accepted with no warning; plain http to a host off the
    loopback sends the token in clear text, and now says so."""
    caplog.set_level(logging.INFO, logger="sep_research.oanda.credentials")
    c = load_credentials(environ={"OANDA_API_KEY": REAL, "OANDA_ENVIRONMENT": url}, search=[])
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert bool(warned) == warns, warned
    assert bool(c.warnings) == warns
    if warns:
        assert "clear text" in warned[0] and REAL not in caplog.text


@pytest.mark.parametrize("var", ["OANDA_ACCOUNT_ID", "OANDA_ENVIRONMENT"])
def test_token_pasted_into_the_wrong_variable_is_never_echoed(
    var: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding 7: check_account_environment / check_environment echoed the value, so a token
    pasted into OANDA_ACCOUNT_ID or OANDA_ENVIRONMENT was printed; only its length and shape
    are shown now."""
    from sep_research.cli import main
    from sep_research.oanda.credentials import check_account_environment

    with pytest.raises(CredentialsError) as exc:
        if var == "OANDA_ACCOUNT_ID":
            check_account_environment(REAL, "practice")
        else:
            check_environment(REAL)
    msg = str(exc.value)
    assert REAL not in msg and REAL[:8] not in msg and f"{len(REAL)} characters" in msg
    for bad in ("http://host:1/" + REAL, "ftp://" + REAL):
        with pytest.raises(CredentialsError) as exc:
            check_environment(bad)
        assert REAL[:8] not in str(exc.value)
    # through the command line, as the review ran it
    for v in ("OANDA_API_KEY", "OANDA_ACCESS_TOKEN", "OANDA_ACCOUNT_ID", "OANDA_ENVIRONMENT"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("OANDA_API_KEY", "fake-token-for-tests")
    monkeypatch.setenv(var, REAL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    rc = main(["data", "fetch", "--instrument", "EUR_USD", "--granularity", "M1",
               "--start", "2024-01-02", "--end", "2024-01-03", "--no-progress",
               "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr()
    assert rc == 2 and REAL[:8] not in out.out + out.err and var in out.err


def test_non_utf8_env_file_is_named(tmp_path: Path) -> None:
    """Finding 20: a non-UTF-8 OANDA.env gave an error that did not name the file."""
    f = tmp_path / "OANDA.env"
    f.write_bytes(b"OANDA_API_KEY=abc\xff\xfe\n")
    with pytest.raises(CredentialsError, match="not UTF-8") as exc:
        parse_env_file(f)
    assert str(f) in str(exc.value) and "abc" not in str(exc.value)
    with pytest.raises(CredentialsError, match=str(f)):
        load_credentials(environ={}, search=[f])
