"""A small verifying webhook receiver: what a merchant's app would run to take this project's
signed webhooks (Standard Webhooks, issue 12), for the demo and the tests. It is to the merchant's
side what the sandbox gateway is to the gateway's: a real local HTTP server, a development and test
tool, never a production receiver. It owns nothing the sender relies on: it only checks, records and misbehaves on demand.

``POST /webhooks`` (the path is configurable) verifies every request with the reference package,
``standardwebhooks.webhooks.Webhook(secret).verify``, against each of its secrets (a receiver in
the middle of a rotation knows the new secret and perhaps the old one): verified -> recorded,
``204``; not verified -> ``401`` (a verified body that is not a JSON object with a ``type`` ->
``400``), counted as rejected. Everything is kept in memory.

Control API, under ``/_receiver/`` (JSON; never subject to faults; a bad body is answered 400)::

    POST   /_receiver/faults   {"down_for": s, "fail_first": n, "status": 503, "retry_after": s,
                                "gone_once": true}   sets the keys given, keeps the others
                               -> {"faults": {the five keys; down_for: seconds left}}
    GET    /_receiver/faults   -> the same
    DELETE /_receiver/faults   clears them -> the same
    POST   /_receiver/secrets  {"secrets": ["whsec_...", ...]} replaces the secrets -> {"secrets": n}
    GET    /_receiver/stats    {"verified", "rejected", "duplicates", "by_type", "failed_on_purpose",
                                "dropped"}
    GET    /_receiver/events   [{"webhook_id", "type", "tradeNo", "sequence", "state", "attempt",
                                 "at"}, ...] every verified delivery, oldest first (``at``: epoch ms)
    POST   /_receiver/reset    forgets events, counts, attempts and faults; keeps the secrets
                               -> {"ok": true}

Faults, on the webhook path only, in this order: ``down_for`` drops every request for that long
(the body is read, then the connection shut without an answer: the sender sees a connection
error); a request that does not verify is then refused whatever else is set; ``gone_once``
answers the next verified request ``410`` (once); ``fail_first`` answers the first ``n`` attempts
of every webhook-id first seen after it was set with ``status`` (and ``Retry-After`` when
``retry_after`` is given). A webhook-id's attempt number counts every request carrying it that
verified, whatever the answer (dropped and failed ones too): 1 for its first arrival.

Logs carry the method, path and status only: webhook bodies carry a job's public record, and
signatures are nobody's business. Run it as a process with
``python -m worker.sandbox.receiver --port P [--secret whsec_...]...`` (without ``--secret``, the
space-separated secrets in ``VEXORA_WEBHOOK_SECRET``, which keeps them off the command line).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from worker.sandbox.server import QuietHandler, serve_until_stopped

__all__ = ["Inbox", "ReceiverServer", "Rejected", "NotVerified", "Malformed", "verify", "make_receiver",
           "run"]

logger = logging.getLogger(__name__)

CONTROL_PREFIX = "/_receiver/"
MAX_BODY = 1 << 20
MAX_EVENTS = 100_000  # the oldest are forgotten beyond this (a long --serve run); counts go on
SECRET_PREFIX = "whsec_"
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_FAULT_KEYS = ("down_for", "fail_first", "status", "retry_after", "gone_once")


class Rejected(ValueError):
    """A request that is not a usable verified webhook; ``status`` is the answer it gets."""

    status = 401


class NotVerified(Rejected):
    """No secret verifies the signature (or the headers are missing, malformed or out of date)."""


class Malformed(Rejected):
    """The signature verifies but the body is not a JSON object with a string ``type``."""

    status = 400


class _TooLarge(Rejected):
    status = 413


def _webhook(secret: object) -> Webhook:
    """A verifier for one ``whsec_`` secret; ValueError names what is wrong, never the secret."""
    if (not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX)
            or not _BASE64.fullmatch(secret[len(SECRET_PREFIX):])):
        raise ValueError("a webhook secret is whsec_ followed by base64")
    try:
        return Webhook(secret)
    except Exception:  # bad padding, an empty key: say so without the value
        raise ValueError("a webhook secret is whsec_ followed by base64") from None


def _webhooks(secrets: Iterable[object]) -> tuple[Webhook, ...]:
    if isinstance(secrets, (str, bytes)) or not isinstance(secrets, Iterable):
        raise ValueError("secrets must be a list of whsec_ secrets")
    return tuple(secret if isinstance(secret, Webhook) else _webhook(secret) for secret in secrets)


def verify(body: bytes, headers: Mapping[str, str], secrets: Iterable[str | Webhook]) -> dict:
    """The parsed payload if any of ``secrets`` verifies the request, else ``Rejected``.

    ``NotVerified`` when none does (missing or malformed headers, a timestamp more than five
    minutes off, a wrong signature); ``Malformed`` when one does but the body is not a JSON object
    with a string ``type``. A bad secret is a ValueError of its own, not a rejection.
    """
    hooks = _webhooks(secrets)
    plain = {str(name).lower(): str(value) for name, value in headers.items()}
    reason = "no secret to verify with"
    for hook in hooks:
        try:
            hook.verify(body, plain, json_parse=False)
            break
        except WebhookVerificationError as exc:
            reason = str(exc)  # the package's messages name no secret and no signature
        except (ValueError, TypeError):  # a signature without "v1,", bad base64, a body not UTF-8
            reason = "malformed webhook headers or body"
    else:
        raise NotVerified(reason)
    try:
        payload = json.loads(body)
    except ValueError:
        raise Malformed("the body is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise Malformed("the body is not a JSON object with a type")
    return payload


def _check_faults(raw: object) -> dict:
    """The keys of a ``POST /_receiver/faults`` body, checked; ValueError names what is wrong."""
    if not isinstance(raw, dict) or not raw or any(key not in _FAULT_KEYS for key in raw):
        raise ValueError(f"faults must be an object with some of {_FAULT_KEYS}")

    def seconds(value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 86400

    checks = {
        "down_for": (seconds, "down_for must be seconds, 0 to 86400"),
        "fail_first": (lambda v: type(v) is int and v >= 0, "fail_first must be an integer >= 0"),
        "status": (lambda v: type(v) is int and 300 <= v <= 599, "status must be an HTTP status 300-599"),
        "retry_after": (lambda v: v is None or (type(v) is int and v >= 0),
                        "retry_after must be whole seconds >= 0, or null"),
        "gone_once": (lambda v: isinstance(v, bool), "gone_once must be a boolean"),
    }
    for key, value in raw.items():
        is_valid, message = checks[key]
        if not is_valid(value):
            raise ValueError(message)
    return dict(raw)


@dataclass
class _Faults:
    down_until: float = 0.0  # time.monotonic()
    fail_first: int = 0
    status: int = 503
    retry_after: int | None = None
    gone_once: bool = False
    exempt: frozenset = field(default_factory=frozenset)  # webhook-ids seen before fail_first was set


@dataclass(frozen=True)
class Outcome:
    """What to do with one request on the webhook path."""

    action: str  # "drop", "refuse" (with the rejection's status), "fail", "accept"
    status: int = 204
    retry_after: int | None = None


class Inbox:
    """Thread-safe receiver state: secrets, verified deliveries, counts, attempts and faults."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._hooks = _webhooks(secrets)
        self.reset()

    def reset(self) -> None:
        """Forget events, counts, attempts and faults; the secrets stay (a rotation test resets)."""
        with self._lock:
            self._events: deque[dict] = deque(maxlen=MAX_EVENTS)
            self._attempts: dict[str, int] = {}  # webhook-id -> verified requests that carried it
            self._accepted: set[str] = set()  # webhook-ids recorded at least once
            self._counts = dict.fromkeys(("verified", "rejected", "duplicates", "failed_on_purpose",
                                          "dropped"), 0)
            self._by_type: Counter[str] = Counter()
            self._faults = _Faults()

    # -- secrets ------------------------------------------------------------------------------------
    def set_secrets(self, secrets: object) -> int:
        hooks = _webhooks(secrets)  # all or nothing: a bad one leaves the old secrets in place
        with self._lock:
            self._hooks = hooks
        return len(hooks)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> dict:
        with self._lock:
            hooks = self._hooks
        return verify(body, headers, hooks)

    # -- faults -------------------------------------------------------------------------------------
    def set_faults(self, raw: object) -> dict:
        changes = _check_faults(raw)
        with self._lock:
            faults = self._faults
            if "down_for" in changes:
                faults.down_until = time.monotonic() + changes["down_for"]
            if "fail_first" in changes:
                faults.fail_first = changes["fail_first"]
                faults.exempt = frozenset(self._attempts)  # only webhook-ids new from now on
            for key in ("status", "retry_after", "gone_once"):
                if key in changes:
                    setattr(faults, key, changes[key])
        return self.faults()

    def clear_faults(self) -> dict:
        with self._lock:
            self._faults = _Faults()
        return self.faults()

    def faults(self) -> dict:
        with self._lock:
            f = self._faults
            left = max(0.0, f.down_until - time.monotonic())
            return {"down_for": round(left, 3), "fail_first": f.fail_first, "status": f.status,
                    "retry_after": f.retry_after, "gone_once": f.gone_once}

    # -- requests -----------------------------------------------------------------------------------
    def receive(self, webhook_id: str | None, payload: dict | None) -> Outcome:
        """Decide and record one request on the webhook path; ``payload`` None: not verified."""
        with self._lock:
            faults = self._faults
            attempt = 0
            if payload is not None:
                attempt = self._attempts[webhook_id] = self._attempts.get(webhook_id, 0) + 1
            if time.monotonic() < faults.down_until:
                self._counts["dropped"] += 1
                return Outcome("drop")
            if payload is None:
                self._counts["rejected"] += 1
                return Outcome("refuse")
            if faults.gone_once:
                faults.gone_once = False
                self._counts["failed_on_purpose"] += 1
                return Outcome("fail", 410)
            if attempt <= faults.fail_first and webhook_id not in faults.exempt:
                self._counts["failed_on_purpose"] += 1
                return Outcome("fail", faults.status, faults.retry_after)
            data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
            self._events.append({"webhook_id": webhook_id, "type": payload["type"],
                                 "tradeNo": data.get("tradeNo"), "sequence": data.get("sequence"),
                                 "state": data.get("state"), "attempt": attempt,
                                 "at": int(time.time() * 1000)})
            self._counts["verified"] += 1
            self._by_type[payload["type"]] += 1
            if webhook_id in self._accepted:
                self._counts["duplicates"] += 1
            self._accepted.add(webhook_id)
            return Outcome("accept", 204)

    def stats(self) -> dict:
        with self._lock:
            return {**self._counts, "by_type": dict(self._by_type)}

    def events(self) -> list[dict]:
        with self._lock:
            return [dict(event) for event in self._events]


