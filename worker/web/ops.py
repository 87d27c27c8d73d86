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
    GET  /ops/search?q=                       a job by tradeNo or platFormTradeNo, exact or prefix
    GET  /ops/jobs?state=&account=&from=&to=&flagged=&before=   jobs newest first, paged by cursor
    POST /ops/jobs/<tradeNo>/events/<id>/resend  deliver one webhook event again (audited)
    GET  /ops/webhooks                        each endpoint's health
    POST /ops/webhooks/<id>/enable            re-enable an endpoint (admins, audited)
    POST /ops/webhooks/replay                 deliver a window's events again (admins, audited)

Times are shown in ``VEXORA_DISPLAY_TZ`` (Asia/Tokyo), with UTC in each one's ``title``. The day's
totals are per account and JST day (as the gateway counts), kept by the store's scripts with each
move (``p:daily:<day>``). docs/console.md describes the console.

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
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo
from urllib.parse import quote, urlsplit

import redis
from flask import Blueprint, g, redirect, render_template, request, url_for
from markupsafe import Markup, escape

from marshmallow import ValidationError

from schemas import CheckoutRecordSchema, trade_no_errors
from schemas.api import OPERATOR_MAX, ResolveRequestSchema
from schemas.record import EpochMillis
from worker.config.settings import Settings
from worker.domain import states
from worker.domain.access import (ALL_ACCOUNTS, AUDIT_READ, CHECKOUTS_READ, DEFAULT_ACCOUNT, REVIEW_WRITE,
                                  WEBHOOKS_ADMIN, Principal, role_scopes)
