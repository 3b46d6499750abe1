"""The runner's status API on the bounded HTTP layer: auth rules, bounds, clear errors.

Review findings (``../shared/docs/security-review-2026-12.md``) reproduced here: 1 (connections
and unauthenticated bodies), 18 (status part: malformed lengths, bodies and deep JSON), 20
(status part: unbounded halt reason) and 15 (the Docker health check and host). Tokens are
obviously fake; every server listens on loopback (``0.0.0.0`` is reached through 127.0.0.1).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sep_research.live.status import MAX_REASON, StatusError, StatusServer
from tests.loopback import raw_http
from tests.status_rig import FakeSource

TOKEN = "fake-status-token-for-tests"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture()
def server(source: FakeSource):
    srv = StatusServer(source, host="127.0.0.1", port=0, token=TOKEN).start()
    yield srv
    srv.stop()


def _req(url: str, method: str = "GET", token: str | None = None, data: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    if data is None and method == "POST":
        data = b"{}"
    req = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _status(resp: bytes) -> int:
    assert resp.startswith(b"HTTP/1.1 "), resp[:200]
    return int(resp.split(b" ", 2)[1])


def _body(resp: bytes) -> Any:
    return json.loads(resp.partition(b"\r\n\r\n")[2])


# ------------------------------------------------------------------ endpoints


def test_endpoints_on_loopback(server: StatusServer, source: FakeSource) -> None:
    base = f"http://127.0.0.1:{server.port}"
    assert _req(base + "/health")[0] == 200
    assert json.loads(_req(base + "/api/status")[2])["mode"] == "paper"
    assert json.loads(_req(base + "/api/positions")[2])["positions"][0]["trade_id"] == "1"
    assert json.loads(_req(base + "/api/signals?limit=7")[2])["signals"][0]["n"] == 7
    assert _req(base + "/api/signals?limit=x")[0] == 400
    code, headers, text = _req(base + "/metrics")
    assert code == 200 and b'sep_x_total{kind="a"} 2' in text
    assert headers["Content-Type"].startswith("text/plain")
    # the page's extra reads: a source without a journal or a feed answers empty ones
    assert json.loads(_req(base + "/api/equity")[2]) == {"equity": []}
    feed = json.loads(_req(base + "/api/feed")[2])
    assert feed["instruments"]["EUR_USD"]["candle_age_s"] == pytest.approx(1800.0)
    assert _req(base + "/nope")[0] == 404
    assert _req(base + "/api/status", method="DELETE")[0] == 405
    for path in ("/api/halt", "/api/resume", "/api/reload"):
        assert _req(base + path, "POST")[0] == 401
        assert _req(base + path, "POST", token="wrong-" + TOKEN)[0] == 401
    assert _req(base + "/api/halt", "POST", token=TOKEN,
                data=b'{"reason": "test"}')[0] == 200
    assert source.commands == [("halt", {"reason": "test"})]
    # the token is never accepted in the query string
    assert _req(base + f"/api/halt?token={TOKEN}", "POST")[0] == 401


def test_every_answer_is_no_store_and_self_only(server: StatusServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    for path in ("/", "/api/status", "/nope"):
        headers = _req(base + path)[1]
        assert headers["Cache-Control"] == "no-store"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_a_foreign_host_name_cannot_read_a_loopback_api(server: StatusServer) -> None:
    """DNS rebinding: a web page whose name resolves to 127.0.0.1 must not read the data that
    a loopback listener serves without the token."""
    base = f"http://127.0.0.1:{server.port}"
    assert _req(base + "/api/status", headers={"Host": "evil.example:80"})[0] == 403
    assert _req(base + "/", headers={"Host": "evil.example"})[0] == 403
    for host in (f"localhost:{server.port}", "127.0.0.1", "[::1]:8080"):
        assert _req(base + "/api/status", headers={"Host": host})[0] == 200


def test_non_loopback_needs_a_token_to_start(source: FakeSource) -> None:
    with pytest.raises(StatusError, match="not a loopback"):
        StatusServer(source, host="0.0.0.0", port=0, token=None)


# ------------------------------------------------------------------ finding 15


def test_finding_15_health_without_token_off_loopback(source: FakeSource) -> None:
    """Finding 15: on 0.0.0.0 (in a container) ``/health`` must answer the health check
    without the token, with ok/not-ok only; every data endpoint still needs the token."""
    srv = StatusServer(source, host="0.0.0.0", port=0, token=TOKEN).start()
    base = f"http://127.0.0.1:{srv.port}"
    try:
        code, _, body = _req(base + "/health")
        assert code == 200 and json.loads(body) == {"ok": True}
        code, _, body = _req(base + "/health", token=TOKEN)
        assert code == 200 and json.loads(body)["loop_age_s"] == 0.1
        for path in ("/api/status", "/api/positions", "/api/signals", "/api/trades",
                     "/api/equity", "/api/feed", "/metrics"):
            code, headers, _ = _req(base + path)
            assert code == 401, path
            assert headers.get("WWW-Authenticate") == "Bearer"
            assert _req(base + path, token="wrong-" + TOKEN)[0] == 401, path
            assert _req(base + path, token=TOKEN)[0] == 200, path
        # the page itself holds no data: it loads without the token, then asks for it
        code, _, page = _req(base + "/")
        assert code == 200 and b"<html" in page and TOKEN.encode() not in page
        # a foreign Host is fine here: nothing is readable without the token
        assert _req(base + "/api/status", token=TOKEN, headers={"Host": "runner:8080"})[0] == 200
    finally:
        srv.stop()


def test_finding_15_health_not_ok_is_503_without_details(source: FakeSource) -> None:
    source.health = lambda: (False, {"ok": False, "loop_age_s": 99.0})  # type: ignore[method-assign]
    srv = StatusServer(source, host="0.0.0.0", port=0, token=TOKEN).start()
    try:
        code, _, body = _req(f"http://127.0.0.1:{srv.port}/health")
        assert code == 503 and json.loads(body) == {"ok": False}
    finally:
        srv.stop()


def test_finding_15_docker_files_listen_in_the_container_and_check_health() -> None:
    """Finding 15 (the deployment files, reasoned: no Docker engine here). In the container the
    runner listens on 0.0.0.0 (``--status-host``), so the port published on the host's
    loopback reaches it; the token is then required for data, and the health check needs none.
    """
    deploy = ROOT / "runners" / "deploy"
    dockerfile = (deploy / "Dockerfile").read_text()
    compose = (deploy / "docker-compose.yml").read_text()
    sync = (deploy / "sync.sh").read_text()
    cmd = next(ln for ln in dockerfile.splitlines() if ln.startswith("CMD "))
    assert json.loads(cmd[4:])[-2:] == ["--status-host", "0.0.0.0"]
    health = dockerfile.split("HEALTHCHECK", 1)[1].split("\n\n")[0]
    assert "/health" in health and "Authorization" not in health and "TOKEN" not in health
    assert '"--status-host", "0.0.0.0"' in compose
    assert '"127.0.0.1:8080:8080"' in compose  # published on the host's loopback only
    assert "SEP_STATUS_TOKEN: ${SEP_STATUS_TOKEN:?" in compose  # no token, no start
    assert "/opt/sep/.env" in sync and "/opt/sep/status.env" in sync
    assert "http://127.0.0.1:8080/api/reload" in sync


def test_finding_15_status_host_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--status-host`` overrides ``status.host``; off loopback without a token the runner
    still refuses to start."""
    import argparse

    from sep_research.cli import CliError
    from sep_research.live.cli import add_arguments, build
    from tests.live_helpers import make_artifact

    art = make_artifact(tmp_path / "m.json")
    candles = tmp_path / "c.json"
    candles.write_text(json.dumps({"instrument": "EUR_USD", "granularity": "H1", "candles": [
        {"time": "2026-11-24T10:00:00Z", "complete": True, "volume": 1,
         "mid": {"o": "1.1", "h": "1.1", "l": "1.1", "c": "1.1"}}]}))
    cfg = tmp_path / "runner.yaml"
    cfg.write_text(json.dumps({"instruments": ["EUR_USD"], "journal": str(tmp_path / "j.sqlite"),
                               "risk": {"fixed_units": 1000},  # the model has no stop
                               "feed": {"source": "file", "files": {"EUR_USD": str(candles)}}}))
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--model", str(art), "--config", str(cfg), "--paper",
                         "--status-host", "0.0.0.0", "--status-port", "0"])
    monkeypatch.delenv("SEP_STATUS_TOKEN", raising=False)
    with pytest.raises(CliError, match=r"0.0.0.0 is not a loopback address"):
        build(args)
    monkeypatch.setenv("SEP_STATUS_TOKEN", TOKEN)
    runner = build(args)
    try:
        assert runner.cfg.status.host == "0.0.0.0" and runner.cfg.status.port == 0
    finally:
        runner.journal.close()


