"""Principals, scopes and roles (worker/domain/access.py): pure rules."""

from __future__ import annotations

import pytest

from worker.domain import access
from worker.domain.access import Principal


def test_a_principal_sees_only_its_own_account_unless_it_has_every_account():
    alice = Principal("key", "k_1", "shop-a", frozenset({access.CHECKOUTS_READ}))
    assert alice.sees("shop-a") and not alice.sees("shop-b") and not alice.sees(None)
    everyone = Principal("operator", "root", access.ALL_ACCOUNTS, access.role_scopes("admin"), "admin")
    assert everyone.sees("shop-a") and everyone.sees(None)
    default = Principal("token", "VEXORA_API_TOKEN", access.DEFAULT_ACCOUNT, frozenset(access.SCOPES))
    assert default.sees(None) and default.sees("default") and not default.sees("shop-a")


def test_roles_grow_viewer_operator_admin_and_only_admins_manage():
    viewer, operator, admin = (access.role_scopes(r) for r in ("viewer", "operator", "admin"))
    assert viewer < operator < admin
    assert access.REVIEW_WRITE not in viewer and access.REVIEW_WRITE in operator
    assert access.ADMIN in admin and access.ADMIN not in operator
    assert access.ADMIN not in access.SCOPES  # no API key can manage keys or operators
    with pytest.raises(KeyError):
        access.role_scopes("root")


def test_the_label_is_what_is_recorded_and_never_a_request_field():
    p = Principal("operator", "alice", "*", access.role_scopes("operator"), "operator")
    assert p.label == "operator:alice" and p.can(access.REVIEW_WRITE) and not p.can(access.WEBHOOKS_ADMIN)
    assert p.as_dict()["role"] == "operator"


@pytest.mark.parametrize("ok", ["default", "shop-a", "a" * 32, "0-9"])
def test_account_ids(ok):
    assert access.ACCOUNT_ID.match(ok)


@pytest.mark.parametrize("bad", ["", "A", "shop_a", "a" * 33, "*", "shop a"])
def test_bad_account_ids(bad):
    assert not access.ACCOUNT_ID.match(bad)
