"""Read a Prometheus exporter-toolkit web configuration file (`--web.config.file`).

Schema: https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md
(see docs/web-config.md for what is supported here and what is rejected, and why).
`parse_web_config` checks the YAML alone; `load_web_config` also reads the file and the
certificates, so a bad certificate stops start-up instead of failing every handshake.
"""

from __future__ import annotations

import os
import re
import ssl
import tempfile
from dataclasses import dataclass, field
from typing import Any

import bcrypt
import yaml

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
INSECURE_VERSIONS = {"TLS10", "TLS11"}
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Go can ask for a client certificate without verifying it; OpenSSL via Python's ssl cannot.
UNSUPPORTED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
# Go crypto/tls names (tls.CipherSuites()) of TLS <= 1.2 suites -> OpenSSL names.
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
CURVES = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}
# The toolkit's fixed list of settable headers, with the allowed values where it has one.
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
BCRYPT_HASH = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
MAX_FILE_BYTES = 1 << 20  # no config or PEM file is near this; /dev/zero would be endless
MAX_BCRYPT_COST = 17  # the highest `htpasswd -B -C` accepts; cost 18 is ~20 s per check

TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
TLS_KEYS = (
    "cert", "key", "cert_file", "key_file", "client_auth_type", "client_ca", "client_ca_file",
    "client_allowed_sans", "min_version", "max_version", "cipher_suites",
    "prefer_server_cipher_suites", "curve_preferences",
)  # fmt: skip
HTTP_KEYS = ("headers", "http2")


class WebConfigError(ValueError):
    """The web configuration is unusable; the message says where and why."""


class _Invalid(Exception):
    """A problem found while parsing, before the source name is prefixed."""


