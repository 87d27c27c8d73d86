"""HTTP client for the Vexora gateway: create a checkout, query one (GATEWAY.md §1, §3).

One ``requests.Session`` per thread (connection pooling without sharing a session across the
threads of a worker), explicit connect and read timeouts, and a fresh ``timestamp`` and ``sign``
on every request, so each retry is signed anew. Transport failures become the error tree of
``worker.errors``; what a well-formed answer *means* is decided by ``worker.outcomes``.

Whether a failure could have reached the gateway decides everything downstream:
    refused connection, connect timeout, DNS, HTTP 429   -> TransientError  (nothing created)
    read timeout, dropped answer, HTTP 5xx, garbled 200  -> AmbiguousError  (query first)
    other HTTP 4xx                                       -> DeclinedError
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import requests
from marshmallow import ValidationError
from urllib3.exceptions import NameResolutionError, NewConnectionError

from schemas import CheckoutResponseSchema, QueryResponseSchema
from worker.errors import AmbiguousError, DeclinedError, TransientError
from worker.settings import Settings
from worker.signing import sign

__all__ = ["GatewayClient", "GatewayReply", "CHECKOUT_PATH", "QUERY_PATH"]

CHECKOUT_PATH = "/v1/vexora/checkout"
QUERY_PATH = "/v1/vexora/queryPayInResult"


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

    def __init__(self, settings: Settings, *, session_factory: Callable[[], requests.Session] = requests.Session,
                 clock: Callable[[], float] = time.time):
        settings.require_gateway()
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.timeout = (settings.connect_timeout, settings.read_timeout)
        self._session_factory = session_factory
        self._local = threading.local()
        self._clock = clock
        self._checkout_schema = CheckoutResponseSchema()
        self._query_schema = QueryResponseSchema()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._session_factory()
            # no proxy variables or ~/.netrc lookups on every request (~0.5 ms of CPU each)
            session.trust_env = False
            session.headers.update({"merchantNo": self.settings.merchant_no,
                                    "Content-Type": "application/json"})
        return session

    def signed(self, fields: Mapping[str, str]) -> dict[str, str]:
        """``fields`` plus a fresh ``timestamp`` and its ``sign``."""
        body = {k: v for k, v in fields.items() if k not in {"sign", "timestamp"} and v not in (None, "")}
        body["timestamp"] = str(int(self._clock() * 1000))
        body["sign"] = sign(body, self.settings.app_secret)
        return body

    def checkout(self, fields: Mapping[str, str]) -> GatewayReply:
        """POST the checkout; the caller owns retries and the meaning of the answer."""
        return self._post(CHECKOUT_PATH, self.signed(fields), self._checkout_schema)

    def query(self, trade_no: str) -> GatewayReply:
        """POST ``queryPayInResult`` for one tradeNo."""
        return self._post(QUERY_PATH, self.signed({"tradeNo": trade_no}), self._query_schema)

    def _post(self, path: str, body: dict, schema) -> GatewayReply:
        started = time.monotonic()
        try:
            response = self._session().post(self.base_url + path, data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                                            timeout=self.timeout)
        except requests.ConnectTimeout:
            raise TransientError("gateway connect timeout") from None
        except requests.ReadTimeout:
            raise AmbiguousError("gateway read timeout after the request was sent") from None
        except requests.ConnectionError as exc:
            if _never_connected(exc):
                raise TransientError("gateway unreachable") from None
            raise AmbiguousError("gateway connection lost after the request was sent") from None
        latency_ms = int((time.monotonic() - started) * 1000)
        status = response.status_code
        if status == 429:
            raise TransientError("gateway rate limited the request", http_status=status,
                                 retry_after=_retry_after(response, self._clock))
        if status >= 500:
            raise AmbiguousError("gateway server error", http_status=status,
                                 retry_after=_retry_after(response, self._clock))
        if status >= 400:
            raise DeclinedError("gateway refused the request", http_status=status)
        try:
            parsed = schema.load(response.json())
        except (ValueError, ValidationError):
            raise AmbiguousError("gateway answer is not the documented JSON", http_status=status) from None
        return GatewayReply(code=parsed["code"], msg=parsed.get("msg"), data=parsed.get("data"),
                            http_status=status, latency_ms=latency_ms)


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the TCP connection was never made, so the gateway cannot have seen the request."""
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(reason, (NewConnectionError, NameResolutionError))


def _retry_after(response: requests.Response, clock: Callable[[], float]) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - clock())
