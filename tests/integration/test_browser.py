"""End to end in a real browser: a payer opens the payment link, clicks Pay, the job succeeds; an
operator works the console (/ops, issue 22) and the four screenshots in docs/ are taken."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from worker.domain import states
from worker.local.redis_server import free_port
from worker.store.operators import Operators
from worker.waiting import wait_until
from tests.support.browser import CHROMIUM, chromium_context
from tests.support.stack import MARKERS, Stack, payload

pytestmark = pytest.mark.integration

if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (scripts/test installs it when run as root)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev dependency group) is not installed")


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    s = Stack(redis_url, tmp_path_factory.mktemp("browser")).start(web=True)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def browser():
    with chromium_context(sync_api) as context:
        yield context


def test_a_payer_clicks_pay_and_the_job_succeeds(stack, browser):
    trade_no = stack.enqueue(payload())
    link = stack.wait_state(trade_no, states.PAYING)["paymentLink"]
    page = browser.new_page()
    page.goto(link)
    assert trade_no in page.content()
    page.click("#pay")
    sync_api.expect(page.locator("#status")).to_have_text("Paid", timeout=10_000)
    record = stack.wait_state(trade_no, states.SUCCEEDED, timeout=30)
    assert record["paidAmount"] == "300" and record["gatewayPaidAmount"] == "300.00"
    page.close()


# -- issue 22: the operator console (/ops), in the browser ---------------------------------------
DOCS = Path(__file__).resolve().parents[2] / "docs"
OPERATOR, PASSWORD = "carol", "console-pw-8c1f7d2e"


@pytest.fixture(scope="module")
def console(redis_url, tmp_path_factory):
    """A stack whose one webhook endpoint refuses every connection (a closed port): every event
    is retried, the endpoint is failing."""
    closed = free_port()
    # a database of its own: this module's other stack (default settings) is up at the same time,
    # and its workers would otherwise take this stack's tasks (the broker is the same Redis)
    own_db = redis_url.rsplit("/", 1)[0] + "/7"
    s = Stack(own_db, tmp_path_factory.mktemp("console"),
              VEXORA_WEBHOOK_URL=f"http://127.0.0.1:{closed}/hooks", VEXORA_WEBHOOK_ALLOW_PRIVATE="true",
              VEXORA_WEBHOOK_RETRY_SCHEDULE="0.3,0.3,0.3,0.3,600", VEXORA_WEBHOOK_DISPATCH_INTERVAL="0.3",
              VEXORA_QUEUED_REDRIVE_AFTER="3600")
    s.start(workers=1, web=True, beat=True)
    try:
        Operators(s.runtime.redis, s.runtime.store.keys).add(OPERATOR, PASSWORD, role="admin")
        yield s
    finally:
        s.stop()


def partially_paid(stack) -> str:
    """A job paid in part (the sandbox's payer), whose webhook events were retried."""
    trade_no = stack.paying()
    assert stack.notify(stack.callback(trade_no, "0001", "100.00")).status_code == 200
    stack.wait_state(trade_no, states.PARTIALLY_PAID)
    attempts = stack.runtime.webhook_dispatcher.attempts
    wait_until(lambda: any(a.get("attempt", 0) >= 2 and a.get("type") == "checkout.partially_paid"
                           for a in attempts(trade_no)), timeout=30, what="a retried webhook")
    return trade_no


def flagged_job(stack) -> str:
    """A paying job flagged by a callback status nobody documented."""
    trade_no = stack.paying()
    stack.drop_callbacks(trade_no)
    assert stack.notify(stack.callback(trade_no, "00032")).status_code == 200
    wait_until(lambda: (stack.record(trade_no) or {}).get("needsReview"), timeout=20, what="the flag")
    return trade_no


def test_an_operator_works_the_console(console, browser):
    expect = sync_api.expect
    store = console.runtime.store
    queued = [store.create(f"Q{i:03d}CONSOLE", payload(), contact={"email": "m***@example.jp"}, amount="500")
              for i in range(55)]
    assert all(outcome == "created" for outcome, _ in queued)
    partial = partially_paid(console)
    flagged = flagged_job(console)
    gateway_id = console.record(partial)["platFormTradeNo"]
    assert gateway_id

    page = browser.new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(console.web_url + "/ops")
    page.fill("#name", OPERATOR)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    expect(page.locator("header .who")).to_contain_text(OPERATOR)
    expect(page.locator('#totals tr[data-account="default"][data-day="today"]')).to_be_visible()
    page.screenshot(path=str(DOCS / "console-home.png"), full_page=True)

    # find a job by the gateway's id, from the search box every page has
    page.fill('input[name="q"]', gateway_id)
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(rf"/ops/jobs/{partial}$"))

    # a state's list from its count on the home page, paged through
    page.goto(console.web_url + "/ops")
    page.locator('#counts a[data-state="queued"]').click()
    expect(page).to_have_url(re.compile(r"/ops/jobs\?state=queued$"))
    rows = page.locator("#jobs tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.first).to_contain_text("500")
    page.screenshot(path=str(DOCS / "console-jobs.png"), full_page=True)
    first_page = set(rows.evaluate_all("rs => rs.map(r => r.dataset.tradeNo)"))
    page.locator("#older").click()
    expect(rows).to_have_count(5)
    second_page = set(rows.evaluate_all("rs => rs.map(r => r.dataset.tradeNo)"))
    assert first_page.isdisjoint(second_page)
    assert first_page | second_page == {f"Q{i:03d}CONSOLE" for i in range(55)}
    expect(page.locator("#older")).to_have_count(0)

    # the partially paid job's story: the partial payment and the webhook's retries
    page.goto(f"{console.web_url}/ops/jobs/{partial}")
    story = page.locator("#timeline")
    expect(story.locator('li[data-kind="move (callback)"]').filter(has_text="partially_paid")).to_have_count(1)
    expect(story.locator("li").filter(has_text="partially paid")).not_to_have_count(0)  # the status's meaning
    retries = story.locator('li[data-kind="webhook attempt"]').filter(has_text="checkout.partially_paid")
    expect(retries.filter(has_text="attempt: 2")).not_to_have_count(0)
    expect(page.locator('table[data-group="payer contact (masked)"]')).to_be_visible()
    assert not any(value in page.content() for value in MARKERS.values())
    page.screenshot(path=str(DOCS / "console-job.png"), full_page=True)

    # resend one event: scheduled again, and audited
    event = story.locator('li[data-kind="webhook event"]').filter(has_text="checkout.partially_paid")
    event.get_by_role("button", name="Resend").click()
    expect(page.get_by_role("status")).to_contain_text("scheduled again for 1 endpoint(s)")
    entries = console.runtime.audit.read(limit=10)
    assert any(e["action"] == "webhook.resend" and e["target"] == partial and e["actor"] == f"operator:{OPERATOR}"
               for e in entries), entries

    # the failing endpoint on /ops/webhooks
    page.get_by_role("link", name="Webhooks").click()
    endpoint = page.locator('#endpoints tr[data-endpoint="default"]')
    expect(endpoint).to_contain_text("failing")
    expect(endpoint.locator("time")).not_to_have_count(0)
    page.screenshot(path=str(DOCS / "console-webhooks.png"), full_page=True)

    # resolve the flagged job through the confirm step
    page.goto(console.web_url + "/ops")
    page.locator('#counts a[data-state="needs-review"]').click()
    page.locator(f'#jobs tr[data-trade-no="{flagged}"] a').click()
    page.get_by_role("link", name="Resolve…").click()
    page.check('input[name="state"][value="failed"]')
    page.fill("#reason", "gateway support: the payer gave up")
    page.get_by_role("button", name="Review…").click()
    expect(page.locator("h1")).to_have_text(f"Resolve {flagged} as failed?")
    assert console.record(flagged)["needsReview"] is True  # nothing before Confirm
    page.locator("#confirm").click()
    expect(page.get_by_role("status")).to_contain_text(f"Resolved {flagged}")
    record = console.record(flagged)
    assert record["state"] == states.FAILED and record["resolvedBy"] == f"operator:{OPERATOR}"
    page.close()