# -- HTTP --------------------------------------------------------------------------------------------
def _set_secrets(server: ReceiverServer, body: dict) -> dict:
    if not isinstance(body, dict) or not isinstance(body.get("secrets"), list):
        raise ValueError('body must be {"secrets": ["whsec_...", ...]}')
    return {"secrets": server.inbox.set_secrets(body["secrets"])}  # how many, never which


def _reset(server: ReceiverServer, body: object) -> dict:
    server.inbox.reset()
    return {"ok": True}


_CONTROL_POSTS = {
    "/_receiver/faults": lambda server, body: {"faults": server.inbox.set_faults(body)},
    "/_receiver/secrets": _set_secrets,
    "/_receiver/reset": _reset,
}
_CONTROL_GETS = {
    "/_receiver/faults": lambda server: {"faults": server.inbox.faults()},
    "/_receiver/stats": lambda server: server.inbox.stats(),
    "/_receiver/events": lambda server: server.inbox.events(),
}
_CONTROL_DELETES = {
    "/_receiver/faults": lambda server: {"faults": server.inbox.clear_faults()},
}


class ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's 5 resets connections when a sender's threads burst in

    def __init__(self, address, handler, *, inbox: Inbox, path: str) -> None:
        super().__init__(address, handler)
        self.inbox = inbox
        self.webhook_path = path
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"  # a wildcard bind is not an address a sender can use
        self.url = f"http://{host}:{port}"
        self.webhook_url = self.url + path


