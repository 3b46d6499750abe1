"""The runner config: values that pass a lax schema but break the runner are refused, naming the
key (issue 12, finding 17), and ``sep run --print-config`` prints every key's description and
limits as YAML comments (issue 17)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from sep_research.live.config import (
    ConfigError,
    RunnerConfig,
    config_from_dict,
    default_config_yaml,
)
from tests.live_helpers import ROOT

BASE = {"instruments": ["EUR_USD"]}


def _with(section: str | None, **kv: object) -> dict:
    return {**BASE, **({section: kv} if section else kv)}


@pytest.mark.parametrize(("data", "key"), [
    (_with("risk", quote_to_account={"USD": float("nan")}), "risk.quote_to_account.USD"),
    (_with("risk", quote_to_account={"JPY": 0.0}), "risk.quote_to_account"),
    (_with("risk", quote_to_account={"JPY": -0.0067}), "risk.quote_to_account"),
    (_with("risk", quote_to_account={"jpy!": 0.0067}), "risk.quote_to_account"),
    (_with("risk", fixed_units=True), "risk.fixed_units"),
    (_with("risk", fixed_units=1.5), "risk.fixed_units"),
    (_with("risk", max_open_positions="4"), "risk.max_open_positions"),
    (_with("risk", stale_candle_s=float("inf")), "risk.stale_candle_s"),
    (_with("risk", stale_quote_s=float("nan")), "risk.stale_quote_s"),
    (_with(None, shutdown_timeout_s=float("inf")), "shutdown_timeout_s"),
    (_with(None, price_bound_pips=True), "price_bound_pips"),
    (_with("feed", reconnect_max_s=float("inf")), "feed.reconnect_max_s"),
    (_with("feed", reconnect_base_s=5.0, reconnect_max_s=1.0), "reconnect_base_s"),
    (_with("feed", use_stream="no"), "feed.use_stream"),
    (_with("status", port=True), "status.port"),
    (_with(None, account_currency="usd"), "account_currency"),
])
def test_values_that_would_break_the_runner_are_refused(data: dict, key: str) -> None:
    """Finding 17: NaN rates (a ValueError at every loop), ``fixed_units: true`` (1 unit),
    ``inf`` timeouts (guards silently off), base > max backoff, non-positive rates, and other
    wrongly typed values pass a lax schema; each must be refused with its key named."""
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_from_dict(data)


def test_yaml_spellings_still_read() -> None:
    """Strict types do not refuse what YAML users write: ``1e-3`` (a string in YAML 1.1) is a
    number, an integer is a float, ``null`` switches a guard off."""
    text = ("instruments: [EUR_USD]\nrisk: {risk_per_trade: 1e-3, stale_candle_s: 60,"
            " max_spread_pips: null, quote_to_account: {JPY: 6.7e-3}}\n")
    cfg = config_from_dict(yaml.safe_load(text))
    assert cfg.risk.risk_per_trade == 0.001 and cfg.risk.stale_candle_s == 60.0
    assert cfg.risk.max_spread_pips is None and cfg.risk.quote_to_account == {"JPY": 0.0067}


def test_print_config_has_descriptions_and_limits_and_is_a_valid_config() -> None:
    """Issue 17: --print-config claimed "a commented example" but printed no comments."""
    text = default_config_yaml()
    assert config_from_dict(yaml.safe_load(text)) == RunnerConfig(instruments=["EUR_USD"])
    lines = text.splitlines()
    # every key has a comment
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("#") or ":" not in stripped:
            continue
        key = stripped.split(":", 1)[0]
        assert lines[i - 1].strip().startswith("#"), f"no description above {key!r}"
    assert "[> 0, <= 60]" in text  # feed.poll_interval_s
    assert "one of oanda, file" in text
    assert all(len(line) <= 100 for line in lines)
    out = subprocess.run([sys.executable, "-m", "runners.live", "--print-config"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout == text
