"""The sandbox's callback sender (docs/gateway.md §Callbacks (notify)): it builds each signed notification, posts it to
the order's ``notifyUrl`` and resends it on the gateway's schedule until the merchant answers
HTTP 200 ``OK`` or the schedule runs out. A few daemon sender threads share one heap of due work
(deliveries, and plain timers such as the automatic payer's), woken by a condition; retry delays
and the send timeout scale by a time factor so tests can run a day's schedule in a second. Lost
callbacks are simulated by dropping deliveries on demand: the next ``count`` ones or every one
for a tradeNo (``drop``), or one chosen by the caller (``notify(order, lost=True)``, which the
automatic payer's scripted sequences use). A dropped delivery is recorded, never sent, and counted
in ``stats()["dropped"]``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial

import requests

from worker.gateway import signing

__all__ = ["Notifier", "Delivery", "callback_fields", "japan_time", "JST", "PAID_STATUSES",
           "RETRY_DELAYS"]

logger = logging.getLogger(__name__)

# resent after these many seconds, then abandoned: 9 deliveries in all
RETRY_DELAYS = (2, 5, 10, 30, 3600, 3 * 3600, 3 * 3600, 3 * 3600)
SEND_TIMEOUT = 10.0
MIN_SEND_TIMEOUT = 1.0  # scaled much lower, a healthy local receiver would look dead
SENDERS = 4  # one unreachable notifyUrl must not hold up every other order's callbacks
PAID_STATUSES = ("0000", "0001")
JST = timezone(timedelta(hours=9), "JST")  # Japan keeps no daylight saving time
_HEADERS = {"Content-Type": "application/json; charset=utf-8"}

Work = Callable[[requests.Session], None]


def japan_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, JST).strftime("%Y-%m-%d %H:%M:%S")


def callback_fields(order: Mapping, now_ms: int) -> dict[str, str]:
    """The callback's fields as the strings that are signed; ``amount`` is what was paid."""
    status = order["status"]
    paid = status in PAID_STATUSES
    fields = {"platFormTradeNo": order["platFormTradeNo"], "tradeNo": order["tradeNo"],
              "amount": f"{int(order.get('paidAmount') or 0) if paid else 0}.00",
              "status": status, "message": order.get("message") or "", "timestamp": str(now_ms),
              "successTime": japan_time(order["paidAt"]) if paid and order.get("paidAt") else "",
              "remark": order.get("remark") or ""}
    return {key: value for key, value in fields.items() if value != ""}  # never send empties


@dataclass(eq=False)
class Delivery:
    """One callback with all its resends."""

    id: int
    trade_no: str
    status: str
    url: str
    body: bytes = field(repr=False)
    epoch: int = field(repr=False)
    attempts: int = 0
    delivered: bool = False
    dropped: bool = False
    gave_up: bool = False
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None  # epoch seconds of the answer that accepted it

    def view(self) -> dict:
        return {"id": self.id, "tradeNo": self.trade_no, "status": self.status,
                "attempts": self.attempts, "delivered": self.delivered, "dropped": self.dropped,
                "gave_up": self.gave_up, "last_status": self.last_status,
                "last_error": self.last_error, "delivered_at": self.delivered_at}


def _attempt(session: requests.Session, delivery: Delivery,
             timeout: float) -> tuple[int | None, str | None, bool]:
    """(HTTP status, error, accepted) for one POST of the callback."""
    try:
        response = session.post(delivery.url, data=delivery.body, headers=_HEADERS,
                                timeout=timeout)
    except (requests.RequestException, ValueError) as exc:  # ValueError: an unusable notifyUrl
        return None, type(exc).__name__, False
    if response.status_code != 200:
        return response.status_code, None, False
    if response.content.strip() != b"OK":  # case-sensitive, as the gateway is
        return 200, "answer was not OK", False
    return 200, None, True


def _check_drops(count: object, trade_no: object) -> None:
    if count is None and trade_no is None:
        raise ValueError('body must be {"count": N} or {"tradeNo": "..."}')
    if count is not None and (type(count) is not int or count < 0):
        raise ValueError("count must be an integer >= 0")
    if trade_no is not None and (not isinstance(trade_no, str) or not trade_no):
        raise ValueError("tradeNo must be a non-empty string")


