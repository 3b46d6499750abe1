"""The operator page (issue 13): served at ``/`` with no external asset and no secret, rendered
by a real headless browser against a running paper runner, and screenshotted.

The browser tests need Chromium from the distribution's packages (``apt-get install
chromium``; ``.ci/run`` installs it). Without it they skip, except under CI (``CI=true``),
where a missing browser fails. Tokens are obviously fake; every server listens on loopback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sep_research.live.page import FILES, READY, asset, enter_token, screenshot
from sep_research.live.page.browser import Chromium, find_chromium
from sep_research.live.status import CSP, StatusServer

TOKEN = "fake-status-token-for-page-tests"
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the files themselves


def test_page_files_have_no_external_asset_and_no_inline_code() -> None:
    html = asset("index.html").decode()
    js = asset("app.js").decode()
    css = asset("style.css").decode()
    for name, text in (("index.html", html), ("app.js", js), ("style.css", css)):
        # the only absolute URL allowed is the SVG namespace (a name, never fetched)
        urls = [u for u in re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text)
                if u != "http://www.w3.org/2000/svg"]
        assert not urls, f"{name} refers to {urls}"
        assert "@import" not in text and "url(" not in text, name
    srcs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html)
    assert srcs and all(s.startswith("/page/") for s in srcs), srcs
    # CSP 'self' only: no inline script, style attribute or event handler
    assert re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.DOTALL) == [""]
    assert not re.search(r"\sstyle\s*=|\son\w+\s*=", html)
    assert "<style" not in html
    # text only (never HTML from the data), nothing stored in the browser, no eval
    for bad in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                "new Function", "localStorage", "sessionStorage", "document.cookie",
                "indexedDB", "location.hash", "location.search", "setAttribute(\"style"):
        assert bad not in js, bad


def test_page_is_package_data() -> None:
    cfg = (ROOT / "pyproject.toml").read_text()
    assert '"sep_research.live.page" = ["*.html", "*.js", "*.css"]' in cfg
    for name in FILES:
        assert (ROOT / "sep_research" / "live" / "page" / name).is_file()


def test_page_files_are_built_into_the_package(tmp_path: Path) -> None:
    """The Docker image installs the wheel: setuptools' build step (what goes into the wheel)
    must copy the page's files."""
    out = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                          "build_py", "--build-lib", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in FILES:
        assert (tmp_path / "sep_research" / "live" / "page" / name).is_file(), name


def test_page_is_served_with_csp_and_no_secret() -> None:
    from tests.status_rig import FakeSource

    srv = StatusServer(FakeSource(), host="0.0.0.0", port=0, token=TOKEN).start()
    try:
        for path, ctype in (("/", "text/html"), ("/page/app.js", "text/javascript"),
                            ("/page/style.css", "text/css")):
            with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}{path}", timeout=5) as r:
                body = r.read()
                assert r.headers["Content-Type"].startswith(ctype)
                assert r.headers["Content-Security-Policy"] == CSP
                assert TOKEN.encode() not in body
        assert "script-src 'self'" in CSP and "connect-src 'self'" in CSP
        assert "unsafe-inline" not in CSP and "unsafe-eval" not in CSP
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/page/nothing.js", timeout=5)
        assert err.value.code == 401  # off loopback, anything not the page needs the token
    finally:
        srv.stop()


# ------------------------------------------------------------------ a running runner


