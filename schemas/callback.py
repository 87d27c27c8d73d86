"""The gateway's asynchronous notification (docs/gateway.md §Callbacks (notify)): validated, never rewritten.

Input is the body parsed with ``worker.signing.parse_json_keeping_numbers``, so JSON numbers
arrive as ``RawNumber`` (a ``str`` holding the exact wire text). The schema only checks shape;
the caller verifies the signature on the values exactly as received.

The signed text is ``k1=v1k2=v2…`` with no separator, so a signature alone does not say where one
field ends and the next begins. Two rules make that boundary unambiguous: only the fields the
gateway's documentation names (``DOCUMENTED_FIELDS``) are accepted, and no value may contain ``=``
(the argument: docs/gateway.md §Why a signature cannot be moved between fields).
``boundary_errors`` states both on their own, so the endpoint can count such a callback apart.
"""

from __future__ import annotations

from collections.abc import Mapping

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from schemas._rules import FullMatch

__all__ = ["CallbackSchema", "DOCUMENTED_FIELDS", "SIGNED_SEPARATOR", "boundary_errors", "plainly_valid"]

# the callback fields the gateway's documentation names (docs/gateway.md §Callbacks (notify)); no other
# ``merchantNo``: the gateway's documentation names it on its requests (a header) and some country
# pages' notifications carry it; when a callback does, it must name the job's account (wsgi.py)
DOCUMENTED_FIELDS = frozenset({"platFormTradeNo", "tradeNo", "amount", "status", "message", "timestamp",
                               "sign", "successTime", "remark", "merchantNo"})
SIGNED_SEPARATOR = "="  # between a key and its value in the signed text: the one boundary marker
UNDOCUMENTED = "not a field the gateway documents: refused, a signature could be moved onto it"
SHIFTS_BOUNDARY = "must not contain '=': it would let a signature be split into other fields"


def boundary_errors(body: Mapping[str, object]) -> dict[str, list[str]]:
    """The fields of ``body`` that would let its signature be re-split: ``{}`` when none.

    Undocumented names, and any value whose text contains ``=`` (only strings can: a ``RawNumber``
    is a str, booleans and ``null`` sign as ``true``/``false``/nothing). Never echoes a value.
    """
    errors: dict[str, list[str]] = {}
    for key, value in body.items():
        if key not in DOCUMENTED_FIELDS:
            errors[key] = [UNDOCUMENTED]
        elif isinstance(value, str) and SIGNED_SEPARATOR in value:
            errors[key] = [SHIFTS_BOUNDARY]
    return errors


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
    """A callback body; ``load`` returns it with every field checked (only documented ones)."""

    class Meta:
        unknown = RAISE  # an extra field is signed too: it could carry a moved boundary

    error_messages = {"unknown": UNDOCUMENTED}

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
    merchantNo = _Str(allow_none=True, validate=_non_empty(64))

    @validates_schema(skip_on_field_errors=False)
    def _no_boundary_in_values(self, data: dict, **_kwargs) -> None:
        errors = {key: messages for key, messages in boundary_errors(data).items()
                  if messages == [SHIFTS_BOUNDARY]}
        if errors:
            raise ValidationError(errors)


def _plain_rules(schema: type[Schema]) -> tuple[tuple[str, bool, bool, tuple], ...]:
    """Each declared field's rules as plain data: (name, required, allow_none, checks), a check
    being ``(min, max)`` of a ``Length`` or the compiled pattern of a ``FullMatch``. Read from the
    schema itself, so the two cannot drift apart; a validator of another kind has no plain form."""
    rules = []
    for name, field in schema._declared_fields.items():
        if not isinstance(field, _Str):
            raise TypeError(f"{name}: only _Str fields have a plain form")
        checks: list[object] = []
        for validator in field.validators:
            if isinstance(validator, FullMatch):
                checks.append(validator.regex)
            elif isinstance(validator, validate.Length) and validator.equal is None:
                checks.append((validator.min, validator.max))
            else:
                raise TypeError(f"{name}: {type(validator).__name__} has no plain form")
        rules.append((name, field.required, field.allow_none, tuple(checks)))
    return tuple(rules)


_RULES = _plain_rules(CallbackSchema)


def plainly_valid(body: Mapping[str, object]) -> bool:
    """True only when ``CallbackSchema().validate(body)`` finds nothing: the schema's own rules
    checked without marshmallow's machinery (a tenth of the callback endpoint's work per request).
    False means "ask the schema", which then names the fields (``tests/unit/test_callback_boundaries.py``
    checks that True never disagrees with it)."""
    if not body.keys() <= DOCUMENTED_FIELDS:
        return False
    for name, required, allow_none, checks in _RULES:
        value = body.get(name)
        if value is None:
            if required or (name in body and not allow_none):
                return False
            continue
        if not isinstance(value, str) or SIGNED_SEPARATOR in value:
            return False
        for check in checks:
            if isinstance(check, tuple):
                low, high = check
                if (low is not None and len(value) < low) or (high is not None and len(value) > high):
                    return False
            elif check.fullmatch(value) is None:
                return False
    return True
