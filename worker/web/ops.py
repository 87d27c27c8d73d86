"""The operations page (``/ops``): server-rendered HTML for the people who work the review queue.

It owns the pages and forms only; every decision is ``worker.flows.review``'s (``ReviewQueue.items``,
``query``, ``resolve``) and every read is the store's public, masked record — payloads are never
loaded, so no payer data can reach a page.

    GET  /ops                                 open-state counts and the review queue
    GET  /ops/jobs/<tradeNo>                  one job: its record and full history
    GET  /ops/jobs/<tradeNo>/resolve          the resolve form (state, amount, reason, operator)
    POST /ops/jobs/<tradeNo>/resolve/confirm  "Resolve T… as failed?": Confirm / Cancel
    POST /ops/jobs/<tradeNo>/resolve          resolve, then 303 to /ops
    POST /ops/jobs/<tradeNo>/query            ask the gateway now; what it said and what changed
    POST /ops/orphans/<tradeNo>/dismiss       dismiss money reported for a tradeNo with no job

The resolve form and its confirmation carry the record's ``version`` they showed (a hidden field):
when the job changed since — a late callback, another flag — the confirmation and the resolve are
refused (409, "Changed since you looked") and nothing is changed; the operator opens it again.

Access: HTTP basic auth whose password is the producer API token (``VEXORA_API_TOKEN``, compared
in constant time); the user name is free and is the default operator. With no token configured
the pages are off (403). Every POST carries a hidden token, HMAC-SHA256(api token,
"ops-csrf:" + user name): a page from elsewhere cannot forge a form the browser would send with
the cached credentials (403 without it). Pages are Jinja2 templates (``worker/web/templates/ops/``)
with autoescaping, no scripts, and a Content-Security-Policy that allows none.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime, timezone
from urllib.parse import quote

import redis
from flask import Blueprint, g, redirect, render_template, request, url_for

from marshmallow import ValidationError

from schemas import CheckoutRecordSchema, trade_no_errors
from schemas.api import OPERATOR_MAX, ResolveRequestSchema
from schemas.record import EpochMillis
from worker.config.settings import Settings
from worker.domain import states
from worker.domain.errors import CheckoutError, InvalidError
from worker.flows.review import REASON_MAX, NoSuchJob, NotInReview, VersionChanged, VersionRequired
from worker.runtime.wiring import Runtime

__all__ = ["ops_pages"]

REALM = "vexora-checkout ops"
CHOICES = (states.SUCCEEDED, states.FAILED)
# What "Query gateway now" reports as changed, in this order.
_WATCHED = ("state", "paidAmount", "needsReview", "reviewReason", "gatewayStatus", "gatewayCode", "message")
# Record fields that hold a time (Unix milliseconds), shown as UTC text.
_TIMES = frozenset(name for name, field in CheckoutRecordSchema().fields.items() if isinstance(field, EpochMillis))
_RESOLUTION = ResolveRequestSchema()
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def ops_pages(settings: Settings, runtime: Callable[[], Runtime], flower_url: str = "") -> Blueprint:
    """The ``/ops`` blueprint; ``flower_url`` (empty: no link) is where Flower's UI is served."""
    pages = Blueprint("ops_pages", __name__, url_prefix="/ops", template_folder="templates")
    token = settings.api_token.encode("utf-8")
    flower = flower_url.rstrip("/")

    def csrf_token(user: str) -> str:
        return hmac.new(token, b"ops-csrf:" + user.encode("utf-8"), hashlib.sha256).hexdigest()

    def page(template: str, status: int = 200, **context):
        context.setdefault("title", "Operations")
        body = render_template(f"ops/{template}", user=g.get("ops_user", ""), csrf=g.get("ops_csrf", ""),
                               age=_age, when=_when, shown=_shown, times=_TIMES, **context)
        return body, status

    def refused(status: int, title: str, message: str, **headers):
        body, _ = page("message.html", title=title, message=message)
        return body, status, headers

    @pages.before_request
    def authenticate():
        if not token:
            return refused(403, "Disabled", "The operations page is disabled: VEXORA_API_TOKEN is not set.")
        auth = request.authorization
        password = (auth.password or "") if auth is not None and auth.type == "basic" else ""
        if not password or not hmac.compare_digest(password.encode("utf-8"), token):
            return refused(401, "Sign in", "The operations page needs a user name and the API token as password.",
                           **{"WWW-Authenticate": f'Basic realm="{REALM}"'})
        g.ops_user = auth.username or ""
        g.ops_csrf = csrf_token(g.ops_user)
        if request.method == "POST" and not hmac.compare_digest(
                request.form.get("csrf", "").encode("utf-8"), g.ops_csrf.encode("utf-8")):
            return refused(403, "Refused", "This form's security token is missing or wrong. "
                                           "Open the page again and resubmit.")
        return None

    @pages.after_request
    def harden(response):
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @pages.errorhandler(redis.exceptions.ConnectionError)
    @pages.errorhandler(redis.exceptions.TimeoutError)
    def redis_down(_exc):
        return refused(503, "Unavailable", "Redis is unavailable; try again shortly.")

    def not_found(trade_no: str):
        return refused(404, "Not found", f"No job has the tradeNo {trade_no[:64]!r}.")

    def valid(trade_no: str) -> bool:
        return not trade_no_errors(trade_no)

    def in_review(trade_no: str):
        """The job's record if it waits for a person, else the page that says why not."""
        record = runtime().store.get(trade_no) if valid(trade_no) else None
        if record is None:
            return None, not_found(trade_no)
        if not record.get("needsReview"):
            return None, refused(409, "Not in review",
                                 f"{trade_no} is not waiting for a person (it is {record.get('state')}).")
        return record, None

    def resolve_form(trade_no: str, record: dict, fields: dict, errors: dict, status: int = 200):
        return page("resolve.html", status, title=f"Resolve {trade_no}", trade_no=trade_no, record=record,
                    fields=fields, errors=errors, choices=CHOICES, reason_max=REASON_MAX,
                    operator_max=OPERATOR_MAX)

    def submitted() -> dict:
        return {name: request.form.get(name, "") for name in ("state", "amount", "reason", "operator", "version")}

    def changed(trade_no: str, record: dict | None):
        now = f" It is now {record.get('state')}." if record else ""
        return refused(409, "Changed since you looked",
                       f"{trade_no} changed since this form showed it (a gateway report, another flag or "
                       f"another person): nothing was changed.{now} Open it again and decide on what it "
                       "says now.")

    @pages.get("")
    def index():
        rt = runtime()
        items = rt.review.items()
        orphans = rt.review.orphans()
        store = rt.store
        counts, review = store.counts()
        resolved = None
        done = request.args.get("resolved", "")
        if done and valid(done):
            record = store.get(done)  # the message says what the store holds, not what the URL claims
            if record and record.get("resolvedBy") and not record.get("needsReview"):
                resolved = record
        return page("index.html", title="Review queue", items=items, counts=list(counts.items()),
                    review=review, resolved=resolved, orphans=orphans)

    @pages.get("/jobs/<trade_no>")
    def job(trade_no: str):
        record = runtime().store.get(trade_no) if valid(trade_no) else None
        if record is None:
            return not_found(trade_no)
        history = record.pop("history", [])
        flower_link = f"{flower}/tasks?search={quote(trade_no, safe='')}" if flower else ""
        return page("job.html", title=trade_no, trade_no=trade_no, record=record, history=history,
                    flower_link=flower_link)

    @pages.get("/jobs/<trade_no>/resolve")
    def resolve_start(trade_no: str):
        record, problem = in_review(trade_no)
        if problem:
            return problem
        return resolve_form(trade_no, record, {"state": "", "amount": "", "reason": "", "operator": g.ops_user,
                                               "version": str(record.get("version", 0))}, {})

    @pages.post("/jobs/<trade_no>/resolve/confirm")
    def resolve_confirm(trade_no: str):
        record, problem = in_review(trade_no)
        if problem:
            return problem
        fields = submitted()
        if fields["version"] != str(record.get("version", 0)):
            return changed(trade_no, record)
        errors = _form_errors(fields)
        if errors:
            return resolve_form(trade_no, record, fields, errors, 422)
        return page("confirm.html", title=f"Resolve {trade_no}?", trade_no=trade_no, record=record,
                    fields=fields)

    @pages.post("/jobs/<trade_no>/resolve")
    def resolve(trade_no: str):
        if not valid(trade_no):
            return not_found(trade_no)
        fields = submitted()
        try:
            runtime().review.resolve(trade_no, fields["state"], fields["reason"], fields["operator"],
                                     version=fields["version"] or None, amount=fields["amount"] or None)
        except InvalidError as exc:
            record = runtime().store.get(trade_no) or {}
            return resolve_form(trade_no, record, {**fields, "version": str(record.get("version", 0))},
                                exc.errors, 422)
        except NoSuchJob:
            return not_found(trade_no)
        except VersionRequired:
            return refused(400, "Incomplete form", "This form does not say which version of the job it showed. "
                                                   "Open the resolve form again.")
        except VersionChanged:
            return changed(trade_no, runtime().store.get(trade_no))
        except NotInReview as exc:
            return refused(409, "Not in review", str(exc))
        return redirect(url_for("ops_pages.index", resolved=trade_no), 303)

    @pages.post("/orphans/<trade_no>/dismiss")
    def dismiss(trade_no: str):
        if not valid(trade_no):
            return not_found(trade_no)
        try:
            runtime().review.dismiss(trade_no, request.form.get("reason", ""), request.form.get("operator", ""))
        except InvalidError:
            return refused(422, "Incomplete", "A dismissal needs a reason and an operator.")
        except NoSuchJob:
            return not_found(trade_no)
        except NotInReview as exc:
            return refused(409, "Not in review", str(exc))
        return redirect(url_for("ops_pages.index"), 303)

    @pages.post("/jobs/<trade_no>/query")
    def query(trade_no: str):
        if not valid(trade_no):
            return not_found(trade_no)
        rt = runtime()
        before = rt.store.get(trade_no)
        try:
            answer = rt.review.query(trade_no)
        except NoSuchJob:
            return not_found(trade_no)
        except CheckoutError as exc:
            return refused(502, "Gateway error", f"The gateway did not answer usefully: {exc.message}")
        after = answer.get("record") or {}
        changes = [(name, (before or {}).get(name), after.get(name)) for name in _WATCHED
                   if (before or {}).get(name) != after.get(name)]
        return page("query.html", title=f"Query {trade_no}", trade_no=trade_no, answer=answer,
                    changes=changes, record=after)

    return pages


def _form_errors(fields: dict) -> dict:
    """The resolve form's rules (``ResolveRequestSchema``, what ``resolve`` checks again), before
    the confirmation step."""
    try:
        _RESOLUTION.load({k: v for k, v in fields.items() if not (k == "amount" and v == "")})
    except ValidationError as exc:
        return {k: list(dict.fromkeys(v)) for k, v in exc.messages.items()}
    return {}


def _age(seconds: object) -> str:
    try:
        left = max(0, int(seconds))
    except (TypeError, ValueError):
        return ""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def _shown(value: object) -> str:
    """A record or history value as text (autoescaped by the template like any other)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _when(ms: object) -> str:
    """A store time (Unix milliseconds) as UTC text; anything else as it is."""
    try:
        return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return "" if ms is None else str(ms)
