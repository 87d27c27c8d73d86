"""The webhook POST against real sockets: keep-alive, a closed kept-alive connection, a receiver
that trickles its answer past the deadline, a refused connection, a long answer; then the client's
HTTP/1.1 itself: chunked and until-close bodies, Connection: close, HTTP/1.0, interim 1xx answers,
oversized headers, status lines that are not HTTP, header names in any case, the request's bytes,
and https with certificate verification on."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from tests.support.rawserver import RawServer
from worker.local.redis_server import free_port
from worker.webhooks.poster import PostFailed, Poster

pytestmark = pytest.mark.integration

OK = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


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


# --- the HTTP/1.1 client itself: framing, keep-alive rules, interim answers, broken answers, TLS

def test_a_chunked_answer_is_read_whole_and_the_connection_kept(server):
    s = server(lambda conn, n: conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                            b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n") or True)
    p = poster()
    answers = [p.post(s.url, b"{}", {}) for _ in range(2)]
    assert [(a.status, a.snippet) for a in answers] == [(200, b"hello, world")] * 2
    assert (s.connections, s.requests) == (1, 2)


def test_a_long_chunked_answer_keeps_its_first_200_bytes_on_a_connection_not_kept(server):
    chunk = b"b" * 150
    s = server(lambda conn, n: conn.sendall(b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"
                                            + b"96\r\n" + chunk + b"\r\n" + b"96\r\n" + chunk + b"\r\n0\r\n\r\n") or True)
    p = poster()
    answer = p.post(s.url, b"{}", {})
    assert answer.status == 500 and answer.snippet == (chunk * 2)[:200]
    assert p.post(s.url, b"{}", {}).status == 500
    assert s.connections == 2


def test_connection_close_is_honoured(server):
    # the server would go on answering on the same connection: a second connection is the poster's doing
    s = server(lambda conn, n: conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: Close\r\n"
                                            b"Content-Length: 0\r\n\r\n") or True)
    p = poster()
    assert [p.post(s.url, b"{}", {}).status for _ in range(2)] == [204, 204]
    assert (s.connections, s.requests) == (2, 2)


def test_an_answer_without_length_is_read_until_close(server):
    s = server(lambda conn, n: conn.sendall(b"HTTP/1.1 200 OK\r\n\r\naccepted") and False)
    p = poster()
    assert [p.post(s.url, b"{}", {}).snippet for _ in range(2)] == [b"accepted"] * 2
    assert s.connections == 2


def test_http_1_0_answers_keep_the_connection_only_with_keep_alive(server):
    plain = server(lambda conn, n: conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok") or True)
    kept = server(lambda conn, n: conn.sendall(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
                                               b"Content-Length: 2\r\n\r\nok") or True)
    p = poster()
    for s in (plain, kept):
        assert [(a.status, a.snippet) for a in (p.post(s.url, b"{}", {}) for _ in range(2))] == [(200, b"ok")] * 2
    assert (plain.connections, kept.connections) == (2, 1)


def test_an_interim_100_continue_is_skipped(server):
    s = server(lambda conn, n: conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n"
                                            b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
                                            b"HTTP/1.1 202 Accepted\r\nContent-Length: 4\r\n\r\nsure") or True)
    p = poster()
    answer = p.post(s.url, b"{}", {})
    assert (answer.status, answer.snippet, answer.headers.get("Link")) == (202, b"sure", None)
    assert p.post(s.url, b"{}", {}).status == 202
    assert s.connections == 1


def test_oversized_headers_are_a_connection_failure(server):
    s = server(lambda conn, n: conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"X-Big: a\r\n" * 3000
                                            + b"Content-Length: 0\r\n\r\n") or True)
    with pytest.raises(PostFailed) as failed:
        poster().post(s.url, b"{}", {})
    assert (failed.value.kind, str(failed.value)) == ("connection", "HeadersTooLarge")


@pytest.mark.parametrize("answer", [b"220 mail.example ESMTP ready\r\n\r\n", b"HTTP/1.1 OK\r\n\r\n",
                                    b"HTTP/2 200\r\n\r\n", b"HTTP/1.1 2000 Huh\r\n\r\n"])
def test_a_status_line_that_is_not_http_is_a_connection_failure(server, answer):
    s = server(lambda conn, n: conn.sendall(answer) or True)
    with pytest.raises(PostFailed) as failed:
        poster().post(s.url, b"{}", {})
    assert (failed.value.kind, str(failed.value)) == ("connection", "BadStatusLine")


def test_retry_after_is_read_whatever_its_case(server):
    s = server(lambda conn, n: conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\nretry-AFTER:  30 \r\n"
                                            b"Content-Length: 0\r\n\r\n") or True)
    answer = poster().post(s.url, b"{}", {})
    assert answer.status == 429
    assert answer.headers.get("Retry-After") == answer.headers["retry-after"] == "30"
    assert "RETRY-AFTER" in answer.headers and answer.headers.get("Missing") is None


def test_the_request_is_one_buffer_with_host_length_and_the_given_headers():
    received = []
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        with conn:
            data = b""
            while not data.endswith(b"\r\n\r\n{}"):
                data += conn.recv(65536)
            received.append(data)
            conn.sendall(OK)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert poster().post(f"http://127.0.0.1:{port}/hooks?a=1", b"{}", {"webhook-id": "msg_1"}).status == 204
    finally:
        thread.join(5)
        listener.close()
    assert received == [f"POST /hooks?a=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 2\r\n"
                        f"webhook-id: msg_1\r\n\r\n{{}}".encode()]


def _self_signed(directory) -> tuple[str, str] | None:
    """(certificate, key) files for ``localhost`` only (not for 127.0.0.1), made with the system's
    ``openssl``; None where there is none."""
    cert, key = str(directory / "cert.pem"), str(directory / "key.pem")
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


class TLSServer(RawServer):
    """RawServer behind TLS with a self-signed certificate for ``localhost``."""

    def __init__(self, answer, context: ssl.SSLContext):
        self.context = context
        super().__init__(answer)
        self.port = self.sock.getsockname()[1]
        self.url = f"https://localhost:{self.port}/hooks"

    def _serve(self, conn: socket.socket):
        try:
            conn = self.context.wrap_socket(conn, server_side=True)
        except OSError:  # the poster did not trust us
            conn.close()
            return
        super()._serve(conn)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    made = _self_signed(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("neither the cryptography package nor openssl to make a certificate with")
    return made


@pytest.fixture
def tls_server(certificate):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    s = TLSServer(lambda conn, n: conn.sendall(OK) or True, context)
    yield s
    s.close()


def test_https_verifies_the_receiver_certificate(tls_server, certificate):
    with pytest.raises(PostFailed) as failed:  # the default context: our self-signed certificate is refused
        poster().post(tls_server.url, b"{}", {})
    assert (failed.value.kind, str(failed.value)) == ("connection", "SSLCertVerificationError")

    trusting = ssl.create_default_context(cafile=certificate[0])
    p = Poster(connect_timeout=2.0, total=5.0, ssl_context=trusting)
    assert [p.post(tls_server.url, b"{}", {}).status for _ in range(2)] == [204, 204]
    assert (tls_server.connections, tls_server.requests) == (2, 2)  # the refused one, then one kept alive

    with pytest.raises(PostFailed) as failed:  # trusted, but not for this name: the host name is checked too
        p.post(f"https://127.0.0.1:{tls_server.port}/hooks", b"{}", {})
    assert (failed.value.kind, str(failed.value)) == ("connection", "SSLCertVerificationError")
