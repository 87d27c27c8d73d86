"""The operations page (``/ops``): server-rendered HTML for the people who work the review queue.

It owns the pages and forms only; every decision is ``worker.flows.review``'s (``ReviewQueue.items``,
``query``, ``resolve``) and every read is the store's public, masked record — payloads are never
loaded, so no payer data can reach a page.

    GET  /ops/login, POST /ops/login          sign in as an operator (name and password)
    POST /ops/logout                          end the session
    GET  /ops                                 open-state counts and the review queue
    GET  /ops/jobs/<tradeNo>                  one job: its record and full history
    GET  /ops/jobs/<tradeNo>/resolve          the resolve form (state, amount, reason)
    POST /ops/jobs/<tradeNo>/resolve/confirm  "Resolve T… as failed?": Confirm / Cancel
    POST /ops/jobs/<tradeNo>/resolve          resolve, then 303 to /ops
    POST /ops/jobs/<tradeNo>/query            ask the gateway now; what it said and what changed
    POST /ops/orphans/<tradeNo>/dismiss       dismiss money reported for a tradeNo with no job
    GET  /ops/audit                           the audit log, newest first, paged (admins)

The resolve form and its confirmation carry the record's ``version`` they showed (a hidden field):
when the job changed since — a late callback, another flag — the confirmation and the resolve are
refused (409, "Changed since you looked") and nothing is changed; the operator opens it again.

Who is asking (docs/design.md §Access), first that applies:

- an SSO proxy's header (``VEXORA_OPS_AUTH_HEADER``) naming an operator, believed only when the
  direct peer — the TCP connection's address, before ``ProxyFix`` reads any ``X-Forwarded-For`` —
  is in ``VEXORA_OPS_AUTH_PROXIES``; from anywhere else the header is ignored;
- a session: ``POST /ops/login`` checks the name and password (``worker.store.operators``: scrypt,
  once per login) and sets the cookie ``vexora_ops`` (a random id; ``HttpOnly``,
  ``SameSite=Strict``, ``Secure`` over https), which lasts ``VEXORA_OPS_SESSION_SECONDS``; each
  page reads the session and the operator's record (a disabled operator is out at once);
- deprecated: while ``VEXORA_API_TOKEN`` is set and no operator has been added, HTTP basic auth
  with the token as password still works (any user name, recorded as ``token:default``, role
  ``operator`` on the ``default`` account), with a warning in the log. Adding the first operator
  ends it.

Failed logins (form, SSO name unknown or disabled, wrong basic password) are counted per name and
per address (``LoginLimits``); at the limit the answer is 429 with ``Retry-After`` and no password
is checked. Every failure is audited (``login.failed``, the name tried), every form login too
(``login``), and every action: ``review.resolve`` (before and after), ``review.query``,
``review.dismiss``, with the request's address.

Roles: viewers read; operators also query, resolve and dismiss; admins also read the audit page.
A forbidden action is a 403 page and nothing is done. An operator of one account sees only its
jobs (another's is 404, as a job that does not exist) and its review items.

Every POST carries a hidden token, an HMAC of the session (or the SSO name, or the basic user
name): a page from elsewhere cannot forge a form (403 without it). Pages are Jinja2 templates
(``worker/web/templates/ops/``) with autoescaping, no scripts, and a Content-Security-Policy
that allows none; every answer is ``no-store``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit

import redis
from flask import Blueprint, g, redirect, render_template, request, url_for

from marshmallow import ValidationError

from schemas import CheckoutRecordSchema, trade_no_errors
from schemas.api import OPERATOR_MAX, ResolveRequestSchema
from schemas.record import EpochMillis
from worker.config.settings import Settings
from worker.domain import states
from worker.domain.access import (ALL_ACCOUNTS, AUDIT_READ, CHECKOUTS_READ, DEFAULT_ACCOUNT, REVIEW_WRITE,
                                  Principal, role_scopes)
from worker.domain.errors import CheckoutError, ConfigurationError, InvalidError
from worker.flows.review import REASON_MAX, NoSuchJob, NotInReview, VersionChanged, VersionRequired
from worker.logs import event
from worker.runtime.wiring import Runtime
from worker.store.audit import is_entry_id
from worker.store.operators import LoginLimits, Operators, Sessions, normalized_name

__all__ = ["ops_pages", "COOKIE", "direct_peer"]

log = logging.getLogger("vexora.web.ops")

REALM = "vexora-checkout ops"
COOKIE = "vexora_ops"
CHOICES = (states.SUCCEEDED, states.FAILED)
AUDIT_PAGE = 50
# What "Query gateway now" reports as changed, in this order.
_WATCHED = ("state", "paidAmount", "needsReview", "reviewReason", "gatewayStatus", "gatewayCode", "message")
# What the audit log keeps of a record before and after an action.
_AUDITED = ("state", "version", "needsReview", "reviewReason", "amount", "paidAmount", "resolvedBy",
            "resolvedReason", "resolvedAmount", "account")
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
# What each page needs; anything not listed needs checkouts:read.
_NEEDS = {
    "ops_pages.resolve_start": REVIEW_WRITE, "ops_pages.resolve_confirm": REVIEW_WRITE,
    "ops_pages.resolve": REVIEW_WRITE, "ops_pages.query": REVIEW_WRITE, "ops_pages.dismiss": REVIEW_WRITE,
    "ops_pages.audit": AUDIT_READ,
}
_OPEN = frozenset({"ops_pages.login_form", "ops_pages.login"})
# the deprecated shared-token login: every scope of the role operator on the default account
_TOKEN_PRINCIPAL = Principal("token", "default", DEFAULT_ACCOUNT, role_scopes("operator"), "operator")


def direct_peer(environ) -> str:
    """The address of the TCP peer, as the server saw it, before ``ProxyFix`` replaced it with one
    from ``X-Forwarded-For``."""
    original = environ.get("werkzeug.proxy_fix.orig") or {}
    return original.get("REMOTE_ADDR") or environ.get("REMOTE_ADDR") or ""


def ops_pages(settings: Settings, runtime: Callable[[], Runtime], flower_url: str = "") -> Blueprint:
    """The ``/ops`` blueprint; ``flower_url`` (empty: no link) is where Flower's UI is served."""
    pages = Blueprint("ops_pages", __name__, url_prefix="/ops", template_folder="templates")
    token = settings.api_token.encode("utf-8")
    flower = flower_url.rstrip("/")
    sso_header = settings.ops_auth_header
    if sso_header and not settings.ops_auth_proxies:
        raise ConfigurationError("VEXORA_OPS_AUTH_PROXIES: must list the SSO proxy's addresses (CIDRs) when "
                                 "VEXORA_OPS_AUTH_HEADER is set: the header is believed only from them")
    sso_proxies = [ipaddress.ip_network(cidr, strict=False) for cidr in settings.ops_auth_proxies]
    secret_cache: dict[int, bytes] = {}
    warned = []

    def operators() -> Operators:
        rt = runtime()
        return Operators(rt.redis, rt.store.keys)

    def sessions() -> Sessions:
        rt = runtime()
        return Sessions(rt.redis, rt.store.keys, ttl_seconds=settings.ops_session_seconds)

    def limits() -> LoginLimits:
        rt = runtime()
        return LoginLimits(rt.redis, rt.store.keys, per_name=settings.ops_login_failures,
                           per_address=settings.ops_login_address_failures, window=settings.ops_login_window)

    def secret() -> bytes:
        """The deployment's key for form tokens (made once, shared by every web process)."""
        rt = runtime()
        cached = secret_cache.get(id(rt))
        if cached is None:
            key = rt.store.keys.ops_secret
            rt.redis.set(key, secrets.token_hex(32), nx=True)
            value = rt.redis.get(key)
            cached = secret_cache[id(rt)] = value.encode() if isinstance(value, str) else value
        return cached

    def form_token(key: bytes, what: str) -> str:
        return hmac.new(key, b"ops-csrf:" + what.encode("utf-8"), hashlib.sha256).hexdigest()

    def address() -> str:
        return request.remote_addr or ""

    def audit(principal: Principal | None, action: str, **kwargs) -> None:
        runtime().audit.record(principal, action, address=address(), **kwargs)

    def page(template: str, status: int = 200, **context):
        context.setdefault("title", "Operations")
        principal = g.get("principal")
        body = render_template(f"ops/{template}", user=principal.label if principal else "",
                               principal=principal, csrf=g.get("ops_csrf", ""), session=g.get("ops_session", False),
                               can_write=bool(principal and principal.can(REVIEW_WRITE)),
                               can_audit=bool(principal and principal.can(AUDIT_READ)),
                               age=_age, when=_when, shown=_shown, times=_TIMES, **context)
        return body, status

    def refused(status: int, title: str, message: str, **headers):
        body, _ = page("message.html", title=title, message=message)
        return body, status, headers

    def too_many(wait: int):
        return refused(429, "Too many failed logins",
                       f"Too many failed logins for this name or from this address: try again in {wait} s.",
                       **{"Retry-After": str(wait)})

    def legacy() -> bool:
        """The deprecated shared-token login is on: a token, and no operator yet."""
        return bool(token) and not operators().exist()

    def sign_in_page(status: int = 401, problem: str = "", name: str = ""):
        headers = {"WWW-Authenticate": f'Basic realm="{REALM}"'} if status == 401 and legacy() else {}
        body, _ = page("login.html", title="Sign in", problem=problem, name=name,
                       legacy=bool(headers), sso=bool(sso_header))
        return body, status, headers

    def from_sso():
        """The principal an SSO proxy names, None when the request does not come from one, or
        the refusal for a name that is not an operator here."""
        if not sso_header or request.headers.get(sso_header) is None:
            return None, None
        try:
            peer = ipaddress.ip_address(direct_peer(request.environ))
        except ValueError:
            return None, None
        if not any(peer in network for network in sso_proxies):
            return None, None  # a client's own header: ignored
        name = normalized_name(request.headers.get(sso_header))
        # counted per name only: the proxy vouches for the person, and without ProxyFix every
        # request's address is the proxy's, which one person's retries must not lock out
        wait = limits().retry_after(name, None)
        if wait:
            return None, too_many(wait)
        record = operators().get(name) if name else None
        if record is None or record.get("disabled"):
            limits().failed(name, None)
            audit(None, "login.failed", target=name[:64], detail={"via": "sso"})
            return None, refused(403, "Not an operator", "Your sign-in does not name an operator of this "
                                                          "page, or the operator is disabled.")
        return Operators.principal(record), None

    def from_session():
        sid = request.cookies.get(COOKIE, "")
        name = sessions().name(sid) if sid else None
        record = operators().get(name) if name else None
        if record is None or record.get("disabled"):
            return None, ""
        return Operators.principal(record), sid

    def from_token():
        """The deprecated basic-auth login with the API token; (principal, refusal)."""
        auth = request.authorization
        if auth is None or auth.type != "basic" or not legacy():
            return None, None
        user = (auth.username or "")[:64]
        # counted per address only: the user name is anybody's to claim here, the token is the secret
        wait = limits().retry_after(None, address())
        if wait:
            return None, too_many(wait)
        if not hmac.compare_digest((auth.password or "").encode("utf-8"), token):
            limits().failed(None, address())
            audit(None, "login.failed", target=user, detail={"via": "token"})
            return None, None
        if not warned:
            warned.append(True)
            event(log, logging.WARNING, "deprecated_ops_login",
                  reason="/ops signed in with VEXORA_API_TOKEN: add operators (vexora-checkout operators add)")
        return _TOKEN_PRINCIPAL, None

    @pages.before_request
    def authenticate():
        if request.endpoint in _OPEN:
            return None
        if not token and not operators().exist() and not sso_header:
            return refused(403, "Disabled", "The operations page is disabled: no operator has been added "
                                            "(vexora-checkout operators add) and VEXORA_API_TOKEN is not set.")
        principal, problem = from_sso()
        if problem:
            return problem
        if principal is not None:
            g.ops_csrf = form_token(secret(), "sso:" + principal.name)
        if principal is None:
            principal, sid = from_session()
            if principal is not None:
                g.ops_csrf = form_token(secret(), "session:" + sid)
                g.ops_session = True
        if principal is None:
            principal, problem = from_token()
            if problem:
                return problem
            if principal is not None:
                g.ops_csrf = form_token(token, request.authorization.username or "")
        if principal is None:
            return sign_in_page()
        g.principal = principal
        if request.method == "POST" and not hmac.compare_digest(
                request.form.get("csrf", "").encode("utf-8"), g.ops_csrf.encode("utf-8")):
            return refused(403, "Refused", "This form's security token is missing or wrong. "
                                           "Open the page again and resubmit.")
        needed = _NEEDS.get(request.endpoint or "", CHECKOUTS_READ)
        if not principal.can(needed):
            return refused(403, "Not allowed", f"Your role ({principal.role or principal.kind}) may not do this "
                                               f"(it needs {needed}): nothing was done.")
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

    @pages.get("/login")
    def login_form():
        return sign_in_page(200)

    @pages.post("/login")
    def login():
        origin = request.headers.get("Origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.host:
            return refused(403, "Refused", "A login from another site's page is refused.")
        name = normalized_name(request.form.get("name", ""))[:64]
        password = request.form.get("password", "")
        wait = limits().retry_after(name, address())
        if wait:
            return too_many(wait)
        record = operators().verify(name, password) if name and password else None
        if record is None:
            limits().failed(name, address())
            audit(None, "login.failed", target=name, detail={"via": "password"})
            return sign_in_page(401, "Wrong name or password, or the operator is disabled.", name)
        limits().succeeded(name)
        operators().logged_in(name)
        principal = Operators.principal(record)
        audit(principal, "login", target=name, account=principal.account, detail={"via": "password"})
        response = redirect(url_for("ops_pages.index"), 303)
        response.set_cookie(COOKIE, sessions().create(name), max_age=settings.ops_session_seconds,
                            path="/ops", secure=request.is_secure, httponly=True, samesite="Strict")
        return response

    @pages.post("/logout")
    def logout():
        sessions().end(request.cookies.get(COOKIE, ""))
        response = redirect(url_for("ops_pages.login_form"), 303)
        response.delete_cookie(COOKIE, path="/ops", secure=request.is_secure, httponly=True, samesite="Strict")
        return response

    def principal() -> Principal:
        return g.principal

    def not_found(trade_no: str):
        return refused(404, "Not found", f"No job has the tradeNo {trade_no[:64]!r}.")

    def valid(trade_no: str) -> bool:
        return not trade_no_errors(trade_no)

    def visible(trade_no: str) -> dict | None:
        """The job's record when it exists for this principal (another account's does not)."""
        record = runtime().store.get(trade_no) if valid(trade_no) else None
        if record is None or not principal().sees(record.get("account")):
            return None
        return record

    def in_review(trade_no: str):
        """The job's record if it waits for a person, else the page that says why not."""
        record = visible(trade_no)
        if record is None:
            return None, not_found(trade_no)
        if not record.get("needsReview"):
            return None, refused(409, "Not in review",
                                 f"{trade_no} is not waiting for a person (it is {record.get('state')}).")
        return record, None

    def limited() -> dict:
        """The review queue's filter for this principal (``ReviewQueue.items(account=…)``)."""
        account = principal().account
        return {} if account == ALL_ACCOUNTS else {"account": account}

    def queue(method: Callable[..., list]) -> list[dict]:
        """``items``/``orphans`` of the review queue that exist for this principal."""
        return [item for item in method(**limited()) if principal().sees(item.get("account"))]

    def resolve_form(trade_no: str, record: dict, fields: dict, errors: dict, status: int = 200):
        return page("resolve.html", status, title=f"Resolve {trade_no}", trade_no=trade_no, record=record,
                    fields=fields, errors=errors, choices=CHOICES, reason_max=REASON_MAX,
                    operator_max=OPERATOR_MAX)

    def submitted() -> dict:
        """The form's fields; who decides is the signed-in principal, whatever the form says."""
        fields = {name: request.form.get(name, "") for name in ("state", "amount", "reason", "version")}
        fields["operator"] = principal().label
        return fields

    def changed(trade_no: str, record: dict | None):
        now = f" It is now {record.get('state')}." if record else ""
        return refused(409, "Changed since you looked",
                       f"{trade_no} changed since this form showed it (a gateway report, another flag or "
                       f"another person): nothing was changed.{now} Open it again and decide on what it "
                       "says now.")

    @pages.get("")
    def index():
        rt = runtime()
        items = queue(rt.review.items)
        orphans = queue(rt.review.orphans)
        store = rt.store
        counts, review = store.counts()
        resolved = None
        done = request.args.get("resolved", "")
        if done and valid(done):
            record = visible(done)  # the message says what the store holds, not what the URL claims
            if record and record.get("resolvedBy") and not record.get("needsReview"):
                resolved = record
        return page("index.html", title="Review queue", items=items, counts=list(counts.items()),
                    review=review, resolved=resolved, orphans=orphans)

    @pages.get("/jobs/<trade_no>")
    def job(trade_no: str):
        record = visible(trade_no)
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
        return resolve_form(trade_no, record, {"state": "", "amount": "", "reason": "", "operator": principal().label,
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
        before = visible(trade_no)
        if before is None:
            return not_found(trade_no)
        fields = submitted()
        try:
            record = runtime().review.resolve(trade_no, fields["state"], fields["reason"],
                                              operator=principal().label, version=fields["version"] or None,
                                              amount=fields["amount"] or None)
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
        audit(principal(), "review.resolve", target=trade_no, account=before.get("account") or DEFAULT_ACCOUNT,
              before=_audited(before), after=_audited(record),
              detail={"state": fields["state"], "reason": fields["reason"]})
        return redirect(url_for("ops_pages.index", resolved=trade_no), 303)

    @pages.post("/orphans/<trade_no>/dismiss")
    def dismiss(trade_no: str):
        if not valid(trade_no):
            return not_found(trade_no)
        rt = runtime()
        if limited() and trade_no not in {o.get("tradeNo") for o in queue(rt.review.orphans)}:
            return not_found(trade_no)
        reason = request.form.get("reason", "")
        try:
            entry = rt.review.dismiss(trade_no, reason, operator=principal().label)
        except InvalidError:
            return refused(422, "Incomplete", "A dismissal needs a reason.")
        except NoSuchJob:
            return not_found(trade_no)
        except NotInReview as exc:
            return refused(409, "Not in review", str(exc))
        audit(principal(), "review.dismiss", target=trade_no, account=entry.get("account") or "",
              detail={"reason": reason})
        return redirect(url_for("ops_pages.index"), 303)

    @pages.post("/jobs/<trade_no>/query")
    def query(trade_no: str):
        before = visible(trade_no)
        if before is None:
            return not_found(trade_no)
        rt = runtime()
        try:
            answer = rt.review.query(trade_no)
        except NoSuchJob:
            return not_found(trade_no)
        except CheckoutError as exc:
            audit(principal(), "review.query", target=trade_no, account=before.get("account") or DEFAULT_ACCOUNT,
                  before=_audited(before), detail={"error": exc.message})
            return refused(502, "Gateway error", f"The gateway did not answer usefully: {exc.message}")
        after = answer.get("record") or {}
        audit(principal(), "review.query", target=trade_no, account=before.get("account") or DEFAULT_ACCOUNT,
              before=_audited(before), after=_audited(after),
              detail={"gateway": answer.get("gateway"), "result": answer.get("result")})
        changes = [(name, before.get(name), after.get(name)) for name in _WATCHED
                   if before.get(name) != after.get(name)]
        return page("query.html", title=f"Query {trade_no}", trade_no=trade_no, answer=answer,
                    changes=changes, record=after)

    @pages.get("/audit", endpoint="audit")
    def audit_page():
        before_id = request.args.get("before", "")
        if before_id and not is_entry_id(before_id):
            before_id = ""  # not a page of this log: its first page
        account = principal().account
        entries = runtime().audit.read(limit=AUDIT_PAGE, before_id=before_id or None,
                                       account=None if account == ALL_ACCOUNTS else account)
        following = entries[-1]["id"] if len(entries) == AUDIT_PAGE else ""
        return page("audit.html", title="Audit log", entries=entries, following=following, first=not before_id)

    return pages


def _audited(record: dict | None) -> dict:
    return {name: record[name] for name in _AUDITED if record and name in record}


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
