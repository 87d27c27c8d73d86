"""One webhook POST over a kept-alive connection, bounded by a total deadline.

The small HTTP/1.1 client of ``worker.gateway.http1`` (the gateway's requests use it too) over a
socket (TLS through ``ssl.create_default_context()``,
certificates verified), one connection per thread and origin. A delivery is one small request and
a status line: ``http.client`` spent about half of a delivery's CPU building the request header by
header and parsing the answer's headers through ``email.feedparser``, and urllib3's pool and
response wrapper cost as much again before it (bench table 9). Here the request is one bytes
buffer sent with one ``sendall``; the answer's head is read up to its blank line (at most 16 KiB)
and split into a small case-insensitive mapping. Measured in-process (``prof_deliver.py``: 2000
deliveries to the local receiver, the deliverer's whole CPU per delivery, 7 alternated runs each on
the same machine): with ``http.client`` 0.35-0.47 ms (median 0.37), with this client 0.25-0.34 ms
(median 0.26).

Every read may only use what is left of the request's deadline (the socket timeout is set to it
before each read), so a receiver that trickles its answer a byte at a time cannot hold a thread
past ``total``; connecting is bounded by ``connect_timeout`` and the deadline. The body is framed
by ``Content-Length``, ``Transfer-Encoding: chunked`` or the connection's close; only its first
200 bytes are kept. The connection is kept for the next delivery only when the whole body was read
and fitted in those 200 bytes, nothing followed it, and the receiver allows it (HTTP/1.1 without
``Connection: close``, HTTP/1.0 only with ``keep-alive``). A kept-alive connection the receiver
had closed meanwhile (a reset, or the end of the stream before any answer) is replaced once,
within the deadline. Interim ``1xx`` answers are skipped. The request's ``Host`` and
``Content-Length`` are the client's own: callers do not pass them. ``address`` pins the connection
to an address the caller resolved and checked (the deliverer always gives one: no second lookup
that could answer otherwise); the ``Host`` header, TLS's SNI and the certificate check still use
the URL's host name. Without it, the name lookup before a new connection is the system resolver's,
not bounded by the deadline (as with ``http.client``). The answer's first bytes are read to frame
it and keep the connection; callers are told its status and headers, and record no more.
"""

from __future__ import annotations

import socket
import ssl
import time
from urllib.parse import urlsplit

from worker.gateway.http1 import Answer, Broken, Headers, KeptAlive, Stale, build_request, close, connect, exchange

__all__ = ["Poster", "Answer", "Headers", "PostFailed", "reason_for"]

_SNIPPET = 200
_monotonic = time.monotonic


_REASONS = {400: "bad request", 401: "unauthorized", 403: "forbidden", 404: "not found",
            405: "method not allowed", 408: "request timeout", 409: "conflict", 410: "gone",
            413: "payload too large", 415: "unsupported media type", 422: "unprocessable",
            429: "too many requests", 500: "server error", 502: "bad gateway", 503: "unavailable",
            504: "gateway timeout"}


def reason_for(status: int) -> str:
    """What an attempt records of an answer: our own words for its status, never its body."""
    if 200 <= status < 300:
        return "delivered"
    named = _REASONS.get(status)
    if named:
        return named
    return {1: "informational", 3: "redirect, not followed", 4: "refused by the receiver",
            5: "server error"}.get(status // 100, "unexpected status")


class PostFailed(Exception):
    """No answer: ``kind`` is ``timeout`` or ``connection``; the message names the cause, never the body."""

    def __init__(self, kind: str, cause: str):
        super().__init__(cause)
        self.kind = kind


class Poster(KeptAlive):
    """POSTs with keep-alive; safe to share between threads (each has its own connections).

    ``ssl_context``: for https, instead of ``ssl.create_default_context()`` (tests give one that
    trusts their own certificate authority)."""

    def __init__(self, *, connect_timeout: float, total: float, ssl_context: ssl.SSLContext | None = None):
        super().__init__(ssl_context)
        self.connect_timeout, self.total = connect_timeout, total

    def post(self, url: str, body: bytes, headers: dict[str, str], *, address: str | None = None) -> Answer:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme, parts.hostname, parts.port
        if scheme not in ("http", "https") or not host:
            raise PostFailed("connection", "InvalidURL")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not (target.isascii() and target.isprintable()) or " " in target:
            raise PostFailed("connection", "InvalidURL")
        origin = (scheme, host, port)
        request = build_request(origin, target, body, headers)
        pooled = (scheme, host, port, address)  # a connection is reused only to the same address
        deadline = _monotonic() + self.total
        pool = self._pool()
        sock = pool.pop(pooled, None)
        was_open = sock is not None
        while True:
            try:
                if sock is None:
                    # pinned: to the checked address itself, never a second lookup of the name
                    sock = connect(scheme, host, port, timeout=self.connect_timeout, deadline=deadline,
                                   context_for=self._context, address=address)
                status, answer_headers, snippet, _whole, keep = exchange(sock, request, deadline, limit=_SNIPPET)
            except Stale as exc:
                close(sock)
                sock = None
                if was_open and _monotonic() < deadline:
                    was_open = False
                    continue  # a kept-alive connection the receiver had closed: once more, afresh
                raise PostFailed("connection", str(exc)) from None
            except (TimeoutError, socket.timeout) as exc:
                close(sock)
                raise PostFailed("timeout", type(exc).__name__) from None
            except Broken as exc:
                close(sock)
                raise PostFailed("connection", str(exc)) from None
            except OSError as exc:
                close(sock)
                raise PostFailed("connection", type(exc).__name__) from None
            if keep:
                pool[pooled] = sock
            else:
                close(sock)
            return Answer(status, answer_headers, snippet)
