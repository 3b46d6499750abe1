"""The runner's configuration: a YAML file validated against a pydantic schema with defaults.

Every key has a default except ``instruments``; unknown keys are errors (a typo must not be
silently ignored). Types are strict (``true`` is not a number, ``"5"`` is not an integer),
numbers must be finite (no ``.inf``/``.nan``), and related keys are checked together
(``feed.reconnect_base_s <= feed.reconnect_max_s``). :func:`load_config` turns every problem
into a :class:`ConfigError` that names the file and the key, e.g. ``runner.yaml:
risk.max_open_positions: Input should be greater than or equal to 1``.

Each key's description and limits are in its ``Field``; ``sep run --print-config``
(:func:`default_config_yaml`) prints them as YAML comments above the defaults.

The file never holds credentials: those come from the environment or ``OANDA.env``
(:mod:`sep_research.oanda.credentials`); a key that looks like a token is refused.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any, Literal

import annotated_types
import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from sep_research.live.types import GRANULARITY_SECONDS, RUNNER_GRANULARITIES
from sep_research.schema import Num, StrictModel

_INSTRUMENT_RE = re.compile(r"^[A-Z0-9]{2,10}_[A-Z0-9]{2,10}$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_SECRET_KEYS = ("token", "api_key", "apikey", "access_token", "password", "secret")
DAY = 86_400.0


class ConfigError(ValueError):
    """The runner configuration is missing, unreadable or invalid."""


class FeedConfig(StrictModel):
    """How new candles are learnt of."""

    source: Literal["oanda", "file"] = Field(
        "oanda", description="oanda: the candles endpoint (and price stream) of OANDA or the "
        "emulator; file: replay candle files (OANDA JSON) for a dry run with --paper, no "
        "network, no credentials")
    files: dict[str, str] = Field(
        default_factory=dict, description="candle file per instrument for source: file, "
        "e.g. {EUR_USD: candles.json}")
    poll_interval_s: Num = Field(
        1.0, gt=0, le=60, description="seconds between polls of the candles endpoint while a "
        "candle is due; a server clock is re-read when its reading is older than this")
    use_stream: bool = Field(
        True, description="also read the pricing stream (quotes for the spread guard, the "
        "server clock from heartbeats)")
    stall_timeout_s: Num = Field(
        10.0, gt=0, le=60, description="no heartbeat or price for this long: the stream is "
        "stalled and is reconnected")
    reconnect_base_s: Num = Field(
        0.5, gt=0, le=60, description="first delay of the stream's jittered exponential "
        "reconnect backoff")
    reconnect_max_s: Num = Field(
        30.0, gt=0, le=600, description="longest delay of the reconnect backoff (at least "
        "reconnect_base_s)")
    warmup_candles: int | None = Field(
        None, ge=2, le=5000, description="candles of history fetched and kept per instrument "
        "for the signal path's warm-up; null: what the model's rule needs for its signals to "
        "equal research's from the first candle (its bounded history); a smaller number is "
        "refused at start-up")
    backfill_max: int = Field(
        500, ge=1, le=5000, description="most candles fetched per request to backfill an "
        "outage (OANDA allows 5000)")
    request_rate: Num = Field(
        20.0, gt=0, le=100, description="requests per second to OANDA across the runner "
        "(OANDA asks for at most 120)")
    price: Literal["M", "MBA"] = Field(
        "MBA", description="price components of candles: mid always, bid/ask for the spread "
        "guard and paper fills")

    @model_validator(mode="after")
    def _backoff(self) -> FeedConfig:
        if self.reconnect_base_s > self.reconnect_max_s:
            raise ValueError(f"reconnect_base_s ({self.reconnect_base_s:g}) is larger than "
                             f"reconnect_max_s ({self.reconnect_max_s:g})")
        return self


class RiskConfig(StrictModel):
    """Risk rules; each can be switched off with ``null`` (or 0 where stated).

    The trading policy (which signals trade, stop-loss, take-profit) is the model artifact's,
    the one training evaluated; this config may only tighten risk (limits, sizing, guards).
    """

    risk_per_trade: Num = Field(
        0.005, gt=0, le=0.1, description="fraction of the balance risked per trade: size = "
        "risk / (the model's policy stop-loss distance valued in the account currency)")
    stop_loss_pips: Num | None = Field(
        None, gt=0, description="null (default): the model's policy.stop_loss_pips; a number "
        "must equal the model's (another one is refused at start-up and on reload, naming "
        "both: the runner trades the policy the report evaluated; retrain to trade another)")
    take_profit_pips: Num | None = Field(
        None, gt=0, description="null (default): the model's policy.take_profit_pips; a "
        "number must equal the model's")
    fixed_units: int | None = Field(
        None, ge=1, le=100_000_000, description="fixed units per trade instead of the "
        "risk-based size (null: risk_per_trade over the model's stop-loss; a model without a "
        "stop-loss needs fixed_units)")
    max_units_per_order: int = Field(
        100_000, ge=1, le=100_000_000, description="cap on the units of any one order")
    max_open_positions: int = Field(
        4, ge=1, le=100, description="most open positions across instruments")
    max_exposure_per_currency: Num | None = Field(
        300_000.0, gt=0, description="most net exposure to any one non-account currency across "
        "open positions, valued in the account currency at current prices (a long EUR_USD of "
        "10,000 units at 1.10 is +11,000 USD of EUR); null disables")
    daily_loss_limit: Num | None = Field(
        0.02, gt=0, le=1, description="loss today (UTC day, realised + unrealised) as a "
        "fraction of the day's start equity that flattens everything and halts; null disables")
    max_drawdown: Num | None = Field(
        0.10, gt=0, le=1, description="drawdown from peak equity (fraction) that halts new "
        "trading; null disables")
    cooldown_losses: int | None = Field(
        3, ge=1, le=1000, description="after this many consecutive losing trades, no new "
        "position for cooldown_candles; null disables")
    cooldown_candles: int = Field(
        6, ge=1, le=10_000, description="length of the cooldown, in candles")
    max_spread_pips: Num | None = Field(
        3.0, gt=0, description="refuse to open when the spread is wider than this (pips); null "
        "disables")
    weekend_cutoff_minutes: int | None = Field(
        120, ge=0, le=10_080, description="no new positions this many minutes before the weekly "
        "close (Friday 17:00 New York); null disables")
    stale_candle_s: Num = Field(
        30.0, gt=0, le=31 * DAY, description="refuse to act on a candle that closed longer ago "
        "than this (seconds)")
    stale_quote_s: Num = Field(
        30.0, gt=0, le=31 * DAY, description="refuse to open on a price older than this "
        "(seconds)")
    quote_to_account: dict[str, Num] = Field(
        default_factory=dict, description="account-currency value of one unit of a quote "
        "currency, e.g. {JPY: 0.0067} for a USD account trading USD_JPY; missing: derived "
        "from a traded pair where possible, else the trade is refused (rule: conversion)")

    @field_validator("quote_to_account")
    @classmethod
    def _rates(cls, v: dict[str, float]) -> dict[str, float]:
        for ccy, rate in v.items():
            if not _CURRENCY_RE.match(ccy):
                raise ValueError(f"{ccy!r} is not a currency code such as USD")
            if not rate > 0:
                raise ValueError(f"{ccy}: the rate must be a number > 0, got {rate!r}")
        return v


class StatusConfig(StrictModel):
    """The status API (read-only JSON, Prometheus metrics, token-protected commands)."""

    host: str = Field(
        "127.0.0.1", min_length=1, description="address to listen on; anything but a loopback "
        "address needs a token for every request")
    port: int = Field(8080, ge=0, le=65535, description="port (0: any free port)")
    token_env: str = Field(
        "SEP_STATUS_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="environment "
        "variable holding the status API token (needed for POSTs, and for every request when "
        "host is not a loopback address)")
    enabled: bool = Field(True, description="serve the status API")
    unhealthy_after_errors: int = Field(
        5, ge=1, le=10_000, description="/health answers 503 after this many consecutive "
        "failed loop steps (e.g. a full disk under the journal)")


class PaperConfig(StrictModel):
    """The paper broker (--paper)."""

    initial_balance: Num = Field(10_000.0, gt=0, description="starting balance")
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$", description="account currency")
    half_spread_pips: Num = Field(
        0.5, ge=0, le=100, description="half-spread in pips used when candles carry no bid/ask")


class LoggingConfig(StrictModel):
    """Logs: JSON lines on standard error (journald under systemd), never a secret."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="log level")
    file: str | None = Field(None, min_length=1,
                             description="also write the JSON lines to this file (null: no)")


