"""A small HTTP/1.1 client of our own: one request as one buffer, the answer's head split by
hand, kept-alive connections per thread. The gateway's requests (``worker.gateway.client``) and
the webhooks' POSTs (``worker.webhooks.poster``) go through it.

Why not ``http.client``/urllib3: a request of ours is one small POST and a small JSON answer, and
``http.client`` spent about half of a request's CPU building the request header by header and
parsing the answer's headers through ``email.feedparser``, with urllib3's pool and response
wrapper costing as much again (BENCHMARKS.md §7 and §9). Here the request is one bytes buffer
sent with one ``sendall``; the answer's head is read up to its blank line (at most 16 KiB) and
split into a small case-insensitive mapping; the body is framed by ``Content-Length``,
``Transfer-Encoding: chunked`` or the connection's close, and kept up to a limit. Interim ``1xx``
answers are skipped. TLS through ``ssl.create_default_context()`` (certificate and host name
verified), ALPN ``http/1.1``.

``Gateway`` tells a request that never left (refused, unreachable, connect timeout: ``NotSent``)
from one that may have arrived (``NoAnswer``): that difference decides whether a checkout may be
sent again blindly. It never retries by itself — not even on a kept-alive connection the server
had closed: such a connection is noticed before sending (it reads as closed) and replaced.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

__all__ = ["Headers", "Answer", "Broken", "Stale", "exchange", "build_request", "connect", "close",
           "KeptAlive", "Gateway", "NotSent", "NoAnswer"]

_MAX_HEAD = 16 * 1024  # status line and headers of one answer
_MAX_LINE = 4096  # a chunk-size or trailer line
_RECV = 16 * 1024
_monotonic = time.monotonic


class Headers:
    """An answer's headers: names case-insensitive, repeated ones joined with ``", "``."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, str]):
        self._values = values  # lower-case name -> value

    def get(self, name: str, default=None):
        return self._values.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def items(self):
        return self._values.items()

    def __repr__(self) -> str:
        return f"Headers({self._values!r})"


