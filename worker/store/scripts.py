"""The store's Lua scripts: one ``.lua`` file each under ``lua/``, loaded once by name.

Each file starts with what it takes: ``-- KEYS:`` and ``-- ARGV:`` lines. A file may start with
``-- include: <name>`` lines, whose files are put before it (``clock``: Redis's clock, written
once). ``register`` hands redis-py's ``Script``: it runs by ``EVALSHA`` and loads the script
again after ``NOSCRIPT`` (a restarted or newly promoted server). A script whose ARGV are many
(``move``) names them on its ``-- ARGV:`` lines, ``name, name, ...``, and ``argv`` orders a call's
named values by those lines, so no caller counts positions.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import redis
from redis.commands.core import Script

__all__ = ["register", "source", "argv", "argv_names", "names"]

_DIR = Path(__file__).with_name("lua")
_INCLUDE = re.compile(r"^-- include: (\w+)\s*$", re.M)
_ARGV = re.compile(r"^-- ARGV: (.+)$", re.M)


def names() -> list[str]:
    """Every script's name (a file under ``lua/``, the included ones too)."""
    return sorted(p.stem for p in _DIR.glob("*.lua"))


@functools.cache
def source(name: str) -> str:
    """The script's text, its includes first; read once per process."""
    text = (_DIR / f"{name}.lua").read_text(encoding="utf-8")
    return "".join(source(inc) + "\n" for inc in _INCLUDE.findall(text)) + text


def register(client: redis.Redis, name: str) -> Script:
    """The script ``name`` on ``client``: call it as ``script(keys=[...], args=[...])``."""
    return client.register_script(source(name))


@functools.cache
def argv_names(name: str) -> tuple[str, ...]:
    """The names on the file's ``-- ARGV:`` line, in order (a script whose ARGV are named)."""
    text = (_DIR / f"{name}.lua").read_text(encoding="utf-8")
    found = _ARGV.findall(text)
    if not found:
        raise LookupError(f"{name}.lua names no ARGV")
    return tuple(n.strip() for line in found for n in line.split(",") if n.strip())


def argv(name: str, **values: object) -> list[object]:
    """The ARGV of a call, ordered as the file names them; every name given, and no other."""
    order = argv_names(name)
    if values.keys() != set(order):
        missing, extra = set(order) - values.keys(), values.keys() - set(order)
        raise TypeError(f"{name}.lua: missing {sorted(missing)}, unknown {sorted(extra)}")
    return [values[n] for n in order]
