"""The retry policy for gateway requests, built on tenacity (docs/design.md §Submission rules).

Only errors that say they are retryable (``TransientError`` and its ``AmbiguousError`` child)
are retried; everything else is final at once. Waits are jittered exponential backoff, replaced
by the gateway's ``Retry-After`` when it sends one (capped). Attempts stop on a count and on the
total time spent. ``sleep`` is injected so unit tests never wait.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import tenacity
from tenacity.wait import wait_base

from worker.config.settings import Settings
from worker.domain.errors import CheckoutError
from worker.logs import event

__all__ = ["should_retry", "WaitRetryAfterOrBackoff", "build_retrying"]

log = logging.getLogger("vexora.retry")


def should_retry(exc: BaseException) -> bool:
    """The one retry decision: only our own errors that say they are retryable."""
    return isinstance(exc, CheckoutError) and exc.retryable


class WaitRetryAfterOrBackoff(wait_base):
    """Honour ``Retry-After`` (up to ``cap``); otherwise jittered exponential backoff."""

    def __init__(self, base: float, maximum: float, cap: float):
        self.backoff = tenacity.wait_random_exponential(multiplier=base, max=maximum)
        self.cap = cap

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return max(0.0, min(float(retry_after), self.cap))
        return self.backoff(retry_state)


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    event(log, logging.INFO, "gateway_attempt_failed", attempt=retry_state.attempt_number,
          error=type(exc).__name__, detail=str(exc),
          retry_in_s=round(retry_state.next_action.sleep if retry_state.next_action else 0.0, 2))


def build_retrying(settings: Settings, *, sleep: Callable[[float], None] = time.sleep) -> tenacity.Retrying:
    """A fresh ``Retrying`` for one job; the last error is re-raised when the budget runs out."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(should_retry),
        stop=(tenacity.stop_after_attempt(settings.retry_max_attempts)
              | tenacity.stop_after_delay(settings.retry_max_seconds)),
        wait=WaitRetryAfterOrBackoff(settings.retry_base_delay, settings.retry_max_delay,
                                     settings.retry_after_cap),
        sleep=sleep,
        before_sleep=_log_retry,
        reraise=True,
    )
