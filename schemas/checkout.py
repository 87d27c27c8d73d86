"""The checkout job a merchant enqueues (docs/gateway.md §Create a checkout), checked before anything is signed.

``CheckoutRequestSchema().load(payload)`` returns the flat dict of wire fields the worker signs
and sends: every value a ``str``, empty optional fields dropped, a ``tradeNo`` generated when none
is given. Error messages state the rule that failed and never echo the submitted value, so payer
data stays out of logs.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate, validates

from schemas._rules import FullMatch, digits_at_most_pattern

__all__ = ["CheckoutRequestSchema", "generate_trade_no", "trade_no_errors", "TRADE_NO_RULES", "PUBLIC_IP_FORMAT"]

try:
    _TOKYO = ZoneInfo("Asia/Tokyo")
except ZoneInfoNotFoundError:  # host without tzdata; Japan has had no DST since 1951
    _TOKYO = timezone(timedelta(hours=9), "JST")

TRADE_NO_MAX = 32
NOTIFY_URL_REQUIRED = "required: set notifyUrl or VEXORA_NOTIFY_URL"


def generate_trade_no() -> str:
    """Tokyo time ``yyyymmddhhmmss`` followed by random digits, 32 characters in all."""
    stamp = datetime.now(_TOKYO).strftime("%Y%m%d%H%M%S")
    digits = TRADE_NO_MAX - len(stamp)
    return f"{stamp}{secrets.randbelow(10**digits):0{digits}d}"


class _Text(fields.String):
    """A non-empty ``str``, returned as plain ``str`` (``fields.String`` would decode bytes).

    The rule "not empty" is in the field's metadata as ``minLength: 1`` for the OpenAPI document.
    """

    default_error_messages = {
        "invalid": "must be a string",
        "null": "must not be null",
        "empty": "must not be empty",
        "unicode": "must be valid Unicode text (no lone surrogates)",
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.metadata = {"minLength": 1, **self.metadata}

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        if not value:
            raise self.make_error("empty")
        try:
            value.encode("utf-8")  # a lone surrogate would break signing later
        except UnicodeEncodeError:
            raise self.make_error("unicode") from None
        return str(value)


def _max_length(limit: int) -> validate.Length:
    return validate.Length(max=limit, error="must be at most {max} characters")


class _DigitsAtMost(validate.Range):
    """``validate.Range`` on the number a string of ASCII digits spells (``Range`` itself would
    compare text with a number); other text is left to the field's pattern to refuse."""

    def __init__(self, maximum: int, error: str):
        super().__init__(max=maximum, error=error)
        # for the document only: with the field's FullMatch, exactly the text this accepts
        self.pattern = digits_at_most_pattern(maximum)

    def __call__(self, value: str) -> str:
        if value.isascii() and value.isdigit():
            digits = value.lstrip("0")
            # length first: int() of a huge digit string is slow (and refused past 4300 digits)
            if len(digits) > len(str(self.max)) or int(digits or "0") > self.max:
                raise ValidationError(self._format_error(value, self.message_max))
        return value


_URL_RULE = "must be an absolute http(s) URL with a host (e.g. https://merchant.example/path)"
_url = [
    _max_length(512),
    validate.URL(schemes={"http", "https"}, require_tld=False, error=_URL_RULE),
]
_KATAKANA_RULE = "must be full-width Katakana (ァ-ヺ, ー and ・ only, e.g. タロウ)"
# U+30FB (・) and U+30FC (ー) directly follow U+30FA, so one range covers the set.
_katakana = [_max_length(64), FullMatch(r"^[\u30a1-\u30fc]+$", _KATAKANA_RULE)]


# The remark comes back signed in every callback: no '=' (it would let a signature be split into
# other fields) and only printable ASCII, which leaves no room for the arbitrary bytes an MD5
# collision block needs (docs/gateway.md §Residual risk of the signature scheme).
REMARK_PATTERN = r"^[\x20-\x3c\x3e-\x7e]+$"
REMARK_RULE = ("may contain only printable ASCII (letters, digits, space and punctuation) "
               "and no '='")


