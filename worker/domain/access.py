"""Who is asking, and what they may do (docs/design.md §Access): no I/O.

A request is made by a ``Principal``: an API key (``kind="key"``), an operator logged in to /ops
(``"operator"``), the deprecated shared ``VEXORA_API_TOKEN`` (``"token"``, every scope on
``default``), or a person at the server's shell (``"cli"``: the CLI reaches Redis directly, so it
is trusted as whoever runs it). A principal belongs to one account, or to every account (``*``),
and holds a set of scopes. Operators hold their role's scopes.

Scopes:

- ``checkouts:write``  enqueue checkouts
- ``checkouts:read``   read jobs, their webhooks, the review queue
- ``review:write``     query the gateway now, resolve flagged jobs, dismiss orphans
- ``webhooks:admin``   add, disable, enable and rotate webhook endpoints; replay events
- ``audit:read``       read the audit log

Roles (operators): ``viewer`` reads; ``operator`` also queries and resolves; ``admin`` also
manages endpoints, keys and operators (``ADMIN``, a capability no API key has) and reads the audit
log. Who did something is ``Principal.label``, recorded as ``resolvedBy`` and in the audit log;
never a field of the request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Principal", "SCOPES", "ROLES", "ALL_ACCOUNTS", "DEFAULT_ACCOUNT", "ADMIN",
           "CHECKOUTS_WRITE", "CHECKOUTS_READ", "REVIEW_WRITE", "WEBHOOKS_ADMIN", "AUDIT_READ",
           "ACCOUNT_ID", "role_scopes"]

CHECKOUTS_WRITE = "checkouts:write"
CHECKOUTS_READ = "checkouts:read"
REVIEW_WRITE = "review:write"
WEBHOOKS_ADMIN = "webhooks:admin"
AUDIT_READ = "audit:read"
SCOPES = (CHECKOUTS_WRITE, CHECKOUTS_READ, REVIEW_WRITE, WEBHOOKS_ADMIN, AUDIT_READ)
ADMIN = "admin"  # managing keys and operators: admins (operators) and the server's shell only

DEFAULT_ACCOUNT = "default"  # the one account today's variables define, without an accounts file
ALL_ACCOUNTS = "*"
ACCOUNT_ID = re.compile(r"^[a-z0-9-]{1,32}$")

ROLES = {
    "viewer": frozenset({CHECKOUTS_READ}),
    "operator": frozenset({CHECKOUTS_READ, REVIEW_WRITE}),
    "admin": frozenset({CHECKOUTS_READ, REVIEW_WRITE, WEBHOOKS_ADMIN, AUDIT_READ, ADMIN}),
}


def role_scopes(role: str) -> frozenset[str]:
    """What an operator of ``role`` may do (``KeyError`` for a role that does not exist)."""
    return ROLES[role]


@dataclass(frozen=True)
class Principal:
    """Who is asking: ``kind`` (key, operator, token, cli), ``name`` (the key's id, the operator's
    name, the shell user), the ``account`` it acts for (an id, or ``*``) and its ``scopes``."""

    kind: str
    name: str
    account: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    role: str = ""  # operators only

    def can(self, scope: str) -> bool:
        return scope in self.scopes

    def sees(self, account: str | None) -> bool:
        """Whether a job or endpoint of ``account`` exists for this principal (else: 404)."""
        return self.account == ALL_ACCOUNTS or self.account == (account or DEFAULT_ACCOUNT)

    @property
    def label(self) -> str:
        """How it is recorded (``resolvedBy``, the audit log): ``operator:alice``, ``key:k_…``."""
        return f"{self.kind}:{self.name}"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "account": self.account,
                "scopes": sorted(self.scopes), **({"role": self.role} if self.role else {})}
