"""HTTP client for the Vexora gateway: create a checkout, query one (docs/gateway.md §Endpoints).

It speaks HTTP through ``worker.gateway.http1``, a small HTTP/1.1 client of our own with
kept-alive connections (one per worker thread): first ``requests`` and then urllib3 and
``http.client`` cost a worker more CPU per job than anything else it did (BENCHMARKS.md §7). It
has explicit connect and read timeouts and a total deadline per request, no redirects and no
retries of its own: retries belong to ``worker.gateway.retry``, which knows which failures may
be retried blindly; a kept-alive connection the gateway closed is noticed before sending and
replaced, never retried after. Each request gets a fresh ``timestamp`` and ``sign``,
so every retry is signed anew. A request is made for one merchant account (``account``, the job's):
signed with that account's app secret and sent with its ``merchantNo`` header; the pool is
shared by every account. Transport failures become the error tree of ``worker.domain.errors``;
what a well-formed answer *means* is decided by ``worker.gateway.answers``.

Whether a failure could have reached the gateway decides everything downstream:
    refused connection, connect timeout, DNS, HTTP 429   -> TransientError  (nothing created)
    read timeout, dropped answer, HTTP 5xx, garbled 200  -> AmbiguousError  (query first)
    other HTTP 4xx                                       -> DeclinedError
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from marshmallow import ValidationError

from schemas import CheckoutResponseSchema, QueryResponseSchema
from worker.config.settings import Settings
from worker.domain.access import DEFAULT_ACCOUNT
from worker.domain.errors import AmbiguousError, CheckoutError, DeclinedError, TransientError
from worker.gateway.answers import says_not_found
from worker.gateway.http1 import Gateway, NoAnswer, NotSent
from worker.gateway.signing import sign

__all__ = ["GatewayClient", "GatewayReply", "CHECKOUT_PATH", "QUERY_PATH"]

CHECKOUT_PATH = "/v1/vexora/checkout"
QUERY_PATH = "/v1/vexora/queryPayInResult"
USER_AGENT = "vexora-checkout"


@dataclass(frozen=True)
class GatewayReply:
    """A well-formed answer: the request-level ``code`` and the ``data`` object (or None)."""

    code: str
    msg: str | None
    data: dict | None
    http_status: int
    latency_ms: int


class GatewayClient:
    """Signs and sends requests; safe to share between threads."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time, meter=None):
        settings.require_gateway()
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        # read_timeout is per read; total caps the whole request, so a trickling answer cannot
        # hold a job past its lease (Settings.gateway_deadline); a connection kept per thread
        self.http = Gateway(connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout,
                            total=settings.gateway_deadline)
        # per account: its merchantNo header and its secret (never the previous one: it only
        # verifies callbacks during a rotation)
        self._accounts = {
            account.id: ({"merchantNo": account.merchant_no, "Content-Type": "application/json",
                          "Accept": "application/json", "User-Agent": USER_AGENT}, account.app_secret)
            for account in settings.accounts.values()}
        self._clock = clock
        self.meter = meter  # worker.ops.metrics.Meter: requests by outcome, and their latency
        # the query 8000 messages, beyond the built-in ones, that mean "no such order"
        self.not_found_messages = tuple(settings.query_not_found_messages)
        self._checkout_schema = CheckoutResponseSchema()
        self._query_schema = QueryResponseSchema()

    def _account(self, account: str | None) -> tuple[dict[str, str], str]:
        found = self._accounts.get(account or DEFAULT_ACCOUNT)
        if found is None:  # a job of an account removed from the settings: nothing to sign with
            raise DeclinedError("the job's merchant account is not configured")
        return found

    @property
    def headers(self) -> dict[str, str]:
        """The ``default`` account's headers (or the only account's)."""
        return self._account(DEFAULT_ACCOUNT if DEFAULT_ACCOUNT in self._accounts else next(iter(self._accounts)))[0]

    def signed(self, fields: Mapping[str, str], account: str | None = None) -> dict[str, str]:
        """``fields`` plus a fresh ``timestamp`` and its ``sign`` with ``account``'s secret."""
        secret = self._account(account)[1]
        body = {k: v for k, v in fields.items() if k not in {"sign", "timestamp"} and v not in (None, "")}
        body["timestamp"] = str(int(self._clock() * 1000))
        body["sign"] = sign(body, secret)
        return body

    def checkout(self, fields: Mapping[str, str], account: str | None = None) -> GatewayReply:
        """POST the checkout for ``account`` (``default`` when None); the caller owns retries and
        the meaning of the answer."""
        headers = self._account(account)[0]
        return self._measured("checkout", CHECKOUT_PATH, self.signed(fields, account), self._checkout_schema,
                              headers)

    def query(self, trade_no: str, account: str | None = None) -> GatewayReply:
        """POST ``queryPayInResult`` for one tradeNo of ``account``."""
        headers = self._account(account)[0]
        return self._measured("query", QUERY_PATH, self.signed({"tradeNo": trade_no}, account),
                              self._query_schema, headers)

    def _measured(self, op: str, path: str, body: dict, schema, headers: dict[str, str]) -> GatewayReply:
        if self.meter is None:
            return self._post(path, body, schema, headers)
        started = time.monotonic()
        outcome = "ok"
        try:
            reply = self._post(path, body, schema, headers)
            outcome = _OUTCOMES.get(reply.code, "other_code")
            if op == "query" and reply.code == "8000":
                # only an 8000 that says the order does not exist is "not found"; any other one
                # (a sign error...) is a refusal, an error for the alerts
                outcome = ("not_found" if says_not_found(reply.msg, reply.data, self.not_found_messages)
                           else "refused")
            return reply
        except CheckoutError as exc:
            outcome = _error_outcome(exc)
            raise
        finally:
            self.meter.inc("gateway_requests_total", op=op, outcome=outcome)
            self.meter.observe("gateway_request_duration_seconds", time.monotonic() - started, op=op)

    def _post(self, path: str, body: dict, schema, headers: dict[str, str]) -> GatewayReply:
        started = time.monotonic()
        try:
            response = self.http.post(self.base_url + path, json.dumps(body, ensure_ascii=False).encode("utf-8"),
                                      headers)
        except NotSent as exc:  # refused, unreachable, DNS, connect timeout: the request never left
            raise TransientError("gateway connect timeout" if exc.kind == "timeout"
                                 else "gateway unreachable") from None
        except NoAnswer as exc:  # read timeout, reset, dropped, garbled: the request may have arrived
            if exc.kind == "timeout":
                raise AmbiguousError("gateway read timeout after the request was sent") from None
            raise AmbiguousError("gateway connection lost after the request was sent") from None
        latency_ms = int((time.monotonic() - started) * 1000)
        status = response.status
        if status == 429:
            raise TransientError("gateway rate limited the request", http_status=status,
                                 retry_after=_retry_after(response.headers.get("Retry-After"), self._clock))
        if status >= 500:
            raise AmbiguousError("gateway server error", http_status=status,
                                 retry_after=_retry_after(response.headers.get("Retry-After"), self._clock))
        if status >= 400:
            raise DeclinedError("gateway refused the request", http_status=status)
        try:
            parsed = schema.load(json.loads(response.body))
        except (ValueError, ValidationError):
            raise AmbiguousError("gateway answer is not the documented JSON", http_status=status) from None
        return GatewayReply(code=parsed["code"], msg=parsed.get("msg"), data=parsed.get("data"),
                            http_status=status, latency_ms=latency_ms)


_OUTCOMES = {"0000": "ok", "8000": "declined", "5000": "5000"}


def _error_outcome(exc: CheckoutError) -> str:
    """The metrics label of a failed request (a fixed set: never a value from the answer)."""
    status = exc.http_status or 0
    if status == 429:
        return "http_429"
    if status >= 500:
        return "http_5xx"
    if status >= 400:
        return "http_4xx"
    if status:
        return "invalid_answer"
    return "timeout" if "timeout" in exc.message else "connection"


def _retry_after(value: str | None, clock: Callable[[], float]) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - clock())
