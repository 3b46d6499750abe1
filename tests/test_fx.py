"""The one module of FX facts (pips, times, market hours, conversion)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from sep_research import fx


def test_pip_has_one_meaning_price_per_pip():
    assert fx.pip_size("EUR_USD") == 0.0001
    assert fx.pip_size("USD_JPY") == 0.01
    assert fx.pip_location("GBP_JPY") == -2 and fx.pip_location("EUR_GBP") == -4
    # kernels multiply by pips per unit: exactly the literals the seed used
    assert fx.pips_per_unit(fx.pip_size("EUR_USD")) == 1e4
    assert fx.pips_per_unit(fx.pip_size("USD_JPY")) == 100.0
    assert fx.display_precision("USD_JPY") == 3 and fx.display_precision("EUR_USD") == 5
    for bad in (0.0, -1e-4, math.nan, math.inf, "0.0001"):
        with pytest.raises(fx.FxError, match="pip"):
            fx.pips_per_unit(bad)


@pytest.mark.parametrize("bad", ["eur_usd", "EURUSD", "../../etc/passwd", 123, None, "A_B",
                                 "X" * 5000])
def test_bad_instrument_names_are_refused_without_echoing_huge_values(bad):
    with pytest.raises(fx.FxError, match="instrument") as ei:
        fx.check_instrument(bad)
    assert len(str(ei.value)) < 200


def test_one_time_parser():
    ns = fx.parse_time_ns("2016-10-24T21:48:18.593753865Z")
    assert fx.fmt_time(ns) == "2016-10-24T21:48:18.593753865Z"
    assert fx.parse_time_ns("1477345698.593753865") == ns
    assert fx.parse_time_ns("2016-10-24T23:48:18.593753865+02:00") == ns
    assert fx.fmt_time(ns, unix=True) == "1477345698.593753865"
    assert fx.parse_time("2024-01-02") == datetime(2024, 1, 2, tzinfo=UTC)
    assert fx.parse_time(datetime(2024, 1, 2, 3, tzinfo=UTC)) == datetime(2024, 1, 2, 3,
                                                                           tzinfo=UTC)
    assert fx.fmt_time(datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == \
        "2024-01-02T03:04:05.000006000Z"
    with pytest.raises(fx.FxError, match="timezone"):
        fx.parse_time("2024-01-02T00:00:00", naive="error")
    with pytest.raises(fx.FxError, match="naive"):
        fx.parse_time(datetime(2024, 1, 2), naive="error")


@pytest.mark.parametrize("bad", [math.inf, math.nan, 1e30, -1.0, "Infinity", "NaN", True,
                                 "2024-13-01", "1900-01-01", "2999-01-01", "x" * 100, None,
                                 [2024]])
def test_bad_times_are_refused_by_name(bad):
    with pytest.raises(fx.FxError, match="gtdTime"):
        fx.parse_time_ns(bad, name="gtdTime")


def test_market_hours_and_rollover_in_both_dst_seasons():
    # winter (EST, UTC-5): the week closes Friday 22:00Z and opens Sunday 22:00Z
    fri = datetime(2024, 1, 5, 21, 59, tzinfo=UTC)
    assert fx.market_open(fri) and not fx.market_open(fri + timedelta(minutes=1))
    assert not fx.market_open(datetime(2024, 1, 7, 21, 59, tzinfo=UTC))
    assert fx.market_open(datetime(2024, 1, 7, 22, 0, tzinfo=UTC))
    assert fx.weekly_close(datetime(2024, 1, 3, tzinfo=UTC)) == datetime(2024, 1, 5, 22,
                                                                         tzinfo=UTC)
    # summer (EDT, UTC-4): 21:00Z
    assert fx.weekly_close(datetime(2024, 7, 1, tzinfo=UTC)) == datetime(2024, 7, 5, 21,
                                                                         tzinfo=UTC)
    assert not fx.market_open(datetime(2024, 7, 5, 21, 0, tzinfo=UTC))
    assert fx.next_rollover(datetime(2024, 7, 1, 20, 59, tzinfo=UTC)) == \
        datetime(2024, 7, 1, 21, tzinfo=UTC)
    assert fx.next_rollover(datetime(2024, 1, 2, 22, 0, 1, tzinfo=UTC)) == \
        datetime(2024, 1, 3, 22, tzinfo=UTC)
    # the day the clocks change (2024-03-10, 2024-11-03): 17:00 New York on either side
    assert fx.next_rollover(datetime(2024, 3, 10, 12, tzinfo=UTC)) == \
        datetime(2024, 3, 10, 21, tzinfo=UTC)
    assert fx.next_rollover(datetime(2024, 11, 3, 12, tzinfo=UTC)) == \
        datetime(2024, 11, 3, 22, tzinfo=UTC)


def test_conversion_rate():
    mids = {"EUR_USD": 1.1, "USD_JPY": 150.0}
    assert fx.conversion_rate("USD", "USD", mids) == 1.0
    assert fx.conversion_rate("EUR", "USD", mids) == 1.1
    assert fx.conversion_rate("JPY", "USD", mids) == pytest.approx(1 / 150.0)
    assert fx.conversion_rate("JPY", "USD", mids, overrides={"JPY": 0.0067}) == 0.0067
    assert fx.conversion_rate("CHF", "USD", mids) is None
    for bad in (math.nan, 0.0, -1.0, math.inf):
        assert fx.conversion_rate("JPY", "USD", mids, overrides={"JPY": bad}) is None
