"""One webhook POST over a kept-alive connection, bounded by a total deadline.

``http.client`` directly, one connection per thread and origin: a delivery is one small request
and a status line, and urllib3's pool and response wrapper cost as much CPU again as the exchange
itself (bench table 9). The socket timeout is reset before every read to what is left of the
request's deadline, so a receiver that trickles its answer a byte at a time cannot hold a thread
past ``total`` (a per-read timeout alone would not bound it).
"""

from __future__ import annotations

import http.client
import io
import socket
import threading
import time
from urllib.parse import urlsplit

__all__ = ["Poster", "Answer", "PostFailed"]

_SNIPPET = 200


class PostFailed(Exception):
    """No answer: ``kind`` is ``timeout`` or ``connection``; the message names the cause, never the body."""

    def __init__(self, kind: str, cause: str):
        super().__init__(cause)
        self.kind = kind


class Answer:
    __slots__ = ("status", "headers", "snippet")

    def __init__(self, status: int, headers: http.client.HTTPMessage, snippet: bytes):
        self.status, self.headers, self.snippet = status, headers, snippet


class _DeadlineReader(io.RawIOBase):
    """The response side of a socket: every read may only use what is left of the deadline."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock, self.deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the answer took longer than the request's deadline")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class _Connection(http.client.HTTPConnection):
    deadline = 0.0

    def getresponse(self):
        # http.client builds the response from sock.makefile("rb"); give it the deadline-bound reader
        real = self.sock
        self.sock = _SocketView(real, self.deadline)
        try:
            return super().getresponse()
        finally:
            if self.sock is not None:  # None: http.client closed the connection meanwhile
                self.sock = real


class _HTTPSConnection(http.client.HTTPSConnection, _Connection):
    pass


class _SocketView:
    """What ``HTTPResponse`` needs of a socket (``makefile``), reading under a deadline."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock, self._deadline = sock, deadline

    def makefile(self, mode: str, *args, **kwargs):
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))

    def __getattr__(self, name):
        return getattr(self._sock, name)


class Poster:
    """POSTs with keep-alive; safe to share between threads (each has its own connections)."""

    def __init__(self, *, connect_timeout: float, total: float):
        self.connect_timeout, self.total = connect_timeout, total
        self._local = threading.local()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname, parts.port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        deadline = time.monotonic() + self.total
        for reused in (True, False):
            conn, was_open = self._connection(origin, reused)
            conn.deadline = deadline
            try:
                conn.request("POST", target, body=body, headers=headers)
                response = conn.getresponse()
                snippet = response.read(_SNIPPET)
                if not response.isclosed():  # more than the snippet: not worth keeping the connection for
                    conn.close()
                return Answer(response.status, response.headers, snippet)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                conn.close()
                if was_open and time.monotonic() < deadline:
                    continue  # a kept-alive connection the receiver had closed: once more, afresh
                raise PostFailed("connection", type(exc).__name__) from None
            except (TimeoutError, socket.timeout) as exc:
                conn.close()
                raise PostFailed("timeout", type(exc).__name__) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise PostFailed("connection", type(exc).__name__) from None
        raise PostFailed("connection", "no connection")  # not reached: the second try raises or returns

    def _connection(self, origin: tuple, reuse: bool) -> tuple[_Connection, bool]:
        pool = self._local.__dict__.setdefault("pool", {})
        conn = pool.get(origin)
        if conn is not None and reuse and conn.sock is not None:
            return conn, True
        scheme, host, port = origin
        cls = _HTTPSConnection if scheme == "https" else _Connection
        conn = cls(host, port, timeout=self.connect_timeout)
        pool[origin] = conn
        return conn, False
