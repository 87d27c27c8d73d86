"""The gateway's MD5 signature (docs/gateway.md §Signing): sign outgoing requests, verify callbacks.

Every field but ``sign`` whose value is not absent, ``None`` or ``""`` is taken, keys sorted by
ASCII order, joined as ``key1=value1key2=value2``, the app secret appended, MD5 over UTF-8,
lowercase hex. Values are signed as the text that travels: strings as they are, booleans as
``true``/``false``, and numbers from a callback as their original JSON text (parse callbacks with
``parse_json_keeping_numbers`` so ``30000.00`` is not re-formatted by a float parser).
``callback_body`` writes a signed callback the way the gateway sends it: the one builder of
callback bodies (the sandbox's notifier, the tests' and the benchmarks' callbacks).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

__all__ = ["sign", "verify", "verifier", "signing_string", "parse_json_keeping_numbers", "RawNumber",
           "callback_body"]


class RawNumber(str):
    """A JSON number kept as the exact text it had on the wire."""


def _text(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def signing_string(params: Mapping[str, object]) -> str:
    """The text that is hashed, without the secret (useful for debugging with a test vector)."""
    return "".join(
        f"{key}={_text(params[key])}"
        for key in sorted(params)
        if key != "sign" and params[key] is not None and params[key] != ""
    )


def sign(params: Mapping[str, object], secret: str) -> str:
    """Lowercase MD5 hex of ``signing_string(params) + secret``."""
    payload = signing_string(params) + secret
    # surrogatepass: a lone surrogate (only a forged body has one) must hash, not crash
    return hashlib.md5(payload.encode("utf-8", "surrogatepass")).hexdigest()


def verify(params: Mapping[str, object], secret: str) -> bool:
    """True when ``params['sign']`` matches; compared in constant time. Never with an empty
    secret: anyone can compute a signature keyed by nothing (an unset ``VEXORA_APP_SECRET``)."""
    given = params.get("sign")
    if not secret or not isinstance(given, str) or not given:
        return False
    try:
        expected = sign(params, secret)
    except RecursionError:  # a value nested too deep to render: it cannot carry a valid sign
        return False
    return hmac.compare_digest(expected.encode("ascii"), given.lower().encode("ascii", "replace"))


def verifier(params: Mapping[str, object]):
    """``verify(params, secret)`` as a function of the secret, the signed text built once: a
    callback checked against several secrets (an account's current and previous one, every
    account's for a tradeNo with no job) renders it once."""
    given = params.get("sign")
    if not isinstance(given, str) or not given:
        return lambda secret: False
    try:
        text = signing_string(params)
    except RecursionError:  # a value nested too deep to render: it cannot carry a valid sign
        return lambda secret: False
    given_bytes = given.lower().encode("ascii", "replace")

    def check(secret: str) -> bool:
        if not secret:
            return False
        expected = hashlib.md5((text + secret).encode("utf-8", "surrogatepass")).hexdigest()
        return hmac.compare_digest(expected.encode("ascii"), given_bytes)
    return check


def callback_body(fields: Mapping[str, str], secret: str) -> bytes:
    """A gateway callback as it travels (docs/gateway.md §Callbacks (notify)): ``fields`` and
    their ``sign``, as UTF-8 JSON text in which ``amount`` is a bare number (e.g. ``300.00``).

    ``amount`` must be a decimal number's text; every other value travels as a JSON string.
    """
    body = dict(fields)
    body["sign"] = sign(body, secret)
    # written by hand: json.dumps cannot keep 300.00, and the signature covers exactly that text
    members = (f"{json.dumps(key)}:{value if key == 'amount' else json.dumps(value, ensure_ascii=False)}"
               for key, value in body.items())
    return ("{" + ",".join(members) + "}").encode()


def parse_json_keeping_numbers(raw: bytes | str) -> object:
    """``json.loads`` that keeps every number as its original text (a ``RawNumber``)."""
    return json.loads(raw, parse_float=RawNumber, parse_int=RawNumber, parse_constant=_refuse)


def _refuse(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")
