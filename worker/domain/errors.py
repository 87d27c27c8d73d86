"""The one exception root of vexora-checkout, and what each branch means for a job.

    CheckoutError                 root; carries code, gateway message, HTTP status
    ├── TransientError            retry: nothing was created, or a query settles it first
    │   └── AmbiguousError        the request may have reached the gateway (read timeout, 5xx)
    ├── OutcomeUnknownError       final for the task: the gateway may have created it (5000)
    ├── DeclinedError             final: the gateway refused to create it (8000, 4xx)
    ├── LeaseLostError            stop: another process took the job over; record nothing
    ├── InvalidError              final: never sent; carries field-level errors
    │   └── DuplicateTradeNoError a tradeNo reused with a different payload
    └── ConfigurationError        fail loudly at start (missing secret, bad URL)

No message here ever carries payer data or the app secret: field errors name the rule
that failed, never the value.
"""

from __future__ import annotations

__all__ = [
    "CheckoutError",
    "TransientError",
    "AmbiguousError",
    "OutcomeUnknownError",
    "DeclinedError",
    "LeaseLostError",
    "InvalidError",
    "DuplicateTradeNoError",
    "ConfigurationError",
]


class CheckoutError(Exception):
    """Root of every error this package raises on purpose."""

    retryable = False

    def __init__(self, message: str, *, code: str | None = None,
                 http_status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [self.message]
        if self.code:
            parts.append(f"code={self.code}")
        if self.http_status:
            parts.append(f"http={self.http_status}")
        return " ".join(parts)


class TransientError(CheckoutError):
    """A failure worth retrying: the request certainly did not create anything."""

    retryable = True


class AmbiguousError(TransientError):
    """Worth retrying, but the request may have reached the gateway: query before resending."""


class OutcomeUnknownError(CheckoutError):
    """The gateway may or may not have created the checkout; only a query can tell."""


class DeclinedError(CheckoutError):
    """The gateway refused the request; sending it again would not help."""


class LeaseLostError(CheckoutError):
    """This process no longer holds the job's lease: it must neither send nor record."""


class InvalidError(CheckoutError):
    """The job breaks a rule; it never reaches the gateway."""

    def __init__(self, message: str, errors: dict | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.errors = errors or {}


class DuplicateTradeNoError(InvalidError):
    """A tradeNo already used by a job with a different payload."""


class ConfigurationError(CheckoutError):
    """The process is not configured to run (missing secret, malformed URL, ...).

    ``problems``, when the settings were checked: variable -> what is wrong with it (never its
    value), the same lines as the message.
    """

    def __init__(self, message: str, *, problems: dict[str, list[str]] | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.problems = dict(problems or {})
