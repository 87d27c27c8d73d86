"""Polling with a deadline: the one way this project waits for something to become true."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_until", "TimedOut"]

T = TypeVar("T")


class TimedOut(AssertionError):
    """The condition did not hold before the deadline."""


def wait_until(predicate: Callable[[], T], *, timeout: float, interval: float = 0.05,
               what: str = "condition") -> T:
    """Call ``predicate`` until it returns something truthy; return that, or raise ``TimedOut``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimedOut(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)
