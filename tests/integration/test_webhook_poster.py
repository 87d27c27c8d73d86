"""The webhook POST against real sockets: keep-alive, a closed kept-alive connection, a receiver
that trickles its answer past the deadline, a refused connection, a long answer."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from worker.local.redis_server import free_port
from worker.webhooks.poster import PostFailed, Poster

pytestmark = pytest.mark.integration

OK = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


class RawServer:
    """A loopback HTTP/1.1 server whose answers the test scripts; counts connections and requests."""

    def __init__(self, answer):
        self.answer = answer  # (conn, request_number) -> keep the connection open?
        self.connections = 0
        self.requests = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hooks"
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket):
        with conn:
            reader = conn.makefile("rb")
            while not self._stop.is_set():
                length = 0
                line = reader.readline()
                if not line:
                    return
                while line not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                    line = reader.readline()
                reader.read(length)
                self.requests += 1
                if not self.answer(conn, self.requests):
                    return

    def close(self):
        self._stop.set()
        self.sock.close()


@pytest.fixture
def server(request):
    servers = []

    def make(answer):
        s = RawServer(answer)
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.close()


def poster(total: float = 5.0) -> Poster:
    return Poster(connect_timeout=2.0, total=total)


def test_deliveries_share_one_kept_alive_connection(server):
    s = server(lambda conn, n: conn.sendall(OK) or True)
    p = poster()
    assert [p.post(s.url, b"{}", {"content-type": "application/json"}).status for _ in range(3)] == [204] * 3
    assert (s.connections, s.requests) == (1, 3)


def test_a_kept_alive_connection_the_receiver_closed_is_replaced(server):
    s = server(lambda conn, n: conn.sendall(OK) and False)  # answers, then closes without saying so
    p = poster()
    assert p.post(s.url, b"{}", {}).status == 204
    assert p.post(s.url, b"{}", {}).status == 204
    assert (s.connections, s.requests) == (2, 2)


def test_a_trickling_answer_is_cut_at_the_deadline(server):
    def trickle(conn, n):
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(100):  # a header byte every 0.1 s: each read is quick, the whole is not
            time.sleep(0.1)
            try:
                conn.sendall(b"X")
            except OSError:
                return False
        return False
    s = server(trickle)
    started = time.monotonic()
    with pytest.raises(PostFailed) as failed:
        poster(total=0.8).post(s.url, b"{}", {})
    assert failed.value.kind == "timeout"
    assert time.monotonic() - started < 5  # bounded by the deadline, not by 100 reads of 0.1 s


def test_a_refused_connection_is_a_connection_failure():
    with pytest.raises(PostFailed) as failed:
        poster().post(f"http://127.0.0.1:{free_port()}/hooks", b"{}", {})
    assert failed.value.kind == "connection" and "{}" not in str(failed.value)


def test_a_long_answer_keeps_its_first_200_bytes_and_the_next_post_still_works(server):
    body = b"<html>" + b"a" * 5000 + b"</html>"
    s = server(lambda conn, n: conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\n"
                                            b"Content-Length: %d\r\n\r\n" % len(body) + body) or True)
    p = poster()
    answer = p.post(s.url, b"{}", {})
    assert answer.status == 503 and answer.headers["Retry-After"] == "7" and answer.snippet == body[:200]
    assert p.post(s.url, b"{}", {}).status == 503  # on a fresh connection: the rest was not read
    assert s.connections == 2