class RunnerConfig(StrictModel):
    """The whole ``runner.yaml``."""

    service: str = Field("sep-runner", min_length=1, max_length=100,
                         description="service name in logs and the status API")
    instruments: list[str] = Field(
        min_length=1, max_length=20, description="instruments traded, one model artifact each "
        "(required), e.g. [EUR_USD]")
    granularity: str = Field("H1", description="candle granularity traded; every model "
                             "artifact must be for it")
    environment: str | None = Field(
        None, min_length=1, description="the OANDA environment: practice, live or an emulator "
        "URL; null: from the credentials")
    journal: str = Field("runner-journal.sqlite", min_length=1,
                         description="the journal (SQLite) file; one per account")
    account_currency: str = Field(
        "USD", pattern=r"^[A-Z]{3}$", description="account currency (OANDA: read from the "
        "account summary)")
    price_bound_pips: Num | None = Field(
        None, gt=0, le=1000, description="OANDA market orders carry a priceBound this many "
        "pips worse than the quote they were sized on (a worse fill is cancelled, "
        "BOUNDS_VIOLATION); null: no bound")
    shutdown_timeout_s: Num = Field(
        10.0, gt=0, le=300, description="on SIGTERM, how long in-flight work (an order being "
        "answered or resolved) may take before the process exits anyway; keep it below "
        "systemd's TimeoutStopSec (30 s in sep-runner.service)")
    watchdog_interval_s: Num = Field(
        5.0, gt=0, le=30, description="systemd watchdog: send WATCHDOG=1 this often (when "
        "NOTIFY_SOCKET is set; the unit's WatchdogSec is 60)")
    feed: FeedConfig = Field(default_factory=FeedConfig, description="how candles and prices "
                             "are read")
    risk: RiskConfig = Field(default_factory=RiskConfig, description="risk rules")
    status: StatusConfig = Field(default_factory=StatusConfig, description="the status API")
    paper: PaperConfig = Field(default_factory=PaperConfig, description="the paper broker")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="logging")

    @field_validator("instruments")
    @classmethod
    def _instruments(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _INSTRUMENT_RE.match(name):
                raise ValueError(f"{name!r} is not an OANDA instrument name such as EUR_USD")
        if len(set(v)) != len(v):
            raise ValueError("instruments are listed twice")
        return v

    @field_validator("granularity")
    @classmethod
    def _granularity(cls, v: str) -> str:
        if v not in RUNNER_GRANULARITIES:
            raise ValueError(f"{v!r} is not a granularity the runner trades "
                             f"({', '.join(RUNNER_GRANULARITIES)})")
        return v

    @model_validator(mode="after")
    def _files(self) -> RunnerConfig:
        if self.feed.source == "file":
            missing = [i for i in self.instruments if i not in self.feed.files]
            if missing:
                raise ValueError(f"feed.source is 'file' but feed.files has no file for "
                                 f"{', '.join(missing)}")
        return self

    @property
    def granularity_seconds(self) -> int:
        return GRANULARITY_SECONDS[self.granularity]


def _find_secret(data: Any, path: str = "") -> str | None:
    if isinstance(data, dict):
        for k, v in data.items():
            key = str(k).lower()
            here = f"{path}.{k}" if path else str(k)
            if any(s in key for s in _SECRET_KEYS) and not key.endswith("_env"):
                return here
            found = _find_secret(v, here)
            if found:
                return found
    return None


def _format_errors(exc: ValidationError, where: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the runner config reference)"
        lines.append(f"{where}: {loc}: {msg}")
    return "\n".join(lines)


def config_from_dict(data: Any, *, where: str = "config") -> RunnerConfig:
    """Validate a parsed mapping; errors name each bad key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of keys to values")
    secret = _find_secret(data)
    if secret:
        raise ConfigError(
            f"{where}: {secret}: credentials do not belong in the runner config; set "
            "OANDA_API_KEY in the environment or in OANDA.env (and SEP_STATUS_TOKEN for the "
            "status API)"
        )
    try:
        return RunnerConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, where)) from None


def load_config(path: str | Path) -> RunnerConfig:
    """Read and validate ``runner.yaml``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read runner config {p}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{p}: not valid YAML{at}: {problem}") from None
    if data is None:
        raise ConfigError(f"{p}: the file is empty (at least 'instruments:' is required)")
    return config_from_dict(data, where=str(p))


def _num(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else f"{v:g}" \
        if isinstance(v, float) else str(v)


def _limits(info: FieldInfo) -> str:
    parts: list[str] = []
    ann = info.annotation
    args = getattr(ann, "__args__", ())
    unit = "items" if getattr(ann, "__origin__", None) in (list, dict) else "characters"
    for m in info.metadata:
        for cls, attr, word in ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", ">="),
                                (annotated_types.Lt, "lt", "<"), (annotated_types.Le, "le", "<=")):
            if isinstance(m, cls):
                parts.append(f"{word} {_num(getattr(m, attr))}")
        if isinstance(m, annotated_types.MinLen) and m.min_length > 1:
            parts.append(f"at least {m.min_length} {unit}")
        if isinstance(m, annotated_types.MaxLen):
            parts.append(f"at most {m.max_length} {unit}")
    if getattr(ann, "__origin__", None) is Literal:
        parts.append("one of " + ", ".join(str(a) for a in args))
    if type(None) in args:
        parts.append("null allowed")
    return ", ".join(parts)


def _emit(model: type[BaseModel], values: dict[str, Any], indent: int, out: list[str]) -> None:
    pad = "  " * indent
    for name, info in model.model_fields.items():
        limits = _limits(info)
        text = (info.description or "") + (f" [{limits}]" if limits else "")
        for line in textwrap.wrap(text.strip(), width=98 - len(pad)):
            out.append(f"{pad}# {line}")
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            out.append(f"{pad}{name}:")
            _emit(sub, values[name], indent + 1, out)
        else:
            out.append(f"{pad}{name}: {json.dumps(values[name])}")  # JSON is YAML


def default_config_yaml() -> str:
    """Every key with its default, description and limits as YAML comments
    (``sep run --print-config``); the output is itself a valid config."""
    cfg = RunnerConfig(instruments=["EUR_USD"])
    out = ["# sep run --config runner.yaml: every key with its default (only 'instruments' is",
           "# required). Credentials never go here (OANDA_API_KEY in the environment or",
           "# OANDA.env)."]
    _emit(RunnerConfig, cfg.model_dump(mode="json"), 0, out)
    return "\n".join(out) + "\n"
