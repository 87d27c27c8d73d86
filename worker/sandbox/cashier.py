"""The payer's side of the sandbox: the cashier page served at each order's ``paymentLink``, the
outcomes a payer can cause there (pay, pay part, fail) and the automatic payer that picks an
outcome per new order for demos and tests. Pages are small HTML5 documents that show no payer data
and escape every value they render. Nothing here speaks HTTP: handlers turn a ``Page`` into an
answer.

The automatic payer (``POST /_sandbox/autopay``, ``--autopay``) draws one of ``AUTOPAY_OUTCOMES``
per order and plays its steps, the first ``delay`` seconds after the checkout and each next one
``delay`` seconds after the one before; every step sends its callback unless marked lost:

- ``paid``: ``0000``, the full amount paid.
- ``partial``: ``0001``, half paid (rounded down, at least 1 yen).
- ``failed``: ``00029``, nothing paid.
- ``partial_then_paid``: ``0001`` with half paid, then ``0000`` with the full amount whose
  callback is lost (dropped, counted in the callback stats' ``dropped``): only a query finds it.
- ``unknown_then_paid``: ``00032`` "unknown error" with nothing paid, then ``0000`` in full.
- ``paid_short``: ``0000`` with only half paid.
- ``paid_over``: ``0000`` with the amount + 100 yen paid.

A step only moves an order still in the status the step before left it in, so a click or a
scripted status (``POST /_sandbox/orders/<tradeNo>/status``) in between ends the sequence.

Triggers (``TRIGGERS``): what a payer can do to one order, by name — the cashier page's buttons and
``POST /_sandbox/orders/<tradeNo>/trigger {"outcome": ...}`` (``vexora-checkout sandbox trigger``).
Each is offered only while the order is in a status it starts from (``open``: paying, partially
paid, or after an "unknown error"); a partial payment leaves the order open for ``rest`` (pay the
rest) or ``failed``:

- ``paid``: ``0000``, the full amount; ``partial``: ``0001``, half; ``rest``: ``0000``, the full
  amount after a partial payment; ``failed``: ``00029``; ``overpaid``: ``0000`` with the amount +
  100 yen; ``unknown-status``: ``00032`` "unknown error" (a query settles it; the payer may still
  pay); ``lost-callback``: ``0000`` in full with the callback lost (only a query finds it).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any, Protocol

__all__ = ["Page", "Autopay", "Step", "OUTCOMES", "AUTOPAY_OUTCOMES", "ACTIONS", "PAYING",
           "cashier_page", "cashier_action", "settle", "trigger", "TRIGGERS", "NotNow", "scripted_status", "autopay_order",
           "default_paid_amount", "parse_mix"]

PAYING = "0015"
OVERPAID_BY = 100  # yen a paid_over payer pays beyond the order amount


@dataclass(frozen=True)
class Outcome:
    status: str
    message: str


OUTCOMES = {"paid": Outcome("0000", "Success"), "partial": Outcome("0001", "Partially paid"),
            "failed": Outcome("00029", "Failed")}
UNKNOWN = Outcome("00032", "unknown error")  # docs/gateway.md §Status and error codes; only the automatic payer sets it
ACTIONS = {"pay": "paid", "partial": "partial", "fail": "failed"}  # button -> outcome
_MESSAGES = {**{o.status: o.message for o in OUTCOMES.values()}, PAYING: "Paying",
             UNKNOWN.status: UNKNOWN.message}
_WORDS = {"0000": "Paid", "0001": "Partially paid", PAYING: "Paying", "00029": "Failed",
          "0029": "Failed"}
_NO_STORE = {"Cache-Control": "no-store"}  # a status page must never come from a cache


class Server(Protocol):
    """What this module needs of ``sandbox.SandboxServer`` (which imports this module)."""

    sandbox: Any  # sandbox.Sandbox
    notifier: Any  # worker.sandbox.notify.Notifier
    autopay: Autopay

    def move_order(self, trade_no: str, status: str, message: str,
                   paid_amount: str | None = None, *, expect: str | None = None,
                   callback_lost: bool = False) -> dict | None:
        ...


@dataclass(frozen=True)
class Page:
    status: int
    body: bytes = b""
    headers: dict = field(default_factory=dict)


def half(amount: str) -> str:
    return str(max(1, int(amount) // 2))


def default_paid_amount(status: str, amount: str) -> str | None:
    """What a payer pays for ``status``: all for 0000, half (rounded down, >= 1) for 0001."""
    return {"0000": amount, "0001": half(amount)}.get(status)


def _everything(amount: str) -> str:
    return amount


def _nothing(amount: str) -> None:
    return None


def _more(amount: str) -> str:
    return str(int(amount) + OVERPAID_BY)


@dataclass(frozen=True)
class Step:
    """One move of an automatic payment: the outcome, what is paid of the order amount, and
    whether its callback is lost."""

    outcome: Outcome
    paid: Callable[[str], str | None]
    callback_lost: bool = False


_PAID, _PARTIAL = Step(OUTCOMES["paid"], _everything), Step(OUTCOMES["partial"], half)
AUTOPAY_OUTCOMES: dict[str, tuple[Step, ...]] = {
    "paid": (_PAID,),
    "partial": (_PARTIAL,),
    "failed": (Step(OUTCOMES["failed"], _nothing),),
    "partial_then_paid": (_PARTIAL, Step(OUTCOMES["paid"], _everything, callback_lost=True)),
    "unknown_then_paid": (Step(UNKNOWN, _nothing), _PAID),
    "paid_short": (Step(OUTCOMES["paid"], half),),
    "paid_over": (Step(OUTCOMES["paid"], _more),),
}


PARTIAL = OUTCOMES["partial"].status
_OPEN = frozenset({PAYING, PARTIAL, UNKNOWN.status})  # a payer can still act on the order
_UNPAID = frozenset({PAYING, UNKNOWN.status})  # nothing paid yet


@dataclass(frozen=True)
class Trigger:
    """One thing a payer can do: the step it takes, the statuses it starts from, its button."""

    step: Step
    starts_from: frozenset
    label: str


TRIGGERS: dict[str, Trigger] = {
    "paid": Trigger(_PAID, _UNPAID, "Pay {amount}"),
    "partial": Trigger(_PARTIAL, _UNPAID, "Pay part ({half})"),
    "rest": Trigger(_PAID, frozenset({PARTIAL}), "Pay the rest ({rest})"),
    "failed": Trigger(Step(OUTCOMES["failed"], _nothing), _OPEN, "Fail"),
    "overpaid": Trigger(Step(OUTCOMES["paid"], _more), _OPEN, "Overpay ({over})"),
    "unknown-status": Trigger(Step(UNKNOWN, _nothing), frozenset({PAYING}), "Unknown error (00032)"),
    "lost-callback": Trigger(Step(OUTCOMES["paid"], _everything, callback_lost=True), _OPEN,
                             "Pay, callback lost"),
}
# the cashier's button ids (and form actions): the first three kept from before the triggers
BUTTONS = {"pay": "paid", "partial": "partial", "rest": "rest", "fail": "failed", "overpaid": "overpaid",
           "unknown-status": "unknown-status", "lost-callback": "lost-callback"}


class NotNow(Exception):
    """A trigger the order's current status does not allow (answered 409)."""


