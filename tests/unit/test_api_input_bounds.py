"""Bad times and ids in the webhook replay and audit APIs are refused as such (a 4xx naming the
field), never passed on to Redis, where they were server errors (issue 24: the contract test found
``{"since": -8.4e67}``)."""

from __future__ import annotations

import pytest

from worker.web.audit_api import _entry_id, parse_when
from worker.web.webhooks_api import TIME_MAX_MS, parse_time_ms


@pytest.mark.parametrize("value, ms", [
    (0, 0), (1.5, 1500), ("1700000000", 1_700_000_000_000), ("2024-01-01T00:00:00Z", 1_704_067_200_000),
    ("2024-01-01T09:00:00+09:00", 1_704_067_200_000), (253_402_300_799, 253_402_300_799_000),
    ("9999-12-31T23:59:59Z", 253_402_300_799_000),
])
def test_replay_times_in_range_are_epoch_ms(value, ms):
    assert parse_time_ms(value) == ms <= TIME_MAX_MS


@pytest.mark.parametrize("value", [
    -8.4e67, -1, "-1", 253_402_300_800, 1e400, float("nan"), float("inf"), "1e999", "nan", 10 ** 400,
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", True, None, [], {}, "", "  ", "yesterday",
])
def test_replay_times_out_of_range_or_not_times_are_value_errors(value):
    with pytest.raises(ValueError, match="1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z"):
        parse_time_ms(value)


@pytest.mark.parametrize("text", ["99999999999999999999", "253402300800000", "0001-01-01T00:00:00Z", "٣"])
def test_audit_times_out_of_range_are_value_errors(text):
    with pytest.raises(ValueError):
        parse_when(text)


def test_audit_durations_reach_back_to_the_epoch_at_most():
    assert parse_when("999999999d", now_ms=1_000) == 0


@pytest.mark.parametrize("text, ok", [
    ("1-0", True), ("18446744073709551615-18446744073709551615", True), ("18446744073709551616-0", False),
    ("0-18446744073709551616", False), ("1-1\n", False), ("٣-1", False), ("1", False), ("-1-0", False),
])
def test_audit_before_is_a_stream_id_redis_can_hold(text, ok):
    assert _entry_id(text) is ok
