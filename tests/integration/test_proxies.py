"""``VEXORA_TRUSTED_PROXIES`` on the real web app (gunicorn, real HTTP): with 0 no
``X-Forwarded-*`` header is believed, so a client cannot forge its way past
``VEXORA_CALLBACK_ALLOWED_IPS`` or into the URLs the API answers; with 1 the right-most hop —
the one the load balancer itself appended — is the client, the scheme and the host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration

TOKEN = "api-token-proxies"
ALLOWED = "203.0.113.0/24"  # the gateway's addresses in these tests
GATEWAY_IP, OTHER_IP = "203.0.113.9", "198.51.100.1"


@pytest.fixture(scope="module")
def db_url(redis_url):
    url = urlsplit(redis_url)._replace(path="/6").geturl()  # clear of the other modules' DB 0
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def web_only(db_url, tmp_path_factory, proxies: int) -> Stack:
    stack = Stack(db_url, tmp_path_factory.mktemp(f"proxies-{proxies}"), VEXORA_API_TOKEN=TOKEN,
                  VEXORA_KEY_PREFIX=f"proxies-{uuid.uuid4().hex[:8]}", VEXORA_CALLBACK_ALLOWED_IPS=ALLOWED,
                  VEXORA_TRUSTED_PROXIES=str(proxies),
                  # gunicorn itself believes X-Forwarded-Proto from 127.0.0.1 unless told not to
                  # (the default of its forwarded_allow_ips); deployed, gunicorn.conf.py turns it
                  # off (the last test below)
                  FORWARDED_ALLOW_IPS="")
    stack.start_web()  # the web app only: no flush, no worker, no sandbox
    return stack


@pytest.fixture(scope="module")
def direct(db_url, tmp_path_factory):
    stack = web_only(db_url, tmp_path_factory, 0)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def behind_one(db_url, tmp_path_factory):
    stack = web_only(db_url, tmp_path_factory, 1)
    yield stack
    stack.stop()


def notify(stack: Stack, body: bytes, forwarded_for: str | None):
    headers = {"Content-Type": "application/json"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return stack.http.post(stack.web_url + "/vexora/notify", data=body, headers=headers, timeout=15)


def create(stack: Stack, **headers):
    job = payload()
    answer = stack.http.post(stack.web_url + "/v1/checkouts", json=job, timeout=15,
                             headers={"Authorization": f"Bearer {TOKEN}", **headers})
    assert answer.status_code == 202, answer.text
    return job["tradeNo"], answer


FORGED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "checkout.example"}


# -- VEXORA_TRUSTED_PROXIES=0 (the default) ---------------------------------------------------
def test_without_trusted_proxies_a_forged_forwarded_for_cannot_pass_the_allow_list(direct):
    # the test client is 127.0.0.1, outside the list: whatever it claims, it is refused
    for claimed in (None, GATEWAY_IP, f"{OTHER_IP}, {GATEWAY_IP}", f"{GATEWAY_IP}, {GATEWAY_IP}"):
        answer = notify(direct, b"{}", claimed)
        assert (answer.status_code, answer.text) == (403, "forbidden"), claimed
    signed = direct.callback("NOSUCHJOB1", "0000")
    assert notify(direct, signed, GATEWAY_IP).status_code == 403


def test_without_trusted_proxies_urls_keep_the_request_scheme_and_host(direct):
    trade_no, answer = create(direct, **FORGED)
    wanted = f"{direct.web_url}/v1/checkouts/{trade_no}"
    assert answer.json()["statusUrl"] == wanted and answer.headers["Location"] == wanted


# -- VEXORA_TRUSTED_PROXIES=1: one load balancer in front -------------------------------------
def test_behind_one_proxy_the_right_most_forwarded_address_is_the_client(behind_one):
    # the load balancer appends the address it saw; anything left of it is the client's claim
    assert notify(behind_one, b"{}", GATEWAY_IP).status_code == 401  # allowed: on to the signature
    assert notify(behind_one, b"{}", f"{OTHER_IP}, {GATEWAY_IP}").status_code == 401
    refused = notify(behind_one, b"{}", f"{GATEWAY_IP}, {OTHER_IP}")  # a forged left-most entry
    assert (refused.status_code, refused.text) == (403, "forbidden")
    # no header: the load balancer's own address (127.0.0.1 here) is the client, not allowed
    assert notify(behind_one, b"{}", None).status_code == 403
    # a genuine callback through the proxy is taken
    answer = notify(behind_one, behind_one.callback("NOSUCHJOB2", "0000"), f"{OTHER_IP}, {GATEWAY_IP}")
    assert (answer.status_code, answer.text) == (200, "OK")


def test_behind_one_proxy_urls_use_the_forwarded_scheme_and_host(behind_one):
    trade_no, answer = create(behind_one, **FORGED)
    wanted = f"https://checkout.example/v1/checkouts/{trade_no}"
    assert answer.json()["statusUrl"] == wanted and answer.headers["Location"] == wanted
    # only the right-most hop counts: the client's own claims to its left are ignored
    trade_no, answer = create(behind_one, **{"X-Forwarded-Proto": "https, http",
                                             "X-Forwarded-Host": "evil.example, checkout.example"})
    assert answer.json()["statusUrl"] == f"http://checkout.example/v1/checkouts/{trade_no}"
    # the API's GET at that URL's path answers the job
    path = urlsplit(answer.json()["statusUrl"]).path
    shown = behind_one.http.get(behind_one.web_url + path, headers={"Authorization": f"Bearer {TOKEN}"},
                                timeout=10)
    assert shown.status_code == 200 and shown.json()["tradeNo"] == trade_no


GUNICORN_CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


@pytest.mark.skipif(not GUNICORN_CONF.exists(), reason="no gunicorn.conf.py in this tree")
def test_the_deployed_gunicorn_leaves_forwarded_headers_to_the_app():
    """gunicorn believes X-Forwarded-Proto from 127.0.0.1 by default (forwarded_allow_ips): that
    would be a second trust setting beside VEXORA_TRUSTED_PROXIES. The config file turns it off."""
    script = (
        "import json, runpy, sys\n"
        "from gunicorn.config import Config\n"
        "cfg = Config()\n"
        "for k, v in runpy.run_path(sys.argv[1]).items():\n"
        "    if k in cfg.settings: cfg.set(k, v)\n"
        "print(json.dumps([cfg.forwarded_allow_ips, cfg.secure_scheme_headers]))\n")
    env = {k: v for k, v in os.environ.items() if k != "FORWARDED_ALLOW_IPS"}
    out = subprocess.run([sys.executable, "-c", script, str(GUNICORN_CONF)], capture_output=True, text=True,
                         env=env, cwd=GUNICORN_CONF.parent, timeout=30, check=True).stdout
    allowed, scheme_headers = json.loads(out)
    assert allowed == [] or scheme_headers == {}, out
