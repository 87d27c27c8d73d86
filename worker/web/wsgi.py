"""The web app (``gunicorn worker.web:app``): gateway callbacks in, producer API, review
queue, metrics, health.

Flask, because routing, body limits (413) and error handlers come ready and every Python team
can read it; it stays thin — each view calls plain logic and the store.

``POST /vexora/notify`` (docs/gateway.md §Callbacks (notify)): the raw body, size-limited, is parsed keeping numbers as
their JSON text; the signature is verified on those values (constant time) → 401; the callback
schema → 400 (a field the gateway does not document, or ``=`` in a value, first and counted apart:
``refused_fields``, since such a body could carry a genuine signature moved onto other fields);
the verified fields go on the ``callbacks`` queue; ``OK`` is answered only once
the message is on the broker. The signature is checked with the secrets of the job's merchant
account (its current one, and its previous one while a rotation keeps it), found by one HMGET of
the job; a callback for a tradeNo with no job is checked against every account's, and belongs to
the account whose secret verified it. A ``merchantNo`` field naming another account's merchant
is refused (400, ``refused_merchant``). If the broker cannot take it the answer is 503, so the gateway
sends it again — never ``OK`` for a callback that was not queued.

``GET /metrics`` (Prometheus) answers for the whole deployment from Redis (``worker.ops.metrics``);
open unless ``VEXORA_METRICS_TOKEN`` is set, off with ``VEXORA_METRICS=off``.

Errors are RFC 9457 problem documents (``worker.web.problems``), except on ``/vexora/notify``, which
answers the gateway in plain text whatever happens, and on the ``/ops`` pages (HTML).

Behind proxies: with ``VEXORA_TRUSTED_PROXIES=N`` (default 0) werkzeug's ``ProxyFix`` takes the
client's address, the scheme and the host from the last N hops of ``X-Forwarded-For``,
``-Proto`` and ``-Host``: the callback allow-list checks the real client, and the URLs the API
builds (``statusUrl``, ``Location``) carry the public scheme and host. With 0 those headers are
ignored, so a client cannot forge its way past the allow-list.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

import kombu.exceptions
import redis
from flask import Flask, Request, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from schemas import CallbackSchema, trade_no_errors
from schemas.callback import DOCUMENTED_FIELDS, boundary_errors, plainly_valid
from worker.celery import CALLBACK_QUEUE
from worker.config.settings import Settings
from worker.config.startup import at_import
from worker.domain.errors import ConfigurationError
from worker.gateway.signing import RawNumber, parse_json_keeping_numbers, verifier
from worker.logs import event
from worker.ops.metrics import StoreCollector
from worker.runtime.wiring import get_runtime
from worker.web.api import bearer_guard, producer_api
from worker.web.audit_api import audit_api
from worker.domain.access import AUDIT_READ
from worker.web.bodies import read_limited
from worker.web.ops import ops_pages
from worker.web.problems import problem, title_of
from worker.web.webhooks_api import webhooks_api

__all__ = ["app", "create_app"]

log = logging.getLogger("vexora.web")

NOTIFY_PATH = "/vexora/notify"

# Publishing must give up well inside the gateway's ~10 s wait, so it can answer 503 in time.
_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
_BROKER_DOWN = (kombu.exceptions.OperationalError, redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError, ConnectionError, OSError)


ACCEPTED = object()  # notify_view's "queued: answer OK"


def _text(body: str, status: int) -> Response:
    return Response(body, status=status, mimetype="text/plain")


def _wire_fields(body: dict) -> dict:
    """The verified callback's fields for the message (numbers keep their text).

    Without ``sign``: it is checked already, and a signature next to its signed text in Flower
    or a log is material for guessing a weak app secret offline.
    """
    return {k: (str(v) if isinstance(v, RawNumber) else v) for k, v in body.items()
            if v is not None and k != "sign"}


def create_app(settings: Settings | None = None, runtime=None) -> Flask:
    settings = settings or Settings.from_env()
    web = Flask("vexora", static_folder=None)
    if settings.trusted_proxies < 0:
        raise ConfigurationError("VEXORA_TRUSTED_PROXIES: a number of proxies, 0 or more")
    allowed_sources = [ipaddress.ip_network(cidr, strict=False) for cidr in settings.callback_allowed_ips]
    callback_schema = CallbackSchema()

    def rt():
        return runtime or get_runtime()

    def counted(result: str, account: str = "") -> None:
        if settings.metrics:
            rt().meter.inc("callbacks_total", result=result, account=account)

    accounts = list(settings.accounts.values())

    def signers(runtime, body: dict) -> tuple[list, str]:
        """The accounts whose secret may have signed this callback: its job's account (one HMGET),
        or, for a tradeNo with no job, every account; and the account label for the counts."""
        trade_no = body.get("tradeNo")
        if isinstance(trade_no, str) and not trade_no_errors(trade_no):  # only then is it a key
            exists, account_id = runtime.store.account_of(trade_no)
            if exists:
                account = settings.account(account_id)
                return ([account] if account else []), account_id
        return accounts, ""

    def judge(body: dict, candidates: list) -> tuple[str, object]:
        """What the rules say of a callback that ``candidates`` may have signed, in the order the
        gateway is answered: ``("ok", the accounts that signed it and name its merchant)``, else
        the refusal and what its answer needs. No I/O, nothing logged or counted."""
        check = verifier(body)
        signed_by = [a for a in candidates if any(check(secret) for secret in a.callback_secrets)]
        if not signed_by:
            return "bad_signature", None
        refused = boundary_errors(body)
        if refused:
            return "refused_fields", (signed_by, refused)
        errors = {} if plainly_valid(body) else callback_schema.validate(body)
        if errors:
            return "invalid", (signed_by, errors)
        merchant = body.get("merchantNo")
        if merchant is not None:
            kept = [a for a in signed_by if a.merchant_no == merchant]
            if not kept:
                return "refused_merchant", (signed_by, None)
            signed_by = kept
        return "ok", signed_by

    def json_answer(body: dict, status: int) -> Response:
        answer = web.json.response(body)  # jsonify's, without the app context it needs
        answer.status_code = status
        return answer

    def refusal(verdict: str, found: object, body: dict, label: str) -> Response:
        """The answer to a refused callback, logged and counted (``label``: the job's account)."""
        if verdict == "bad_signature":
            event(log, logging.WARNING, "callback_refused", reason="invalid signature")
            counted("bad_signature", label)
            return _text("invalid signature", 401)
        signed_by, detail = found
        label = label or (signed_by[0].id if len(signed_by) == 1 else "")
        if verdict == "refused_fields":
            # signed, but shaped so that its signature could belong to other fields: a re-split of
            # a genuine callback (docs/gateway.md §Why a signature cannot be moved between fields).
            # Only documented names are logged or echoed: other names and every value are the
            # sender's text.
            documented = sorted(key for key in detail if key in DOCUMENTED_FIELDS)
            undocumented = len(detail) - len(documented)
            event(log, logging.WARNING, "callback_refused", reason="undocumented field or '=' in a value",
                  fieldsWithEquals=",".join(documented) or "none", undocumentedFields=undocumented)
            counted("refused_fields", label)
            return json_answer({"error": "refused callback: a field the gateway does not document, "
                                         "or a value containing '='",
                                "fields": documented, "undocumentedFields": undocumented}, 400)
        if verdict == "invalid":
            counted("invalid", label)
            return json_answer({"error": "malformed callback", "fields": sorted(detail)}, 400)
        # signed with the job's account's secret, but for another merchant: never applied
        event(log, logging.WARNING, "callback_refused", reason="merchantNo names another account",
              tradeNo=body.get("tradeNo"))
        counted("refused_merchant", label)
        return json_answer({"error": "refused callback: merchantNo does not name the job's "
                                     "merchant account"}, 400)

    def not_queued(body: dict, label: str, exc: Exception) -> Response:
        event(log, logging.ERROR, "callback_not_queued", tradeNo=body.get("tradeNo"),
              reason="redis unavailable", error=type(exc).__name__)
        counted("unavailable", label)
        return _text("temporarily unavailable", 503)

    def judged_by_the_job(runtime, body: dict, candidates: list, label: str) -> Response:
        """The rules against the job's own account (or every account's for no job), then
        ``send_task``: the path of a broker that is not the store's Redis, and of every
        refusal (its answer and count exactly as the job's account decides them)."""
        verdict, found = judge(body, candidates)
        if verdict != "ok":
            return refusal(verdict, found, body, label)
        account = found[0].id
        label = label or account
        try:
            runtime.send("vexora.callback.process", {**_wire_fields(body), "account": account},
                         queue=CALLBACK_QUEUE, retry=True, retry_policy=_PUBLISH_RETRY)
            # answered OK only once the message is on the replicas too: else the gateway resends
            runtime.confirm_queued()
        except _BROKER_DOWN as exc:
            return not_queued(body, label, exc)
        counted("accepted", label)
        return ACCEPTED

    def queued_in_one_step(runtime, messages, body: dict) -> Response:
        """Every rule checked here against every account that could have signed it; the job's
        account read, compared and the message pushed (and replicated) in one Redis step."""
        verdict, signed_by = judge(body, accounts)
        if verdict != "ok":  # refused whoever's job it is: answered as the job's account decides
            try:
                candidates, label = signers(runtime, body)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                return not_queued(body, "", exc)
            return judged_by_the_job(runtime, body, candidates, label)
        fields = _wire_fields(body)
        built = [(a.id, messages.build("vexora.callback.process", [{**fields, "account": a.id}],
                                       queue=CALLBACK_QUEUE)) for a in signed_by]
        try:
            found, account, queued = runtime.store.queue_callback(body["tradeNo"], built, CALLBACK_QUEUE)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            return not_queued(body, "", exc)
        if not queued:  # the job's account did not sign it (or names another merchant)
            known = settings.account(account)
            return judged_by_the_job(runtime, body, [known] if known else [], account)
        counted("accepted", account)
        return ACCEPTED

    @web.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        """Every error werkzeug or a view raises (400, 404, 405, 413, 415, 429, 500, ...); an
        unhandled exception arrives here as a 500 whose text is never shown."""
        if exc.code is None or exc.code < 400:
            return exc  # a routing redirect, not an error
        too_large = isinstance(exc, RequestEntityTooLarge)
        if request.path == NOTIFY_PATH:  # the gateway reads plain text
            return notify_error(exc)
        if too_large:
            detail = "request body too large"
        elif exc.code == 500:
            detail = "internal error"  # never the exception's text: it may hold a secret
        else:
            detail = exc.description
        return problem(exc.code, detail, headers=exc.get_headers())

    def notify_error(exc: HTTPException) -> Response:
        """What ``/vexora/notify`` answers for an error werkzeug raised: plain text."""
        if isinstance(exc, RequestEntityTooLarge):
            counted("too_large")
        answer = _text(_notify_text(exc), exc.code)
        answer.headers.extend((k, v) for k, v in exc.get_headers() if k.lower() != "content-type")
        return answer

    @web.post(NOTIFY_PATH)
    def notify():
        answer = notify_view(request)
        return _text("OK", 200) if answer is ACCEPTED else answer

    def notify_view(request: Request) -> Response:
        if allowed_sources and not _source_allowed(request.remote_addr, allowed_sources):
            counted("refused_source")
            return _text("forbidden", 403)
        raw = read_limited(request, settings.callback_max_bytes)
        try:
            body = parse_json_keeping_numbers(raw)
        except (ValueError, RecursionError):
            counted("invalid")
            return _text("malformed callback: body is not JSON", 400)
        if not isinstance(body, dict):
            counted("invalid")
            return _text("malformed callback: body is not a JSON object", 400)
        runtime = rt()
        messages = runtime.task_messages
        trade_no = body.get("tradeNo")
        if messages is not None and isinstance(trade_no, str) and not trade_no_errors(trade_no):
            return queued_in_one_step(runtime, messages, body)
        try:
            candidates, label = signers(runtime, body)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            # the job's account cannot be read: not refused, answered 503 so the gateway resends
            return not_queued(body, "", exc)
        return judged_by_the_job(runtime, body, candidates, label)

    web.register_blueprint(producer_api(settings, rt))
    web.register_blueprint(webhooks_api(bearer_guard(settings, rt), rt))
    web.register_blueprint(ops_pages(settings, rt, settings.flower_url))
    web.register_blueprint(audit_api(bearer_guard(settings, rt, AUDIT_READ), rt))

    @web.get("/metrics")
    def metrics():
        if not settings.metrics:
            return problem(404, "metrics are off (VEXORA_METRICS)")
        if settings.metrics_token:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), settings.metrics_token.encode()):
                return problem(401, "a valid bearer token is required",
                               headers={"WWW-Authenticate": 'Bearer realm="vexora-checkout metrics"'})
        try:
            body = generate_latest(_registry(rt()))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            return problem(503, "redis unavailable")
        return Response(body, status=200, mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                        headers={"Content-Type": CONTENT_TYPE_LATEST})

    @web.get("/healthz")
    def healthz():
        try:
            rt().redis.ping()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            return problem(503, "redis unavailable")
        return _text("ok", 200)

    # A gateway callback skips Flask's request dispatch (its request context, URL matching,
    # response finalizing: a seventh of the web's CPU per callback, BENCHMARKS.md §4): a POST to
    # NOTIFY_PATH goes straight to the same view, its errors answered as the handler above
    # answers them. Every other request, other methods on NOTIFY_PATH too, is Flask's.
    dispatch = web.wsgi_app

    def callbacks_first(environ, start_response):
        if environ.get("PATH_INFO") != NOTIFY_PATH or environ.get("REQUEST_METHOD") != "POST":
            return dispatch(environ, start_response)
        try:
            answer = notify_view(web.request_class(environ))
            if answer is ACCEPTED:  # the answer of nearly every callback, without a Response object
                start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "2")])
                return [b"OK"]
        except HTTPException as exc:
            answer = notify_error(exc)
        except Exception:  # as Flask would: logged with its traceback, answered 500, no detail
            web.logger.exception("Exception on %s [POST]", NOTIFY_PATH)
            answer = _text("internal error", 500)
        return answer(environ, start_response)

    web.wsgi_app = callbacks_first
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        web.wsgi_app = ProxyFix(web.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    return web


def _registry(runtime) -> CollectorRegistry:
    """One registry per runtime: the store's numbers, read at each scrape (no process metrics:
    a scrape answers for the deployment, not for this gunicorn worker)."""
    registry = getattr(runtime, "_metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StoreCollector(runtime.store))
        runtime._metrics_registry = registry
    return registry


def _notify_text(exc: HTTPException) -> str:
    """What ``/vexora/notify`` answers for an error werkzeug raised, as before: plain text."""
    if isinstance(exc, RequestEntityTooLarge):
        return "request body too large"
    if exc.code == 400:
        return exc.description or "bad request"
    if exc.code == 500:
        return "internal error"
    return title_of(exc.code).lower()


def _source_allowed(remote: str | None, networks: list) -> bool:
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    return any(address in network for network in networks)


app = at_import(create_app)  # gunicorn: bad settings stop it with their lines, no traceback
