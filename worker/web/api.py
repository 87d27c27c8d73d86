"""The producer HTTP API, for applications that speak neither Python nor Celery.

``POST /v1/checkouts`` validates the job at once (422 with field errors; nothing stored), then
does what ``enqueue_checkout`` does: stores it, on the key's account, and queues a message carrying
only the ``tradeNo``; 202 with the ``tradeNo`` and a status URL. It is idempotent on ``tradeNo``:
the same payload again answers the same job, another payload (or another account) under a used
``tradeNo`` is 409. When Redis or the broker is unreachable it answers 503 with the ``tradeNo``:
the client retries with it. ``GET /v1/checkouts/<tradeNo>`` answers the job's record, payer data
masked, with an ``ETag`` (its ``version``, quoted; strong). The review queue
(``worker.flows.review``): ``GET /v1/review`` (jobs, and orphan reports: money for a tradeNo with
no job), ``POST /v1/checkouts/<tradeNo>/query`` (ask the gateway now),
``POST /v1/checkouts/<tradeNo>/resolve`` (``{state, reason, amount}``, ``amount`` with
``succeeded`` only; ``If-Match`` with the ETag the operator decided on: 428 without it, 412 when
the job changed since — nothing changed either way; 409 for a job not in review, 422 without a
reason or, as succeeded, the amount) and ``POST /v1/review/orphans/<tradeNo>/dismiss``
(``{reason}``). Who resolved or dismissed is the key (``key:<id>``): an ``operator`` field in the
body is ignored.

Access (docs/design.md §Access): every route but ``GET /v1/openapi.json`` needs
``Authorization: Bearer <key>`` — an API key (``worker.store.apikeys``) or the deprecated
``VEXORA_API_TOKEN`` (every scope on ``default``; one deprecation line a process). No key, an
unknown or revoked one: 401. A key without the route's scope: 403 naming it. A job of another
account: 404, the same answer as a job that does not exist. ``bearer_guard`` authenticates and
puts the ``Principal`` in ``flask.g.principal`` (``api_principal()``); ``require(scope)``
checks a scope. A key for every account (``*``) names the account of a new checkout in the
``Vexora-Account`` header. Every change and every gateway query is appended to the audit log
with the principal, the request's address and the record before and after.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable

import redis
from flask import Blueprint, g, jsonify, request, url_for
from kombu.exceptions import OperationalError
from werkzeug.exceptions import RequestEntityTooLarge

from schemas import generate_trade_no
from worker.client import enqueue_checkout, enqueue_checkouts
from worker.config.settings import Settings
from worker.domain import access
from worker.domain.access import ALL_ACCOUNTS, DEFAULT_ACCOUNT, Principal
from worker.domain.errors import CheckoutError, DuplicateTradeNoError, InvalidError
from worker.flows.review import NoSuchJob, NotInReview, VersionChanged, VersionRequired
from worker.logs import event
from worker.runtime.wiring import Runtime, checkout_schema, get_runtime
from worker.store.apikeys import ApiKeys, parse_key, principal_of
from worker.web.bodies import read_limited
from worker.web.openapi import BATCH_MAX_BYTES, BATCH_MAX_ITEMS, build_openapi
from worker.web.problems import problem

__all__ = ["producer_api", "bearer_guard", "api_principal", "require", "audit", "visible_job",
           "known_accounts", "ACCOUNT_HEADER", "TOKEN_PRINCIPAL", "etag", "if_match_versions", "BATCH_MAX_ITEMS",
           "BATCH_MAX_BYTES"]

log = logging.getLogger("vexora.web")

_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
ACCOUNT_HEADER = "Vexora-Account"  # a key for every account names the account of a new checkout
# the deprecated shared token: a key with every scope on the account ``default``
TOKEN_PRINCIPAL = Principal("token", "VEXORA_API_TOKEN", DEFAULT_ACCOUNT, frozenset(access.SCOPES))
NO_SUCH_CHECKOUT = "no such checkout"

_deprecation = {"said": False}
_deprecation_lock = threading.Lock()


def _problem(status: int, error: str, **extra):
    """An RFC 9457 problem document (``worker.web.problems``); ``extra`` members (``errors``,
    ``tradeNo``) stay at the top level, where clients read them before."""
    return problem(status, error, **extra)


def etag(version: object) -> str:
    """A record's strong ETag: its version, quoted."""
    return f'"{int(version or 0)}"'