from worker.domain.errors import CheckoutError, ConfigurationError, InvalidError
from worker.flows.review import REASON_MAX, NoSuchJob, NotInReview, VersionChanged, VersionRequired
from worker.logs import event
from worker.runtime.wiring import Runtime
from worker.store.audit import is_entry_id
from worker.store.jobs import jst_day
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
    "ops_pages.audit": AUDIT_READ, "ops_pages.resend": REVIEW_WRITE,
    "ops_pages.endpoint_enable": WEBHOOKS_ADMIN, "ops_pages.replay": WEBHOOKS_ADMIN,
}
LIST_PAGE = 50
# What the gateway's codes and statuses mean (docs/gateway.md §Status and error codes).
CODE_MEANINGS = {
    "0000": "request accepted", "5000": "system exception at the gateway (not a failure: confirmed by query)",
    "8000": "request failed (business error), told apart only by the message",
}
STATUS_MEANINGS = {
    "0000": "paid in full", "0001": "partially paid", "0015": "paying (waiting for the payer)",
    "00029": "failed", "0029": "failed",
}
# The job page's groups of fields, in this order; what is left is shown under "other".
GROUPS = (
    ("payment", ("state", "amount", "paidAmount", "account", "paymentLink", "needsReview", "reviewReason")),
    ("payer contact (masked)", ("contact",)),
    ("gateway", ("platFormTradeNo", "gatewayStatus", "gatewayCode", "gatewayPaidAmount", "httpStatus", "message",
                 "errors")),
    ("bookkeeping", ("tradeNo", "createdAt", "updatedAt", "attempts", "reconcileChecks", "nextCheckAt", "version",
                     "resolvedBy", "resolvedReason", "resolvedAmount", "resolvedAt", "webhookSeq")),
)
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
    zone = ZoneInfo(settings.display_tz)

    def when(ms: object) -> Markup:
        """A store time (Unix ms) in the display time zone, with UTC in its title."""
        try:
            moment = datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc)
        except (TypeError, ValueError, OverflowError, OSError):
            return Markup("") if ms is None else escape(str(ms))
        local = moment.astimezone(zone)
        return Markup('<time datetime="{}" title="{}">{}</time>').format(
            moment.isoformat(timespec="seconds").replace("+00:00", "Z"), moment.strftime("%Y-%m-%d %H:%M:%S UTC"),
            local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or ""))

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
                               age=_age, when=when, shown=_shown, times=_TIMES, meaning=_meaning,
                               search_text=request.args.get("q", "") if request else "", **context)
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

    def accounts_shown() -> list[str]:
        account = principal().account
        return sorted(settings.accounts) if account == ALL_ACCOUNTS else [account]

    def totals(day: str) -> list[dict]:
        by_account = runtime().store.daily_totals(day)
        rows = []
        for account in sorted(set(accounts_shown()) | (set(by_account) if principal().account == ALL_ACCOUNTS
                                                       else set())):
            t = by_account.get(account, {})
            failed = sum(t.get(name, 0) for name in (states.FAILED, states.DECLINED, states.REJECTED))
            succeeded = t.get(states.SUCCEEDED, 0)
            ended = succeeded + failed
            rows.append({"account": account, "created": int(t.get("created", 0)), "succeeded": int(succeeded),
                         "failed": int(failed), "partial": int(t.get(states.PARTIALLY_PAID, 0)),
                         "paid": _amount(t.get("paid", 0)),
                         "rate": f"{100 * succeeded / ended:.1f} %" if ended else "–"})
        return rows

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
        now = store.now_ms()
        today, yesterday = jst_day(now), jst_day(now - 86_400_000)
        return page("index.html", title="Review queue", items=items, counts=list(counts.items()),
                    review=review, resolved=resolved, orphans=orphans, today=today, yesterday=yesterday,
                    totals=list(zip(totals(today), totals(yesterday))))

    @pages.get("/search")
    def search():
        text = request.args.get("q", "").strip()[:128]
        found = []
        if text:
            rows = runtime().store.summaries(runtime().store.search(text))
            found = [r for r in rows if r and principal().sees(r["account"])]
        exact = [r for r in found if text in (r["tradeNo"], r.get("platFormTradeNo"))]
        if len(exact) == 1:
            return redirect(url_for("ops_pages.job", trade_no=exact[0]["tradeNo"]), 303)
        return page("jobs.html", title=f"Search {text}", rows=found, following="", filters={}, searched=text,
                    now=runtime().store.now_ms(), all_states=states.ALL, accounts=accounts_shown())

    def day_start(text: str, end: bool = False) -> int | None:
        """A ``YYYY-MM-DD`` in the display zone, as ms (``end``: the day's last ms); None if not one."""
        try:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=zone)
        except ValueError:
            return None
        if end:
            day += timedelta(days=1)
        return int(day.timestamp() * 1000) - (1 if end else 0)

    @pages.get("/jobs")
    def jobs():
        args = request.args
        filters = {name: args.get(name, "").strip()[:64] for name in ("state", "account", "from", "to", "flagged")}
        if filters["state"] not in states.ALL:
            filters["state"] = ""
        mine = principal().account
        if mine != ALL_ACCOUNTS:
            filters["account"] = mine
        newest, oldest = day_start(filters["to"], end=True), day_start(filters["from"])
        cursor = None
        at, _, after = args.get("before", "").partition(":")
        if at.isdigit() and valid(after):
            cursor = (int(at), after)
        store = runtime().store
        rows, scanned = [], 0
        while len(rows) <= LIST_PAGE and scanned < 5000:
            batch = store.created_between(newest, oldest, before=cursor, count=200)
            if not batch:
                break
            scanned += len(batch)
            for (trade_no, created), row in zip(batch, store.summaries([t for t, _ in batch])):
                cursor = (created, trade_no)
                if row is None or not principal().sees(row["account"]):
                    continue
                if (filters["state"] and row["state"] != filters["state"]) or \
                        (filters["account"] and row["account"] != filters["account"]) or \
                        (filters["flagged"] and not row["needsReview"]):
                    continue
                rows.append(row)
                if len(rows) > LIST_PAGE:
                    break
        following = ""
        if len(rows) > LIST_PAGE:
            rows = rows[:LIST_PAGE]
            following = f"{rows[-1]['createdAt']}:{rows[-1]['tradeNo']}"
        elif scanned >= 5000 and cursor:
            following = f"{cursor[0]}:{cursor[1]}"  # looked far enough for one page: the next goes on
        return page("jobs.html", title="Jobs", rows=rows, following=following, filters=filters, searched="",
                    now=store.now_ms(), all_states=states.ALL, accounts=accounts_shown(),
                    first=not args.get("before"))

    def timeline(record: dict, history: list[dict], trade_no: str) -> list[dict]:
        """Moves, gateway answers, callbacks and webhook attempts in one list, oldest first."""
        rt = runtime()
        items = []
        for entry in history:
            detail = dict(entry.get("detail") or {})
            kind = "move" if entry.get("to") else str(detail.get("kind") or "note")
            source = str(detail.get("source") or "")
            if source == "callback":
                kind = "callback" if not entry.get("to") else "move (callback)"
            elif source in ("query", "create") and entry.get("to"):
                kind = f"move (gateway {source})"
            items.append({"at": entry.get("at"), "kind": kind, "from": entry.get("from"), "to": entry.get("to"),
                          "detail": detail})
        events = rt.webhook_dispatcher.job_events(trade_no, since_ms=int(record.get("createdAt") or 0))
        by_hook = {e["webhookId"]: e for e in events}
        for e in events:
            items.append({"at": e["at"], "kind": "webhook event", "event": e,
                          "detail": {"type": e["type"], "sequence": e["sequence"]}})
        for attempt in rt.webhook_dispatcher.attempts(trade_no):
            items.append({"at": attempt.get("at"), "kind": "webhook attempt", "attempt": attempt,
                          "event": by_hook.get(attempt.get("webhookId")),
                          "detail": {k: attempt.get(k) for k in ("endpoint", "type", "attempt", "status", "reason",
                                                                  "latencyMs") if attempt.get(k) is not None}})
        items.sort(key=lambda item: int(item.get("at") or 0))
        return items

    @pages.get("/jobs/<trade_no>")
    def job(trade_no: str):
        record = visible(trade_no)
        if record is None:
            return not_found(trade_no)
        history = record.pop("history", [])
        # Flower's UI reads no filter from its URL; its API does: the tasks whose arguments name the job
        flower_link = f"{flower}/api/tasks?search={quote(trade_no, safe='')}" if flower else ""
        shown, groups = set(), []
        for name, fields in GROUPS:
            present = [(f, record[f]) for f in fields if f in record and record[f] not in (None, "")]
            shown.update(fields)
            if present:
                groups.append((name, present))
        rest = [(k, v) for k, v in sorted(record.items()) if k not in shown and k != "history"]
        if rest:
            groups.append(("other", rest))
        return page("job.html", title=trade_no, trade_no=trade_no, record=record, groups=groups,
                    story=timeline(record, history, trade_no), flower_link=flower_link,
                    is_open=record.get("state") in states.OPEN)

    @pages.post("/jobs/<trade_no>/events/<event_id>/resend")
    def resend(trade_no: str, event_id: str):
        record = visible(trade_no)
        if record is None:
            return not_found(trade_no)
        if not is_entry_id(event_id):
            return refused(404, "Not found", "No such webhook event.")
        rt = runtime()
        events = {e["id"]: e for e in rt.webhook_dispatcher.job_events(trade_no, int(record.get("createdAt") or 0))}
        if event_id not in events:
            return refused(404, "Not found", "No such webhook event of this job.")
        count = rt.webhook_dispatcher.resend(event_id, account=record.get("account") or DEFAULT_ACCOUNT)
        audit(principal(), "webhook.resend", target=trade_no, account=record.get("account") or DEFAULT_ACCOUNT,
              detail={"event": event_id, "type": events[event_id]["type"], "scheduled": count})
        return page("message.html", title="Resent",
                    message=f"The event {events[event_id]['type']} of {trade_no} is scheduled again for "
                            f"{count} endpoint(s).", back=url_for("ops_pages.job", trade_no=trade_no))

    def endpoints_shown() -> list[dict]:
        mine = principal().account
        return runtime().webhook_endpoints.all(None if mine == ALL_ACCOUNTS else mine)

    @pages.get("/webhooks")
    def webhooks():
        endpoints = endpoints_shown()
        health = runtime().webhook_dispatcher.health(endpoints)
        now = runtime().store.now_ms()
        return page("webhooks.html", title="Webhooks", endpoints=endpoints, health=health, now=now,
                    can_admin=principal().can(WEBHOOKS_ADMIN), url_of=_url_shown)

    @pages.post("/webhooks/<endpoint_id>/enable")
    def endpoint_enable(endpoint_id: str):
        record = next((e for e in endpoints_shown() if e["id"] == endpoint_id), None)
        if record is None:
            return refused(404, "Not found", "No such endpoint.")
        after = runtime().webhook_endpoints.set_enabled(endpoint_id, True)
        audit(principal(), "endpoint.enable", target=endpoint_id, account=record.get("account") or DEFAULT_ACCOUNT,
              before=_endpoint_audited(record), after=_endpoint_audited(after))
        return redirect(url_for("ops_pages.webhooks"), 303)

    @pages.post("/webhooks/replay")
    def replay():
        since, until = request.form.get("since", ""), request.form.get("until", "")
        start = _moment(since, zone)
        end = _moment(until, zone) if until else None
        if start is None or (until and end is None):
            return refused(422, "Invalid window", "A window is two times, YYYY-MM-DD HH:MM in "
                                                  f"{settings.display_tz} (the end may be empty: until now).")
        endpoint_id = request.form.get("endpoint") or None
        if endpoint_id and endpoint_id not in {e["id"] for e in endpoints_shown()}:
            return refused(404, "Not found", "No such endpoint.")
        mine = principal().account
        try:
            count = runtime().webhook_dispatcher.replay(start, end, endpoint_id=endpoint_id,
                                                        include_delivered=bool(request.form.get("all")),
                                                        account=None if mine == ALL_ACCOUNTS else mine)
        except KeyError:
            return refused(404, "Not found", "No such enabled endpoint.")
        audit(principal(), "webhooks.replay", target=endpoint_id or "", account=mine,
              detail={"since": start, "until": end, "endpoint": endpoint_id, "all": bool(request.form.get("all")),
                      "scheduled": count})
        return page("message.html", title="Replayed", message=f"{count} deliveries scheduled again.",
                    back=url_for("ops_pages.webhooks"))

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


def _amount(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _meaning(name: str, value: object) -> str:
    """What a gateway code or status means (docs/gateway.md), for a history or attempt field."""
    text = str(value)
    if name in ("code", "gatewayCode"):
        return CODE_MEANINGS.get(text, "not documented: unknown answer" if text else "")
    if name in ("status", "gatewayStatus") and text:
        return STATUS_MEANINGS.get(text, "a status nobody documented")
    return ""


def _url_shown(url: str) -> str:
    """An endpoint's URL without its query string (it may carry the receiver's token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")


def _endpoint_audited(record: dict | None) -> dict:
    return {k: record.get(k) for k in ("enabled", "disabledReason", "failingSince")} if record else {}


def _moment(text: str, zone: ZoneInfo) -> int | None:
    """``YYYY-MM-DD HH:MM`` (or ``T``, or a day) in the display zone, as ms."""
    text = text.strip().replace("T", " ")
    for form in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return int(datetime.strptime(text, form).replace(tzinfo=zone).timestamp() * 1000)
        except ValueError:
            continue
    return None


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
