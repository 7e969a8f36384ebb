"""--web.config.file: parsing, real TLS and mTLS handshakes, basic auth on a live aiohttp server.

Certificates come from trustme; bcrypt hashes are made here at cost 4. Every server listens on
127.0.0.1 port 0 and is torn down by its context manager, also when the test fails.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import trustme
import yaml
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.web.security import parse_basic, security_middleware
from exporter.web.tls import TLS_KEYS
from exporter.web.webconfig import (
    HTTP_KEYS,
    TOP_KEYS,
    WebConfig,
    WebConfigError,
    load_web_config,
    parse_web_config,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webconfig"
CHALLENGE = 'Basic realm="docker-nat-exporter"'
HANDSHAKE_FAILED = (ssl.SSLError, ConnectionError, aiohttp.ClientConnectionError)


@dataclass
class Pki:
    dir: Path
    server_ca: trustme.CA
    client: trustme.LeafCert  # issued by the client CA that the server trusts
    stranger: trustme.LeafCert  # same names, issued by a CA the server does not trust

    def path(self, name: str) -> str:
        return str(self.dir / name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    server_ca, client_ca, other_ca = trustme.CA(), trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("localhost", "127.0.0.1")
    client = client_ca.issue_cert("scraper.example", "2001:db8::7", "ops@example.com")
    stranger = other_ca.issue_cert("scraper.example", "2001:db8::7", "ops@example.com")
    server.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    server.private_key_pem.write_to_path(str(directory / "key.pem"))
    client.private_key_pem.write_to_path(str(directory / "other-key.pem"))
    client_ca.cert_pem.write_to_path(str(directory / "client-ca.pem"))
    return Pki(directory, server_ca, client, stranger)


@pytest.fixture(scope="module")
def hashed() -> str:
    return bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()


def tls_yaml(pki: Pki, **extra: str) -> str:
    lines = [f"  cert_file: {pki.path('cert.pem')}", f"  key_file: {pki.path('key.pem')}"]
    lines += [f"  {key}: {value}" for key, value in extra.items()]
    return "tls_server_config:\n" + "\n".join(lines) + "\n"


def mtls_yaml(pki: Pki, auth: str = "RequireAndVerifyClientCert", **extra: str) -> str:
    ca = pki.path("client-ca.pem")
    return tls_yaml(pki, client_auth_type=auth, client_ca_file=ca, **extra)


def load(tmp_path: Path, text: str) -> WebConfig:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return load_web_config(str(path))


@dataclass
class Served:
    url: str
    port: int
    calls: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serving(config: WebConfig, **middleware_options) -> AsyncIterator[Served]:
    served = Served("", 0)

    async def hello(request: web.Request) -> web.Response:
        served.calls.append(request.path)
        return web.Response(text="hello")

    async def gone(request: web.Request) -> web.Response:
        served.calls.append(request.path)
        raise web.HTTPNotFound(text="gone")

    app = web.Application(middlewares=[security_middleware(config, **middleware_options)])
    app.router.add_get("/", hello)
    app.router.add_get("/-/healthy", hello)
    app.router.add_get("/gone", gone)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=config.ssl_context())
        await site.start()
        served.port = runner.addresses[0][1]
        scheme = "https" if config.tls else "http"
        served.url = f"{scheme}://127.0.0.1:{served.port}"
        yield served
    finally:
        await runner.cleanup()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def client_ctx(
    pki: Pki, cert: trustme.LeafCert | None = None, tls12: bool = False, ciphers: str = ""
) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    pki.server_ca.configure_trust(ctx)
    if cert is not None:
        cert.configure_cert(ctx)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


async def probe(port: int, ctx: ssl.SSLContext) -> tuple[str, str, str]:
    """(TLS version, cipher, HTTP status line) of one real request; raises if TLS fails."""
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        try:
            tls = writer.get_extra_info("ssl_object")
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status = (await reader.readline()).decode().strip()
            if not status:
                raise ConnectionError("closed without an HTTP response")
            return tls.version(), tls.cipher()[0], status
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def get(
    url: str, ctx: ssl.SSLContext | bool = True, headers: dict | None = None, **kwargs
) -> tuple[int, dict, str]:
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession() as session,
        session.get(url, ssl=ctx, headers=headers, **kwargs) as response,
    ):
        return response.status, dict(response.headers), await response.text()


# --- TLS handshakes -------------------------------------------------------------------------


async def test_no_config_means_plain_http_without_auth() -> None:
    config = load_web_config(None)
    assert config == WebConfig()
    assert config.ssl_context() is None
    async with serving(config) as served:
        assert (await get(served.url + "/"))[::2] == (200, "hello")


async def test_tls_serves_the_configured_certificate(tmp_path: Path, pki: Pki) -> None:
    config = load(tmp_path, tls_yaml(pki))
    async with serving(config) as served:
        version, _, status = await probe(served.port, client_ctx(pki))
        assert (version, status) == ("TLSv1.3", "HTTP/1.1 200 OK")
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await get(served.url, ctx=True)  # the system CAs do not trust the test CA
        assert (await get(served.url, ctx=client_ctx(pki)))[::2] == (200, "hello")


async def test_inline_cert_and_key_and_relative_paths(tmp_path: Path, pki: Pki) -> None:
    cert = (pki.dir / "cert.pem").read_text().replace("\n", "\n    ")
    key = (pki.dir / "key.pem").read_text().replace("\n", "\n    ")
    inline = load(tmp_path, f"tls_server_config:\n  cert: |\n    {cert}\n  key: |\n    {key}\n")
    (tmp_path / "c.pem").write_text((pki.dir / "cert.pem").read_text())
    (tmp_path / "k.pem").write_text((pki.dir / "key.pem").read_text())
    relative = load(tmp_path, "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n")
    assert relative.tls and relative.tls.cert_file == str(tmp_path / "c.pem")
    for config in (inline, relative):
        async with serving(config) as served:
            assert (await probe(served.port, client_ctx(pki)))[2] == "HTTP/1.1 200 OK"


async def test_mtls_requires_a_certificate_from_the_client_ca(tmp_path: Path, pki: Pki) -> None:
    config = load(tmp_path, mtls_yaml(pki))
    async with serving(config) as served:
        assert (await probe(served.port, client_ctx(pki, pki.client)))[2] == "HTTP/1.1 200 OK"
        assert served.calls == ["/"]
        for cert in (pki.stranger, None):  # wrong CA, then no certificate at all
            with pytest.raises(HANDSHAKE_FAILED):
                await probe(served.port, client_ctx(pki, cert))
            with pytest.raises(HANDSHAKE_FAILED):
                await get(served.url, ctx=client_ctx(pki, cert, tls12=True))
        assert served.calls == ["/"]


async def test_verify_client_cert_if_given(tmp_path: Path, pki: Pki) -> None:
    config = load(tmp_path, mtls_yaml(pki, "VerifyClientCertIfGiven"))
    async with serving(config) as served:
        assert (await probe(served.port, client_ctx(pki)))[2] == "HTTP/1.1 200 OK"
        assert (await probe(served.port, client_ctx(pki, pki.client)))[2] == "HTTP/1.1 200 OK"
        with pytest.raises(HANDSHAKE_FAILED):
            await probe(served.port, client_ctx(pki, pki.stranger))
        assert served.calls == ["/", "/"]


async def test_min_version_tls13_refuses_a_tls12_only_client(tmp_path: Path, pki: Pki) -> None:
    config = load(tmp_path, tls_yaml(pki, min_version="TLS13"))
    async with serving(config) as served:
        with pytest.raises(HANDSHAKE_FAILED):  # asyncio's server resets rather than send an alert
            await probe(served.port, client_ctx(pki, tls12=True))
        assert (await probe(served.port, client_ctx(pki)))[0] == "TLSv1.3"


async def test_max_version_tls12_caps_a_tls13_client(tmp_path: Path, pki: Pki) -> None:
    config = load(tmp_path, tls_yaml(pki, max_version="TLS12"))
    async with serving(config) as served:
        assert (await probe(served.port, client_ctx(pki)))[0] == "TLSv1.2"


async def test_cipher_suites_limit_tls12(tmp_path: Path, pki: Pki) -> None:
    config = load(
        tmp_path, tls_yaml(pki, cipher_suites="[TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]")
    )
    async with serving(config) as served:
        _, cipher, _ = await probe(served.port, client_ctx(pki, tls12=True))
        assert cipher == "ECDHE-ECDSA-AES256-GCM-SHA384"
        with pytest.raises(HANDSHAKE_FAILED):
            await probe(
                served.port, client_ctx(pki, tls12=True, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
            )
        assert (await probe(served.port, client_ctx(pki)))[0] == "TLSv1.3"  # 1.3 suites untouched


@pytest.mark.parametrize(("prefer", "chosen"), [("true", "AES128"), ("false", "AES256")])
async def test_prefer_server_cipher_suites(
    tmp_path: Path, pki: Pki, prefer: str, chosen: str
) -> None:
    server_order = (
        "[TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]"
    )
    text = tls_yaml(pki, cipher_suites=server_order, prefer_server_cipher_suites=prefer)
    async with serving(load(tmp_path, text)) as served:
        client = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"
        _, cipher, _ = await probe(served.port, client_ctx(pki, tls12=True, ciphers=client))
        assert cipher == f"ECDHE-ECDSA-{chosen}-GCM-SHA{'256' if chosen == 'AES128' else '384'}"


def one_curve_client(pki: Pki, curve: str, tls12: bool) -> ssl.SSLContext:
    ctx = client_ctx(pki, tls12=tls12)
    ctx.set_ecdh_curve(curve)
    return ctx


async def test_curve_preferences_restrict_the_key_exchange(tmp_path: Path, pki: Pki) -> None:
    async with serving(load(tmp_path, tls_yaml(pki))) as served:  # control: P-256 alone is fine
        for tls12 in (False, True):
            assert (await probe(served.port, one_curve_client(pki, "prime256v1", tls12)))[2]
    config = load(tmp_path, tls_yaml(pki, curve_preferences="[CurveP384]"))
    async with serving(config) as served:
        for tls12 in (False, True):
            with pytest.raises(HANDSHAKE_FAILED):
                await probe(served.port, one_curve_client(pki, "prime256v1", tls12))
            assert (await probe(served.port, client_ctx(pki, tls12=tls12)))[2] == "HTTP/1.1 200 OK"
        # (a P-384-only client is tried on TLS 1.3 only: on 1.2 it could not accept the P-256 cert)
        assert (await probe(served.port, one_curve_client(pki, "secp384r1", False)))[0] == "TLSv1.3"


@pytest.mark.parametrize(
    ("allowed", "status"),
    [
        ("[scraper.example]", 200),
        ("[nobody.example, ops@example.com]", 200),
        ("['2001:db8::7']", 200),  # OpenSSL spells it 2001:DB8:0:0:0:0:0:7
        ("[nobody.example]", 403),
    ],
)
async def test_client_allowed_sans(tmp_path: Path, pki: Pki, allowed: str, status: int) -> None:
    config = load(tmp_path, mtls_yaml(pki, client_allowed_sans=allowed))
    async with serving(config) as served:
        got, _, body = await get(served.url, ctx=client_ctx(pki, pki.client))
        assert got == status
        assert served.calls == (["/"] if status == 200 else [])
        assert body == (
            "hello" if status == 200 else "403 Forbidden: client certificate not allowed"
        )


# --- basic auth and headers -------------------------------------------------------------------


async def test_basic_auth_over_tls(tmp_path: Path, pki: Pki, hashed: str) -> None:
    config = load(tmp_path, tls_yaml(pki) + f"basic_auth_users:\n  alice: '{hashed}'\n")
    ctx = client_ctx(pki)
    async with serving(config) as served:
        for path in ("/", "/-/healthy"):
            ok = await get(served.url + path, ctx, headers=basic("alice", "s3cret"))
            assert ok[::2] == (200, "hello")
        refused = [
            await get(served.url, ctx, headers=basic("alice", "wrong")),
            await get(served.url, ctx, headers=basic("mallory", "s3cret")),
            await get(served.url, ctx),
            await get(served.url + "/-/healthy", ctx),
        ]
        for status, headers, body in refused:
            assert (status, headers["WWW-Authenticate"], body) == (
                401,
                CHALLENGE,
                "401 Unauthorized",
            )
        assert served.calls == ["/", "/-/healthy"]


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer YWxpY2U6czNjcmV0",
        "Basic not*base64",
        "Basic YWxpY2Vzm2NyZXQ=",  # "alice" and password without the ':'
        "Basic " + "YWxpY2U6" + "eHh4" * 40,  # a 120-byte password: bcrypt refuses > 72 bytes
        "Basic",
        "Basic w6k=",  # not UTF-8: still just a wrong user
    ],
)
async def test_malformed_authorization_is_401(hashed: str, authorization: str) -> None:
    config = parse_web_config(f"basic_auth_users:\n  alice: '{hashed}'\n")
    async with serving(config) as served:
        status, headers, _ = await get(served.url, headers={"Authorization": authorization})
        assert (status, headers["WWW-Authenticate"], served.calls) == (401, CHALLENGE, [])


def test_parse_basic() -> None:
    assert parse_basic("Basic YWxpY2U6czNjcmV0") == (b"alice", b"s3cret")
    assert parse_basic("basic  YWxpY2U6OmE6 ") == (b"alice", b":a:")
    assert parse_basic("Basic OnB3") == (b"", b"pw")
    for bad in (None, "", "Basic", "Basic YWxpY2U=", "Digest YWxpY2U6czNjcmV0", "Basic é"):
        assert parse_basic(bad) is None


async def test_successful_checks_are_cached_and_bounded(hashed: str) -> None:
    bob_hash = bcrypt.hashpw(b"bobpw", bcrypt.gensalt(4)).decode()
    config = parse_web_config(f"basic_auth_users:\n  alice: '{hashed}'\n  bob: '{bob_hash}'\n")
    checked: list[bytes] = []

    def checkpw(password: bytes, stored: bytes) -> bool:
        checked.append(password)
        return bcrypt.checkpw(password, stored)

    async def status(user: str, password: str) -> int:
        return (await get(served.url, headers=basic(user, password)))[0]

    async with serving(config, cache_size=1, checkpw=checkpw) as served:
        assert [await status("alice", "s3cret") for _ in range(3)] == [200] * 3
        assert len(checked) == 1  # one bcrypt, then the cache
        assert [await status("alice", "nope") for _ in range(2)] == [401] * 2
        assert len(checked) == 3  # failures are never cached
        assert await status("bob", "bobpw") == 200  # evicts alice: the cache holds one entry
        assert await status("alice", "s3cret") == 200
        assert len(checked) == 5
        assert await status("mallory", "decoy password") == 401  # checked against the decoy
        assert checked[-1] == b"decoy password"


async def test_configured_headers_on_every_response(pki: Pki, hashed: str) -> None:
    text = (
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        "    X-Content-Type-Options: nosniff\n    Content-Security-Policy: ''\n"
        f"basic_auth_users:\n  alice: '{hashed}'\n"
    )
    config = parse_web_config(text)
    assert config.headers == (("X-Frame-Options", "deny"), ("X-Content-Type-Options", "nosniff"))
    alice = basic("alice", "s3cret")
    async with serving(config) as served:
        responses = [
            await get(served.url, headers=alice),
            await get(served.url),
            await get(served.url + "/gone", headers=alice),
            await get(served.url + "/no-such-route", headers=alice),
        ]
    assert [status for status, _, _ in responses] == [200, 401, 404, 404]
    for _, headers, _ in responses:
        assert headers["X-Frame-Options"] == "deny"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "Content-Security-Policy" not in headers  # blank means unset


# --- configuration errors -------------------------------------------------------------------

BAD_FIXTURES = {
    "not_yaml": (
        "not valid YAML: line 3, column 2: expected <block end>, but found '<block mapping start>'"
    ),
    "not_mapping": "the top level must be a mapping, got a list",
    "unknown_top_key": (
        "unknown key 'tls_config' in the top level "
        "(allowed: tls_server_config, http_server_config, basic_auth_users)"
    ),
    "rate_limit": "rate_limit is not supported here; put a rate-limiting proxy in front",
    "unknown_tls_key": (
        "unknown key 'certfile' in tls_server_config (allowed: cert, key, cert_file, key_file, "
        "client_auth_type, client_ca, client_ca_file, client_allowed_sans, min_version, "
        "max_version, cipher_suites, prefer_server_cipher_suites, curve_preferences)"
    ),
    "unknown_http_key": "unknown key 'header' in http_server_config (allowed: headers, http2)",
    "duplicate_user": "duplicate key 'alice' on line 4",
    "tls_not_mapping": "tls_server_config must be a mapping, got a string",
    "cert_file_not_string": "tls_server_config.cert_file must be a string, got an integer",
    "prefer_not_bool": (
        "tls_server_config.prefer_server_cipher_suites must be true or false, got a string"
    ),
    "cert_and_cert_file": "tls_server_config: set cert_file or cert, not both",
    "key_missing": "tls_server_config: key_file (or key) is required",
    "only_min_version": "tls_server_config: cert_file (or cert) is required",
    "client_auth_unknown": (
        "tls_server_config.client_auth_type: unknown value 'RequireClientCertPlease' "
        "(supported: NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)"
    ),
    "client_auth_require_any": (
        "tls_server_config.client_auth_type RequireAnyClientCert is not supported: Python's ssl "
        "module cannot accept a client certificate without verifying it; use "
        "VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"
    ),
    "client_auth_request": (
        "tls_server_config.client_auth_type RequestClientCert is not supported: Python's ssl "
        "module cannot accept a client certificate without verifying it; use "
        "VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"
    ),
    "verify_without_ca": (
        "tls_server_config.client_auth_type RequireAndVerifyClientCert needs client_ca_file "
        "(or client_ca)"
    ),
    "ca_without_client_auth": (
        "tls_server_config.client_auth_type is NoClientCert but a client CA is set: client "
        "certificates would not be checked; set client_auth_type: RequireAndVerifyClientCert"
    ),
    "sans_optional_cert": (
        "tls_server_config.client_allowed_sans needs client_auth_type RequireAndVerifyClientCert"
    ),
    "sans_not_list": (
        "tls_server_config.client_allowed_sans must be a list of strings, got a string"
    ),
    "sans_list_of_numbers": ("tls_server_config.client_allowed_sans: 10 is not a non-empty string"),
    "min_version_tls11": (
        "tls_server_config.min_version: TLS11 is insecure and not supported; use TLS12 or TLS13"
    ),
    "max_version_tls10": (
        "tls_server_config.max_version: TLS10 is insecure and not supported; use TLS12 or TLS13"
    ),
    "min_version_unknown": (
        "tls_server_config.min_version: unknown TLS version 'TLSv1.2' (one of: TLS12, TLS13)"
    ),
    "min_above_max": "tls_server_config: min_version TLS13 is above max_version TLS12",
    "cipher_unknown": (
        "tls_server_config.cipher_suites: unknown cipher suite 'ECDHE-RSA-AES128-GCM-SHA256' "
        "(Go crypto/tls names)"
    ),
    "cipher_tls13": (
        "tls_server_config.cipher_suites: TLS_AES_128_GCM_SHA256 is a TLS 1.3 suite; "
        "those cannot be configured"
    ),
    "cipher_with_min_tls13": (
        "tls_server_config.cipher_suites only apply to TLS 1.2, but min_version is TLS13"
    ),
    "curve_unknown": (
        "tls_server_config.curve_preferences: unknown curve 'P-256' "
        "(one of: CurveP256, CurveP384, CurveP521, X25519)"
    ),
    "two_curves": (
        "tls_server_config.curve_preferences: only one curve can be set (Python's ssl module "
        "has no preference list), got 2"
    ),
    "header_not_allowed": "http_server_config.headers: header 'Server' cannot be configured",
    "header_bad_value": (
        "http_server_config.headers.X-Frame-Options: 'allow-from https://example.com' "
        "is not allowed (use deny or sameorigin)"
    ),
    "header_multiline": (
        "http_server_config.headers.Content-Security-Policy must be a one-line string"
    ),
    "header_value_number": (
        "http_server_config.headers.X-XSS-Protection must be a string (quote it), got an integer"
    ),
    "http2_not_bool": "http_server_config.http2 must be true or false, got an integer",
    "users_not_mapping": "basic_auth_users must be a mapping, got a list",
    "user_plain_password": (
        "basic_auth_users.alice: not a bcrypt hash like $2y$10$ and 53 characters "
        """(make one with: htpasswd -nBC 10 "" | tr -d ':\\n')"""
    ),
    "user_hash_number": (
        "basic_auth_users.alice: not a bcrypt hash like $2y$10$ and 53 characters "
        """(make one with: htpasswd -nBC 10 "" | tr -d ':\\n')"""
    ),
    "user_2x_hash": (
        "basic_auth_users.alice: $2x$ hashes (buggy crypt_blowfish) are refused; hash again"
    ),
    "user_cost_too_high": (
        "basic_auth_users.alice: bcrypt cost 18 is outside 4..17 "
        "(a higher cost makes every uncached login take many seconds of CPU)"
    ),
    "user_bad_salt": "basic_auth_users.alice: bcrypt rejects the hash: Invalid salt",
    "user_with_colon": (
        "basic_auth_users: user name 'alice:admin' must be a non-empty string without ':'"
    ),
    "user_number": "basic_auth_users: user name 1234 must be a non-empty string without ':'",
}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("? [a, b]\n: 1\n", "not valid YAML: line 1, column 3: found unhashable key"),
        ("a: 1\n---\nb: 2\n", "not valid YAML: line 2, column 1: but found another document"),
        (
            "tls_server_config: !!python/object:os.system ls\n",
            "not valid YAML: line 1, column 20: could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/object:os.system'",
        ),
        ("basic_auth_users:\n  1: x\n  1: y\n", "duplicate key 1 on line 3"),
        (
            "tls_server_config:\n  cert: ''\n  cert_file: ''\n",
            "tls_server_config: cert_file (or cert) is required",
        ),
    ],
)
def test_bad_inline_yaml_is_rejected(text: str, message: str) -> None:
    with pytest.raises(WebConfigError) as error:
        parse_web_config(text)
    assert str(error.value) == f"web config <string>: {message}"


def test_every_bad_fixture_has_a_case() -> None:
    assert sorted(p.name.removesuffix(".bad.yml") for p in FIXTURES.glob("*.bad.yml")) == sorted(
        BAD_FIXTURES
    )


@pytest.mark.parametrize(("name", "message"), BAD_FIXTURES.items(), ids=list(BAD_FIXTURES))
def test_bad_fixture_is_rejected(name: str, message: str) -> None:
    path = str(FIXTURES / f"{name}.bad.yml")
    with pytest.raises(WebConfigError) as error:
        load_web_config(path)
    assert str(error.value) == f"web config {path}: {message}"


def test_unreadable_files(tmp_path: Path) -> None:
    missing, directory, binary = tmp_path / "missing.yml", tmp_path / "dir.yml", tmp_path / "b.yml"
    directory.mkdir()
    binary.write_bytes(b"basic_auth_users: {}\n\xff\xfe")
    expected = {
        missing: "cannot read file: No such file or directory",
        directory: "cannot read file: Is a directory",
        binary: "not UTF-8 text (byte 21)",
        Path("/dev/zero"): "cannot read file: larger than 1048576 bytes",
    }
    for path, message in expected.items():
        with pytest.raises(WebConfigError) as error:
            load_web_config(str(path))
        assert str(error.value) == f"web config {path}: {message}"


def encrypted_key(pki: Pki) -> str:
    key = serialization.load_pem_private_key((pki.dir / "key.pem").read_bytes(), None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ).decode()


def test_bad_certificates_stop_loading(tmp_path: Path, pki: Pki) -> None:
    cert, key = pki.path("cert.pem"), pki.path("key.pem")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    (tmp_path / "enc.pem").write_text(encrypted_key(pki))
    broken = (pki.dir / "cert.pem").read_text().replace("M", "%", 3)
    (tmp_path / "broken.pem").write_text(broken)
    junk, missing, enc = tmp_path / "junk.pem", tmp_path / "nope.pem", tmp_path / "enc.pem"
    other_key, broken_path, ca = (
        pki.path("other-key.pem"),
        tmp_path / "broken.pem",
        "client_ca_file",
    )
    cases = {
        f"cert_file: {missing}\n  key_file: {key}": (
            f"tls_server_config.cert_file: cannot read {missing}: No such file or directory"
        ),
        f"cert_file: {junk}\n  key_file: {key}": (
            f"tls_server_config: cert_file {junk} holds no PEM certificate"
        ),
        f"cert_file: /dev/zero\n  key_file: {key}": (
            "tls_server_config.cert_file: cannot read /dev/zero: larger than 1048576 bytes"
        ),
        f"cert_file: {cert}\n  key_file: {junk}": (
            f"tls_server_config: key_file {junk} holds no PEM private key"
        ),
        f"cert_file: {cert}\n  key_file: {other_key}": (
            f"tls_server_config: key_file {other_key} does not match cert_file {cert}"
        ),
        f"cert_file: {cert}\n  key_file: {enc}": (
            f"tls_server_config: key_file {enc} is encrypted; an unencrypted key is needed"
        ),
        f"cert_file: {cert}\n  key_file: {key}\n  client_auth_type: VerifyClientCertIfGiven\n"
        f"  {ca}: {junk}": f"tls_server_config: client_ca_file {junk} holds no PEM certificate",
        f"cert_file: {cert}\n  key_file: {key}\n  client_auth_type: VerifyClientCertIfGiven\n"
        f"  {ca}: {missing}": (
            f"tls_server_config.client_ca_file: cannot read {missing}: No such file or directory"
        ),
    }
    for body, message in cases.items():
        with pytest.raises(WebConfigError) as error:
            load(tmp_path, "tls_server_config:\n  " + body + "\n")
        assert str(error.value) == f"web config {tmp_path / 'web.yml'}: {message}"
    with pytest.raises(WebConfigError) as error:
        load(tmp_path, f"tls_server_config:\n  cert_file: {broken_path}\n  key_file: {key}\n")
    prefix = f"web config {tmp_path / 'web.yml'}: tls_server_config: cannot load cert_file "
    assert str(error.value).startswith(f"{prefix}{broken_path} with key_file {key}: ")


def test_ssl_context_rereads_files_and_reports_errors(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "c.pem").write_text((pki.dir / "cert.pem").read_text())
    config = load(
        tmp_path, f"tls_server_config:\n  cert_file: c.pem\n  key_file: {pki.path('key.pem')}\n"
    )
    assert isinstance(config.ssl_context(), ssl.SSLContext)
    (tmp_path / "c.pem").unlink()
    with pytest.raises(WebConfigError, match=r"cert_file: cannot read .*c\.pem: No such file"):
        config.ssl_context()


def test_warnings_and_secrets_kept_out_of_repr(hashed: str) -> None:
    assert parse_web_config("").warnings == ("the file is empty: no TLS, no auth",)
    config = parse_web_config(
        f"http_server_config:\n  http2: true\nbasic_auth_users:\n  a: '{hashed}'\n"
    )
    assert config.warnings == (
        "http_server_config.http2 is ignored: the server speaks HTTP/1.1 only",
        "basic_auth_users without tls_server_config: passwords travel in clear text",
    )
    assert config.basic_auth_users == (("a", hashed),)
    assert hashed not in repr(config)
    assert parse_web_config("basic_auth_users: {}\ntls_server_config:\n").tls is None


def test_inline_key_is_not_in_repr(pki: Pki) -> None:
    key = (pki.dir / "key.pem").read_text()
    text = "tls_server_config:\n  cert_file: c.pem\n  key: |\n    " + key.replace("\n", "\n    ")
    config = parse_web_config(text, base_dir="/etc/exporter")
    assert config.tls is not None and config.tls.key == key
    assert config.tls.cert_file == "/etc/exporter/c.pem"
    assert "PRIVATE" not in repr(config)


# --- no input gives anything but a WebConfig or a WebConfigError -------------------------------

WORDS = [
    *TOP_KEYS,
    *TLS_KEYS,
    *HTTP_KEYS,
    "X-Frame-Options",
    "deny",
    "TLS12",
    "TLS10",
    "rate_limit",
]
WORDS += ["RequireAndVerifyClientCert", "CurveP256", "TLS_AES_128_GCM_SHA256", "alice", ""]
SCALARS = st.one_of(st.sampled_from(WORDS), st.integers(), st.booleans(), st.none(), st.floats())
YAML_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(WORDS), inner),
    max_leaves=12,
)


def section(keys: tuple[str, ...]) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional=dict.fromkeys(keys, YAML_VALUES))


CONFIGS = st.fixed_dictionaries(
    {},
    optional={
        "tls_server_config": section(TLS_KEYS) | YAML_VALUES,
        "http_server_config": section(HTTP_KEYS) | YAML_VALUES,
        "basic_auth_users": st.dictionaries(SCALARS, YAML_VALUES, max_size=2) | YAML_VALUES,
    },
)


@settings(max_examples=200, deadline=None, database=None)
@given(CONFIGS | YAML_VALUES)
def test_any_structure_gives_a_config_or_a_clear_error(value: object) -> None:
    try:
        parse_web_config(yaml.safe_dump(value), base_dir="/nonexistent")
    except WebConfigError as error:
        assert str(error).startswith("web config <string>: ")


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(alphabet=":-[]{}'\"!&*#|>? \n\tabc_$2yTLS1", max_size=60))
def test_any_text_gives_a_config_or_a_clear_error(text: str) -> None:
    try:
        parse_web_config(text)
    except WebConfigError as error:
        assert str(error).startswith("web config <string>: ")