@dataclass(frozen=True, slots=True)
class TLSServerConfig:
    """`tls_server_config`, validated. File paths are absolute; inline PEM is kept as text."""

    cert_file: str | None = None
    cert: str | None = field(default=None, repr=False)
    key_file: str | None = None
    key: str | None = field(default=None, repr=False)
    client_auth_type: str = "NoClientCert"
    client_ca_file: str | None = None
    client_ca: str | None = field(default=None, repr=False)
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The whole web configuration; `WebConfig()` means plain HTTP without authentication."""

    tls: TLSServerConfig | None = None
    headers: tuple[tuple[str, str], ...] = ()
    basic_auth_users: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    source: str = "<none>"
    warnings: tuple[str, ...] = ()

    def ssl_context(self) -> ssl.SSLContext | None:
        """A fresh server SSLContext (reads the certificate files now), or None without TLS."""
        if self.tls is None:
            return None
        try:
            return _build_context(self.tls)
        except _Invalid as e:
            raise WebConfigError(f"web config {self.source}: {e}") from None


def load_web_config(path: str | None) -> WebConfig:
    """Read, parse and check `path` (None gives `WebConfig()`); raise `WebConfigError`."""
    if path is None:
        return WebConfig()
    try:
        text = _read_limited(path).decode("utf-8")
    except OSError as e:
        raise WebConfigError(f"web config {path}: cannot read file: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise WebConfigError(f"web config {path}: not UTF-8 text (byte {e.start})") from None
    config = parse_web_config(text, base_dir=os.path.dirname(os.path.abspath(path)), source=path)
    config.ssl_context()  # load the certificates now so that a bad one stops start-up
    return config


def parse_web_config(text: str, *, base_dir: str = ".", source: str = "<string>") -> WebConfig:
    """Parse and validate the YAML text; relative file paths are taken from `base_dir`."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)
        if data is None:
            return WebConfig(source=source, warnings=("the file is empty: no TLS, no auth",))
        if not isinstance(data, dict):
            raise _Invalid(f"the top level must be a mapping, got {_kind(data)}")
        if "rate_limit" in data:
            raise _Invalid("rate_limit is not supported here; put a rate-limiting proxy in front")
        _check_keys(data, "the top level", TOP_KEYS)
        tls = _parse_tls(_mapping(data, "tls_server_config"), os.path.abspath(base_dir))
        headers, notes = _parse_http(_mapping(data, "http_server_config"))
        users = _parse_users(_mapping(data, "basic_auth_users"))
    except yaml.YAMLError as e:
        raise WebConfigError(f"web config {source}: not valid YAML: {_yaml_problem(e)}") from None
    except _Invalid as e:
        raise WebConfigError(f"web config {source}: {e}") from None
    if users and tls is None:
        notes.append("basic_auth_users without tls_server_config: passwords travel in clear text")
    return WebConfig(tls, headers, users, source, tuple(notes))


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, as the toolkit's strict YAML decoder does."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool | None):
                continue  # unhashable: SafeLoader's own error says so
            if key in seen:
                line = key_node.start_mark.line + 1
                raise _Invalid(f"duplicate key {key!r} on line {line}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_tls(data: dict, base_dir: str) -> TLSServerConfig | None:
    where = "tls_server_config"
    _check_keys(data, where, TLS_KEYS)
    if not data:
        return None

    def path(key: str) -> str | None:
        value = _string(data, key, where)
        return os.path.join(base_dir, value) if value else None

    cert_file, cert = _one_of(data, "cert_file", "cert", path("cert_file"))
    key_file, key = _one_of(data, "key_file", "key", path("key_file"))
    ca_file, ca = _one_of(data, "client_ca_file", "client_ca", path("client_ca_file"), need=False)
    auth = _client_auth(data, has_ca=bool(ca_file or ca))
    sans = _strings(data, "client_allowed_sans", where)
    if sans and auth != "RequireAndVerifyClientCert":
        raise _Invalid(
            f"{where}.client_allowed_sans needs client_auth_type RequireAndVerifyClientCert"
        )
    low, high = _version(data, "min_version", "TLS12"), _version(data, "max_version", "TLS13")
    if TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        raise _Invalid(f"{where}: min_version {low} is above max_version {high}")
    return TLSServerConfig(
        cert_file, cert, key_file, key, auth, ca_file, ca, sans, low, high,
        _ciphers(data, low), _bool(data, "prefer_server_cipher_suites", where, True),
        _curves(data),
    )  # fmt: skip


def _one_of(data: dict, file_key: str, inline_key: str, path: str | None, need: bool = True):
    """(path, inline PEM) for a `<x>_file`/`<x>` pair; exactly one is allowed."""
    where = "tls_server_config"
    inline = _string(data, inline_key, where) or None
    if path and inline:
        raise _Invalid(f"{where}: set {file_key} or {inline_key}, not both")
    if need and not (path or inline):
        raise _Invalid(f"{where}: {file_key} (or {inline_key}) is required")
    return path, inline


def _client_auth(data: dict, has_ca: bool) -> str:
    where = "tls_server_config.client_auth_type"
    auth = _string(data, "client_auth_type", "tls_server_config") or "NoClientCert"
    if auth in UNSUPPORTED_CLIENT_AUTH:
        raise _Invalid(
            f"{where} {auth} is not supported: Python's ssl module cannot accept a client "
            "certificate without verifying it; use VerifyClientCertIfGiven or "
            "RequireAndVerifyClientCert with client_ca_file"
        )
    if auth not in CLIENT_AUTH:
        raise _Invalid(f"{where}: unknown value {auth!r} (supported: {', '.join(CLIENT_AUTH)})")
    if auth != "NoClientCert" and not has_ca:
        raise _Invalid(f"{where} {auth} needs client_ca_file (or client_ca)")
    if auth == "NoClientCert" and has_ca:
        raise _Invalid(
            f"{where} is NoClientCert but a client CA is set: client certificates would not be "
            "checked; set client_auth_type: RequireAndVerifyClientCert"
        )
    return auth


def _version(data: dict, key: str, default: str) -> str:
    where = f"tls_server_config.{key}"
    value = _string(data, key, "tls_server_config") or default
    if value not in TLS_VERSIONS:
        raise _Invalid(f"{where}: unknown TLS version {value!r} (one of: TLS12, TLS13)")
    if value in INSECURE_VERSIONS:
        raise _Invalid(f"{where}: {value} is insecure and not supported; use TLS12 or TLS13")
    return value


def _ciphers(data: dict, min_version: str) -> tuple[str, ...]:
    where = "tls_server_config.cipher_suites"
    names = _strings(data, "cipher_suites", "tls_server_config")
    for name in names:
        if name in TLS13_SUITES:
            raise _Invalid(f"{where}: {name} is a TLS 1.3 suite; those cannot be configured")
        if name not in CIPHER_SUITES:
            raise _Invalid(f"{where}: unknown cipher suite {name!r} (Go crypto/tls names)")
    if names and min_version == "TLS13":
        raise _Invalid(f"{where} only apply to TLS 1.2, but min_version is TLS13")
    return names


def _curves(data: dict) -> tuple[str, ...]:
    where = "tls_server_config.curve_preferences"
    names = _strings(data, "curve_preferences", "tls_server_config")
    for name in names:
        if name not in CURVES:
            raise _Invalid(f"{where}: unknown curve {name!r} (one of: {', '.join(CURVES)})")
    if len(names) > 1:
        raise _Invalid(
            f"{where}: only one curve can be set (Python's ssl module has no preference "
            f"list), got {len(names)}"
        )
    return names


def _parse_http(data: dict) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    where = "http_server_config"
    _check_keys(data, where, HTTP_KEYS)
    notes = []
    if _bool(data, "http2", where, False):
        notes.append("http_server_config.http2 is ignored: the server speaks HTTP/1.1 only")
    headers = []
    for name, value in _mapping(data, "headers", where).items():
        if name not in HEADERS:
            raise _Invalid(f"{where}.headers: header {name!r} cannot be configured")
        if value is None or value == "":
            continue  # "unset if blank", as in the toolkit
        if not isinstance(value, str):
            raise _Invalid(
                f"{where}.headers.{name} must be a string (quote it), got {_kind(value)}"
            )
        if "\r" in value or "\n" in value:
            raise _Invalid(f"{where}.headers.{name} must be a one-line string")
        if HEADERS[name] and value not in HEADERS[name]:
            allowed = " or ".join(HEADERS[name])
            raise _Invalid(f"{where}.headers.{name}: {value!r} is not allowed (use {allowed})")
        headers.append((name, value))
    return tuple(headers), notes


def _parse_users(data: dict) -> tuple[tuple[str, str], ...]:
    users = []
    for user, hashed in data.items():
        where = f"basic_auth_users.{user}"
        if not isinstance(user, str) or not user or ":" in user:
            raise _Invalid(
                f"basic_auth_users: user name {user!r} must be a non-empty string without ':'"
            )
        match = BCRYPT_HASH.fullmatch(hashed) if isinstance(hashed, str) else None
        if isinstance(hashed, str) and hashed.startswith("$2x$"):
            raise _Invalid(f"{where}: $2x$ hashes (buggy crypt_blowfish) are refused; hash again")
        if match is None:
            raise _Invalid(
                f"{where}: not a bcrypt hash like $2y$10$ and 53 characters "
                """(make one with: htpasswd -nBC 10 "" | tr -d ':\\n')"""
            )
        cost = int(match.group(1))
        if not 4 <= cost <= MAX_BCRYPT_COST:
            raise _Invalid(
                f"{where}: bcrypt cost {cost} is outside 4..{MAX_BCRYPT_COST} "
                "(a higher cost makes every uncached login take many seconds of CPU)"
            )
        try:  # let bcrypt parse the salt; at cost 4 this takes about a millisecond
            bcrypt.checkpw(b"", f"{hashed[:4]}04{hashed[6:]}".encode())
        except ValueError as e:
            raise _Invalid(f"{where}: bcrypt rejects the hash: {e}") from None
        users.append((user, hashed))
    return tuple(users)


def _build_context(tls: TLSServerConfig) -> ssl.SSLContext:
    # Not create_default_context(): that would trust the system CAs for client certificates.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    if not tls.prefer_server_cipher_suites:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    try:  # this OpenSSL build may lack a suite or curve (e.g. in FIPS mode)
        if tls.cipher_suites:
            ctx.set_ciphers(":".join(CIPHER_SUITES[name] for name in tls.cipher_suites))
        if tls.curve_preferences:
            ctx.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
    except (ssl.SSLError, ValueError) as e:
        raise _Invalid(
            f"tls_server_config: OpenSSL refuses the cipher suites or curve: {e}"
        ) from None
    _load_cert_chain(ctx, tls)
    if tls.client_auth_type != "NoClientCert":
        ca = _pem(tls.client_ca_file, tls.client_ca, "client_ca_file", "client_ca")
        if "-----BEGIN CERTIFICATE-----" not in ca:
            ca_name = _name(tls.client_ca_file, "client_ca")
            raise _Invalid(f"tls_server_config: {ca_name} holds no PEM certificate")
        try:
            ctx.load_verify_locations(cadata=ca)
        except ssl.SSLError as e:
            raise _Invalid(
                f"tls_server_config: cannot load the client CA: {_ssl_reason(e)}"
            ) from None
        ctx.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _load_cert_chain(ctx: ssl.SSLContext, tls: TLSServerConfig) -> None:
    cert = _pem(tls.cert_file, tls.cert, "cert_file", "cert")
    key = _pem(tls.key_file, tls.key, "key_file", "key")
    cert_name, key_name = _name(tls.cert_file, "cert"), _name(tls.key_file, "key")
    if "-----BEGIN CERTIFICATE-----" not in cert:
        raise _Invalid(f"tls_server_config: {cert_name} holds no PEM certificate")
    if "PRIVATE KEY-----" not in key:
        raise _Invalid(f"tls_server_config: {key_name} holds no PEM private key")
    if "ENCRYPTED" in key:
        raise _Invalid(f"tls_server_config: {key_name} is encrypted; an unencrypted key is needed")
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain takes paths only
        cert_path = tls.cert_file or _write_private(tmp, "cert.pem", cert)
        key_path = tls.key_file or _write_private(tmp, "key.pem", key)
        try:
            ctx.load_cert_chain(cert_path, key_path, password=_no_password)
        except ssl.SSLError as e:
            if "KEY_VALUES_MISMATCH" in str(e):
                raise _Invalid(
                    f"tls_server_config: {key_name} does not match {cert_name}"
                ) from None
            raise _Invalid(
                f"tls_server_config: cannot load {cert_name} with {key_name}: {_ssl_reason(e)}"
            ) from None


def _pem(path: str | None, inline: str | None, file_key: str, inline_key: str) -> str:
    if path is None:
        return inline or ""
    try:
        return _read_limited(path).decode("utf-8", errors="replace")
    except OSError as e:
        raise _Invalid(f"tls_server_config.{file_key}: cannot read {path}: {e.strerror}") from None


def _read_limited(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(0, f"larger than {MAX_FILE_BYTES} bytes")
    return data


def _write_private(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal: a hang in a daemon.
    raise _Invalid("tls_server_config: the private key is encrypted; an unencrypted key is needed")


def _name(path: str | None, inline_key: str) -> str:
    return f"{inline_key}_file {path}" if path else f"inline {inline_key}"


def _ssl_reason(e: ssl.SSLError) -> str:
    return e.reason or str(e)


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def _check_keys(data: dict, where: str, allowed: tuple[str, ...]) -> None:
    for key in data:
        if key not in allowed:
            raise _Invalid(f"unknown key {key!r} in {where} (allowed: {', '.join(allowed)})")


def _mapping(data: dict, key: str, where: str = "") -> dict:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Invalid(f"{where + '.' if where else ''}{key} must be a mapping, got {_kind(value)}")
    return value


def _string(data: dict, key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise _Invalid(f"{where}.{key} must be a string, got {_kind(value)}")
    return value


def _strings(data: dict, key: str, where: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _Invalid(f"{where}.{key} must be a list of strings, got {_kind(value)}")
    for item in value:
        if not isinstance(item, str) or not item:
            raise _Invalid(f"{where}.{key}: {item!r} is not a non-empty string")
    return tuple(value)


def _bool(data: dict, key: str, where: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise _Invalid(f"{where}.{key} must be true or false, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    kinds.update({list: "a list", dict: "a mapping", type(None): "nothing"})
    return kinds.get(type(value), type(value).__name__)
