"""Issue 20, findings 2, 4 and 9, the pure parts: which If-Match names which version, what a
resolution must carry, the settler flags inside its move (never a second call), and money for a
tradeNo with no job is kept for a person."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError

from schemas.api import ResolveRequestSchema
from worker.domain import settlement, states
from worker.domain.settlement import Report
from worker.flows.review import _versions
from worker.flows.settle import ORPHAN, Settler
from worker.store.jobs import Job, Moved
from worker.web.api import etag, if_match_versions


@pytest.mark.parametrize("header,versions", [
    (None, None), ("", None), ("*", None), ('"3", *', None),
    ('"3"', ["3"]), (' "3" , "4"', ["3", "4"]), ('W/"3"', []), ("3", []),
])
def test_if_match_names_strong_versions_only(header, versions):
    assert if_match_versions(header) == versions


def test_the_etag_is_the_version_quoted_and_any_named_version_may_match():
    assert etag(7) == '"7"' and etag(None) == '"0"'
    assert _versions(None) is None
    assert _versions(["3", "x", 4]) == {3, 4} and _versions([]) == frozenset() and _versions("12") == {12}


@pytest.mark.parametrize("body,error", [
    ({"state": "succeeded", "reason": "r", "operator": "o"}, "amount"),
    ({"state": "succeeded", "reason": "r", "operator": "o", "amount": "0"}, "amount"),
    ({"state": "succeeded", "reason": "r", "operator": "o", "amount": "12.5"}, "amount"),
    ({"state": "failed", "reason": "r", "operator": "o", "amount": "300"}, "amount"),
    ({"state": "succeeded", "reason": "r", "operator": "o", "amount": "300"}, None),
    ({"state": "failed", "reason": "r", "operator": "o"}, None),
])
def test_a_resolution_as_succeeded_names_the_amount_confirmed(body, error):
    if error is None:
        ResolveRequestSchema().load(body)
        return
    with pytest.raises(ValidationError) as caught:
        ResolveRequestSchema().load(body)
    assert error in caught.value.messages


class FakeStore:
    """Records the store calls the settler makes (no Redis: the decision logic only)."""

    def __init__(self, job: Job | None):
        self.job = job
        self.calls: list[tuple[str, dict]] = []

    def load(self, trade_no):
        return self.job

    def move(self, trade_no, target, **kwargs):
        self.calls.append(("move", {"target": target, **kwargs}))
        return Moved(True, self.job.state)

    def flag(self, *args, **kwargs):
        self.calls.append(("flag", {}))
        return True

    def note(self, trade_no, kind, detail=None):
        self.calls.append(("note", {"kind": kind}))

    def record_orphan(self, trade_no, fields):
        self.calls.append(("record_orphan", dict(fields)))
        return True


def test_a_move_that_needs_review_carries_its_flag_and_no_second_call_is_made():
    job = Job("T1", states.PAYING, 1, 0, None, {"amount": "300", "state": states.PAYING})
    store = FakeStore(job)
    assert Settler(store, None).apply("T1", Report(settlement.CALLBACK, "0000", "250", {})) == states.PARTIALLY_PAID
    assert [name for name, _ in store.calls] == ["move"]
    reason, detail = store.calls[0][1]["flag"]
    assert reason and detail == {"source": "callback"}


def test_money_for_a_trade_no_with_no_job_is_kept_for_a_person_and_other_reports_are_notes():
    store = FakeStore(None)
    settler = Settler(store, None)
    assert settler.apply("NOJOB", Report(settlement.CALLBACK, "0000", "300", {"platFormTradeNo": "P"})) == ORPHAN
    assert store.calls[0] == ("record_orphan", {"source": "callback", "status": "0000", "paidAmount": "300",
                                                "platFormTradeNo": "P"})
    store.calls.clear()
    assert settler.apply("NOJOB", Report(settlement.QUERY, "00029", None, {})) == ORPHAN
    assert [name for name, _ in store.calls] == ["note"]