def if_match_versions(header: str | None) -> list[str] | None:
    """The versions an ``If-Match`` header names (strong tags only: a weak ``W/"…"`` never matches,
    RFC 9110 §13.1.1); None when there is no header or it is ``*`` (which names no version seen)."""
    if header is None or not header.strip():
        return None
    tags = [tag.strip() for tag in header.split(",") if tag.strip()]
    if "*" in tags:
        return None
    return [tag[1:-1] for tag in tags if len(tag) >= 2 and tag[0] == tag[-1] == '"']


def known_accounts(settings: Settings) -> set[str]:
    """The accounts this deployment serves (``Settings.accounts``; without it, ``default``)."""
    accounts = getattr(settings, "accounts", None)
    return set(accounts) if accounts else {DEFAULT_ACCOUNT}


def api_keys(runtime: Runtime) -> ApiKeys:
    """The key store of this process's runtime (one, so ``lastUsed`` is written once a minute)."""
    store = getattr(runtime, "_api_keys", None)
    if store is None:
        store = runtime._api_keys = ApiKeys(runtime.redis, runtime.store.keys)
    return store


def api_principal() -> Principal | None:
    """Who made this ``/v1`` request (set by ``bearer_guard``), or None before it ran."""
    return g.get("principal")


def _unauthorized(detail: str):
    response = _problem(401, detail)
    response.headers["WWW-Authenticate"] = 'Bearer realm="vexora-checkout"'
    return response


def require(scope: str):
    """None when the request's principal holds ``scope``; else its answer: 401 (nobody
    authenticated) or 403 naming the scope. For views and ``before_request`` after ``bearer_guard``."""
    principal = api_principal()
    if principal is None:
        return _unauthorized("a valid bearer key is required")
    if not principal.can(scope):
        return _problem(403, f"this key lacks the scope {scope}", scope=scope)
    return None


def _say_deprecated() -> None:
    with _deprecation_lock:
        if _deprecation["said"]:
            return
        _deprecation["said"] = True
    event(log, logging.WARNING, "api_token_deprecated",
          detail="VEXORA_API_TOKEN is deprecated: create API keys (vexora-checkout keys create) and "
                 "move clients to them; the token acts with every scope on the account default")


def bearer_guard(settings: Settings, runtime: Callable[[], Runtime] | None = None,
                 scope: str | None = None) -> Callable[[], object]:
    """The check every ``/v1`` view runs first: ``Authorization: Bearer <key>`` (an API key, or
    the deprecated ``VEXORA_API_TOKEN``) -> ``flask.g.principal``; 401 otherwise. With ``scope``
    it also requires that scope (403 naming it), e.g. ``bearer_guard(settings, rt, AUDIT_READ)``."""
    token = settings.api_token.encode("utf-8")
    runtime = runtime or get_runtime

    def authenticate():
        if api_principal() is None:
            # exactly "Bearer <credential>": one space, nothing around it (a key or token with
            # whitespace added is not the key or token)
            scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
            principal = None
            if scheme.lower() == "bearer" and credential:
                if token and hmac.compare_digest(credential.encode("utf-8"), token):
                    principal = TOKEN_PRINCIPAL
                    _say_deprecated()
                elif parse_key(credential):
                    try:
                        record = api_keys(runtime()).authenticate(credential)
                    except _REDIS_DOWN:
                        return _problem(503, "temporarily unavailable")
                    principal = principal_of(record) if record else None
            if principal is None:
                return _unauthorized("a valid bearer key is required")
            g.principal = principal
        return require(scope) if scope else None
    return authenticate


def visible_job(runtime: Runtime, trade_no: str):
    """The job ``trade_no`` if the request's principal may see it, else None: a job of another
    account does not exist for it (the caller answers exactly as for a missing job)."""
    job = runtime.store.load(trade_no)
    principal = api_principal()
    if job is None or principal is None or not principal.sees(job.fields.get("account") or DEFAULT_ACCOUNT):
        return None
    return job


