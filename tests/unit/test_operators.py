"""Operators' pure parts (issue 21): the scrypt password hash, the password rules, the audit
times, and which /ops page needs which scope."""

from __future__ import annotations

import pytest

from worker.domain import access
from worker.store.operators import check_password, hash_password, password_problem
from worker.web.audit_api import parse_when
from worker.web.ops import _NEEDS


def test_a_password_is_stored_as_a_salted_scrypt_hash_with_its_parameters():
    stored = hash_password("correct horse battery staple")
    kind, n, r, p, salt, digest = stored.split("$")
    assert (kind, n, r, p) == ("scrypt", "16384", "8", "1") and "correct" not in stored
    assert check_password("correct horse battery staple", stored)
    assert not check_password("correct horse battery stapl", stored)
    assert hash_password("correct horse battery staple") != stored  # a new salt each time


def test_a_hash_keeps_working_after_the_parameters_are_raised():
    old = hash_password("correct horse battery staple", n=2 ** 10, r=4)
    assert old.startswith("scrypt$1024$4$1$") and check_password("correct horse battery staple", old)
    for broken in ("", "scrypt$x", "bcrypt$1$2$3$4$5", old.rsplit("$", 1)[0] + "$!!"):
        assert not check_password("correct horse battery staple", broken)


@pytest.mark.parametrize("password", ["short", "change-me-please", "xxxxxxxxxxxxxx", "password", "x" * 2000])
def test_short_and_placeholder_passwords_are_refused(password):
    assert password_problem(password)


def test_a_long_real_password_is_accepted():
    assert password_problem("correct horse battery staple") is None


def test_audit_times_are_iso_epoch_milliseconds_or_durations_back_from_now():
    now = 1_800_000_000_000
    assert parse_when("24h", now_ms=now) == now - 24 * 3600 * 1000
    assert parse_when("30m", now_ms=now) == now - 30 * 60 * 1000
    assert parse_when("7d", now_ms=now) == now - 7 * 86400 * 1000
    assert parse_when("1764892800000") == 1_764_892_800_000
    assert parse_when("2025-12-05T00:00:00Z") == 1_764_892_800_000
    assert parse_when("2025-12-05T09:00:00+09:00") == 1_764_892_800_000
    assert parse_when("2025-12-05T00:00:00") == 1_764_892_800_000  # naive: UTC
    for bad in ("", "yesterday", "24x", "-5h"):
        with pytest.raises(ValueError):
            parse_when(bad)
    with pytest.raises(ValueError):
        parse_when("24h", durations=False)


def test_each_role_may_do_what_its_page_needs():
    acting = ("ops_pages.resolve", "ops_pages.resolve_confirm", "ops_pages.resolve_start", "ops_pages.query",
              "ops_pages.dismiss")
    assert all(_NEEDS[name] == access.REVIEW_WRITE for name in acting)
    assert _NEEDS["ops_pages.audit"] == access.AUDIT_READ
    viewer, operator, admin = (access.role_scopes(r) for r in ("viewer", "operator", "admin"))
    assert access.REVIEW_WRITE not in viewer and access.REVIEW_WRITE in operator
    assert access.AUDIT_READ not in operator and access.AUDIT_READ in admin
