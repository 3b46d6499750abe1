"""JSON-lines logging for the runner: one JSON object per line, never a secret.

:func:`setup_logging` installs a handler on the root logger that writes ``{"time", "level",
"logger", "msg", ...extra}`` lines to standard error (and a file when asked). A filter masks
anything that looks like a bearer token or an ``OANDA_API_KEY=...`` assignment, as a last line
of defence (the code never logs tokens in the first place).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

_SECRET_RES = (
    re.compile(r"(Bearer\s+)[A-Za-z0-9._\-]+"),
    re.compile(r"((?:OANDA_API_KEY|OANDA_ACCESS_TOKEN|SEP_STATUS_TOKEN)\s*[=:]\s*)\S+"),
)
_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    for rx in _SECRET_RES:
        text = rx.sub(r"\1<hidden>", text)
    for s in secrets:
        if s and len(s) >= 6:
            text = text.replace(s, "<hidden>")
    return text


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(out, default=str), self.secrets)


def setup_logging(level: str = "INFO", file: str | None = None,
                  secrets: tuple[str, ...] = ()) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_sep_runner", False):
            root.removeHandler(h)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if file:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
    fmt = JsonFormatter(secrets)
    for h in handlers:
        h.setFormatter(fmt)
        h._sep_runner = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(level)
    # urllib3 logs full URLs at DEBUG; keep it quiet
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("oandapyV20").setLevel(logging.WARNING)
