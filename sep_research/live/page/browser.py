"""Headless Chromium, driven through the Chrome DevTools Protocol over a pipe.

For the operator page's screenshot and its browser test: open a page, evaluate JavaScript in
it, wait until its script has rendered, take a PNG. The protocol runs over
``--remote-debugging-pipe`` (NUL-separated JSON on the browser's file descriptors 3 and 4), so
no debugging port is opened and no Python package is needed: standard library only.

Chromium comes from the distribution's packages (Debian: ``apt-get install chromium``, which
gives ``/usr/bin/chromium``); ``SEP_CHROMIUM`` names another executable. Every wait is bounded
by ``timeout``; :meth:`Chromium.close` (or leaving the ``with`` block) ends the browser and
removes its temporary profile.
"""

from __future__ import annotations

import base64
import fcntl
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Self

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: headless, no sandbox (root in CI), nothing fetched from the network by the browser itself
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--disable-extensions", "--no-default-browser-check",
         "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe")

# A trampoline puts the two pipe ends on descriptors 3 (commands in) and 4 (answers out) of the
# browser, then becomes it: no preexec_fn (unsafe in a process with threads), no shell.
_TRAMPOLINE = ("import os, sys\n"
               "a, b = int(sys.argv[1]), int(sys.argv[2])\n"
               "os.dup2(a, 3); os.dup2(b, 4); os.close(a); os.close(b)\n"
               "os.execv(sys.argv[3], sys.argv[3:])\n")


class BrowserError(RuntimeError):
    """The browser could not be started, did not answer in time, or reported an error."""


def find_chromium() -> str | None:
    """The Chromium executable: ``$SEP_CHROMIUM``, else the first of :data:`CANDIDATES` on
    ``PATH``; None when there is none."""
    named = os.environ.get("SEP_CHROMIUM")
    if named:
        return shutil.which(named)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _high_fd(fd: int) -> int:
    """``fd`` moved to a number >= 10 (close-on-exec), so the trampoline's dup2 onto 3 and 4
    cannot clobber it."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Chromium:
    """One headless browser with one page (a CDP session attached to it)."""

    def __init__(self, executable: str | None = None, *, width: int = 1280, height: int = 900,
                 timeout: float = 30.0) -> None:
        exe = executable or find_chromium()
        if not exe:
            raise BrowserError("no Chromium found (install the distribution's package: "
                               "apt-get install chromium; or set SEP_CHROMIUM)")
        self.timeout = float(timeout)
        self.width, self.height = int(width), int(height)
        self._profile = tempfile.mkdtemp(prefix="sep-chromium-")
        self.log_path = Path(self._profile) / "chromium.log"
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()
        cmd_r, out_w = _high_fd(cmd_r), _high_fd(out_w)
        self._w, self._r = cmd_w, out_r
        self._buf = bytearray()
        self._id = 0
        self._events: list[dict[str, Any]] = []
        self.session: str | None = None
        args = [exe, *FLAGS, f"--user-data-dir={self._profile}",
                f"--window-size={self.width},{self.height}", "about:blank"]
        try:
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(  # noqa: S603 - this interpreter and the located browser
                    [sys.executable, "-c", _TRAMPOLINE, str(cmd_r), str(out_w), *args],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    pass_fds=(cmd_r, out_w), start_new_session=True)
        except OSError as exc:
            for fd in (cmd_w, out_r):
                os.close(fd)
            shutil.rmtree(self._profile, ignore_errors=True)
            raise BrowserError(f"cannot start {exe}: {exc}") from None
        finally:
            os.close(cmd_r)  # the browser has its own copies
            os.close(out_w)
        try:
            self._attach()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ protocol
    def _attach(self) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        got = self.send("Target.attachToTarget", {"targetId": target["targetId"],
                                                  "flatten": True}, session=False)
        self.session = got["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self._metrics(self.height)

    def _metrics(self, height: int) -> None:
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": height, "deviceScaleFactor": 1,
                   "mobile": False})

    def send(self, method: str, params: dict[str, Any] | None = None, *,
             session: bool = True) -> dict[str, Any]:
        """Send one command and wait (at most ``timeout``) for its answer."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        data = json.dumps(msg).encode() + b"\0"
        deadline = time.monotonic() + self.timeout
        while data:
            if time.monotonic() > deadline:
                raise BrowserError(f"{method}: the browser does not read its commands")
            try:
                n = os.write(self._w, data)
            except BrokenPipeError:
                raise BrowserError(f"{method}: the browser has exited ({self._log_tail()})"
                                   ) from None
            data = data[n:]
        while True:
            m = self._next(deadline, method)
            if m.get("id") == self._id:
                if "error" in m:
                    raise BrowserError(f"{method}: {m['error'].get('message', m['error'])}")
                return m.get("result", {})
            self._events.append(m)
            del self._events[:-500]

    def _next(self, deadline: float, what: str) -> dict[str, Any]:
        while (end := self._buf.find(b"\0")) < 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"{what}: no answer from the browser in {self.timeout:.0f} s")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise BrowserError(f"{what}: the browser has exited ({self._log_tail()})")
                self._buf += chunk
        raw = bytes(self._buf[:end])
        del self._buf[:end + 1]
        return json.loads(raw)

    def wait_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait for an event of this session (one already received counts)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            for i, ev in enumerate(self._events):
                if ev.get("method") == method and ev.get("sessionId") == self.session:
                    del self._events[: i + 1]
                    return ev.get("params", {})
            self._events.append(self._next(deadline, f"waiting for {method}"))

    def _log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(text[-3:])[:500] or "no log"

    # ------------------------------------------------------------ page
    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self._events.clear()
        res = self.send("Page.navigate", {"url": url})
        if res.get("errorText"):
            raise BrowserError(f"cannot open {url}: {res['errorText']}")
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True})
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            raise BrowserError(f"script error: {d.get('exception', {}).get('description') or d}")
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float | None = None,
                 interval: float = 0.1) -> Any:
        """Evaluate ``expression`` until it is truthy; its value (BrowserError on timeout)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {expression}")
            time.sleep(interval)

    def screenshot(self, *, full_page: bool = True, max_height: int = 8000) -> bytes:
        """The page as PNG bytes (the whole page, up to ``max_height`` pixels)."""
        if full_page:
            size = self.send("Page.getLayoutMetrics").get("cssContentSize") or {}
            self._metrics(max(self.height, min(math.ceil(size.get("height", 0)),
                                               max_height)))
        try:
            data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        finally:
            if full_page:
                self._metrics(self.height)
        return base64.b64decode(data)

    # ------------------------------------------------------------ life
    def close(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            try:
                old, self.timeout = self.timeout, 5.0
                self.send("Browser.close", session=False)
            except (BrowserError, OSError, ValueError):
                pass
            finally:
                self.timeout = old
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc is not None:
            try:  # the browser's own helpers (renderer, zygote) in its process group
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
        for fd in (getattr(self, "_w", -1), getattr(self, "_r", -1)):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._w = self._r = -1
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