class Answer:
    """An answer: its status, headers and body (or its first ``limit`` bytes, ``snippet``)."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Headers, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    @property
    def snippet(self) -> bytes:
        return self.body


class Broken(Exception):
    """The answer is not HTTP we can read (the message is the cause): a connection failure."""


class Stale(Exception):
    """Reset or end of stream before any byte of the answer: on a kept-alive connection, the
    receiver had closed it; worth one more try on a fresh one."""


class _Reader:
    """The answer side of a socket: every read may only use what is left of the deadline."""

    __slots__ = ("sock", "deadline", "buf", "per_read")

    def __init__(self, sock: socket.socket, deadline: float, buf: bytes, per_read: float | None = None):
        self.sock, self.deadline, self.buf, self.per_read = sock, deadline, buf, per_read

    def fill(self, what: str) -> None:
        left = self.deadline - _monotonic()
        if left <= 0:
            raise TimeoutError("the answer took longer than the request's deadline")
        self.sock.settimeout(left if self.per_read is None else min(left, self.per_read))
        data = self.sock.recv(_RECV)
        if not data:
            raise Broken(what)
        self.buf += data

    def take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.fill("IncompleteRead")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def line(self) -> bytes:
        """One line without its line end (a chunk size, a trailer)."""
        end = self.buf.find(b"\n")
        while end < 0:
            if len(self.buf) > _MAX_LINE:
                raise Broken("LineTooLong")
            self.fill("IncompleteRead")
            end = self.buf.find(b"\n")
        if end > _MAX_LINE:
            raise Broken("LineTooLong")
        out, self.buf = self.buf[:end], self.buf[end + 1:]
        return out[:-1] if out.endswith(b"\r") else out


def _head_end(buf: bytes, start: int) -> tuple[int, int]:
    """Where the head ends (its blank line) and how long that line end is; (-1, 0) if not yet."""
    crlf = buf.find(b"\r\n\r\n", start)
    lf = buf.find(b"\n\n", start)
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf, 2
    return (crlf, 4) if crlf >= 0 else (-1, 0)


def _parse_head(head: bytes) -> tuple[bool, int, dict[str, str]]:
    """(HTTP/1.1?, status, headers) of a status line and header lines."""
    lines = head.decode("latin-1").split("\n")
    status_line = lines[0].rstrip("\r")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if version not in ("HTTP/1.1", "HTTP/1.0") or not (code.isdecimal() and len(code) == 3) \
            or rest[3:4] not in ("", " ") or code[0] == "0":
        raise Broken("BadStatusLine")
    values: dict[str, str] = {}
    name = None
    for line in lines[1:]:
        line = line.rstrip("\r")
        if line[:1] in (" ", "\t"):  # obsolete line folding: more of the header before
            if name is not None:
                values[name] = f"{values[name]} {line.strip()}".rstrip()
            continue
        name, colon, value = line.partition(":")
        name = name.lower()
        if not colon or not name or name != name.strip():
            name = None  # not a header line: ignored (never a framing header)
            continue
        value = value.strip(" \t")
        values[name] = f"{values[name]}, {value}" if name in values else value
    return version == "HTTP/1.1", int(code), values


def _content_length(value: str) -> int:
    lengths = {v.strip() for v in value.split(",")}
    if len(lengths) != 1:
        raise Broken("InvalidContentLength")
    length = lengths.pop()
    if not (length.isdecimal() and length.isascii()):
        raise Broken("InvalidContentLength")
    return int(length)


def _read_chunked(reader: _Reader, limit: int) -> tuple[bytes, bool]:
    """(the first ``limit`` bytes of a chunked body, was the whole body read within them?)"""
    kept = b""
    while True:
        size_field = reader.line().split(b";", 1)[0].strip()
        if not size_field or size_field.translate(None, b"0123456789abcdefABCDEF"):
            raise Broken("InvalidChunkLength")
        size = int(size_field, 16)
        if size == 0:
            while reader.line():  # trailers, up to the blank line
                pass
            return kept, True
        if len(kept) + size > limit:  # longer than we keep: take what fills the limit, no more
            return kept + reader.take(limit - len(kept)), False
        kept += reader.take(size)
        if reader.line():
            raise Broken("InvalidChunk")


def _read_until_close(reader: _Reader, limit: int) -> tuple[bytes, bool]:
    """(the first ``limit`` bytes of a body framed by the connection's close, was it all?)"""
    while len(reader.buf) < limit:
        try:
            reader.fill("end")
        except Broken:
            return reader.buf, True
    return reader.buf[:limit], False  # as much as is kept: the rest is not waited for


def exchange(sock: socket.socket, request: bytes, deadline: float, *, limit: int,
             per_read: float | None = None) -> tuple[int, Headers, bytes, bool, bool]:
    """Send the request, read the answer: (status, headers, body — its first ``limit`` bytes —,
    was the whole body read, may the connection be kept?). Every read is bounded by what is left
    of ``deadline`` (and by ``per_read``). ``Stale``: reset or closed before any byte of the
    answer; ``Broken``: not HTTP we can read; ``TimeoutError``/``OSError`` as they come."""
    left = deadline - _monotonic()
    if left <= 0:
        raise TimeoutError("no time left for the request")
    sock.settimeout(left)
    try:
        sock.sendall(request)
        left = deadline - _monotonic()
        if left <= 0:
            raise TimeoutError("the answer took longer than the request's deadline")
        sock.settimeout(left if per_read is None else min(left, per_read))
        first = sock.recv(_RECV)
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, ssl.SSLEOFError) as exc:
        raise Stale(type(exc).__name__) from None
    if not first:
        raise Stale("RemoteDisconnected")
    reader = _Reader(sock, deadline, first, per_read)
    while True:
        searched = 0
        end, sep = _head_end(reader.buf, 0)
        while end < 0:
            if len(reader.buf) > _MAX_HEAD:
                raise Broken("HeadersTooLarge")
            searched = max(0, len(reader.buf) - 3)
            reader.fill("RemoteDisconnected")
            end, sep = _head_end(reader.buf, searched)
        if end > _MAX_HEAD:
            raise Broken("HeadersTooLarge")
        http11, status, values = _parse_head(reader.buf[:end])
        reader.buf = reader.buf[end + sep:]
        if status >= 200:
            break
        if status == 101:  # we asked for no protocol switch
            raise Broken("UnexpectedSwitch")
        # 100 Continue, 103 Early Hints...: no body, the answer follows
    connection = values.get("connection")
    if connection is None:
        keep = http11
    else:
        tokens = {t.strip().lower() for t in connection.split(",")}
        keep = "close" not in tokens and (http11 or "keep-alive" in tokens)
    encoding = values.get("transfer-encoding")
    length = values.get("content-length")
    whole = True
    if status in (204, 304):
        body = b""
    elif encoding is not None:
        if encoding.rsplit(",", 1)[-1].strip().lower() == "chunked":
            body, whole = _read_chunked(reader, limit)
            keep = keep and whole and length is None  # both framings given: not a connection to trust
        else:
            (body, whole), keep = _read_until_close(reader, limit), False
    elif length is not None:
        n = _content_length(length)
        if n > limit:
            body, whole, keep = reader.take(limit), False, False
        else:
            body = reader.take(n)
    else:
        (body, whole), keep = _read_until_close(reader, limit), False
    if reader.buf:  # bytes after the answer: nothing we asked for
        keep = False
    return status, Headers(values), body, whole, keep