# ------------------------------------------------------------------ finding 1


def test_finding_1_unauthenticated_post_body_is_never_read(server: StatusServer,
                                                           source: FakeSource) -> None:
    """Finding 1: ``do_POST`` read the whole body before checking the token (a 200 MB POST
    took the runner from 61 to 249 MB). Now the 401 comes back before any byte of the body
    is sent, and the connection is closed."""
    for path in ("/api/halt", "/api/reload", "/api/nothing-here"):
        resp = raw_http(server.port, f"POST {path} HTTP/1.1\r\nHost: x\r\n"
                    "Content-Length: 200000000\r\n\r\n".encode())
        assert _status(resp) in (401, 404) and b"Connection: close" in resp
    assert source.commands == []


def test_finding_1_idle_connections_are_capped_and_cut(source: FakeSource) -> None:
    """Finding 1: no connection cap and no idle timeout (about 1000 idle connections took the
    runner's descriptors). Over the cap a connection is answered 503 at once; an idle one is
    closed by the server after the header deadline."""
    srv = StatusServer(source, host="127.0.0.1", port=0, token=TOKEN, max_connections=4,
                       header_timeout=1.0).start()
    idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(4)]
    try:
        deadline = time.monotonic() + 5
        while srv.active_connections < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert srv.active_connections == 4
        assert _status(raw_http(srv.port, b"GET /health HTTP/1.1\r\n\r\n")) == 503
        for s in idle:  # each idle connection is closed by the server (recv gives b"")
            assert s.recv(100) == b""
        assert _status(raw_http(srv.port, b"GET /health HTTP/1.1\r\n\r\n")) == 200
    finally:
        for s in idle:
            s.close()
        srv.stop()


