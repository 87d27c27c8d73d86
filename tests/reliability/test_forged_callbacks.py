"""Forged callbacks (issue 20, finding 1): genuine callbacks of many orders, caught by an attacker
who controls their ``notifyUrl``, re-split every way the signed text allows — the boundary of
every pair of adjacent fields moved or removed, fields added (some that sign as nothing), ``=``
put into values, and the issue's re-split onto a victim's ``tradeNo`` — and posted to the web app.
Not one is answered ``OK`` or changes a job (applied 0); every forgery whose genuine signature
still verifies is refused by the field rule (400), and the genuine callbacks themselves are then
accepted and settle their jobs."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.reliability.conftest import size
from tests.reliability.support import records
from tests.support.forgery import Receiver, attack_remark, create_at_sandbox, issue_resplit, render, resplits
from tests.support.stack import APP_SECRET, Stack, payload
from worker.domain import states
from worker.gateway.signing import verify
from worker.waiting import wait_until

pytestmark = pytest.mark.integration

OUTCOMES = {"0000": states.SUCCEEDED, "0001": states.PARTIALLY_PAID, "00029": states.FAILED}


@pytest.fixture
def stack(redis_url, tmp_path):
    s = Stack(redis_url, tmp_path).start(workers=1, concurrency=8, web=True)
    try:
        yield s
    finally:
        s.stop()


def snapshot(stack, trade_nos):
    store = stack.runtime.store
    pipe = store.redis.pipeline()
    for trade_no in trade_nos:
        pipe.hgetall(store.keys.job(trade_no))
        pipe.llen(store.keys.history(trade_no))
    replies = pipe.execute()
    return {t: (sorted(replies[2 * i].items()), replies[2 * i + 1]) for i, t in enumerate(trade_nos)}


def test_forged_re_splits_of_genuine_callbacks_are_never_applied(stack, figures):
    rng = random.Random(20)
    count = size(20, 200)
    with Receiver() as receiver:
        # the victims: real jobs, whose callbacks the attacker also sees (their notifyUrl)
        victims = [stack.enqueue(payload(notifyUrl=receiver.url, remark=f"order {n}")) for n in range(count)]
        for trade_no in victims:
            stack.wait_state(trade_no, states.PAYING)
        # the attacker's own orders, remark chosen to re-split onto a victim
        attackers = {}
        for victim in victims:
            attacker = "A" + uuid.uuid4().hex[:20]
            create_at_sandbox(stack, attacker, attack_remark(victim), receiver.url)
            attackers[attacker] = victim
        wanted = {}
        for trade_no in victims:
            status = rng.choice(list(OUTCOMES))
            stack.set_gateway_status(trade_no, status, {"0000": "300", "0001": "150"}.get(status))
            wanted[trade_no] = OUTCOMES[status]
        for attacker in attackers:
            stack.set_gateway_status(attacker, rng.choice(["00029", "00029", "0000"]), "300")
        everyone = set(victims) | set(attackers)
        genuine = wait_until(lambda: (c := receiver.callbacks()) and everyone <= set(c) and c,
                             timeout=60, what="every order's genuine callback")

    before = snapshot(stack, victims)
    forgeries = []
    for trade_no in everyone:
        callback = genuine[trade_no]
        assert verify(callback, APP_SECRET)
        forgeries.extend(resplits(callback))
        if trade_no in attackers:
            forgeries.append(("issue re-split onto the victim", issue_resplit(callback, attackers[trade_no])))
    still_verifies = [verify(fields, APP_SECRET) for _, fields in forgeries]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda f: stack.notify(render(f[1])), forgeries))
    by_status = Counter(a.status_code for a in answers)
    accepted = [(kind, fields) for (kind, fields), a in zip(forgeries, answers) if a.text == "OK"]
    wrong = [(kind, a.status_code) for (kind, _), a, valid in zip(forgeries, answers, still_verifies)
             if a.status_code != (400 if valid else 401)]

    # every queued callback before a marker's is applied once the marker is (one worker, in order
    # of arrival as far as it matters here: nothing forged was queued)
    marker = stack.paying()
    assert stack.notify(stack.callback(marker, "0000")).text == "OK"
    stack.wait_state(marker, states.SUCCEEDED)
    after = snapshot(stack, victims)
    applied = [t for t in victims if after[t] != before[t]]
    orphans = [e for _, e in stack.runtime.store.events(count=1_000_000) if e["tradeNo"] in attackers]

    # the genuine callbacks of the victims, as the gateway sent them: accepted and applied
    genuine_answers = [stack.notify(render(genuine[t])).text for t in victims]
    try:
        wait_until(lambda: all(s == wanted[t] for t, s in records(stack, victims).items()), timeout=30,
                   interval=0.25, what="the genuine callbacks to settle their jobs")
    except AssertionError:
        pass  # counted below
    settled = records(stack, victims)

    figures.add("forged callbacks", orders=len(everyone), forgeries=len(forgeries),
                signature_still_valid=sum(still_verifies), refused_400=by_status[400],
                refused_401=by_status[401], accepted=len(accepted), applied=len(applied),
                genuine_applied=sum(settled[t] == wanted[t] for t in victims))
    assert accepted == [], accepted[:3]
    assert applied == [] and orphans == []
    assert wrong == [], Counter(wrong).most_common(5)
    assert sum(still_verifies) >= 2 * len(everyone)  # real threats: the genuine sign fits them
    assert genuine_answers == ["OK"] * len(victims)
