"""Reading a batch of checkout jobs from a file (JSON array, JSON Lines or CSV) and checking
every row before any is enqueued."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from typing import TextIO

from marshmallow import ValidationError

__all__ = ["Row", "BatchError", "read_rows", "invalid_rows", "detect_format", "FORMATS"]

FORMATS = ("json", "jsonl", "csv")


@dataclass(frozen=True)
class Row:
    """One job and where it came from (its line, or its position in a JSON array)."""

    line: int
    payload: dict


class BatchError(ValueError):
    """The file cannot be read as the format says; names the line."""

    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line = line


def detect_format(name: str) -> str:
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "json"


def read_rows(stream: TextIO, fmt: str) -> list[Row]:
    """Every job in the stream; ``BatchError`` for the first row that is not an object."""
    if fmt == "csv":
        reader = csv.DictReader(stream)
        # empty cells are absent fields (a CSV cannot say "no value" any other way)
        return [Row(reader.line_num, {k: v for k, v in row.items() if k and v not in (None, "")})
                for row in reader]
    if fmt == "jsonl":
        rows = []
        for number, text in enumerate(stream, start=1):
            if text.strip():
                rows.append(Row(number, _object(text, number)))
        return rows
    text = stream.read()
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BatchError(exc.lineno, f"not JSON ({exc.msg})") from None
    items = items if isinstance(items, list) else [items]
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise BatchError(index, "each item must be a JSON object")
    return [Row(index, item) for index, item in enumerate(items, start=1)]


def _object(text: str, number: int) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BatchError(number, f"not JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise BatchError(number, "must be a JSON object")
    return value


def invalid_rows(rows: list[Row], schema) -> list[tuple[Row, dict]]:
    """Rows the schema refuses, each with its field errors (never its values)."""
    refused = []
    for row in rows:
        try:
            schema.load(row.payload)
        except ValidationError as exc:
            refused.append((row, exc.messages))
    return refused
