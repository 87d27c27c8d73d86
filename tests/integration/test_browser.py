"""End to end in a real browser: a payer opens the payment link, clicks Pay, the job succeeds."""

from __future__ import annotations

import pytest

from worker.domain import states
from tests.support.browser import CHROMIUM, chromium_context
from tests.support.stack import Stack, payload

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
