"""The runner's read-only operator page, served by the status API at ``/``.

``index.html``, ``app.js`` and ``style.css`` beside this file are package data: plain HTML, CSS
and a small script, no external asset, no secret. The script polls the status API's JSON
endpoints every few seconds and renders them (text only, never HTML from the data); when the API
answers 401 (it listens off loopback) it asks for the status token and keeps it in memory only.
The halt, resume and reload buttons appear only once a token was typed in.

:func:`screenshot` renders the page to a PNG with headless Chromium when one is installed.
"""

from __future__ import annotations

import json
import logging
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILES = ("index.html", "app.js", "style.css")

#: the page's script sets ``data-state`` on ``<body>``: ``loading``, ``ready`` (data rendered),
#: ``auth`` (waiting for the token) or ``error`` (the last refresh failed)
READY = "document.body && document.body.dataset.state === 'ready'"


def enter_token(browser: Any, token: str) -> None:
    """Type ``token`` into the page's token field and submit it, as an operator would (through
    the browser's DevTools pipe: never in a URL or on a command line)."""
    browser.evaluate("(() => { document.getElementById('token').value = " + json.dumps(token)
                     + "; document.getElementById('token-form').requestSubmit(); })()")


@cache
def asset(name: str) -> bytes:
    """One of the page's files (:data:`FILES`)."""
    if name not in FILES:
        raise KeyError(name)
    return resources.files(__name__).joinpath(name).read_bytes()


def screenshot(url: str, path: str | os.PathLike[str], token: str | None = None, *,
               width: int = 1280, timeout: float = 60.0) -> Path | None:
    """Render the operator page at ``url`` (e.g. ``http://127.0.0.1:8080/``) with headless
    Chromium into the PNG file ``path``, after its script has shown the runner's data.

    ``token``: typed into the page's token field (sent to the browser over its pipe, never in
    the URL or a command line), needed when the status API listens off loopback. Returns the
    path, or None when no browser is installed or it failed (the reason is logged as a
    warning: a missing picture never fails the caller)."""
    from sep_research.live.page.browser import BrowserError, Chromium, find_chromium

    exe = find_chromium()
    if exe is None:
        log.warning("no screenshot of %s: no Chromium installed (apt-get install chromium)",
                    url)
        return None
    out = Path(path)
    try:
        with Chromium(exe, width=width, timeout=timeout) as browser:
            browser.open(url)
            if token:
                enter_token(browser, token)
            try:
                browser.wait_for(READY, timeout=timeout)
            except BrowserError as exc:  # still take the picture: it shows why
                log.warning("operator page not ready (%s); screenshot taken as it is", exc)
            png = browser.screenshot()
    except (BrowserError, OSError) as exc:
        log.warning("no screenshot of %s: %s", url, exc)
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(png)
    tmp.replace(out)
    return out