# ------------------------------------------------------------------ finding 18


BAD_BODIES = [
    pytest.param(b"Content-Length: abc\r\n\r\n", 400, id="length-abc"),
    pytest.param(b"Content-Length: 1000000000000\r\n\r\n", 413, id="length-1e12"),
    pytest.param(b"Content-Length: -5\r\n\r\n", 400, id="length-negative"),
    pytest.param(b"Content-Length: 15\r\n\r\n{\"reason\":\"\xff\xfe\"}", 400, id="utf8"),
    pytest.param(b"Content-Length: 60000\r\n\r\n" + b"[" * 30_000 + b"]" * 30_000, 400,
                 id="deep-json"),
    pytest.param(b"Content-Length: 7\r\n\r\n[1,2,3]", 400, id="not-an-object"),
    pytest.param(b"Content-Length: 15\r\n\r\n{\"reason\": NaN}", 400, id="nan"),
    pytest.param(b"Content-Length: 14\r\n\r\n{\"reason\": 12}", 400, id="reason-not-text"),
]


@pytest.mark.parametrize("tail,code", BAD_BODIES)
def test_finding_18_hostile_post_gets_a_json_error(server: StatusServer, source: FakeSource,
                                                   capfd: pytest.CaptureFixture[str],
                                                   tail: bytes, code: int) -> None:
    """Finding 18: ``Content-Length: abc``, a 1e12 length or an invalid UTF-8 body dropped the
    connection with no answer and printed raw tracebacks; deep JSON nesting dropped it too.
    Each now gets a JSON error answer, nothing on standard error, and the server stays up."""
    head = (f"POST /api/halt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            ).encode()
    resp = raw_http(server.port, head + tail)
    assert _status(resp) == code
    assert "error" in _body(resp)
    assert source.commands == []
    out, err = capfd.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    assert _req(f"http://127.0.0.1:{server.port}/health")[0] == 200


# ------------------------------------------------------------------ finding 20


def test_finding_20_halt_reason_is_capped(server: StatusServer, source: FakeSource) -> None:
    """Finding 20: the halt reason was unbounded (1 MB was persisted in meta and served by
    every ``/api/status``). The API passes at most MAX_REASON characters on, says it cut the
    reason, and still halts (a long reason must not stop a halt); ``/api/status`` serves at
    most MAX_REASON characters of a reason persisted before the cap."""
    base = f"http://127.0.0.1:{server.port}"
    long = "x" * 20_000
    code, _, body = _req(base + "/api/halt", "POST", token=TOKEN,
                         data=json.dumps({"reason": long}).encode())
    assert code == 200 and json.loads(body)["reason_truncated"] is True
    name, sent = source.commands[-1]
    assert name == "halt" and len(sent["reason"]) == MAX_REASON
    source.halt_reason = "y" * 1_000_000  # persisted by an older runner
    status = json.loads(_req(base + "/api/status")[2])
    assert len(status["risk"]["halt_reason"]) == MAX_REASON
    # a body over 64 KiB is refused before it is read
    code, _, body = _req(base + "/api/halt", "POST", token=TOKEN,
                         data=json.dumps({"reason": "z" * 70_000}).encode())
    assert code == 413


def test_reload_body_is_bounded(server: StatusServer, source: FakeSource) -> None:
    base = f"http://127.0.0.1:{server.port}"
    bad = [{"models": "a.json"}, {"models": ["a"] * 101}, {"models": ["a" * 5000]},
           {"models": [1]}, {"unknown": 1}]
    for body in bad:
        code, _, _ = _req(base + "/api/reload", "POST", token=TOKEN,
                          data=json.dumps(body).encode())
        assert code == 400, body
    assert source.commands == []
    assert _req(base + "/api/reload", "POST", token=TOKEN,
                data=b'{"models": ["m.json"]}')[0] == 200
    assert _req(base + "/api/resume", "POST", token=TOKEN, data=b"")[0] == 200
    assert [c[0] for c in source.commands] == ["reload", "resume"]
