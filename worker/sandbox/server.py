"""What the local development servers share (the sandbox gateway, the webhook receiver): a
request handler that logs method, path and status only and can drop a connection on purpose,
and the serve-until-SIGTERM loop that prints one line once listening, for a parent to wait on."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

__all__ = ["QuietHandler", "serve_until_stopped"]


class QuietHandler(BaseHTTPRequestHandler):
    """Logs to ``logger`` (set by subclasses) method, path and status, never bodies or headers;
    keep-alive; a method the subclass has no ``do_X`` for is answered 405 by its ``_send_json``."""

    logger = logging.getLogger(__name__)
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes; with Nagle on, the body waits ~40 ms for an ACK
    disable_nagle_algorithm = True

    def __getattr__(self, name: str):
        # BaseHTTPRequestHandler answers 501 for a method without do_X; 405 is the truth
        if name.startswith("do_"):
            return self._method_not_allowed
        raise AttributeError(name)

    def _method_not_allowed(self) -> None:
        self.close_connection = True  # any request body was left unread
        self._send_json(405, {"error": "method not allowed"})

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone: that is what was asked

    def log_request(self, code: object = "-", size: object = "-") -> None:
        # method, path and status only: bodies and query strings may carry payer data or a record
        self.logger.info("%s %s %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: object) -> None:
        pass  # send_error and timeouts come here with raw request text; log_request has the status


def serve_until_stopped(server, banner: str) -> None:
    """Serve until SIGTERM or Ctrl-C; print ``banner`` once listening; close the socket after."""

    def _stop(signum, frame):
        raise SystemExit(0)  # unwinds serve_forever in the main thread; finally closes the socket

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
    print(banner, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