class Notifier:
    """Schedules, sends, resends and records callbacks; ``start`` it, ``close`` it."""

    def __init__(self, secret: str | Mapping[str, str], *, time_factor: float = 1.0, senders: int = SENDERS) -> None:
        """``secret``: the one merchant's app secret, or each merchant's (``merchantNo`` -> secret):
        an order's callbacks are signed with the secret of the merchant that created it."""
        if isinstance(time_factor, bool) or not isinstance(time_factor, (int, float)) \
                or not time_factor > 0:
            raise ValueError("time_factor must be a number > 0")
        self._secrets = dict(secret) if isinstance(secret, Mapping) else {}
        self._secret = secret if isinstance(secret, str) else next(iter(self._secrets.values()), "")
        self._factor = float(time_factor)
        self._timeout = max(MIN_SEND_TIMEOUT, SEND_TIMEOUT * self._factor)
        self._cond = threading.Condition()
        self._seq, self._ids = itertools.count(), itertools.count(1)
        self._epoch, self._closed = 0, False
        self._threads = [threading.Thread(target=self._serve, name=f"sandbox-notify-{n}",
                                          daemon=True) for n in range(senders)]
        self.reset()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Stop the senders; a send in flight finishes (bounded by its timeout) and is forgotten."""
        with self._cond:
            self._closed = True
            self._epoch += 1
            self._cond.notify_all()

    @property
    def threads(self) -> tuple[threading.Thread, ...]:
        return tuple(self._threads)

    def reset(self) -> None:
        with self._cond:
            self._epoch += 1  # a send in flight belongs to the old epoch: its result is ignored
            self._heap: list[tuple[float, int, Work]] = []
            self._deliveries: list[Delivery] = []
            self._drop_count, self._drop_trades = 0, set()
            self._attempts = 0
            self._cond.notify_all()

    # -- scheduling ------------------------------------------------------------------------------
    def notify(self, order: Mapping, *, lost: bool = False) -> dict:
        """Schedule the callback for the order's current status, or drop it.

        It is dropped when ``lost`` or when a drop asked for (``drop``) matches. A ``lost`` one
        leaves a pending drop count alone: that count is about callbacks nobody chose to lose.
        """
        secret = self._secrets.get(order.get("merchantNo") or "", self._secret)
        body = signing.callback_body(callback_fields(order, int(time.time() * 1000)), secret)
        with self._cond:
            delivery = Delivery(next(self._ids), order["tradeNo"], order["status"],
                                order["notifyUrl"], body, self._epoch)
            self._deliveries.append(delivery)
            if lost or self._take_drop(delivery.trade_no):
                delivery.dropped = True
                logger.info("callback %s for %s dropped", delivery.id, delivery.trade_no)
            else:
                self._push(0.0, partial(self._send, delivery))
            return delivery.view()

    def call_later(self, delay: float, action: Callable[[], object]) -> None:
        """Run ``action`` on a sender thread after ``delay`` real seconds (not scaled)."""
        with self._cond:
            self._push(delay, lambda session: action())

    def _push(self, delay: float, work: Work) -> None:
        heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), work))
        self._cond.notify()

    def _take_drop(self, trade_no: str) -> bool:
        if trade_no in self._drop_trades:
            return True
        if self._drop_count > 0:
            self._drop_count -= 1
            return True
        return False

    # -- sending ---------------------------------------------------------------------------------
    def _serve(self) -> None:
        with requests.Session() as session:  # one per thread: a Session is not thread-safe
            while (work := self._next_work()) is not None:
                work(session)

    def _next_work(self) -> Work | None:
        """The earliest due work, waiting for it without polling; None once closed."""
        with self._cond:
            while not self._closed:
                wait = self._heap[0][0] - time.monotonic() if self._heap else None
                if wait is not None and wait <= 0:
                    return heapq.heappop(self._heap)[-1]
                self._cond.wait(wait)
            return None

    def _send(self, delivery: Delivery, session: requests.Session) -> None:
        status, error, accepted = _attempt(session, delivery, self._timeout)
        with self._cond:
            if delivery.epoch != self._epoch:
                return  # reset or closed while sending
            delivery.attempts += 1
            self._attempts += 1
            delivery.last_status, delivery.last_error = status, error
            if accepted:
                delivery.delivered = True
                delivery.delivered_at = time.time()
            elif delivery.attempts > len(RETRY_DELAYS):
                delivery.gave_up = True
            else:
                delay = RETRY_DELAYS[delivery.attempts - 1] * self._factor
                self._push(delay, partial(self._send, delivery))
        logger.info("callback %s for %s attempt %d: %s", delivery.id, delivery.trade_no,
                    delivery.attempts, "delivered" if accepted else error or status)

    # -- drops and records -----------------------------------------------------------------------
    def drop(self, body: Mapping) -> dict:
        """Control API: drop the next ``count`` deliveries and/or every one for ``tradeNo``."""
        count, trade_no = body.get("count"), body.get("tradeNo")
        _check_drops(count, trade_no)
        with self._cond:
            if count is not None:
                self._drop_count = count
            if trade_no is not None:
                self._drop_trades.add(trade_no)
        return self.drops()

    def clear_drops(self) -> dict:
        with self._cond:
            self._drop_count, self._drop_trades = 0, set()
        return self.drops()

    def drops(self) -> dict:
        with self._cond:
            return {"count": self._drop_count, "tradeNos": sorted(self._drop_trades)}

    def deliveries(self) -> list[dict]:
        with self._cond:
            return [delivery.view() for delivery in self._deliveries]

    def stats(self) -> dict:
        """``scheduled`` counts every delivery: delivered + dropped + gave_up + still pending."""
        with self._cond:
            def count(flag: str) -> int:
                return sum(getattr(delivery, flag) for delivery in self._deliveries)
            return {"scheduled": len(self._deliveries), "delivered": count("delivered"),
                    "attempts": self._attempts, "dropped": count("dropped"),
                    "gave_up": count("gave_up")}
