"""Reading log lines back, independently of worker.logs: a small logfmt parser and a JSON one.

The parser is strict on purpose: a pair is ``key=value`` with a key of no space, ``=``, ``"`` or
control character; a bare value has none of those, nor a backslash (whose meaning would be
ambiguous); a quoted value ends at the first
unescaped ``"`` and knows only the escapes ``\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX``. Anything
else — an unbalanced quote, a stray ``=``, two spaces, a duplicate key — is an error, not a guess.
"""

from __future__ import annotations

import json

__all__ = ["parse_logfmt", "parse_line", "FIRST_KEYS"]

FIRST_KEYS = ["timestamp", "level", "logger", "event"]
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class Unparsable(ValueError):
    pass


def _is_ident(text: str) -> bool:
    return bool(text) and all(c > " " and c not in '="' and c.isprintable() for c in text)


def parse_logfmt(line: str) -> dict[str, str]:
    """``key=value`` pairs in order; every value as text (logfmt has no types)."""
    pairs: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        eq = line.find("=", i)
        if eq < 0:
            raise Unparsable(f"no '=' after position {i}: {line!r}")
        key = line[i:eq]
        if not _is_ident(key) or key in pairs:
            raise Unparsable(f"bad or repeated key {key!r}: {line!r}")
        i = eq + 1
        if i < n and line[i] == '"':
            value, i = _quoted(line, i + 1)
        else:
            end = line.find(" ", i)
            end = n if end < 0 else end
            value = line[i:end]
            if any(c <= " " or c in '="\\' or not c.isprintable() for c in value):
                raise Unparsable(f"bad bare value {value!r}: {line!r}")
            i = end
        pairs[key] = value
        if i < n:
            if line[i] != " " or i + 1 == n:
                raise Unparsable(f"expected one space between pairs at {i}: {line!r}")
            i += 1
    return pairs


def _quoted(line: str, i: int) -> tuple[str, int]:
    out = []
    while True:
        if i >= len(line):
            raise Unparsable(f"unterminated quoted value: {line!r}")
        c = line[i]
        if c == '"':
            return "".join(out), i + 1
        if c < " ":
            raise Unparsable(f"raw control character in a quoted value: {line!r}")
        if c != "\\":
            out.append(c)
            i += 1
            continue
        code = line[i + 1: i + 2]
        if code == "u":
            digits = line[i + 2: i + 6]
            if len(digits) != 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise Unparsable(f"bad \\u escape at {i}: {line!r}")
            out.append(chr(int(digits, 16)))
            i += 6
        elif code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
        else:
            raise Unparsable(f"unknown escape \\{code} at {i}: {line!r}")


def parse_line(line: str, fmt: str) -> dict:
    """One line of either format, checked to begin with timestamp, level, logger and event."""
    if fmt == "json":
        try:
            fields = json.loads(line)
        except ValueError as exc:
            raise Unparsable(f"not JSON ({exc}): {line!r}") from None
        if not isinstance(fields, dict):
            raise Unparsable(f"not a JSON object: {line!r}")
    else:
        fields = parse_logfmt(line)
    if list(fields)[:4] != FIRST_KEYS:
        raise Unparsable(f"does not begin with {FIRST_KEYS}: {line!r}")
    return fields