def _need_browser() -> str:
    exe = find_chromium()
    if exe:
        return exe
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but no Chromium is installed: .ci/run installs the distribution's "
                    "package (apt-get install chromium)")
    pytest.skip("no Chromium installed (apt-get install chromium): the browser tests need it")


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A paper runner on the packaged real EUR_USD H1 sample, stepped until it holds a
    position, with its status API on a free loopback port."""
    from sep_research.data import load_sample
    from tests.status_rig import paper_runner

    r = paper_runner(tmp_path_factory.mktemp("page"), load_sample().iloc[:600], token=TOKEN)
    feed = r.feed
    steps = 0
    while not feed.exhausted and (steps < 300 or not r.positions()):
        if steps % 20 == 0 and hasattr(r, "_last_equity_row"):
            r._last_equity_row = -1e9  # an equity snapshot now (the runner writes one a minute)
        r.step()
        steps += 1
    assert r.positions(), "no open position in the replay"
    yield r
    r.shutdown()
    r.journal.close()


@pytest.fixture(scope="module")
def browser() -> Any:
    exe = _need_browser()
    with Chromium(exe, width=1280, height=900, timeout=30) as b:
        yield b


COLLECT = """(() => {
  const card = document.querySelector('#instruments article[data-instrument="EUR_USD"]');
  const chart = document.querySelector('#equity-chart');
  const line = chart.querySelector('svg polyline');
  return {
    state: document.body.dataset.state,
    mode: document.getElementById('mode').textContent,
    positions: card ? [...card.querySelectorAll('.position')].map(e =>
      ({text: e.textContent, trade: e.dataset.tradeId || null})) : [],
    signals: card ? [...card.querySelectorAll('table.signals tbody tr')].map(
      r => r.textContent) : [],
    decisions: document.querySelectorAll('#decisions tbody tr').length,
    points: line ? line.getAttribute('points').trim().split(/\\s+/).length : 0,
    policy: card ? [...card.querySelectorAll('dl.policy dt')].map(e => e.textContent) : [],
    account: Object.fromEntries([...document.querySelectorAll('#account dt')].map(
      e => [e.textContent, e.nextElementSibling.textContent])),
    halted: document.getElementById('halted').hidden ? null :
      document.getElementById('halted').textContent,
    actions: !document.getElementById('actions').hidden,
    authNeeded: document.getElementById('auth').className.includes('needed'),
    href: location.href,
    stored: localStorage.length + sessionStorage.length + document.cookie.length,
  };
})()"""


def _when(t: str) -> str:
    """The page's time format: 2017-06-12 10:00Z."""
    return t.replace("T", " ")[:16] + "Z"


def test_browser_shows_positions_signals_and_equity(runner: Any, browser: Chromium) -> None:
    """Issue 13 done-when: the page in a real headless browser against a running runner shows
    the positions, the signals and the equity chart (read from the DOM after its script ran)."""
    browser.open(f"http://127.0.0.1:{runner.status_port}/")
    browser.wait_for(READY, timeout=30)
    got = browser.evaluate(COLLECT)
    assert got["mode"] == "paper"
    open_ids = {p["trade_id"] for p in runner.positions()}
    shown = {p["trade"] for p in got["positions"]}
    assert open_ids and open_ids <= shown, (open_ids, got["positions"])
    last = runner.journal.signals(1)[0]
    assert got["signals"] and _when(last["candle_time"]) in got["signals"][0]
    assert last["action"] in got["signals"][0]
    assert got["decisions"] > 0
    rows = len(runner.journal.equity(10_000))
    assert rows >= 2 and got["points"] >= rows  # every snapshot, plus the NAV now
    # the policy in force, as the runner reports it (the artifact's, issue 19)
    assert got["policy"] == list(runner.status()["policy"]["EUR_USD"])
    assert "stop_loss_pips" in got["policy"]
    # realised P&L with financing as its own line (issue 14), the journal's figures
    real = runner.status()["realized"]
    for key, label in (("trades", "realised (trades)"), ("financing", "financing"),
                       ("net", "realised net")):
        assert got["account"][label].startswith(f"{real[key]:,.2f}"), (label, got["account"])
    assert not got["actions"] and got["stored"] == 0  # no token given: no buttons


