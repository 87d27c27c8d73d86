"""What ``REDIS_URL`` says: one server, or Celery's list of Sentinels; and the URL fit to print.

Pure parsing, no connection (``worker.store.connection`` connects): the settings check the URL at
start-up with these, and every message that names a URL shows it through ``safe_url``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["SentinelURL", "parse_sentinel_url", "is_sentinel", "safe_url"]


@dataclass(frozen=True)
class SentinelURL:
    """What a ``sentinel://h:p;sentinel://h:p/db`` list says."""

    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = None  # the data nodes', not the Sentinels'


def is_sentinel(url: str) -> bool:
    return url.strip().lower().startswith("sentinel://")


def parse_sentinel_url(url: str) -> SentinelURL:
    """Parse Celery's Sentinel list; ``ValueError`` (never showing a password) when malformed."""
    sentinels, db, username, password = [], 0, None, None
    for part in url.split(";"):
        part = part.strip()
        if not part:
            continue
        try:
            parts = urlsplit(part)
            port = parts.port or 26379
        except ValueError:
            raise ValueError("a sentinel:// entry is not a URL with a numeric port") from None
        if parts.scheme != "sentinel" or not parts.hostname:
            raise ValueError("every entry must be sentinel://host:port")
        if parts.password is not None:
            password = unquote(parts.password)
            username = unquote(parts.username) if parts.username else None
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                raise ValueError("the database after the last sentinel must be a number")
            db = int(path)
        sentinels.append((parts.hostname, port))
    if not sentinels:
        raise ValueError("no sentinel://host:port in the list")
    return SentinelURL(tuple(sentinels), db, username, password)


def safe_url(url: str) -> str:
    """``url`` with every password replaced by ``***`` (for messages and logs)."""
    out = []
    for part in url.split(";"):
        try:
            parts = urlsplit(part)
            if parts.password is not None:
                host = parts.hostname or ""
                port = f":{parts.port}" if parts.port else ""
                user = parts.username or ""
                part = parts._replace(netloc=f"{user}:***@{host}{port}").geturl()
        except ValueError:
            part = "<not a URL>"
        out.append(part)
    return ";".join(out)
