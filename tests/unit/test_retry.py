"""The retry policy: which errors, how many times, how long — with an injected sleep."""

import pytest

from worker.domain.errors import (AmbiguousError, ConfigurationError, DeclinedError, InvalidError,
                           OutcomeUnknownError, TransientError)
from worker.config.settings import Settings
from worker.gateway.retry import build_retrying, should_retry

SETTINGS = Settings(retry_max_attempts=4, retry_max_seconds=60, retry_base_delay=0.5,
                    retry_max_delay=8, retry_after_cap=30)


def run(errors, settings=SETTINGS):
    """Fail with each of ``errors`` in turn, then succeed; return (result or exception, calls, sleeps)."""
    sleeps, calls = [], []

    def attempt():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "ok"

    try:
        result = build_retrying(settings, sleep=sleeps.append)(attempt)
    except Exception as exc:  # noqa: BLE001 - the test inspects what escaped
        result = exc
    return result, len(calls), sleeps


@pytest.mark.parametrize("error", [TransientError("x"), AmbiguousError("x", http_status=502)])
def test_transient_errors_are_retried(error):
    assert should_retry(error)
    result, calls, sleeps = run([error, error])
    assert result == "ok" and calls == 3 and len(sleeps) == 2


@pytest.mark.parametrize("error", [DeclinedError("x"), InvalidError("x"), OutcomeUnknownError("x"),
                                   ConfigurationError("x"), ValueError("bug"), KeyError("bug")])
def test_everything_else_is_final_at_once(error):
    assert not should_retry(error)
    result, calls, sleeps = run([error])
    assert result is error and calls == 1 and sleeps == []


def test_stops_after_the_attempt_budget_and_reraises_the_last_error():
    errors = [TransientError(f"e{i}") for i in range(10)]
    result, calls, sleeps = run(errors)
    assert result is errors[3] and calls == 4 and len(sleeps) == 3


def test_stops_on_total_time():
    result, calls, _ = run([TransientError("x")] * 3, SETTINGS.replace(retry_max_seconds=0))
    assert isinstance(result, TransientError) and calls == 1


def test_backoff_is_jittered_exponential_and_capped():
    _, _, sleeps = run([TransientError("x")] * 10, SETTINGS.replace(retry_max_attempts=10))
    assert len(sleeps) == 9
    assert all(0 <= s <= 8 for s in sleeps)
    # the ceiling doubles: after attempt n the wait is at most base * 2**(n-1)
    for n, s in enumerate(sleeps, start=1):
        assert s <= min(8, 0.5 * 2 ** (n - 1))


def test_retry_after_is_honoured_and_capped():
    result, _, sleeps = run([TransientError("x", http_status=429, retry_after=3),
                             TransientError("x", http_status=429, retry_after=999)])
    assert result == "ok" and sleeps == [3.0, 30.0]