def test_browser_shows_a_halt_as_text(runner: Any, browser: Chromium) -> None:
    """The page refreshes itself, and journal text is shown as text, never as HTML."""
    browser.open(f"http://127.0.0.1:{runner.status_port}/")
    browser.wait_for(READY, timeout=30)
    req = urllib.request.Request(
        f"http://127.0.0.1:{runner.status_port}/api/halt", method="POST",
        data=json.dumps({"reason": "test halt <img src=x onerror=alert(1)>"}).encode(),
        headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200
        text = browser.wait_for("!document.getElementById('halted').hidden && "
                                "document.getElementById('halted').textContent", timeout=30)
        assert "test halt <img src=x onerror=alert(1)>" in text
        assert browser.evaluate("document.querySelectorAll('img').length") == 0
    finally:
        runner.command("resume", {})


class _WithPolicy:
    """The runner, its status with a policy per instrument (as the model's contract adds)."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runner, name)

    def status(self) -> dict[str, Any]:
        return {**self._runner.status(),
                "policy": {"EUR_USD": {"hold": "keep", "conf_threshold": 0.6}}}


def test_browser_off_loopback_asks_for_the_token(runner: Any, browser: Chromium) -> None:
    """Off loopback the page loads without the token, shows no data, asks for the token, keeps
    it in memory only (not in the address, not stored), and then shows the data and the
    token-protected actions."""
    srv = StatusServer(_WithPolicy(runner), host="0.0.0.0", port=0, token=TOKEN).start()
    try:
        browser.open(f"http://127.0.0.1:{srv.port}/")
        browser.wait_for("document.body.dataset.state === 'auth'", timeout=30)
        got = browser.evaluate(COLLECT)
        assert got["authNeeded"] and got["positions"] == [] and got["signals"] == []
        enter_token(browser, "wrong-" + TOKEN)
        browser.wait_for("document.getElementById('auth-note').textContent.includes('refused')",
                         timeout=30)
        enter_token(browser, TOKEN)
        browser.wait_for(READY, timeout=30)
        got = browser.evaluate(COLLECT)
        assert {p["trade_id"] for p in runner.positions()} <= {p["trade"] for p in
                                                                got["positions"]}
        assert got["policy"] == ["hold", "conf_threshold"]
        assert got["actions"] and not got["authNeeded"]
        assert TOKEN not in got["href"] and got["stored"] == 0
        assert browser.evaluate("document.getElementById('token').value") == ""
        html = browser.evaluate("document.documentElement.outerHTML")
        assert TOKEN not in html
        # an action from the page, with the typed token
        browser.evaluate("window.confirm = () => true;"
                         "document.getElementById('halt-reason').value = 'from the page';"
                         "document.getElementById('halt-form').requestSubmit()")
        browser.wait_for("document.getElementById('action-result').textContent"
                         ".includes('HTTP 200')", timeout=30)
        assert runner.risk.s.halted and runner.risk.s.halt_reason == "from the page"
    finally:
        runner.command("resume", {})
        srv.stop()


def test_browser_token_typed_while_a_request_is_in_flight(runner: Any,
                                                          browser: Chromium) -> None:
    """A token typed while the page's first (token-less) request is still out must not be
    thrown away as "refused" when that request's 401 comes back (seen as a flaky screenshot
    that never got past the token prompt). Each request takes 0.5 s here."""
    srv = StatusServer(runner, host="0.0.0.0", port=0, token=TOKEN).start()
    browser.send("Network.enable")
    browser.send("Network.emulateNetworkConditions", {"offline": False, "latency": 500,
                                                      "downloadThroughput": -1,
                                                      "uploadThroughput": -1})
    try:
        browser.open(f"http://127.0.0.1:{srv.port}/")
        assert browser.evaluate("document.body.dataset.state") == "loading"
        enter_token(browser, TOKEN)
        browser.wait_for(READY, timeout=30)
        assert "refused" not in browser.evaluate(
            "document.getElementById('auth-note').textContent")
    finally:
        browser.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                          "downloadThroughput": -1,
                                                          "uploadThroughput": -1})
        browser.send("Network.disable")
        srv.stop()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_screenshot(runner: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The demo's call: the whole page, once its script has shown the runner's data."""
    _need_browser()
    out = screenshot(f"http://127.0.0.1:{runner.status_port}/", tmp_path / "page.png")
    assert out == tmp_path / "page.png"
    data = out.read_bytes()
    width, height = _png_size(data)
    assert width == 1280 and height > 900 and len(data) > 20_000  # more than the first screen
    assert "not ready" not in caplog.text
    if os.environ.get("SEP_KEEP_SCREENSHOT"):
        Path(os.environ["SEP_KEEP_SCREENSHOT"]).write_bytes(data)
    # off loopback, with the token typed into the page (never in the URL)
    srv = StatusServer(runner, host="0.0.0.0", port=0, token=TOKEN).start()
    try:
        out = screenshot(f"http://127.0.0.1:{srv.port}/", tmp_path / "auth.png", token=TOKEN)
    finally:
        srv.stop()
    assert out is not None and _png_size(out.read_bytes())[1] > 900
    assert "not ready" not in caplog.text


def test_screenshot_without_a_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEP_CHROMIUM", str(tmp_path / "no-such-browser"))
    assert screenshot("http://127.0.0.1:9/", tmp_path / "p.png") is None
    assert not (tmp_path / "p.png").exists()