def trigger(server: Server, trade_no: str, outcome: str) -> dict:
    """Do ``outcome`` (a ``TRIGGERS`` name) to one order, as its payer would; the moved order.

    KeyError if the tradeNo is unknown, ValueError for an unknown outcome, NotNow when the order's
    status does not allow it (closed, or e.g. ``rest`` with nothing paid).
    """
    if outcome not in TRIGGERS:
        raise ValueError(f"outcome must be one of {', '.join(TRIGGERS)}")
    order = server.sandbox.order(trade_no)
    if order is None:
        raise KeyError(trade_no)
    chosen = TRIGGERS[outcome]
    if order["status"] not in chosen.starts_from:
        raise NotNow(f"{outcome} is not possible now: the order is {status_words(order)}")
    moved = server.move_order(trade_no, chosen.step.outcome.status, chosen.step.outcome.message,
                              chosen.step.paid(order["amount"]), expect=order["status"],
                              callback_lost=chosen.step.callback_lost)
    if moved is None:  # moved by someone else between the read and the move
        raise NotNow(f"{outcome} is not possible now: the order moved meanwhile")
    server.autopay.steps_left(trade_no, 0)
    return moved


def settle(server: Server, trade_no: str, outcome: str) -> dict | None:
    """Move a paying order to ``outcome`` and send its callback; None if it was no longer paying.

    KeyError if the tradeNo is unknown.
    """
    chosen, order = OUTCOMES[outcome], server.sandbox.order(trade_no)
    if order is None:
        raise KeyError(trade_no)
    return server.move_order(trade_no, chosen.status, chosen.message,
                             default_paid_amount(chosen.status, order["amount"]), expect=PAYING)


