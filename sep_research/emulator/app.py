"""The emulator object: configuration, start and stop, in a thread or in a child process."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sep_research.emulator.clock import ReplayClock
from sep_research.emulator.faults import FaultSpec
from sep_research.emulator.market import Series, make_spec
from sep_research.emulator.venue import Venue
from sep_research.emulator.wire import NS, fmt_time, to_ns

ACCOUNT_ID_FORM = "101-001-0000000-001"


@dataclass
class EmulatorConfig:
    """Everything that defines one emulator. All fields have working defaults.

    Candles come from ``candles`` (``{"EUR_USD": frame, ...}``, candle frames as in
    :mod:`sep_research.data.candles`) or else from ``source``: ``"sample"`` (the packaged real
    EUR_USD H1 sample, the default) or ``"cache"`` (the Parquet cache at ``cache_dir``, the
    finest granularity stored unless ``granularity`` is given). ``start`` is the replay clock's
    first time (default: the start of the middle stored candle, so there is history behind and
    data ahead); ``speed`` 0 leaves the clock for the caller to move, otherwise it runs at that
    many times real time.

    ``token`` owns ``account_id`` and ``extra_accounts`` and alone may use the admin routes
    (``/_emulator/*``). ``foreign_token`` is off (None) unless a test turns it on: a second
    token with its own account ``foreign_account_id``, which the main token may not touch
    (403) and which may not drive the clock or the faults; ``sep emulator`` never sets it.
    ``max_connections``, ``idle_timeout_s`` and ``header_timeout_s`` bound the HTTP server
    (see :mod:`sep_research.emulator.server`).

    ``financing`` (OANDA's daily financing at 17:00 New York, :mod:`sep_research.financing`):
    ``"default"`` charges every instrument the project's indicative default table
    (:func:`sep_research.financing.default_rates`) in force at the replayed data's first candle;
    ``"off"`` charges nothing (the instruments endpoint then serves zero rates); a mapping
    ``{instrument: rates}`` gives rates per instrument, each a
    :class:`~sep_research.financing.FinancingRates`, its ``to_dict()`` form, or None (none for
    that instrument); instruments it leaves out get the default table.
    """

    candles: Mapping[str, Any] | None = None
    source: str | None = None
    instruments: tuple[str, ...] | None = None
    granularity: str | None = None
    cache_dir: str | None = None
    start: Any = None
    speed: float = 0.0
    balance: float = 100_000.0
    token: str = "emulator-token"  # noqa: S105 - a test venue's default; --token/env override it
    account_id: str = ACCOUNT_ID_FORM
    extra_accounts: tuple[str, ...] = ()
    foreign_token: str | None = None
    foreign_account_id: str = "101-001-9999999-001"
    hedging: bool = False
    margin_rate: str = "0.02"
    half_spread_pips: float = 0.7
    faults: str | None = None
    heartbeat_s: float = 5.0
    price_interval_s: float = 0.25
    host: str = "127.0.0.1"
    port: int = 0
    max_connections: int = 256
    idle_timeout_s: float = 60.0
    header_timeout_s: float = 30.0
    financing: Any = "default"

    def accounts(self) -> list[str]:
        """Every account of the emulator: the main token's, then the foreign one if any."""
        return [self.account_id, *self.extra_accounts,
                *([self.foreign_account_id] if self.foreign_token is not None else [])]

    def check(self) -> None:
        for aid in self.accounts():
            parts = aid.split("-")
            if len(parts) != 4 or not all(p.isdigit() for p in parts):
                raise ValueError(
                    f"account id {aid!r}: expected the OANDA form {ACCOUNT_ID_FORM!r}"
                )
        for name, tok in (("token", self.token), ("foreign_token", self.foreign_token)):
            if tok is None and name == "foreign_token":
                continue
            if not isinstance(tok, str) or not tok or any(c.isspace() for c in tok):
                raise ValueError(f"{name} must be a non-empty string without spaces")
        if self.foreign_token == self.token:
            raise ValueError("foreign_token must differ from token")
        if len(set(self.accounts())) != len(self.accounts()):
            raise ValueError("account ids must be distinct")
        if self.speed < 0:
            raise ValueError(f"speed must be >= 0, got {self.speed}")
        if self.balance < 0:
            raise ValueError(f"balance must be >= 0, got {self.balance}")
        if not (isinstance(self.max_connections, int) and self.max_connections >= 1):
            raise ValueError(f"max_connections must be an integer >= 1, got "
                             f"{self.max_connections!r}")
        for name in ("idle_timeout_s", "header_timeout_s", "heartbeat_s", "price_interval_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < 86400):
                raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
        if self.source not in (None, "sample", "cache"):
            raise ValueError(f"source {self.source!r}: expected 'sample' or 'cache'")
        FaultSpec.parse(self.faults)
        check_financing(self.financing)


FINANCING_MODES = ("default", "off")


def check_financing(value: Any) -> dict[str, Any] | str:
    """``EmulatorConfig.financing`` checked: ``"default"``, ``"off"`` or a mapping of
    instruments to :class:`~sep_research.financing.FinancingRates` (or their ``to_dict()``
    form) or None, returned with its rates parsed. Raises ValueError naming the bad entry."""
    from sep_research import fx
    from sep_research.financing import FinancingError, FinancingRates
    from sep_research.strategy import SpecError

    if isinstance(value, str):
        if value not in FINANCING_MODES:
            raise ValueError(f"financing {value!r}: expected 'default', 'off' or a mapping of "
                             "instruments to rates")
        return value
    if not isinstance(value, Mapping):
        raise ValueError(  # a bad setting, as every check of the config
            f"financing: expected 'default', 'off' or a mapping of instruments to rates, got "
            f"{type(value).__name__}")
    out: dict[str, Any] = {}
    for name, rates in value.items():
        try:
            fx.check_instrument(name, name="financing instrument")
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        if rates is None or isinstance(rates, FinancingRates):
            out[name] = rates
            continue
        try:
            out[name] = FinancingRates.from_dict(rates, where=f"financing.{name}")
        except (SpecError, FinancingError) as exc:
            raise ValueError(str(exc)) from None
    return out


def resolve_financing(value: Any, market: Mapping[str, Series]) -> dict[str, Any]:
    """Each loaded instrument's rates (or None) for ``EmulatorConfig.financing``: the default
    table at the data's first candle where not given (see :class:`EmulatorConfig`)."""
    from sep_research import fx
    from sep_research.financing import FinancingError, default_rates

    given = check_financing(value)
    if given == "off":
        return dict.fromkeys(market)
    given = {} if given == "default" else given
    unknown = sorted(set(given) - set(market))
    if unknown:
        raise ValueError(f"financing: {', '.join(unknown)} not among the replayed instruments "
                         f"({', '.join(market)})")
    out: dict[str, Any] = {}
    for name, series in market.items():
        if name in given:
            out[name] = given[name]
            continue
        try:
            out[name] = default_rates(name, fx.from_ns(series.first))
        except FinancingError as exc:
            raise ValueError(f"{exc} (emulator: pass financing='off' or rates for {name})"
                             ) from None
    return out


def load_frames(config: EmulatorConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """The candle frames the config asks for and their granularities."""
    from sep_research.data.candles import get_provenance
    from sep_research.fx import GRANULARITY_SECONDS

    frames: dict[str, Any] = {}
    if config.candles is not None:
        frames = dict(config.candles)
    elif config.source in (None, "sample"):
        from sep_research.data import load_sample

        frames = {"EUR_USD": load_sample()}
    else:
        from sep_research.data import CandleCache

        cache = CandleCache(config.cache_dir)
        stored = [d for d in cache.list() if not d.provenance.is_synthetic]
        names = config.instruments or tuple(sorted({d.provenance.instrument for d in stored}))
        if not names:
            raise ValueError(f"the candle cache at {cache.root} holds no candles")
        for name in names:
            grans = sorted({d.provenance.granularity for d in stored
                            if d.provenance.instrument == name},
                           key=lambda g: GRANULARITY_SECONDS[g])
            if not grans:
                raise ValueError(f"no cached candles for {name} in {cache.root}")
            gran = config.granularity or grans[0]
            frames[name] = cache.load(name, gran)
    if config.instruments:
        missing = [n for n in config.instruments if n not in frames]
        if missing:
            raise ValueError(f"instruments {missing} have no candles (have {sorted(frames)})")
        frames = {n: frames[n] for n in config.instruments}
    if not frames:
        raise ValueError("no candles to replay")
    grans = {}
    for name, frame in frames.items():
        if "provenance" in getattr(frame, "attrs", {}):
            prov = get_provenance(frame)
            if prov.instrument != name:
                raise ValueError(f"candles given for {name} are for {prov.instrument}")
            grans[name] = prov.granularity
        elif config.granularity is not None:
            grans[name] = config.granularity
        else:
            raise ValueError(f"candles for {name} have no provenance; pass granularity=")
    return frames, grans


class Emulator:
    """A running OANDA v20 emulator (see the package docstring)."""

    def __init__(self, config: EmulatorConfig | None = None, **overrides: Any):
        cfg = replace(config or EmulatorConfig(), **overrides)
        cfg.check()
        self.config = cfg
        frames, grans = load_frames(cfg)
        self.market: dict[str, Series] = {}
        for name, frame in frames.items():
            spec = make_spec(name, cfg.margin_rate)
            half = cfg.half_spread_pips * 10.0 ** spec.pip_location
            self.market[name] = Series(spec, frame, grans[name], half)
        first = max(s.first for s in self.market.values())
        end = max(s.end for s in self.market.values())
        if cfg.start is None:
            ref = next(iter(self.market.values()))
            start = max(ref.tl[len(ref.tl) // 2], first)
        else:
            start = to_ns(cfg.start)
            if not first <= start < end:
                raise ValueError(
                    f"start {fmt_time(start)} is outside the data "
                    f"({fmt_time(first)} .. {fmt_time(end)})"
                )
        step = min(s.dur for s in self.market.values()) // NS
        self.clock = ReplayClock(start, step_seconds=step, end=end)
        self.faults = FaultSpec.parse(cfg.faults)
        self.heartbeat_s = cfg.heartbeat_s
        self.price_interval_s = cfg.price_interval_s
        # the main token and, only when a test asks for it, a second one with its own account
        self.tokens: dict[str, list[str]] = {cfg.token: [cfg.account_id, *cfg.extra_accounts]}
        if cfg.foreign_token is not None:
            self.tokens[cfg.foreign_token] = [cfg.foreign_account_id]
        #: (token bytes, accounts, main token?) for the server's constant-time comparison
        self.token_table = [(t.encode("utf-8"), accts, t == cfg.token)
                            for t, accts in self.tokens.items()]
        #: each instrument's financing rates (None: none), served on the instruments endpoint
        self.financing = resolve_financing(cfg.financing, self.market)
        self.venue = Venue(self.market, self.clock, accounts=cfg.accounts(),
                           balance=cfg.balance, hedging=cfg.hedging,
                           margin_rate=cfg.margin_rate, created=start,
                           financing=self.financing)
        self.clock.add_listener(self.venue.sync)
        self._server: Any = None
        self._threads: list[threading.Thread] = []
        self._speed = cfg.speed

    # -- life -----------------------------------------------------------------------------
    def start(self) -> Emulator:
        from sep_research.emulator.server import EmulatorHTTPServer

        if self._server is not None:
            return self
        cfg = self.config
        self._server = EmulatorHTTPServer(
            (cfg.host, cfg.port), self, max_connections=cfg.max_connections,
            idle_timeout=cfg.idle_timeout_s, header_timeout=cfg.header_timeout_s)
        t = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                             name="emulator-http", daemon=True)
        t.start()
        tick = threading.Thread(target=self._ticker, name="emulator-clock", daemon=True)
        tick.start()
        self._threads = [t, tick]
        if self._speed:
            self.clock.run(self._speed)
        return self

    def _ticker(self) -> None:
        assert self._server is not None
        while not self._server.stopping.wait(self.price_interval_s):
            if self.clock.speed > 0:
                self.venue.sync(self.clock.now_ns())

    def stop(self) -> None:
        """End streams cleanly (final chunk), stop serving and close every connection."""
        srv = self._server
        if srv is None:
            return
        srv.stopping.set()
        with self.venue.lock:
            for acct in self.venue.accounts.values():
                with acct.cond:
                    acct.cond.notify_all()
        deadline = time.monotonic() + 2.0
        srv.shutdown()
        while time.monotonic() < deadline:
            with srv.conns_lock:
                left = len(srv.streams)  # streams write their final chunk, then end
            if not left:
                break
            time.sleep(0.02)
        with srv.conns_lock:
            conns = list(srv.conns)
        for c in conns:
            try:
                c.shutdown(2)
            except OSError:
                pass
        srv.server_close()
        self._server = None

    def __enter__(self) -> Emulator:  # start() returns self
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- facts ----------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return self.config.host

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() or use 'with'")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token(self) -> str:
        return self.config.token

    @property
    def account_id(self) -> str:
        return self.config.account_id

    @property
    def instruments(self) -> list[str]:
        return list(self.market)

    def set_faults(self, spec: str | None) -> None:
        """Switch fault injection (``None`` or ``""`` turns it off); see ``faults.py``."""
        self.faults = FaultSpec.parse(spec)

    def api(self, **kwargs: Any) -> Any:
        """An ``oandapyV20.API`` pointed at this emulator (see :func:`make_api`)."""
        return make_api(self.base_url, self.token, **kwargs)

    def transactions(self, account_id: str | None = None) -> list[dict[str, Any]]:
        """A copy of an account's transactions (for tests)."""
        acct = self.venue.accounts[account_id or self.account_id]
        with self.venue.lock:
            return json.loads(json.dumps(acct.txs))

    @classmethod
    def spawn(cls, config: EmulatorConfig | None = None, **overrides: Any) -> EmulatorProcess:
        """Start the emulator in a child process (separate-process benchmarks, kill tests)."""
        return EmulatorProcess(replace(config or EmulatorConfig(), **overrides))


def make_api(base_url: str, token: str, *, environment: str | None = None,
             request_params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
             ) -> Any:
    """Register ``base_url`` as an oandapyV20 environment and return an ``API`` for it.

    The environment is named ``environment`` or ``"local-PORT"``; both the REST and the stream
    URL point at ``base_url``.
    """
    import oandapyV20
    from oandapyV20 import oandapyV20 as core

    env = environment or "local-" + base_url.rsplit(":", 1)[-1].strip("/")
    core.TRADING_ENVIRONMENTS[env] = {"api": base_url, "stream": base_url}
    return oandapyV20.API(access_token=token, environment=env, request_params=request_params,
                          headers=headers)


class EmulatorProcess:
    """An emulator in a child process: ``python -m sep_research.emulator.child``."""

    def __init__(self, config: EmulatorConfig, timeout: float = 60.0):
        config.check()
        self.config = config
        fd, path = tempfile.mkstemp(prefix="sep-emulator-", suffix=".pickle")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(config, fh)
        self._cfg_path = Path(path)
        # stderr goes to a file: a pipe nobody reads could fill up and block the child
        self._err = tempfile.TemporaryFile(  # lives as long as the child
            mode="w+", prefix="sep-emulator-", suffix=".log")
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter, a fixed module
            [sys.executable, "-m", "sep_research.emulator.child", path],
            stdout=subprocess.PIPE, stderr=self._err, text=True,
        )
        line = self._read_ready(timeout)
        self.port = int(line.split()[1])

    def _read_ready(self, timeout: float) -> str:
        assert self.process.stdout is not None
        box: list[str] = []
        t = threading.Thread(target=lambda: box.append(self.process.stdout.readline()),  # type: ignore[union-attr]
                             daemon=True)
        t.start()
        t.join(timeout)
        if not box or not box[0].startswith("READY "):
            self.kill()
            raise RuntimeError(f"emulator child did not start: {self.stderr_text()[-2000:]}")
        return box[0]

    host = property(lambda self: self.config.host)
    base_url = property(lambda self: f"http://{self.config.host}:{self.port}")
    token = property(lambda self: self.config.token)
    account_id = property(lambda self: self.config.account_id)

    def api(self, **kwargs: Any) -> Any:
        return make_api(self.base_url, self.token, **kwargs)

    def _admin(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(  # noqa: S310 - the child's own http URL
            self.base_url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - the child's own URL
            return json.loads(resp.read())

    def advance(self, *, candles: int = 0, seconds: float = 0.0) -> str:
        return self._admin("/_emulator/clock", {"advance_candles": candles,
                                                 "advance_seconds": seconds})["time"]

    def set_faults(self, spec: str | None) -> None:
        self._admin("/_emulator/faults", {"spec": spec or ""})

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM: the child ends its streams cleanly and exits."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._cleanup()
        return int(self.process.returncode)

    def kill(self) -> None:
        """SIGKILL: the emulator dies at once (connections reset, streams cut)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._cleanup()

    def stderr_text(self) -> str:
        """What the child wrote to stderr so far (its log)."""
        if self._err.closed:
            return ""
        self._err.seek(0)
        return self._err.read()

    def _cleanup(self) -> None:
        if self.process.stdout:
            self.process.stdout.close()
        self._cfg_path.unlink(missing_ok=True)

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(emu: Emulator, *, ready_line: bool = True) -> None:
    """Run ``emu`` in the foreground until SIGTERM or Ctrl-C; prints ``READY port``."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emu.start()
    if ready_line:
        print(f"READY {emu.port}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
