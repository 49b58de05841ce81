"""Database URLs of the request cache (``cache.url=postgresql://USER@HOST:PORT/DB``): which locations are URLs,
whether one carries a password (refused: the password comes from ``PGPASSWORD`` or ``~/.pgpass``), and the URL
without a password, which is all that is ever printed, logged or stored."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(location: str | Path | None) -> bool:
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


def has_password(url: str) -> bool:
    """True if ``url`` carries a password (in its user part, or as ``?password=``)."""
    parts = urlsplit(url)
    return parts.password is not None or any(k == "password" for k, _ in parse_qsl(parts.query))


def redact(url: str) -> str:
    """``url`` without any password (a path or anything else is returned as given)."""
    if not is_url(url):
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}@{host}"
    query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("password="))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
