"""The webhooks' HTTP API (bearer keys, like the producer API): endpoints, replay, attempts.

``GET/POST /v1/webhooks/endpoints`` (list; add ``{url, types?, secret?}`` — the answer shows the
secret once), ``POST /v1/webhooks/endpoints/<id>/disable|enable|rotate``,
``POST /v1/webhooks/replay`` ``{since, until?, endpoint?, all?}`` (ISO-8601 times or unix
seconds), ``GET /v1/checkouts/<tradeNo>/webhooks`` (every attempt for the job's events).

Scopes: ``webhooks:admin`` for the endpoints and replay, ``checkouts:read`` for a job's attempts.
A key sees and changes only its account's endpoints (another account's: 404) and replays only
its account's events; a key for every account (``*``) names the new endpoint's ``account`` in the
body. Every change is appended to the audit log (never a secret).
"""

from __future__ import annotations

from collections.abc import Callable
import math
from datetime import datetime, timezone

import redis
from flask import Blueprint, jsonify, request

from worker.domain import access
from worker.domain.access import ALL_ACCOUNTS
from worker.domain.errors import InvalidError
from worker.runtime.wiring import Runtime
from worker.web.api import NO_SUCH_CHECKOUT, api_principal, audit, known_accounts, require, visible_job
from worker.web.problems import problem as _problem_document
from worker.webhooks.endpoints import Endpoints, account_of

__all__ = ["webhooks_api", "parse_time_ms", "TIME_MIN_MS", "TIME_MAX_MS"]

_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


# the times a window may name: from the epoch to the last second datetime can write (9999-12-31T23:59:59Z)
TIME_MIN_MS = 0
TIME_MAX_MS = 253_402_300_799_999
_TIME_RULE = "a time is unix seconds or ISO-8601, from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z"


