"""The heartbeat of a worker process: it renews the leases its submits hold, so a lease can be
short and a dead worker's jobs move on soon after it dies.

A submit registers its lease (``tradeNo`` and token) while it works on a job; one daemon thread
per process renews every registered lease every ``renew_every`` seconds, in one Redis round trip
(``JobStore.renew_leases``). The thread runs beside the task threads, so a submit stuck in a slow
request keeps its lease; a process that is dead or frozen renews nothing, its leases run out
(``Settings.lease``) and the reconciler or a redelivered message takes the job over, asking the
gateway first. A renewal that finds the lease gone (taken over) is logged; the submit finds out
at its next write, which is refused by the token (``worker.store.jobs``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from worker.logs import event
from worker.store.jobs import JobStore

__all__ = ["LeaseKeeper"]

log = logging.getLogger("vexora.lease")

_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class LeaseKeeper:
    """Renews the leases held by this process; safe to share between its threads."""

    def __init__(self, store: JobStore, *, lease_seconds: float, renew_every: float):
        self.store = store
        self.lease_seconds = lease_seconds
        self.renew_every = renew_every
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def hold(self, trade_no: str, token: str) -> Iterator[None]:
        """Keep the lease on ``trade_no`` renewed while the block runs."""
        with self._lock:
            self._held[trade_no] = token
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="vexora-lease-heartbeat", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                if self._held.get(trade_no) == token:
                    del self._held[trade_no]

    def held(self) -> dict[str, str]:
        with self._lock:
            return dict(self._held)

    def renew_now(self) -> set[str]:
        """One heartbeat: renew every held lease; the tradeNos whose lease is no longer ours."""
        held = self.held()
        lost = self.store.renew_leases(held, self.lease_seconds)
        for trade_no in lost:
            # taken over, or the job moved on
            event(log, logging.WARNING, "lease_not_held", tradeNo=trade_no)
        return lost

    def stop(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._wake.wait(self.renew_every):
            try:
                self.renew_now()
            except _REDIS_DOWN as exc:
                # the next beat tries again; if Redis stays away the lease runs out, as it must
                event(log, logging.WARNING, "lease_heartbeat_failed", error=type(exc).__name__, detail=str(exc))