# How the OpenAPI document states the ipAddress rule (``_ip_address_usable``): a JSON Schema cannot
# say "globally routable", so a format of our own names it, with the characters and length every
# IP address's text keeps to (the longest, IPv6 with an IPv4 tail, is 45 characters).
PUBLIC_IP_FORMAT = "public-ip"
_IP_TEXT = {"maxLength": 45, "pattern": "^[0-9A-Fa-f:.]+$"}
PUBLIC_IP_DOCUMENT = {
    **_IP_TEXT, "format": PUBLIC_IP_FORMAT,
    "description": "The payer's real public IPv4 or IPv6 address, in its plain text form (no zone "
                   "%suffix, no surrounding spaces). Format public-ip: treat it as an IP address (ipv4 or "
                   "ipv6) that is globally routable: Python's ipaddress is_global, and not multicast or "
                   "reserved. Private, loopback, link-local, shared (100.64/10), documentation, "
                   "unspecified, reserved and multicast addresses are refused (422)."}
PRIVATE_IP_DOCUMENT = {
    **_IP_TEXT, "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
    "description": "The payer's IPv4 or IPv6 address, in its plain text form (no zone %suffix). "
                   "VEXORA_ALLOW_PRIVATE_IP is on here: private and loopback addresses are accepted too."}

TRADE_NO_RULES = [
    _max_length(TRADE_NO_MAX),
    FullMatch("^[A-Za-z0-9_-]+$", "may contain only letters A-Z a-z, digits, _ and -"),
]


def trade_no_errors(value: object) -> list[str]:
    """The schema's tradeNo rule on its own, for every place a tradeNo becomes a key: ``[]`` when
    ``value`` may identify a job, else the messages (never the value)."""
    try:
        _TRADE_NO.deserialize(value)
    except ValidationError as err:
        return list(err.messages)
    return []


# the rule's field, built once (a field holds no state between deserializations)
_TRADE_NO = _Text(validate=TRADE_NO_RULES)


