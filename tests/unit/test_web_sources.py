"""The callback endpoint's optional allow-list of gateway source addresses (no Redis needed:
a refused source is answered before anything is parsed or queued)."""

from worker.settings import Settings
from worker.web import create_app


def client(allowed):
    return create_app(Settings(app_secret="s", callback_allowed_ips=allowed, metrics=False)).test_client()


def test_a_source_outside_the_allow_list_is_403():
    answer = client(("203.0.113.0/24",)).post("/vexora/notify", data=b"{}",
                                               environ_base={"REMOTE_ADDR": "198.51.100.9"})
    assert answer.status_code == 403


def test_a_source_inside_the_allow_list_goes_on_to_the_signature_check():
    answer = client(("203.0.113.0/24", "2001:db8::/32")).post(
        "/vexora/notify", data=b"{}", environ_base={"REMOTE_ADDR": "203.0.113.40"})
    assert answer.status_code == 401


def test_without_an_allow_list_any_source_is_checked_by_signature_only():
    answer = client(()).post("/vexora/notify", data=b"{}", environ_base={"REMOTE_ADDR": "198.51.100.9"})
    assert answer.status_code == 401
