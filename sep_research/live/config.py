"""The runner's configuration: a YAML file validated against a pydantic schema with defaults.

Every key has a default except ``instruments``; unknown keys are errors (a typo must not be
silently ignored). :func:`load_config` turns every problem into a :class:`ConfigError` that names
the file and the key, e.g. ``runner.yaml: risk.max_open_positions: Input should be greater
than or equal to 1``.

The file never holds credentials: those come from the environment or ``OANDA.env``
(:mod:`sep_research.oanda.credentials`); a key that looks like a token is refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sep_research.live.types import GRANULARITY_SECONDS, RUNNER_GRANULARITIES

_INSTRUMENT_RE = re.compile(r"^[A-Z0-9]{2,10}_[A-Z0-9]{2,10}$")
_SECRET_KEYS = ("token", "api_key", "apikey", "access_token", "password", "secret")


class ConfigError(ValueError):
    """The runner configuration is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeedConfig(_Strict):
    """How new candles are learnt of."""

    #: ``oanda``: the candles endpoint (and price stream) of OANDA or the emulator;
    #: ``file``: replay a candle file (OANDA JSON) for a dry run, no network, no credentials.
    source: Literal["oanda", "file"] = "oanda"
    #: candle file(s) for ``source: file``, one per instrument: ``{EUR_USD: path.json}``.
    files: dict[str, str] = Field(default_factory=dict)
    #: seconds between polls of the candles endpoint (per instrument, staggered).
    poll_interval_s: float = Field(1.0, gt=0, le=60)
    #: also read the pricing stream (quotes for the spread guard, faster candle detection).
    use_stream: bool = True
    #: no heartbeat or price for this long => the stream is stalled and is reconnected.
    stall_timeout_s: float = Field(10.0, gt=0, le=60)
    #: reconnect backoff: jittered exponential from ``reconnect_base_s`` up to ``reconnect_max_s``.
    reconnect_base_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    #: candles kept per instrument for the signal path's warm-up.
    warmup_candles: int = Field(200, ge=2, le=5000)
    #: most candles fetched to backfill an outage (OANDA allows 5000 per request).
    backfill_max: int = Field(500, ge=1, le=5000)
    #: requests per second to OANDA across the runner (OANDA asks for at most 120).
    request_rate: float = Field(20.0, gt=0, le=100)
    #: price components requested: mid always, bid/ask for the spread guard and paper fills.
    price: Literal["M", "MBA"] = "MBA"


class RiskConfig(_Strict):
    """Risk rules; each can be switched off with ``null`` (or 0 where stated)."""

    #: fraction of the balance risked per trade; size = risk / (stop distance in account ccy).
    risk_per_trade: float = Field(0.005, gt=0, le=0.1)
    #: stop-loss distance in pips (required for sizing); take-profit optional.
    stop_loss_pips: float = Field(20.0, gt=0)
    take_profit_pips: float | None = Field(None, gt=0)
    #: fixed units instead of risk-based size (null: size from risk_per_trade).
    fixed_units: int | None = Field(None, ge=1)
    max_units_per_order: int = Field(100_000, ge=1)
    max_open_positions: int = Field(4, ge=1)
    #: most net exposure to any one non-account currency across open positions, valued in
    #: the account currency at current prices (a long EUR_USD of 10,000 units at 1.10 is
    #: +11,000 USD of EUR); null disables.
    max_exposure_per_currency: float | None = Field(300_000.0, gt=0)
    #: loss today (UTC day, realised + unrealised) as a fraction of the day's start equity that
    #: flattens everything and halts; null disables.
    daily_loss_limit: float | None = Field(0.02, gt=0, le=1)
    #: drawdown from peak equity (fraction) that halts new trading; null disables.
    max_drawdown: float | None = Field(0.10, gt=0, le=1)
    #: after this many consecutive losing trades, no new position for ``cooldown_candles``.
    cooldown_losses: int | None = Field(3, ge=1)
    cooldown_candles: int = Field(6, ge=1)
    #: refuse to open when the spread is wider than this (pips); null disables.
    max_spread_pips: float | None = Field(3.0, gt=0)
    #: no new positions this many minutes before the weekly close (Friday 17:00 New York).
    weekend_cutoff_minutes: int | None = Field(120, ge=0)
    #: refuse to act on a candle older than this many seconds after its close, or on a quote
    #: older than ``stale_quote_s``.
    stale_candle_s: float = Field(30.0, gt=0)
    stale_quote_s: float = Field(30.0, gt=0)
    #: account-currency value of one unit of each quote currency; the account currency is 1.
    #: e.g. for a USD account trading USD_JPY: ``{JPY: 0.0067}``. Missing => derived from a
    #: traded pair where possible, else an error at start-up.
    quote_to_account: dict[str, float] = Field(default_factory=dict)


class StatusConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: environment variable holding the status API token (needed for POSTs, and for every
    #: request when ``host`` is not a loopback address).
    token_env: str = "SEP_STATUS_TOKEN"
    enabled: bool = True


class PaperConfig(_Strict):
    initial_balance: float = Field(10_000.0, gt=0)
    currency: str = "USD"
    #: half-spread in pips used when candles carry no bid/ask.
    half_spread_pips: float = Field(0.5, ge=0)


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: JSON-lines log file (null: standard error only).
    file: str | None = None


class RunnerConfig(_Strict):
    """The whole ``runner.yaml``."""

    service: str = "sep-runner"
    instruments: list[str] = Field(min_length=1, max_length=20)
    granularity: str = "H1"
    #: the OANDA environment: ``practice``, ``live`` or an emulator URL; null: from credentials.
    environment: str | None = None
    journal: str = "runner-journal.sqlite"
    #: account currency (taken from the account summary when trading OANDA).
    account_currency: str = "USD"
    #: OANDA: market orders with ``timeInForce`` FOK; ``priceBound`` slippage in pips (null off).
    price_bound_pips: float | None = Field(None, gt=0)
    #: how long the main loop waits for in-flight work on SIGTERM before exiting.
    shutdown_timeout_s: float = Field(10.0, gt=0)
    #: systemd watchdog: send WATCHDOG=1 this often (when NOTIFY_SOCKET is set).
    watchdog_interval_s: float = Field(5.0, gt=0)
    feed: FeedConfig = Field(default_factory=FeedConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    status: StatusConfig = Field(default_factory=StatusConfig)
    paper: PaperConfig = Field(default_factory=PaperConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

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


def default_config_yaml() -> str:
    """A commented example with every default (``sep run --print-config``)."""
    cfg = RunnerConfig(instruments=["EUR_USD"])
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
