"""Issue 20, finding 7, over a real Redis and real local HTTP servers: a name that resolves to an
allowed address when checked and to 127.0.0.1 when connecting (DNS rebinding) never gets a
request to 127.0.0.1; and what a receiver answers is never stored, only a status and our reason.

No test here may reach another machine: the "public" address is 127.0.0.2, which the tests make
count as global (``ipaddress``'s own rule, patched for that one address), with a receiver of its
own; the rebinding target is another receiver on 127.0.0.1, same port."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time

import pytest
import redis

from worker.local.redis_server import free_port
from worker.sandbox.receiver import make_receiver
from worker.webhooks.delivery import Deliverer
from worker.webhooks.endpoints import Endpoints
from worker.webhooks.outbox import Dispatcher
from worker.webhooks.signing import new_secret

pytestmark = pytest.mark.integration

PREFIX = "rebind-test"
NAME = "hooks.rebind.test"
PUBLIC = "127.0.0.2"  # counts as global in these tests (``rebinding``)


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    for key in c.scan_iter(match=f"{PREFIX}:*"):
        c.delete(key)
    yield c
    c.close()


@pytest.fixture
def receivers():
    """(the checked one on PUBLIC, the rebinding target on 127.0.0.1), on one port, one secret."""
    secret, port = new_secret(), free_port()
    servers = [make_receiver(host, port, secrets=[secret], path="/webhooks") for host in (PUBLIC, "127.0.0.1")]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        server.secret, server.port = secret, port
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def rebinding(monkeypatch):
    """The system resolver, as a rebinding attacker's DNS answers NAME: a public address the
    first time, 127.0.0.1 every time after. Every other name and every address as usual."""
    real = socket.getaddrinfo
    asked = []
    is_global = ipaddress.IPv4Address.is_global
    monkeypatch.setattr(ipaddress.IPv4Address, "is_global",
                        property(lambda self: str(self) == PUBLIC or is_global.fget(self)))

    def getaddrinfo(host, port, *args, **kwargs):
        if host == NAME:
            asked.append(host)
            address = PUBLIC if len(asked) == 1 else "127.0.0.1"
            return real(address, port, *args, **kwargs)
        return real(host, port, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def _event(client, dispatcher, trade_no="T1"):
    client.xadd(dispatcher.outbox, {"type": "checkout.paying", "tradeNo": trade_no, "sequence": 1,
                                    "at": int(time.time() * 1000),
                                    "record": json.dumps(["tradeNo", trade_no, "state", "paying"])})
    sent = []
    dispatcher.send_deliver = sent.append
    dispatcher.run()
    return [m for batch in sent for m in batch]


def test_a_name_that_rebinds_to_loopback_after_the_check_gets_no_request_there(client, receivers, rebinding):
    checked, target = receivers
    # added while the name still answered a public address (stored straight away: the check of
    # `add` is not what is tested here)
    endpoints = Endpoints(client, PREFIX, allow_private=False, rotation_grace=60)
    record = {"id": "ep_rebind", "url": f"http://{NAME}:{checked.port}/webhooks",
              "secrets": [{"secret": checked.secret, "expiresAt": None}], "types": [], "enabled": True,
              "disabledReason": None, "failingSince": None, "createdAt": int(time.time() * 1000)}
    client.hset(endpoints.key, record["id"], json.dumps(record))
    dispatcher = Dispatcher(client, PREFIX, endpoints, lambda m: None)
    deliverer = Deliverer(dispatcher, endpoints, schedule=(5,), timeout=5, disable_after=10 ** 9,
                          allow_private=False)
    members = _event(client, dispatcher)
    # the check saw the allowed address; the connection went there, never to 127.0.0.1
    assert deliverer.deliver(members) == {"delivered": 1}
    assert checked.inbox.stats()["verified"] == 1
    assert target.inbox.stats()["verified"] == 0 and target.inbox.events() == []
    # the name was looked up once: the connection used the checked address, not a second answer
    assert rebinding == [NAME]
    # and the next delivery within the minute goes to the same checked address
    assert deliverer.deliver(_event(client, dispatcher, "T4")) == {"delivered": 1}
    assert checked.inbox.stats()["verified"] == 2 and target.inbox.stats()["verified"] == 0
    # a minute later the name is checked again: now it is loopback, refused before any connection
    deliverer.clock = lambda: time.time() + 61
    assert deliverer.deliver(_event(client, dispatcher, "T5")) == {"retry": 1}
    assert dispatcher.attempts("T5")[-1]["status"] == "refused_url"
    assert target.inbox.stats()["verified"] == 0


class Answering:
    """A loopback HTTP server answering every request with ``status`` and a body of its own."""

    BODY = b'{"error": "RECEIVER-BODY-7731", "internal": "stack trace at db-01.corp:5432"}'

    def __init__(self, status: int):
        self.status = status
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hooks"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n%s" % (self.status, len(self.BODY), self.BODY))

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("status,result,reason", [(400, "failed", "bad request"), (503, "retry", "unavailable"),
                                                  (200, "delivered", "delivered")])
def test_an_attempt_keeps_a_status_and_our_reason_never_the_receivers_answer(client, status, result, reason):
    server = Answering(status)
    try:
        endpoints = Endpoints(client, PREFIX, allow_private=True, rotation_grace=60)
        endpoints.add(server.url)
        dispatcher = Dispatcher(client, PREFIX, endpoints, lambda m: None)
        deliverer = Deliverer(dispatcher, endpoints, schedule=(5,), timeout=5, disable_after=10 ** 9,
                              allow_private=True)
        assert deliverer.deliver(_event(client, dispatcher, "T2")) == {result: 1}
        stored = b"".join(client.lrange(dispatcher.attempts_key("T2"), 0, -1))
        assert b"RECEIVER-BODY" not in stored and b"db-01" not in stored
        attempt = dispatcher.attempts("T2")[-1]
        assert attempt["status"] == status and attempt["reason"] == reason and "response" not in attempt
    finally:
        server.close()


def test_attempts_recorded_before_keep_showing_no_receiver_body(client):
    """An attempt stored by an earlier version kept the answer's first 200 bytes: never shown."""
    endpoints = Endpoints(client, PREFIX, allow_private=True, rotation_grace=60)
    dispatcher = Dispatcher(client, PREFIX, endpoints, lambda m: None)
    client.rpush(dispatcher.attempts_key("T3"), json.dumps({
        "at": 1, "endpoint": "default", "webhookId": "msg_1-0", "type": "checkout.paying", "sequence": 1,
        "attempt": 1, "status": 404, "latencyMs": 3, "response": "RECEIVER-BODY-OLD"}))
    (attempt,) = dispatcher.attempts("T3")
    assert "response" not in attempt and attempt["reason"] == "not found"
