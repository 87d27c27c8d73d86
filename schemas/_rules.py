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