class CheckoutRequestSchema(Schema):
    """A checkout job payload; ``load`` gives the wire fields, all ``str``, ready to sign."""

    class Meta:
        unknown = RAISE  # sign and timestamp included: the worker adds them

    # Attribute names are the gateway's wire names: the loaded dict is signed and sent as-is.
    # Every rule is a marshmallow validator apispec can read (worker/web/openapi.py), so the OpenAPI
    # document carries it; the rules that depend on the settings are added in __init__.
    tradeNo = _Text(load_default=generate_trade_no, validate=TRADE_NO_RULES, metadata={
        "description": "Your unique order number (idempotency key); generated when absent."})
    userId = _Text(required=True, validate=[
        _max_length(64),
        FullMatch(r"^[^\x00-\x1f\x7f-\x9f]*$", "must not contain control characters"),
    ], metadata={"description": "Your user's id."})
    amount = _Text(
        required=True,
        validate=FullMatch(
            "^[1-9][0-9]*$",
            "must be a whole number of yen in ASCII digits, without sign, decimals, spaces "
            "or leading zeros (e.g. 300)",
        ),
        metadata={"description": "Whole yen as a string of ASCII digits without a leading zero, e.g. "
                                 "\"300\", from 1 to the configured maximum (x-maximum; the pattern "
                                 "allows exactly those)."},
    )
    mobile = _Text(
        required=True,
        validate=FullMatch(
            "^0[0-9]{10}$",
            "must be 11 digits starting with 0, without country code (e.g. 09012345678)",
        ),
        metadata={"description": "The payer's mobile: 11 digits starting with 0, no country code."},
    )
    firstname = _Text(required=True, validate=_katakana, metadata={
        "description": "The payer's legal first name in full-width Katakana."})
    lastname = _Text(required=True, validate=_katakana, metadata={
        "description": "The payer's legal last name in full-width Katakana."})
    email = _Text(
        required=True,
        validate=[_max_length(254), validate.Email(error="must be a valid email address")],
        metadata={"description": "The payer's email address."},
    )
    channelCode = _Text(required=True, metadata={"description": "Payment channel, e.g. EWALLET."})
    wayCode = _Text(required=True, metadata={"description": "Payment method, e.g. PAYPAY."})
    ipAddress = _Text(required=True, metadata={
        "description": "The payer's real public IPv4 or IPv6 address (private, loopback, link-local, "
                       "reserved and multicast addresses are refused unless VEXORA_ALLOW_PRIVATE_IP)."})
    notifyUrl = _Text(
        required=True, validate=_url, error_messages={"required": NOTIFY_URL_REQUIRED},
        metadata={"description": "Where the gateway posts outcomes; defaults to VEXORA_NOTIFY_URL."},
    )
    returnUrl = _Text(required=True, validate=_url, metadata={
        "description": "Where the payer returns after paying."})
    remark = _Text(validate=FullMatch(REMARK_PATTERN, REMARK_RULE), metadata={
        "description": "Your reference, echoed back by the gateway in its answers and callbacks: "
                       "printable ASCII without '=' (letters, digits, space and punctuation), at "
                       "most the configured length. '=' is refused because the gateway's signature "
                       "joins fields as key=value with no separator: "
                       "docs/gateway.md §Why a signature cannot be moved between fields."})

    def __init__(
        self,
        *,
        amount_max: int = 1_000_000,
        channel_codes: Iterable[str] = ("EWALLET",),
        way_codes: Iterable[str] = ("PAYPAY",),
        allow_private_ip: bool = False,
        remark_max_length: int = 256,
        notify_url_default: str = "",
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, number in (("amount_max", amount_max), ("remark_max_length", remark_max_length)):
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise ValueError(f"{name} must be a positive integer")
        if notify_url_default:
            try:
                for check in _url:
                    check(notify_url_default)
            except ValidationError:
                raise ValueError(f"notify_url_default {_URL_RULE}") from None
        self.amount_max = amount_max
        self.channel_codes = _codes(channel_codes, "channel_codes")
        self.way_codes = _codes(way_codes, "way_codes")
        self.allow_private_ip = allow_private_ip
        self.remark_max_length = remark_max_length
        self.notify_url_default = notify_url_default
        # The settings' rules, on this instance's own copies of the fields, where both load() and
        # apispec see them.
        self._add_rule("amount", _DigitsAtMost(amount_max, error="must be at most {max} yen"))
        self._add_rule("channelCode", validate.OneOf(self.channel_codes, error="must be one of: {choices}"))
        self._add_rule("wayCode", validate.OneOf(self.way_codes, error="must be one of: {choices}"))
        self._add_rule("remark", _max_length(remark_max_length))
        if notify_url_default:
            self.fields["notifyUrl"].required = False  # pre_load fills it in
        # the document's statement of _ip_address_usable (apispec reads a field's metadata)
        self.fields["ipAddress"].metadata = {**self.fields["ipAddress"].metadata,
                                             **(PRIVATE_IP_DOCUMENT if allow_private_ip else PUBLIC_IP_DOCUMENT)}

    def _add_rule(self, name: str, validator: validate.Validator) -> None:
        # a new list: marshmallow's per-instance field copies are shallow and share the old one
        field = self.fields[name]
        field.validators = [*field.validators, validator]

    def field_errors(self, payload: object) -> dict:
        """``{}`` when ``payload`` loads, else the field-name → messages dict."""
        try:
            self.load(payload)
        except ValidationError as err:
            return dict(err.messages)  # Schema.load always reports a dict
        return {}

    @pre_load
    def _apply_defaults(self, data, **_kwargs):
        if not isinstance(data, Mapping):
            return data  # marshmallow reports the wrong input type itself
        data = dict(data)  # never mutate the caller's payload
        if "tradeNo" in data and data["tradeNo"] is None:
            del data["tradeNo"]
        if _blank(data.get("remark")):
            data.pop("remark", None)
        if _blank(data.get("notifyUrl")):
            data.pop("notifyUrl", None)
            if self.notify_url_default:
                data["notifyUrl"] = self.notify_url_default
        return data

    # Field hooks take **_kwargs: marshmallow 4 passes data_key, 3.x passes nothing. The one rule
    # no standard validator can state: what an address is and whether it is public.
    @validates("ipAddress")
    def _ip_address_usable(self, value: str, **_kwargs) -> None:
        address = None
        # ip_address() accepts a "%zone" suffix on IPv6; the gateway wants a bare address
        if value.isascii() and "%" not in value and value == value.strip():
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                pass
        if address is None:
            raise ValidationError("must be an IPv4 or IPv6 address (e.g. 133.0.0.1)")
        public = address.is_global and not (address.is_multicast or address.is_reserved)
        if not (public or self.allow_private_ip):
            raise ValidationError(
                "must be the payer's public IP address (private, loopback, link-local, reserved, "
                "unspecified and multicast addresses are refused)"
            )


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def _codes(codes: Iterable[str], name: str) -> tuple[str, ...]:
    result = (codes,) if isinstance(codes, str) else tuple(codes)
    if not result or not all(isinstance(code, str) and code for code in result):
        raise ValueError(f"{name} must be a non-empty list of non-empty strings")
    return result
