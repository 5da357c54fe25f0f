"""Which database a ``--db`` value names, and how to show a URL without its password."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

SCHEMES: Final = ("postgresql://", "postgres://")


def is_postgres(db: object) -> bool:
    """Whether ``db`` is a PostgreSQL URL (else it is a SQLite file's path)."""
    return isinstance(db, str) and db.lower().startswith(SCHEMES)


def redacted(url: str) -> str:
    """``url`` with its password replaced by ``***``: what messages and logs may show.

    A ``password=`` in the query string is elided too. A URL that cannot be parsed is shown
    as its scheme only.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
        query = "&".join(
            "password=***" if pair.lower().startswith("password=") else pair
            for pair in parts.query.split("&")
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return url.split("://", 1)[0] + "://***"