def build_request(origin: tuple, target: str, body: bytes, headers: dict[str, str]) -> bytes:
    """``POST target`` to ``origin`` (scheme, host, port) as one buffer; ``Host`` and
    ``Content-Length`` are ours, never the caller's."""
    scheme, host, port = origin
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != (443 if scheme == "https" else 80):
        host = f"{host}:{port}"
    lines = [f"POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers.items())
    lines.append("\r\n")
    head = "".join(lines)
    if head.count("\n") != len(headers) + 4 or head.count("\r") != len(headers) + 4:
        raise ValueError("a header name or value holds a line break")
    return head.encode("latin-1") + body


def connect(scheme: str, host: str, port: int | None, *, timeout: float, deadline: float,
            context_for, address: str | None = None) -> socket.socket:
    """A connection to ``address`` (or the host's), TLS for https (``context_for()`` gives the
    context), bounded by ``timeout`` and ``deadline``."""
    left = deadline - _monotonic()
    if left <= 0:
        raise TimeoutError("no time left to connect")
    timeout = min(timeout, left)
    sock = socket.create_connection((address or host, port or (443 if scheme == "https" else 80)),
                                    timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            sock.settimeout(max(0.001, min(timeout, deadline - _monotonic())))
            sock = context_for().wrap_socket(sock, server_hostname=host)  # the handshake, bounded
    except BaseException:
        sock.close()
        raise
    return sock


def default_context() -> ssl.SSLContext:
    context = ssl.create_default_context()  # verifies the certificate and the host name
    context.set_alpn_protocols(["http/1.1"])
    return context


def close(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass


class NotSent(Exception):
    """The request never left (``kind``: ``connection`` or ``timeout``): safe to send again."""

    def __init__(self, kind: str, cause: str):
        super().__init__(cause)
        self.kind = kind


class NoAnswer(Exception):
    """The request was (or may have been) sent and no answer came (``kind``: ``connection`` or
    ``timeout``): it may have arrived."""

    def __init__(self, kind: str, cause: str):
        super().__init__(cause)
        self.kind = kind


def _closed(sock: socket.socket) -> bool:
    """A kept-alive connection the server closed (or wrote to unasked) reads as ready."""
    try:
        readable, _, errored = select.select([sock], [], [sock], 0)
    except (OSError, ValueError):
        return True
    return bool(readable or errored)


class KeptAlive:
    """What a client of kept-alive connections holds: its connections, one set per thread, and
    its TLS context (``ssl_context``, or ``default_context()`` made on first use)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None):
        self._ssl_context = ssl_context
        self._local = threading.local()

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = default_context()
        return self._ssl_context

    def _pool(self) -> dict:
        return self._local.__dict__.setdefault("pool", {})


class Gateway(KeptAlive):
    """POSTs to one service over kept-alive connections (one per thread and origin); safe to
    share between threads. ``connect_timeout`` bounds connecting, ``read_timeout`` each read,
    ``total`` the whole request; the body is read up to ``max_body`` bytes (longer: ``NoAnswer``)."""

    def __init__(self, *, connect_timeout: float, read_timeout: float, total: float,
                 max_body: int = 1 << 20, ssl_context: ssl.SSLContext | None = None):
        super().__init__(ssl_context)
        self.connect_timeout, self.read_timeout, self.total = connect_timeout, read_timeout, total
        self.max_body = max_body

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme, parts.hostname, parts.port
        if scheme not in ("http", "https") or not host:
            raise NotSent("connection", "InvalidURL")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = build_request((scheme, host, port), target, body, headers)
        origin = (scheme, host, port)
        deadline = _monotonic() + self.total
        pool = self._pool()
        sock = pool.pop(origin, None)
        if sock is not None and _closed(sock):
            close(sock)
            sock = None
        if sock is None:
            try:
                sock = connect(scheme, host, port, timeout=self.connect_timeout, deadline=deadline,
                               context_for=self._context)
            except (TimeoutError, socket.timeout) as exc:
                raise NotSent("timeout", type(exc).__name__) from None
            except OSError as exc:  # refused, unreachable, name not known, TLS refused
                raise NotSent("connection", type(exc).__name__) from None
        try:
            status, answer_headers, answer_body, whole, keep = exchange(
                sock, request, deadline, limit=self.max_body, per_read=self.read_timeout)
        except (TimeoutError, socket.timeout) as exc:
            close(sock)
            raise NoAnswer("timeout", type(exc).__name__) from None
        except (Stale, Broken) as exc:
            close(sock)
            raise NoAnswer("connection", str(exc)) from None
        except OSError as exc:
            close(sock)
            raise NoAnswer("connection", type(exc).__name__) from None
        if not whole:
            close(sock)
            raise NoAnswer("connection", "AnswerTooLarge")
        if keep:
            pool[origin] = sock
        else:
            close(sock)
        return Answer(status, answer_headers, answer_body)
