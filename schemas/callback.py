"""The gateway's asynchronous notification (docs/gateway.md §Callbacks (notify)): validated, never rewritten.

Input is the body parsed with ``worker.signing.parse_json_keeping_numbers``, so JSON numbers
arrive as ``RawNumber`` (a ``str`` holding the exact wire text). The schema only checks shape;
the caller verifies the signature on the values exactly as received. Unknown fields are kept
because they are part of the signed string, but must be scalars so they sign unambiguously.
"""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from schemas._rules import FullMatch

__all__ = ["CallbackSchema"]


class _Str(fields.String):
    """A ``str`` returned unchanged, so a ``RawNumber`` keeps its exact text and type."""

    default_error_messages = {"invalid": "must be a string", "null": "must not be null"}

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        return value


def _non_empty(limit: int) -> validate.Length:
    return validate.Length(min=1, max=limit, error="must be 1 to {max} characters")


class CallbackSchema(Schema):
    """A callback body; ``load`` returns it with the declared fields checked."""

    class Meta:
        unknown = INCLUDE

    tradeNo = _Str(required=True, validate=_non_empty(64))
    platFormTradeNo = _Str(required=True, validate=_non_empty(64))
    amount = _Str(
        required=True,
        validate=FullMatch(r"^[0-9]+(\.[0-9]+)?$", "must be a decimal number (e.g. 300.00)"),
    )
    status = _Str(required=True, validate=_non_empty(16))
    timestamp = _Str(required=True, validate=FullMatch("^[0-9]+$", "must be ASCII digits"))
    sign = _Str(required=True, validate=FullMatch("^[0-9A-Fa-f]{32}$", "must be 32 hex characters"))
    message = _Str(allow_none=True)
    successTime = _Str(allow_none=True)
    remark = _Str(allow_none=True)

    @validates_schema(skip_on_field_errors=False)
    def _extras_are_scalars(self, data: dict, **_kwargs) -> None:
        # A nested value has no agreed text form in the signed string; a Python int or float
        # means the body was not parsed with parse_json_keeping_numbers (floats lose their text).
        errors = {}
        for key, value in data.items():
            if key in self.fields or value is None or isinstance(value, (str, bool)):
                continue
            errors[key] = [
                "must be a scalar (string, number, boolean or null), not an object or list"
                if isinstance(value, (dict, list))
                else "must be a string, boolean or null (JSON numbers arrive as RawNumber)"
            ]
        if errors:
            raise ValidationError(errors)