class ReceiverHandler(QuietHandler):
    logger = logger  # this module's, for QuietHandler's one line per request
    timeout = 60  # an idle keep-alive connection does not hold its thread for ever
    server: ReceiverServer

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path == self.server.webhook_path:
            return self._webhook()
        control = _CONTROL_POSTS.get(path)
        if control is None:
            return self._not_found()
        raw = self._read_body()
        if raw is None:
            return self._send_json(400, {"error": "bad or too large Content-Length"})
        try:
            self._send_json(200, control(self.server, json.loads(raw or b"{}")))
        except ValueError as exc:  # bad JSON, bad shape, a bad secret or fault
            self._send_json(400, {"error": str(exc)})

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in _CONTROL_GETS:
            return self._send_json(200, _CONTROL_GETS[path](self.server))
        if path == self.server.webhook_path:
            return self._method_not_allowed()
        self._not_found()

    def do_DELETE(self) -> None:
        clear = _CONTROL_DELETES.get(urlsplit(self.path).path)
        if clear is None:
            return self._not_found()
        self._send_json(200, clear(self.server))

    def _webhook(self) -> None:
        inbox = self.server.inbox
        raw = self._read_body()
        payload, refusal = None, None
        try:
            if raw is None:
                raise _TooLarge("bad or too large Content-Length")
            payload = inbox.verify(raw, self.headers)
        except Rejected as exc:
            refusal = exc
        outcome = inbox.receive(self.headers.get("webhook-id"), payload)
        if outcome.action == "drop":
            return self._drop()
        if outcome.action == "refuse":
            return self._send_json(refusal.status, {"error": str(refusal)})
        if outcome.action == "fail":
            headers = {} if outcome.retry_after is None else {"Retry-After": str(outcome.retry_after)}
            return self._send_json(outcome.status, {"error": "failing on purpose"}, headers)
        self._send(204, b"", None)

    # -- plumbing -------------------------------------------------------------------------------------
    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit() or int(length) > MAX_BODY:
            self.close_connection = True  # an unread body would poison the next request
            return None
        return self.rfile.read(int(length))

    def _not_found(self) -> None:
        self.close_connection = True
        self._send_json(404, {"error": "not found"})

    def _send_json(self, status: int, payload: object, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode(), "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str | None,
              headers: Mapping[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            if status != 204:  # a 204 carries no Content-Length (RFC 9110 §8.6)
                self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the sender gave up: nothing more to say



def make_receiver(host: str = "127.0.0.1", port: int = 0, *, secrets: Iterable[str] = (),
                  path: str = "/webhooks") -> ReceiverServer:
    """A bound, not yet serving receiver (call ``serve_forever``); ``url`` and ``webhook_url`` on it.

    With no secrets it verifies nothing until ``POST /_receiver/secrets`` gives it some.
    """
    if not isinstance(path, str) or not path.startswith("/") or path.startswith(CONTROL_PREFIX):
        raise ValueError(f"the webhook path starts with / and not with {CONTROL_PREFIX}")
    inbox = Inbox(secrets)  # checked before binding
    return ReceiverServer((host, port), ReceiverHandler, inbox=inbox, path=path)


def run(host: str = "127.0.0.1", port: int = 0, *, secrets: Iterable[str], path: str = "/webhooks") -> None:
    """Serve until SIGTERM or Ctrl-C; prints one line once listening, for a parent to wait on."""
    server = make_receiver(host, port, secrets=secrets, path=path)
    serve_until_stopped(server, f"webhook receiver listening on {server.url}")


def _main(argv: list[str] | None = None) -> None:
    import argparse
    import os

    parser = argparse.ArgumentParser(
        prog="python -m worker.sandbox.receiver",
        description="A verifying Standard Webhooks receiver (development and tests only).")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    parser.add_argument("--path", default="/webhooks", help="the webhook path (default %(default)s)")
    parser.add_argument("--secret", action="append", default=[], metavar="WHSEC",
                        help="a whsec_ secret to verify with; repeat during a rotation (default: the "
                             "space-separated secrets in VEXORA_WEBHOOK_SECRET)")
    args = parser.parse_args(argv)
    secrets = args.secret or os.environ.get("VEXORA_WEBHOOK_SECRET", "").split()
    if not secrets:
        parser.error("give --secret whsec_... or set VEXORA_WEBHOOK_SECRET")
    from worker import logs
    from worker.config.settings import Settings

    logs.configure(Settings.from_env().log_format)  # the same lines as every other process
    try:
        run(args.host, args.port, secrets=secrets, path=args.path)
    except ValueError as exc:  # a bad secret or path; the message never carries the secret
        parser.error(str(exc))


if __name__ == "__main__":
    _main()