def audit(runtime: Runtime, action: str, *, target: str = "", account: str = "", before=None,
          after=None, detail=None) -> None:
    """Append this request's action to the audit log: its principal and address (``ProxyFix``'s)."""
    runtime.audit.record(api_principal(), action, target=target, account=account,
                         address=request.remote_addr, before=before, after=after, detail=detail)


def _review_view(record: dict | None) -> dict | None:
    """What the audit log keeps of a job before and after a review action (no payer data)."""
    if record is None:
        return None
    names = ("state", "version", "needsReview", "reviewReason", "paidAmount", "resolvedBy",
             "resolvedReason", "resolvedAmount")
    return {k: record[k] for k in names if k in record}


def producer_api(settings: Settings, runtime: Callable[[], Runtime]) -> Blueprint:
    api = Blueprint("producer_api", __name__)
    schema = checkout_schema(settings)
    document = build_openapi(schema)

    guard = bearer_guard(settings, runtime)

    @api.before_request
    def authenticate():
        if request.endpoint == "producer_api.openapi":
            return None
        return guard()

    def scoped(scope: str):
        """The view runs only for a principal holding ``scope``."""
        def wrap(view):
            def checked(*args, **kwargs):
                return require(scope) or view(*args, **kwargs)
            checked.__name__ = view.__name__
            checked.__doc__ = view.__doc__
            return checked
        return wrap

    def account_for_new_job():
        """(the account a new checkout belongs to, None) or (None, an error answer)."""
        principal = api_principal()
        named = request.headers.get(ACCOUNT_HEADER, "").strip()
        if principal.account != ALL_ACCOUNTS:
            if named and named != principal.account:
                return None, _problem(422, f"this key acts for its own account only; leave out {ACCOUNT_HEADER}",
                                      errors={ACCOUNT_HEADER: ["not this key's account"]})
            return principal.account, None
        if not named:
            return None, _problem(422, f"a key for every account names the checkout's account in the "
                                       f"{ACCOUNT_HEADER} header", errors={ACCOUNT_HEADER: ["required"]})
        if named not in known_accounts(settings):
            return None, _problem(422, "unknown account", errors={ACCOUNT_HEADER: ["unknown account"]})
        return named, None

    @api.post("/v1/checkouts")
    @scoped(access.CHECKOUTS_WRITE)
    def create_checkout():
        if not request.is_json:
            return _problem(400, "the body must be a JSON object (Content-Type: application/json)")
        # a batch may be longer than one checkout; a single checkout keeps its own limit
        raw = read_limited(request, max(BATCH_MAX_BYTES, settings.callback_max_bytes))
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            body = None
        if isinstance(body, list):
            return create_checkouts(body)
        if len(raw) > settings.callback_max_bytes:
            raise RequestEntityTooLarge()
        if not isinstance(body, dict):
            return _problem(400, "the body must be a JSON object, or an array of them")
        account, refused = account_for_new_job()
        if refused is not None:
            return refused
        job = dict(body)
        if job.get("tradeNo") is None:
            job["tradeNo"] = generate_trade_no()
        # the account's own rules (its channel and way codes, its notifyUrl)
        errors = runtime().schemas.get(account, schema).field_errors(job)
        if errors:
            return _problem(422, "invalid checkout", errors=errors)
        try:
            rt = runtime()
            # another account's job under this tradeNo is refused by the store's create, with the
            # answer a different payload gets (409)
            trade_no = enqueue_checkout(job, account=account, runtime=rt)
            record = rt.store.get(trade_no)
        except DuplicateTradeNoError as exc:
            return _problem(409, exc.message, errors=exc.errors)
        except _REDIS_DOWN:
            return _problem(503, "temporarily unavailable; retry with the same tradeNo", tradeNo=job["tradeNo"])
        except OperationalError:
            # stored, but the broker refused the message: the same request again is safe (it
            # re-queues the stored job), and the reconciler re-drives queued jobs anyway
            return _problem(503, "stored but not yet queued; retry with the same tradeNo",
                            tradeNo=job["tradeNo"])
        status_url = url_for("producer_api.show_checkout", trade_no=trade_no, _external=True)
        response = jsonify({"tradeNo": trade_no, "state": record["state"] if record else "queued",
                            "statusUrl": status_url})
        response.headers["Location"] = status_url
        return response, 202

    def create_checkouts(items: list):
        """The batch form: up to ``BATCH_MAX_ITEMS`` checkouts, each validated as the single form
        validates one (nothing stored for an invalid one), the valid ones stored and queued by
        ``enqueue_checkouts``; 200 with one result per item, in order."""
        account, refused = account_for_new_job()
        if refused is not None:
            return refused
        if len(items) > BATCH_MAX_ITEMS:
            return _problem(413, f"at most {BATCH_MAX_ITEMS} checkouts in one request",
                            errors={"_schema": [f"at most {BATCH_MAX_ITEMS} items"]})
        if not items:
            return _problem(422, "an empty batch", errors={"_schema": ["at least 1 item"]})
        rt = runtime()
        rules = rt.schemas.get(account, schema)
        results: list[dict | None] = []
        valid: list[dict] = []
        for item in items:
            if not isinstance(item, dict):
                results.append({"tradeNo": None, "result": "invalid", "errors": {"_schema": ["must be an object"]}})
                continue
            job = dict(item)
            given = job.get("tradeNo")
            if given is None:
                job["tradeNo"] = generate_trade_no()
            errors = rules.field_errors(job)
            if errors:
                results.append({"tradeNo": given if isinstance(given, str) else None, "result": "invalid",
                                "errors": errors})
                continue
            results.append(None)
            valid.append(job)
        try:
            stored = enqueue_checkouts(valid, account=account, runtime=rt) if valid else []
        except _REDIS_DOWN:
            return _problem(503, "temporarily unavailable; retry the same batch (stored checkouts answer "
                                 "duplicate)")
        except OperationalError:
            return _problem(503, "stored but not all queued; retry the same batch (stored checkouts answer "
                                 "duplicate, queued ones are queued again)")
        # every valid tradeNo is [A-Za-z0-9_-]: the status URL is a prefix and the tradeNo, as it is
        prefix = url_for("producer_api.show_checkout", trade_no="x", _external=True)[:-1]
        answers = iter(stored)
        counts = {"created": 0, "duplicate": 0, "conflict": 0, "invalid": 0}
        for i, result in enumerate(results):
            if result is None:
                result = results[i] = next(answers)
                if "state" in result:
                    result["statusUrl"] = prefix + result["tradeNo"]
            counts[result["result"]] += 1
        return jsonify({"results": results, "counts": counts}), 200

    @api.get("/v1/checkouts/<trade_no>")
    @scoped(access.CHECKOUTS_READ)
    def show_checkout(trade_no: str):
        rt = runtime()
        try:
            job = visible_job(rt, trade_no)
            record = None if job is None else job.public(rt.store.history(trade_no))
        except _REDIS_DOWN:
            return _problem(503, "temporarily unavailable")
        if record is None:
            return _problem(404, NO_SUCH_CHECKOUT)
        response = jsonify(record)
        response.headers["ETag"] = etag(record.get("version"))
        return response

    @api.get("/v1/review")
    @scoped(access.CHECKOUTS_READ)
    def review_queue():
        account = api_principal().account
        try:
            items = runtime().review.items(account=account)
            orphans = runtime().review.orphans(account=account)
        except _REDIS_DOWN:
            return _problem(503, "temporarily unavailable")
        return jsonify({"count": len(items), "items": items, "orphans": orphans})

    @api.post("/v1/checkouts/<trade_no>/query")
    @scoped(access.REVIEW_WRITE)
    def query_now(trade_no: str):
        rt = runtime()
        try:
            job = visible_job(rt, trade_no)
            if job is None:
                raise NoSuchJob(trade_no)
            before = _review_view(rt.store.get(trade_no))
            answer = rt.review.query(trade_no)
        except NoSuchJob:
            return _problem(404, NO_SUCH_CHECKOUT)
        except CheckoutError as exc:
            audit(rt, "review.query", target=trade_no, account=job.fields.get("account") or DEFAULT_ACCOUNT,
                  before=before, detail={"gateway": "no useful answer"})
            return _problem(502, f"the gateway did not answer usefully: {exc.message}")
        except _REDIS_DOWN:
            return _problem(503, "temporarily unavailable")
        audit(rt, "review.query", target=trade_no, account=job.fields.get("account") or DEFAULT_ACCOUNT,
              before=before, after=_review_view(answer.get("record")),
              detail={"gateway": answer.get("gateway"), "result": answer.get("result")})
        return jsonify(answer)

    @api.post("/v1/checkouts/<trade_no>/resolve")
    @scoped(access.REVIEW_WRITE)
    def resolve(trade_no: str):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _problem(400, "the body must be a JSON object: {state, reason, amount}")
        rt = runtime()
        try:
            job = visible_job(rt, trade_no)
        except _REDIS_DOWN:
            return _problem(503, "temporarily unavailable")
        if job is None:
            return _problem(404, NO_SUCH_CHECKOUT)
        versions = if_match_versions(request.headers.get("If-Match"))
        if versions is None:
            return _problem(428, "If-Match is required: GET the checkout and send its ETag, so that the "
                                 "resolve applies only to the record you decided on")
        label = api_principal().label  # who resolved: the key, never the body's "operator"
        try:
            before = _review_view(rt.store.get(trade_no))
            record = rt.review.resolve(trade_no, body.get("state"), body.get("reason"), label,
                                       version=versions, amount=body.get("amount"))
        except InvalidError as exc:
            return _problem(422, exc.message, errors=exc.errors)
        except NoSuchJob:
            return _problem(404, NO_SUCH_CHECKOUT)
        except VersionRequired:
            return _problem(428, "If-Match is required: GET the checkout and send its ETag")
        except VersionChanged as exc:
            response = _problem(412, "the checkout changed since you read it; nothing was changed: GET it "
                                     "again and decide on what it says now")
            if exc.current is not None:
                response.headers["ETag"] = etag(exc.current)
            return response
        except NotInReview as exc:
            return _problem(409, str(exc))
        except _REDIS_DOWN:
            return _problem(503, "temporarily unavailable")
        audit(rt, "review.resolve", target=trade_no, account=job.fields.get("account") or DEFAULT_ACCOUNT,
              before=before, after=_review_view(record), detail={"state": body.get("state")})
        response = jsonify(record)
        response.headers["ETag"] = etag(record.get("version"))
        return response

    @api.post("/v1/review/orphans/<trade_no>/dismiss")
    @scoped(access.REVIEW_WRITE)
    def dismiss(trade_no: str):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _problem(400, "the body must be a JSON object: {reason}")
        rt = runtime()
        principal = api_principal()
        try:
            entry = rt.store.orphan(trade_no)
            # an orphan has no job: it belongs to the account its entry records, else to default
            if entry is None or not principal.sees(entry.get("account") or DEFAULT_ACCOUNT):
                raise NoSuchJob(trade_no)
            entry = rt.review.dismiss(trade_no, body.get("reason"), principal.label)
        except InvalidError as exc:
            return _problem(422, exc.message, errors=exc.errors)
        except NoSuchJob:
            return _problem(404, "no orphan report for this tradeNo")
        except NotInReview as exc:
            return _problem(409, str(exc))
        except _REDIS_DOWN:
            return _problem(503, "temporarily unavailable")
        audit(rt, "review.dismiss", target=trade_no, account=entry.get("account") or DEFAULT_ACCOUNT,
              after={"dismissedBy": entry.get("dismissedBy"), "dismissedReason": entry.get("dismissedReason")})
        return jsonify({"tradeNo": trade_no, "dismissedBy": entry.get("dismissedBy"),
                        "dismissedReason": entry.get("dismissedReason")})

    @api.get("/v1/openapi.json")
    def openapi():
        return jsonify(document)

    return api
