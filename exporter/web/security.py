"""aiohttp middleware enforcing a WebConfig: client certificate SANs, basic auth, extra headers.

Every path requires authentication, `/-/healthy` and `/` included, as in the exporter-toolkit.
A successful bcrypt check is cached (keyed by an HMAC-SHA256 of user, password and hash) so a
scrape every 15 s does not cost a bcrypt each time; failures are not cached.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import bcrypt
from aiohttp import web

from exporter.web.webconfig import WebConfig

REALM = "docker-nat-exporter"
UNAUTHORIZED = {"WWW-Authenticate": f'Basic realm="{REALM}"'}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
CheckPw = Callable[[bytes, bytes], bool]


def security_middleware(
    config: WebConfig, *, cache_size: int = 64, checkpw: CheckPw = bcrypt.checkpw
) -> Middleware:
    """The middleware for `web.Application(middlewares=[...])`; `checkpw` is injectable for tests.

    Headers are added to responses the handler returns or raises (web.HTTPException); a
    handler that streams (calls `prepare()` itself) has sent its headers before they can be.
    """
    users = config.basic_auth_users
    auth = BasicAuth(users, cache_size, checkpw) if users else None
    sans = config.tls.client_allowed_sans if config.tls else ()
    allowed_sans = frozenset(_normalise(san) for san in sans)
    headers = dict(config.headers)

    async def refusal(request: web.Request) -> web.StreamResponse | None:
        if allowed_sans and not allowed_sans & peer_sans(request):
            response = web.Response(
                status=403, text="403 Forbidden: client certificate not allowed"
            )
            response.force_close()  # the toolkit refuses such a client at the handshake
            return response
        if auth and not await auth.check(request.headers.get("Authorization")):
            return web.Response(status=401, text="401 Unauthorized", headers=UNAUTHORIZED)
        return None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await refusal(request)
            if response is None:
                response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(headers)
            raise
        if not response.prepared:
            response.headers.update(headers)
        return response

    return middleware


def peer_sans(request: web.Request) -> set[str]:
    """Subject alternative names (DNS, IP, e-mail, URI) of the verified client certificate."""
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport else None
    if not cert:
        return set()
    kinds = {"DNS", "IP Address", "email", "URI"}
    return {_normalise(value) for kind, value in cert.get("subjectAltName", ()) if kind in kinds}


def _normalise(san: str) -> str:
    # OpenSSL prints IPv6 SANs uncompressed and upper-case; compare addresses, not spellings.
    try:
        return str(ipaddress.ip_address(san))
    except ValueError:
        return san


class BasicAuth:
    """Checks `Authorization: Basic` headers against bcrypt hashes, one bcrypt at a time."""

    def __init__(
        self, users: tuple[tuple[str, str], ...], cache_size: int, checkpw: CheckPw
    ) -> None:
        self._users = {user.encode(): hashed.encode() for user, hashed in users}
        self._max_cost = max(int(hashed[4:6]) for hashed in self._users.values())
        self._checkpw = checkpw
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self._cache_key = os.urandom(32)
        self._decoy: bytes | None = None
        self._lock = asyncio.Lock()  # bcrypt is CPU-bound: never let requests pile them up

    async def check(self, header: str | None) -> bool:
        credentials = parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        stored = self._users.get(user)
        hashed = stored if stored is not None else await self._decoy_hash()
        message = b"".join(_lp(part) for part in (user, password, hashed))
        key = hmac.new(self._cache_key, message, hashlib.sha256).digest()
        if stored is not None and key in self._cache:
            self._cache.move_to_end(key)
            return True
        async with self._lock:
            ok = await asyncio.to_thread(self._verify, password, hashed)
        if not (ok and stored is not None):
            return False
        self._cache[key] = None
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return True

    def _verify(self, password: bytes, hashed: bytes) -> bool:
        try:
            return self._checkpw(password, hashed)
        except ValueError:  # e.g. bcrypt refuses passwords longer than 72 bytes
            return False

    async def _decoy_hash(self) -> bytes:
        # An unknown user costs a bcrypt at the highest configured cost too, so response
        # times do not tell which user names exist.
        if self._decoy is None:
            salt = bcrypt.gensalt(self._max_cost)
            self._decoy = await asyncio.to_thread(bcrypt.hashpw, b"decoy password", salt)
        return self._decoy


def parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    """(user, password) from an `Authorization: Basic ...` value, or None if it is not one."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except ValueError:
        return None
    user, sep, password = raw.partition(b":")
    return (user, password) if sep else None


def _lp(value: bytes) -> bytes:
    return b"%d:%s" % (len(value), value)
