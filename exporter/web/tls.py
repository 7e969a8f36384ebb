"""`tls_server_config` of a web configuration: its checks and the server SSLContext built
from it. Go crypto/tls names (versions, suites, curves, client auth types) map to OpenSSL's;
what Python's ssl module cannot honour is refused with a message, never silently weakened.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass, field

from exporter.web.fields import Invalid, boolean, check_keys, read_limited, string, strings

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
TLS_KEYS = (
    "cert", "key", "cert_file", "key_file", "client_auth_type", "client_ca", "client_ca_file",
    "client_allowed_sans", "min_version", "max_version", "cipher_suites",
    "prefer_server_cipher_suites", "curve_preferences",
)  # fmt: skip


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


def parse_tls(data: dict, base_dir: str) -> TLSServerConfig | None:
    """The checked section (None when empty); relative file paths are taken from `base_dir`."""
    where = "tls_server_config"
    check_keys(data, where, TLS_KEYS)
    if not data:
        return None

    def path(key: str) -> str | None:
        value = string(data, key, where)
        return os.path.join(base_dir, value) if value else None

    cert_file, cert = _one_of(data, "cert_file", "cert", path("cert_file"))
    key_file, key = _one_of(data, "key_file", "key", path("key_file"))
    ca_file, ca = _one_of(data, "client_ca_file", "client_ca", path("client_ca_file"), need=False)
    auth = _client_auth(data, has_ca=bool(ca_file or ca))
    sans = strings(data, "client_allowed_sans", where)
    if sans and auth != "RequireAndVerifyClientCert":
        raise Invalid(
            f"{where}.client_allowed_sans needs client_auth_type RequireAndVerifyClientCert"
        )
    low, high = _version(data, "min_version", "TLS12"), _version(data, "max_version", "TLS13")
    if TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        raise Invalid(f"{where}: min_version {low} is above max_version {high}")
    return TLSServerConfig(
        cert_file, cert, key_file, key, auth, ca_file, ca, sans, low, high,
        _ciphers(data, low), boolean(data, "prefer_server_cipher_suites", where, True),
        _curves(data),
    )  # fmt: skip


def _one_of(data: dict, file_key: str, inline_key: str, path: str | None, need: bool = True):
    """(path, inline PEM) for a `<x>_file`/`<x>` pair; exactly one is allowed."""
    where = "tls_server_config"
    inline = string(data, inline_key, where) or None
    if path and inline:
        raise Invalid(f"{where}: set {file_key} or {inline_key}, not both")
    if need and not (path or inline):
        raise Invalid(f"{where}: {file_key} (or {inline_key}) is required")
    return path, inline


def _client_auth(data: dict, has_ca: bool) -> str:
    where = "tls_server_config.client_auth_type"
    auth = string(data, "client_auth_type", "tls_server_config") or "NoClientCert"
    if auth in UNSUPPORTED_CLIENT_AUTH:
        raise Invalid(
            f"{where} {auth} is not supported: Python's ssl module cannot accept a client "
            "certificate without verifying it; use VerifyClientCertIfGiven or "
            "RequireAndVerifyClientCert with client_ca_file"
        )
    if auth not in CLIENT_AUTH:
        raise Invalid(f"{where}: unknown value {auth!r} (supported: {', '.join(CLIENT_AUTH)})")
    if auth != "NoClientCert" and not has_ca:
        raise Invalid(f"{where} {auth} needs client_ca_file (or client_ca)")
    if auth == "NoClientCert" and has_ca:
        raise Invalid(
            f"{where} is NoClientCert but a client CA is set: client certificates would not be "
            "checked; set client_auth_type: RequireAndVerifyClientCert"
        )
    return auth


def _version(data: dict, key: str, default: str) -> str:
    where = f"tls_server_config.{key}"
    value = string(data, key, "tls_server_config") or default
    if value not in TLS_VERSIONS:
        raise Invalid(f"{where}: unknown TLS version {value!r} (one of: TLS12, TLS13)")
    if value in INSECURE_VERSIONS:
        raise Invalid(f"{where}: {value} is insecure and not supported; use TLS12 or TLS13")
    return value


def _ciphers(data: dict, min_version: str) -> tuple[str, ...]:
    where = "tls_server_config.cipher_suites"
    names = strings(data, "cipher_suites", "tls_server_config")
    for name in names:
        if name in TLS13_SUITES:
            raise Invalid(f"{where}: {name} is a TLS 1.3 suite; those cannot be configured")
        if name not in CIPHER_SUITES:
            raise Invalid(f"{where}: unknown cipher suite {name!r} (Go crypto/tls names)")
    if names and min_version == "TLS13":
        raise Invalid(f"{where} only apply to TLS 1.2, but min_version is TLS13")
    return names


def _curves(data: dict) -> tuple[str, ...]:
    where = "tls_server_config.curve_preferences"
    names = strings(data, "curve_preferences", "tls_server_config")
    for name in names:
        if name not in CURVES:
            raise Invalid(f"{where}: unknown curve {name!r} (one of: {', '.join(CURVES)})")
    if len(names) > 1:
        raise Invalid(
            f"{where}: only one curve can be set (Python's ssl module has no preference "
            f"list), got {len(names)}"
        )
    return names


def build_context(tls: TLSServerConfig) -> ssl.SSLContext:
    """A server context from `tls`, reading the certificate and key files now."""
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
        raise Invalid(
            f"tls_server_config: OpenSSL refuses the cipher suites or curve: {e}"
        ) from None
    _load_cert_chain(ctx, tls)
    if tls.client_auth_type != "NoClientCert":
        ca = _pem(tls.client_ca_file, tls.client_ca, "client_ca_file", "client_ca")
        if "-----BEGIN CERTIFICATE-----" not in ca:
            ca_name = _name(tls.client_ca_file, "client_ca")
            raise Invalid(f"tls_server_config: {ca_name} holds no PEM certificate")
        try:
            ctx.load_verify_locations(cadata=ca)
        except ssl.SSLError as e:
            raise Invalid(
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
        raise Invalid(f"tls_server_config: {cert_name} holds no PEM certificate")
    if "PRIVATE KEY-----" not in key:
        raise Invalid(f"tls_server_config: {key_name} holds no PEM private key")
    if "ENCRYPTED" in key:
        raise Invalid(f"tls_server_config: {key_name} is encrypted; an unencrypted key is needed")
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain takes paths only
        cert_path = tls.cert_file or _write_private(tmp, "cert.pem", cert)
        key_path = tls.key_file or _write_private(tmp, "key.pem", key)
        try:
            ctx.load_cert_chain(cert_path, key_path, password=_no_password)
        except ssl.SSLError as e:
            if "KEY_VALUES_MISMATCH" in str(e):
                raise Invalid(f"tls_server_config: {key_name} does not match {cert_name}") from None
            raise Invalid(
                f"tls_server_config: cannot load {cert_name} with {key_name}: {_ssl_reason(e)}"
            ) from None


def _pem(path: str | None, inline: str | None, file_key: str, inline_key: str) -> str:
    if path is None:
        return inline or ""
    try:
        return read_limited(path).decode("utf-8", errors="replace")
    except OSError as e:
        raise Invalid(f"tls_server_config.{file_key}: cannot read {path}: {e.strerror}") from None


def _write_private(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal: a hang in a daemon.
    raise Invalid("tls_server_config: the private key is encrypted; an unencrypted key is needed")


def _name(path: str | None, inline_key: str) -> str:
    return f"{inline_key}_file {path}" if path else f"inline {inline_key}"


def _ssl_reason(e: ssl.SSLError) -> str:
    return e.reason or str(e)
