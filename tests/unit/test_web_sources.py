"""The callback endpoint's optional allow-list of gateway source addresses (no Redis needed:
a refused source is answered before anything is parsed or queued)."""

import pytest

from worker.config.settings import Settings
from worker.domain.errors import ConfigurationError
from worker.web import create_app


def client(allowed, proxies: int = 0):
    return create_app(Settings(app_secret="s", callback_allowed_ips=allowed, metrics=False,
                               trusted_proxies=proxies)).test_client()


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


@pytest.mark.parametrize("proxies,forwarded,status", [
    (0, "203.0.113.40", 403),                  # no proxy trusted: the header is anyone's claim
    (1, "203.0.113.40", 401),                  # the proxy's hop is the client: on to the signature
    (1, "203.0.113.40, 198.51.100.9", 403),    # only the right-most hop counts
    (2, "203.0.113.40, 198.51.100.9", 401),    # two proxies: the second from the right
])
def test_the_source_behind_trusted_proxies(proxies, forwarded, status):
    answer = client(("203.0.113.0/24",), proxies).post(
        "/vexora/notify", data=b"{}", headers={"X-Forwarded-For": forwarded},
        environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert answer.status_code == status


def test_a_negative_number_of_proxies_is_refused():
    with pytest.raises(ConfigurationError, match="VEXORA_TRUSTED_PROXIES"):
        client((), -1)
