"""Label values as Prometheus gets them: bounded in length and always encodable."""

from __future__ import annotations

MAX_LABEL = 200


def bound(value: str, limit: int = MAX_LABEL) -> str:
    """At most `limit` characters, and encodable (lone surrogates from JSON become '?')."""
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value if len(value) <= limit else value[: limit - 1] + "…"