def scripted_status(server: Server, order: Mapping, body: Mapping) -> dict:
    """Control API: set any status without a browser (``{"status", "message", "paidAmount"}``).

    ``message`` and ``paidAmount`` default as the cashier would set them; ValueError names a bad
    field.
    """
    status, message, paid = body.get("status"), body.get("message"), body.get("paidAmount")
    if not isinstance(status, str) or not status:
        raise ValueError("status must be a non-empty string")
    if message is not None and not isinstance(message, str):
        raise ValueError("message must be a string")
    if paid is not None and not (isinstance(paid, str) and paid.isascii() and paid.isdigit()):
        raise ValueError("paidAmount must be a string of digits (whole yen)")
    if message is None:
        message = _MESSAGES.get(status, "Error")
    paid = paid or default_paid_amount(status, order["amount"])
    return server.move_order(order["tradeNo"], status, message, paid)


# -- pages -----------------------------------------------------------------------------------------
def _yen(amount: object) -> str:
    return f"¥{int(amount):,}"


def _document(title: str, content: str) -> bytes:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:30rem;margin:2rem auto;padding:0 1rem}}
form{{display:inline}}button{{margin:.25rem;padding:.5rem 1rem}}</style>
</head>
<body>
<main>
{content}
</main>
</body>
</html>
""".encode()


def status_words(order: Mapping) -> str:
    return _WORDS.get(order["status"]) or f"Error {order['status']}: {order['message']}"


def _buttons(order: Mapping) -> str:
    """A button for every trigger the order's status allows (none once it is closed)."""
    # relative actions: the page works under whichever host and prefix the payer opened it
    link = escape(order["platFormTradeNo"])
    amount = order["amount"]
    rest = max(0, int(amount) - int(order.get("paidAmount") or 0))
    words = {"amount": _yen(amount), "half": _yen(half(amount)), "rest": _yen(rest),
             "over": _yen(_more(amount))}
    return "\n".join(
        f'<form method="post" action="{link}/{action}"><button id="{action}" type="submit">'
        f"{escape(TRIGGERS[name].label.format(**words))}</button></form>"
        for action, name in BUTTONS.items() if order["status"] in TRIGGERS[name].starts_from)


def _return_link(order: Mapping) -> str:
    url = order.get("returnUrl") or ""
    if not url.startswith(("http://", "https://")):  # never render a javascript: link
        return ""
    return f'<p><a id="return" href="{escape(url)}">Return to the merchant</a></p>'


def _cashier(order: Mapping) -> bytes:
    paid = order.get("paidAmount")
    rows = [("trade-no", "Order", escape(order["tradeNo"])),
            ("amount", "Amount", _yen(order["amount"]))]
    if paid is not None:
        rows.append(("paid", "Paid", _yen(paid)))
    listing = "\n".join(f'<dt>{label}</dt><dd id="{key}">{value}</dd>' for key, label, value in rows)
    closing = _buttons(order) if order["status"] in _OPEN else _return_link(order)
    content = (f"<h1>Vexora sandbox cashier</h1>\n<p>Sandbox: no real money moves.</p>\n"
               f"<dl>\n{listing}\n</dl>\n"
               f'<p id="status">{escape(status_words(order))}</p>\n{closing}')
    return _document("Vexora sandbox cashier", content)


def _message(status: int, title: str, text: str, extra: str = "") -> Page:
    content = f"<h1>{escape(title)}</h1>\n<p>{escape(text)}</p>\n{extra}"
    return Page(status, _document(title, content), _NO_STORE)


def _not_found() -> Page:
    return _message(404, "Payment not found", "There is no payment at this address.")


def cashier_page(server: Server, platform_no: str) -> Page:
    """``GET /cashier/<platFormTradeNo>``."""
    order = server.sandbox.order_by_platform(platform_no) if "/" not in platform_no else None
    if order is None:
        return _not_found()
    return Page(200, _cashier(order), _NO_STORE)


def cashier_action(server: Server, rest: str) -> Page:
    """``POST /cashier/<platFormTradeNo>/<button>`` (``BUTTONS``): 303 back to the page, or 409."""
    platform_no, _, action = rest.partition("/")
    order = server.sandbox.order_by_platform(platform_no)
    if order is None or action not in BUTTONS:
        return _not_found()
    try:
        moved = trigger(server, order["tradeNo"], BUTTONS[action])
    except NotNow:
        moved = None
    back = f"../{platform_no}"  # relative, like the form actions
    if moved is None:
        current = server.sandbox.order(order["tradeNo"])
        back_link = f'<p id="status">{escape(status_words(current))}</p>\n' \
                    f'<p><a href="{escape(back)}">Back to the payment</a></p>'
        return _message(409, "Payment already closed", "This payment can no longer change.",
                        back_link)
    return Page(303, b"", {"Location": back, **_NO_STORE})


