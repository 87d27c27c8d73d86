"""The producer HTTP API, for applications that speak neither Python nor Celery.

``POST /v1/checkouts`` validates the job at once (422 with field errors; nothing stored), then
does what ``enqueue_checkout`` does: stores it and queues a message carrying only the
``tradeNo``; 202 with the ``tradeNo`` and a status URL. It is idempotent on ``tradeNo``: the same
payload again answers the same job, another payload under a used ``tradeNo`` is 409. When Redis
or the broker is unreachable it answers 503 with the ``tradeNo``: the client retries with it.
``GET /v1/checkouts/<tradeNo>`` answers the job's record, payer data masked, with an ``ETag`` (its
``version``, quoted; strong). The review queue (``worker.flows.review``): ``GET /v1/review`` (jobs,
and orphan reports: money for a tradeNo with no job), ``POST /v1/checkouts/<tradeNo>/query`` (ask
the gateway now), ``POST /v1/checkouts/<tradeNo>/resolve`` (``{state, reason, operator, amount}``,
``amount`` with ``succeeded`` only; ``If-Match`` with the ETag the operator decided on: 428
without it, 412 when the job changed since — nothing changed either way; 409 for a job not in
review, 422 without a reason, an operator or, as succeeded, the amount) and
``POST /v1/review/orphans/<tradeNo>/dismiss`` (``{reason, operator}``). All need
``Authorization: Bearer $VEXORA_API_TOKEN``; with no token configured the API refuses everyone.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable

import redis
from flask import Blueprint, jsonify, request, url_for
from kombu.exceptions import OperationalError

from schemas import generate_trade_no
from worker.client import enqueue_checkout, get_checkout
from worker.config.settings import Settings
from worker.domain.errors import CheckoutError, DuplicateTradeNoError, InvalidError
from worker.flows.review import NoSuchJob, NotInReview, VersionChanged, VersionRequired
from worker.runtime.wiring import Runtime, checkout_schema
from worker.web.bodies import read_limited
from worker.web.openapi import build_openapi
from worker.web.problems import problem

__all__ = ["producer_api", "bearer_guard", "etag", "if_match_versions"]

_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


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


def bearer_guard(settings: Settings) -> Callable[[], object]:
    """The check every API view runs first: ``Authorization: Bearer $VEXORA_API_TOKEN``."""
    token = settings.api_token.encode("utf-8")

    def authenticate():
        given = request.headers.get("Authorization", "")
        scheme, _, credential = given.partition(" ")
        if not token or scheme.lower() != "bearer" or not hmac.compare_digest(credential.encode("utf-8"), token):
            response = _problem(401, "a valid bearer token is required"
                                if token else "the producer API is disabled: VEXORA_API_TOKEN is not set")
            response.headers["WWW-Authenticate"] = 'Bearer realm="vexora-checkout"'
            return response
        return None
    return authenticate


def producer_api(settings: Settings, runtime: Callable[[], Runtime]) -> Blueprint:
    api = Blueprint("producer_api", __name__)
    schema = checkout_schema(settings)
    document = build_openapi(schema)

    guard = bearer_guard(settings)

    @api.before_request
    def authenticate():
        if request.endpoint == "producer_api.openapi":
            return None
        return guard()

    @api.post("/v1/checkouts")
    def create_checkout():
        if not request.is_json:
            return _problem(400, "the body must be a JSON object (Content-Type: application/json)")
        try:
            body = json.loads(read_limited(request, settings.callback_max_bytes))
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            return _problem(400, "the body must be a JSON object")
        job = dict(body)
        if job.get("tradeNo") is None:
            job["tradeNo"] = generate_trade_no()
        errors = schema.field_errors(job)
        if errors:
            return _problem(422, "invalid checkout", errors=errors)
        try:
            trade_no = enqueue_checkout(job, runtime=runtime())
            record = get_checkout(trade_no, runtime=runtime())
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

    @api.get("/v1/checkouts/<trade_no>")
    def show_checkout(trade_no: str):
        try:
            record = get_checkout(trade_no, runtime=runtime())
        except _REDIS_DOWN:
            return _problem(503, "temporarily unavailable")
        if record is None:
            return _problem(404, "no such checkout")
        response = jsonify(record)
        response.headers["ETag"] = etag(record.get("version"))
        return response

    @api.get("/v1/review")
    def review_queue():
        try:
            items = runtime().review.items()
            orphans = runtime().review.orphans()
        except _REDIS_DOWN:
            return _problem(503, "temporarily unavailable")
        return jsonify({"count": len(items), "items": items, "orphans": orphans})

    @api.post("/v1/checkouts/<trade_no>/query")
    def query_now(trade_no: str):
        try:
            answer = runtime().review.query(trade_no)
        except NoSuchJob:
            return _problem(404, "no such checkout")
        except CheckoutError as exc:
            return _problem(502, f"the gateway did not answer usefully: {exc.message}")
        except _REDIS_DOWN:
            return _problem(503, "temporarily unavailable")
        return jsonify(answer)

    @api.post("/v1/checkouts/<trade_no>/resolve")
    def resolve(trade_no: str):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _problem(400, "the body must be a JSON object: {state, reason, operator, amount}")
        versions = if_match_versions(request.headers.get("If-Match"))
        if versions is None:
            return _problem(428, "If-Match is required: GET the checkout and send its ETag, so that the "
                                 "resolve applies only to the record you decided on")
        try:
            record = runtime().review.resolve(trade_no, body.get("state"), body.get("reason"),
                                              body.get("operator"), version=versions, amount=body.get("amount"))
        except InvalidError as exc:
            return _problem(422, exc.message, errors=exc.errors)
        except NoSuchJob:
            return _problem(404, "no such checkout")
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
        response = jsonify(record)
        response.headers["ETag"] = etag(record.get("version"))
        return response

    @api.post("/v1/review/orphans/<trade_no>/dismiss")
    def dismiss(trade_no: str):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _problem(400, "the body must be a JSON object: {reason, operator}")
        try:
            entry = runtime().review.dismiss(trade_no, body.get("reason"), body.get("operator"))
        except InvalidError as exc:
            return _problem(422, exc.message, errors=exc.errors)
        except NoSuchJob:
            return _problem(404, "no orphan report for this tradeNo")
        except NotInReview as exc:
            return _problem(409, str(exc))
        except _REDIS_DOWN:
            return _problem(503, "temporarily unavailable")
        return jsonify({"tradeNo": trade_no, "dismissedBy": entry.get("dismissedBy"),
                        "dismissedReason": entry.get("dismissedReason")})

    @api.get("/v1/openapi.json")
    def openapi():
        return jsonify(document)

    return api
