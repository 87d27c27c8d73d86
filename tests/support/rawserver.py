"""A loopback HTTP/1.1 server whose answers a test scripts (the webhook POST's and the gateway
client's tests): it counts connections, requests and the connections it closed."""

from __future__ import annotations

import socket
import threading

__all__ = ["RawServer"]


class RawServer:
    """A loopback HTTP/1.1 server whose answers the test scripts; counts connections and requests."""

    def __init__(self, answer):
        self.answer = answer  # (conn, request_number) -> keep the connection open?
        self.connections = 0
        self.requests = 0
        self.closed = 0  # connections this server has closed
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.url = f"{self.base}/hooks"
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
        try:
            with conn:
                self._exchange(conn)
        finally:
            self.closed += 1

    def _exchange(self, conn: socket.socket):
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
