"""Validators shared by the schemas, written so that apispec can read them into the OpenAPI document.

``FullMatch`` is ``validate.Regexp`` with whole-value matching. Its pattern is written with ``^``
and ``$`` and means the same thing in Python and in the document's JSON Schema (ECMA-262):
``re.fullmatch`` rules out the one difference (Python's ``$`` also matches just before a final
newline), and JSON Schema searches, so it needs the anchors. apispec copies ``regex.pattern``
into the document unchanged.
"""

from __future__ import annotations

import re

from marshmallow import ValidationError, validate

__all__ = ["FullMatch"]


class FullMatch(validate.Regexp):
    """The whole value must match ``pattern`` (``^...$``); ``error`` never shows the value."""

    def __init__(self, pattern: str, error: str):
        if not (pattern.startswith("^") and pattern.endswith("$")):
            raise ValueError("a FullMatch pattern is anchored: ^...$ (the OpenAPI document needs it)")
        super().__init__(re.compile(pattern), error=error)

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self.error)
        return value


def digits_at_most_pattern(maximum: int) -> str:
    """The anchored pattern of the whole numbers 1..``maximum`` written in ASCII digits without a
    leading zero: the JSON Schema way of saying ``^[1-9][0-9]*$`` and "at most ``maximum``" in one
    ``pattern`` (a document cannot compare a string with a number). Every alternative is plain
    ECMA-262 and Python alike."""
    if isinstance(maximum, bool) or not isinstance(maximum, int) or maximum < 1:
        raise ValueError("maximum must be a positive integer")
    text = str(maximum)
    size = len(text)
    alternatives = [] if size == 1 else [f"[1-9][0-9]{{0,{size - 2}}}" if size > 2 else "[1-9]"]
    for i, digit in enumerate(text):
        low = 1 if i == 0 else 0
        if int(digit) > low:
            top = int(digit) - 1
            rest = size - i - 1
            alternatives.append(text[:i] + (str(low) if top == low else f"[{low}-{top}]")
                                + (f"[0-9]{{{rest}}}" if rest else ""))
    alternatives.append(text)
    return "^(?:" + "|".join(alternatives) + ")$"
