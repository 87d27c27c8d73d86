"""The gateway's answers to a checkout (docs/gateway.md §Create a checkout) and to a query (docs/gateway.md §Query), as plain dicts.

Lenient where the gateway varies (extra fields are dropped, ``data`` may be null, the query's
amount has several names, unified as ``paidAmount``, with the name it came from as
``paidAmountKey``, and ``orderAmount``) and strict only on what the caller branches on: ``code`` must be
a string. Every declared key is present in the output, ``None`` when the gateway left it out;
judging the answer (e.g. a ``0015`` without ``paymentLink``) is the caller's job.
"""

from __future__ import annotations

import math
from decimal import Decimal

from marshmallow import EXCLUDE, Schema, fields, post_load

__all__ = ["CheckoutResponseSchema", "QueryResponseSchema"]

# The amount keys differ by country page (docs/gateway.md §Amounts). ``orderAmount`` is what was ordered;
# the paid amount is the first present of these: the explicit names before the plain ``amount``
# (which on callbacks is the amount actually paid).
PAID_AMOUNT_KEYS = ("payAmount", "receivedAmount", "amount")


def _optional_str() -> fields.String:
    return fields.String(load_default=None, allow_none=True)


class _StrOrNumber(fields.Field):
    """A string or a JSON number (not a boolean), returned as ``str``."""

    default_error_messages = {"invalid": "must be a string or a number"}

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
            raise self.make_error("invalid")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.make_error("invalid")
        return str(value)


class _Amounts(Schema):
    """The amount fields of an answer's ``data``, unified as ``paidAmount`` and ``orderAmount``."""

    class Meta:
        unknown = EXCLUDE

    amount = _StrOrNumber(allow_none=True)
    orderAmount = _StrOrNumber(allow_none=True)
    payAmount = _StrOrNumber(allow_none=True)
    receivedAmount = _StrOrNumber(allow_none=True)

    @post_load
    def _paid_and_order(self, data: dict, **_kwargs) -> dict:
        found = [(key, data.pop(key, None)) for key in PAID_AMOUNT_KEYS]
        key, paid = next(((key, value) for key, value in found if value is not None), (None, None))
        data["paidAmount"] = paid
        # which name it came from: a plain ``amount`` may be the order's (docs/gateway.md §Amounts)
        data["paidAmountKey"] = key
        data.setdefault("orderAmount", None)
        return data


class _CheckoutData(_Amounts):
    tradeNo = _optional_str()
    platFormTradeNo = _optional_str()
    status = _optional_str()
    message = _optional_str()
    remark = _optional_str()
    paymentLink = _optional_str()


class _QueryData(_Amounts):
    tradeNo = _optional_str()
    platFormTradeNo = _optional_str()
    status = _optional_str()
    message = _optional_str()
    paymentLink = _optional_str()


class _Response(Schema):
    class Meta:
        unknown = EXCLUDE

    code = fields.String(required=True)
    msg = _optional_str()
    success = fields.Boolean(load_default=None, allow_none=True)
    timestamp = _StrOrNumber(load_default=None, allow_none=True)


class CheckoutResponseSchema(_Response):
    """The answer to ``POST /v1/vexora/checkout``."""

    data = fields.Nested(_CheckoutData, load_default=None, allow_none=True)


class QueryResponseSchema(_Response):
    """The answer to ``POST /v1/vexora/queryPayInResult``; ``data.paidAmount`` unifies its names."""

    data = fields.Nested(_QueryData, load_default=None, allow_none=True)
