"""`basic_auth_users` of a web configuration: user names and bcrypt hashes, checked once at
start-up so that a bad hash (or a cost that would make every login take seconds) stops it."""

from __future__ import annotations

import re

import bcrypt

from exporter.web.fields import Invalid

BCRYPT_HASH = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
MAX_BCRYPT_COST = 17  # the highest `htpasswd -B -C` accepts; cost 18 is ~20 s per check


def parse_users(data: dict) -> tuple[tuple[str, str], ...]:
    """(user, bcrypt hash) pairs, each hash checked for form, cost and salt."""
    users = []
    for user, hashed in data.items():
        where = f"basic_auth_users.{user}"
        if not isinstance(user, str) or not user or ":" in user:
            raise Invalid(
                f"basic_auth_users: user name {user!r} must be a non-empty string without ':'"
            )
        match = BCRYPT_HASH.fullmatch(hashed) if isinstance(hashed, str) else None
        if isinstance(hashed, str) and hashed.startswith("$2x$"):
            raise Invalid(f"{where}: $2x$ hashes (buggy crypt_blowfish) are refused; hash again")
        if match is None:
            raise Invalid(
                f"{where}: not a bcrypt hash like $2y$10$ and 53 characters "
                """(make one with: htpasswd -nBC 10 "" | tr -d ':\\n')"""
            )
        cost = int(match.group(1))
        if not 4 <= cost <= MAX_BCRYPT_COST:
            raise Invalid(
                f"{where}: bcrypt cost {cost} is outside 4..{MAX_BCRYPT_COST} "
                "(a higher cost makes every uncached login take many seconds of CPU)"
            )
        try:  # let bcrypt parse the salt; at cost 4 this takes about a millisecond
            bcrypt.checkpw(b"", f"{hashed[:4]}04{hashed[6:]}".encode())
        except ValueError as e:
            raise Invalid(f"{where}: bcrypt rejects the hash: {e}") from None
        users.append((user, hashed))
    return tuple(users)
