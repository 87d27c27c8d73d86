"""The gateway client against a real local server: what each transport failure is classified as."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.rawserver import RawServer
from worker.config.settings import Settings
from worker.domain.errors import AmbiguousError, DeclinedError, TransientError
from worker.gateway.client import GatewayClient
from worker.local.redis_server import free_port
from worker.sandbox import make_server
from worker.signing import verify

pytestmark = pytest.mark.integration

MERCHANT, SECRET = "M-CLIENT", "client-secret"
FIELDS = {"tradeNo": "", "userId": "u1", "amount": "300", "mobile": "09012345678",
          "firstname": "タロウ", "lastname": "ヤマダ", "email": "taro@example.com",
          "channelCode": "EWALLET", "wayCode": "PAYPAY", "ipAddress": "8.8.8.8",
          "notifyUrl": "http://merchant.test/notify", "returnUrl": "http://merchant.test/return"}


@pytest.fixture(scope="module")
def server():
    srv = make_server(merchant_no=MERCHANT, app_secret=SECRET)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def client(server):
    server.sandbox.reset()
    return GatewayClient(Settings(base_url=server.url, merchant_no=MERCHANT, app_secret=SECRET,
                                  connect_timeout=1, read_timeout=0.5))


def fields(n: int) -> dict:
    return {**FIELDS, "tradeNo": f"GC{n:06d}"}


def test_each_request_is_signed_afresh_with_a_new_timestamp(client):
    first, second = client.signed(FIELDS), client.signed(FIELDS)
    assert verify(first, SECRET) and verify(second, SECRET)
    assert "tradeNo" not in first  # empty values are never sent


def test_created_and_queried(client):
    reply = client.checkout(fields(1))
    assert reply.code == "0000" and reply.data["paymentLink"]
    assert client.query("GC000001").data["status"] == "0015"
    assert client.query("GC999999").code == "8000"


def test_refused_connection_is_transient_not_ambiguous():
    client = GatewayClient(Settings(base_url=f"http://127.0.0.1:{free_port()}", merchant_no=MERCHANT,
                                    app_secret=SECRET, connect_timeout=1, read_timeout=1))
    with pytest.raises(TransientError) as caught:
        client.checkout(fields(2))
    assert not isinstance(caught.value, AmbiguousError)


def test_read_timeout_is_ambiguous(client, server):
    server.sandbox.add_faults([{"kind": "slow_after_create", "delay": 1.5}])
    with pytest.raises(AmbiguousError):
        client.checkout(fields(3))


def test_dropped_answer_is_ambiguous(client, server):
    server.sandbox.add_faults([{"kind": "drop", "create": True}])
    with pytest.raises(AmbiguousError):
        client.checkout(fields(4))


def test_5xx_is_ambiguous_and_429_transient_with_retry_after(client, server):
    server.sandbox.add_faults([{"kind": "http_error", "status": 502},
                               {"kind": "retry_after", "delay": 7}])
    with pytest.raises(AmbiguousError) as first:
        client.checkout(fields(5))
    assert first.value.http_status == 502
    with pytest.raises(TransientError) as second:
        client.checkout(fields(5))
    assert second.value.http_status == 429 and second.value.retry_after == 7.0
    assert not isinstance(second.value, AmbiguousError)


def test_other_4xx_is_declined(server):
    client = GatewayClient(Settings(base_url=server.url + "/nowhere", merchant_no=MERCHANT,
                                    app_secret=SECRET))
    with pytest.raises(DeclinedError) as caught:
        client.checkout(fields(6))
    assert caught.value.http_status == 404


def test_threads_share_one_client(client, server):
    """One client (one connection pool) serves a worker's threads at once."""
    replies, errors = [], []

    def send(t: int) -> None:
        try:
            replies.extend(client.checkout(fields(100 + t * 10 + i)) for i in range(5))
        except Exception as exc:  # collected, so a failure shows here and not in a thread
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(replies) == 40 and {r.code for r in replies} == {"0000"}
    assert len({r.data["paymentLink"] for r in replies}) == 40


def test_redirects_are_not_followed(server):
    """A 3xx is not the documented answer: it is ambiguous, and the client never follows it."""
    target = server.url

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(307)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    redirector = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=redirector.serve_forever, daemon=True).start()
    try:
        server.sandbox.reset()
        client = GatewayClient(Settings(base_url=f"http://127.0.0.1:{redirector.server_port}",
                                        merchant_no=MERCHANT, app_secret=SECRET))
        with pytest.raises(AmbiguousError) as caught:
            client.checkout(fields(7))
        assert caught.value.http_status == 307
    finally:
        redirector.shutdown()
        redirector.server_close()
    assert server.sandbox.stats()["checkout"] == {}  # the sandbox never saw it


def _once(answer: bytes):
    """A RawServer script: answer the connection's first request, then close it (keep-alive was
    promised: no ``Connection: close``)."""
    return lambda conn, _n: conn.sendall(answer) and False


def _raw_client(server: RawServer) -> GatewayClient:
    return GatewayClient(Settings(base_url=server.base, merchant_no=MERCHANT, app_secret=SECRET,
                                  connect_timeout=1, read_timeout=1))


def test_a_kept_alive_connection_the_gateway_closed_is_replaced_and_nothing_is_sent_twice():
    from worker.waiting import wait_until

    body = b'{"code":"0000","msg":"ok","data":{"status":"0015","paymentLink":"https://pay.example/1"}}'
    server = RawServer(_once(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body)))
    client = _raw_client(server)
    assert client.checkout(fields(20)).code == "0000"
    wait_until(lambda: server.closed == 1 and server.requests == 1, timeout=5,
               what="the first request answered and its connection closed")
    # the server has closed the connection it promised to keep: the next request sees that
    # before sending, connects afresh, and is sent exactly once
    assert client.checkout(fields(21)).code == "0000"
    assert (server.connections, server.requests) == (2, 2)
    server.close()


def test_a_chunked_answer_is_read_and_an_endless_one_is_ambiguous():
    body = b'{"code":"0000","msg":"ok","data":{"status":"0015"}}'
    chunked = RawServer(_once(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)))
    assert _raw_client(chunked).checkout(fields(22)).data["status"] == "0015"
    chunked.close()
    huge = RawServer(_once(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (2 << 20) + b" " * (2 << 20)))
    with pytest.raises(AmbiguousError):  # more than a gateway answer can be: not read, not trusted
        _raw_client(huge).checkout(fields(23))
    huge.close()