# -- automatic payer -------------------------------------------------------------------------------
def _check_mix(mix: object) -> dict:
    if not isinstance(mix, dict) or any(outcome not in AUTOPAY_OUTCOMES for outcome in mix):
        raise ValueError(f"mix must map outcomes {tuple(AUTOPAY_OUTCOMES)} to probabilities")
    valid = all(isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1
                for p in mix.values())
    if not valid or sum(mix.values()) > 1 + 1e-9:  # 0.8 + 0.05 + 0.15 is 1.0000000000000002
        raise ValueError("each probability must be in [0, 1] and they must add up to at most 1")
    return dict(mix)


def parse_mix(text: str) -> dict:
    """``"paid=0.8,partial_then_paid=0.05,failed=0.15"`` (a command-line option) as a checked mix.

    Names are those of ``AUTOPAY_OUTCOMES``; ValueError names what is wrong.
    """
    pairs = (item.partition("=") for item in text.split(",") if item.strip())
    return _check_mix({name.strip(): float(value) for name, _, value in pairs})


class Autopay:
    """The automatic payer's settings; draws an outcome (or none: stays paying) per new order."""

    def __init__(self, settings: Mapping | None = None) -> None:
        self._lock = threading.Lock()
        self._default = dict(settings or {"mix": {}})
        self._left: dict[str, int] = {}  # tradeNo -> steps the payer has still to take
        self.configure(self._default)  # a bad startup setting fails here, loudly

    def reset(self) -> dict:
        with self._lock:
            self._left.clear()
        return self.configure(self._default)

    def steps_left(self, trade_no: str, count: int | None = None) -> int:
        """How many steps the payer has still to take on this order (set with ``count``): until
        then the order's status is a waypoint, not what its job must end in."""
        with self._lock:
            if count is not None:
                if count > 0:
                    self._left[trade_no] = count
                else:
                    self._left.pop(trade_no, None)
            return self._left.get(trade_no, 0)

    def configure(self, body: Mapping) -> dict:
        """Control API body ``{"mix": {...}, "delay": seconds, "seed": n}``; ``{"mix": {}}`` = off."""
        mix, delay, seed = _check_mix(body.get("mix", {})), body.get("delay", 0.5), body.get("seed")
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
            raise ValueError("delay must be a number of seconds >= 0")
        rng = random.Random(seed)  # a bad seed fails here, before any state changes
        with self._lock:
            self._settings, self._rng = {"mix": mix, "delay": delay, "seed": seed}, rng
        return self.settings()

    def settings(self) -> dict:
        with self._lock:
            return {**self._settings, "mix": dict(self._settings["mix"])}

    def draw(self) -> tuple[str, float] | None:
        """(outcome, delay in real seconds), or None when the order is left paying."""
        with self._lock:
            if not self._settings["mix"]:
                return None
            draw, edge = self._rng.random(), 0.0
            for outcome, probability in self._settings["mix"].items():
                edge += probability
                if draw < edge:
                    return outcome, self._settings["delay"]
            return None


def autopay_order(server: Server, trade_no: str) -> None:
    """After a checkout: let the automatic payer settle the order later, if it picks an outcome."""
    drawn = server.autopay.draw()
    if drawn is None:
        return
    outcome, delay = drawn
    server.autopay.steps_left(trade_no, len(AUTOPAY_OUTCOMES[outcome]))
    _play_later(server, trade_no, AUTOPAY_OUTCOMES[outcome], PAYING, delay)


def _play_later(server: Server, trade_no: str, steps: tuple[Step, ...], expect: str,
                delay: float) -> None:
    """In ``delay`` seconds take the first step, then schedule the rest the same way."""
    def play() -> None:
        try:
            moved = _take_step(server, trade_no, steps[0], expect)
        except KeyError:
            server.autopay.steps_left(trade_no, 0)
            return  # the sandbox was reset meanwhile: the order is gone
        more = moved is not None and len(steps) > 1  # a click in between ends the sequence
        server.autopay.steps_left(trade_no, len(steps) - 1 if more else 0)
        if more:
            _play_later(server, trade_no, steps[1:], moved["status"], delay)

    server.notifier.call_later(delay, play)


def _take_step(server: Server, trade_no: str, step: Step, expect: str) -> dict | None:
    """Move the order as ``step`` says; None if it left ``expect`` meanwhile. KeyError if gone."""
    order = server.sandbox.order(trade_no)
    if order is None:
        raise KeyError(trade_no)
    return server.move_order(trade_no, step.outcome.status, step.outcome.message,
                             step.paid(order["amount"]), expect=expect,
                             callback_lost=step.callback_lost)