def parse_time_ms(value: object) -> int:
    """Unix seconds or an ISO-8601 time (``Z`` or an offset; naive means UTC) as epoch ms, within
    ``TIME_MIN_MS``..``TIME_MAX_MS``; ``ValueError`` for anything else (never a number the stream
    ids cannot hold: a negative, an overflowing or a non-finite one)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _bounded(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            pass
        else:
            return _bounded(seconds)
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(_TIME_RULE) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return _bounded(when.timestamp())
    raise ValueError(_TIME_RULE)


def _bounded(seconds: float) -> int:
    try:
        ms = float(seconds) * 1000
    except OverflowError:  # an integer too large for a float
        raise ValueError(_TIME_RULE) from None
    if not (math.isfinite(ms) and TIME_MIN_MS <= ms <= TIME_MAX_MS):
        raise ValueError(_TIME_RULE)
    return int(ms)


def webhooks_api(authenticate: Callable[[], object], runtime: Callable[[], Runtime]) -> Blueprint:
    api = Blueprint("webhooks_api", __name__)
    api.before_request(authenticate)

    def problem(status: int, error: str, **extra):
        return _problem_document(status, error, **extra)  # RFC 9457, ``errors`` at the top level

    @api.before_request
    def scoped():
        # every route here manages webhooks, but a job's attempts, which a reader of the job may see
        return require(access.CHECKOUTS_READ if request.endpoint == "webhooks_api.attempts"
                       else access.WEBHOOKS_ADMIN)

    def mine() -> str | None:
        """The account whose endpoints this key manages (None: every account's)."""
        account = api_principal().account
        return None if account == ALL_ACCOUNTS else account

    def shown(record: dict) -> dict:
        """An endpoint as the audit log keeps it: never a secret, not even its tail."""
        return {k: v for k, v in Endpoints.public(record).items() if k != "secrets"}

    @api.errorhandler(redis.exceptions.ConnectionError)
    @api.errorhandler(redis.exceptions.TimeoutError)
    def redis_down(_exc):
        return problem(503, "temporarily unavailable")

    @api.get("/v1/webhooks/endpoints")
    def list_endpoints():
        return jsonify([Endpoints.public(e) for e in runtime().webhook_endpoints.all(mine())])

    @api.post("/v1/webhooks/endpoints")
    def add_endpoint():
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return problem(400, "the body must be a JSON object: {url, types?, secret?, account?}")
        account = mine()
        if account is None:  # a key for every account names the endpoint's account
            account = body.get("account")
            if account not in known_accounts(runtime().settings):
                return problem(422, "the endpoint is not valid",
                               errors={"account": ["a key for every account names a known account"]})
        elif body.get("account") not in (None, account):
            return problem(422, "the endpoint is not valid", errors={"account": ["not this key's account"]})
        if not isinstance(body.get("types") or [], list):
            return problem(422, "the endpoint is not valid", errors={"types": ["a list of event types"]})
        try:
            record = runtime().webhook_endpoints.add(body.get("url"), types=body.get("types") or (),
                                                     secret=body.get("secret"), account=account)
        except InvalidError as exc:
            return problem(422, exc.message, errors=exc.errors)
        audit(runtime(), "endpoint.add", target=record["id"], account=account, after=shown(record))
        return jsonify({**Endpoints.public(record), "secret": record["secrets"][0]["secret"]}), 201

    @api.post("/v1/webhooks/endpoints/<endpoint_id>/<action>")
    def change_endpoint(endpoint_id: str, action: str):
        endpoints = runtime().webhook_endpoints
        before = endpoints.get(endpoint_id)
        if before is None or not api_principal().sees(account_of(before)):
            return problem(404, "no such endpoint")  # another account's: it does not exist for this key
        try:
            if action == "disable":
                record = endpoints.set_enabled(endpoint_id, False, "disabled by the operator")
            elif action == "enable":
                record = endpoints.set_enabled(endpoint_id, True)
            elif action == "rotate":
                body = request.get_json(silent=True)
                if body is None:
                    body = {}
                if not isinstance(body, dict):
                    return problem(400, "the body must be a JSON object: {secret?}")
                record = endpoints.rotate(endpoint_id, body.get("secret"))
            else:
                return problem(404, "no such action: disable, enable or rotate")
        except KeyError:
            return problem(404, "no such endpoint")
        except InvalidError as exc:
            return problem(422, exc.message, errors=exc.errors)
        audit(runtime(), f"endpoint.{action}", target=endpoint_id, account=account_of(record),
              before=shown(before), after=shown(record))
        if action == "rotate":
            return jsonify({**Endpoints.public(record), "secret": record["secrets"][0]["secret"]})
        return jsonify(Endpoints.public(record))

    @api.post("/v1/webhooks/replay")
    def replay():
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or "since" not in body:
            return problem(400, "the body must be a JSON object: {since, until?, endpoint?, all?}")
        try:
            since = parse_time_ms(body["since"])
            until = parse_time_ms(body["until"]) if body.get("until") is not None else None
        except ValueError as exc:
            return problem(422, "invalid time", errors={"since/until": [str(exc)]})
        if not isinstance(body.get("endpoint"), (str, type(None))):
            return problem(422, "invalid endpoint", errors={"endpoint": ["an endpoint's id"]})
        try:
            count = runtime().webhook_dispatcher.replay(since, until, endpoint_id=body.get("endpoint"),
                                                        include_delivered=bool(body.get("all")),
                                                        account=mine())
        except KeyError:
            return problem(404, "no such enabled endpoint")
        audit(runtime(), "webhooks.replay", target=body.get("endpoint") or "", account=mine() or ALL_ACCOUNTS,
              detail={"since": since, "until": until, "endpoint": body.get("endpoint"),
                      "all": bool(body.get("all")), "scheduled": count})
        return jsonify({"scheduled": count})

    @api.get("/v1/checkouts/<trade_no>/webhooks")
    def attempts(trade_no: str):
        if visible_job(runtime(), trade_no) is None:
            return problem(404, NO_SUCH_CHECKOUT)  # as GET /v1/checkouts/<tradeNo> answers
        return jsonify({"tradeNo": trade_no, "attempts": runtime().webhook_dispatcher.attempts(trade_no)})

    return api
