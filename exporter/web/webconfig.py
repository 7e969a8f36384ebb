"""Read a Prometheus exporter-toolkit web configuration file (`--web.config.file`).

Schema: https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md
(see docs/web-config.md for what is supported here and what is rejected, and why).
`parse_web_config` checks the YAML alone; `load_web_config` also reads the file and the
certificates, so a bad certificate stops start-up instead of failing every handshake.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from typing import Any

import yaml

from exporter.web.auth import parse_users
from exporter.web.fields import Invalid, boolean, check_keys, kind, mapping, read_limited
from exporter.web.tls import TLSServerConfig, build_context, parse_tls

# The toolkit's fixed list of settable headers, with the allowed values where it has one.
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
HTTP_KEYS = ("headers", "http2")


class WebConfigError(ValueError):
    """The web configuration is unusable; the message says where and why."""


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
            return build_context(self.tls)
        except Invalid as e:
            raise WebConfigError(f"web config {self.source}: {e}") from None


def load_web_config(path: str | None) -> WebConfig:
    """Read, parse and check `path` (None gives `WebConfig()`); raise `WebConfigError`."""
    if path is None:
        return WebConfig()
    try:
        text = read_limited(path).decode("utf-8")
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
            raise Invalid(f"the top level must be a mapping, got {kind(data)}")
        if "rate_limit" in data:
            raise Invalid("rate_limit is not supported here; put a rate-limiting proxy in front")
        check_keys(data, "the top level", TOP_KEYS)
        tls = parse_tls(mapping(data, "tls_server_config"), os.path.abspath(base_dir))
        headers, notes = _parse_http(mapping(data, "http_server_config"))
        users = parse_users(mapping(data, "basic_auth_users"))
    except yaml.YAMLError as e:
        raise WebConfigError(f"web config {source}: not valid YAML: {_yaml_problem(e)}") from None
    except Invalid as e:
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
                raise Invalid(f"duplicate key {key!r} on line {line}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_http(data: dict) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    where = "http_server_config"
    check_keys(data, where, HTTP_KEYS)
    notes = []
    if boolean(data, "http2", where, False):
        notes.append("http_server_config.http2 is ignored: the server speaks HTTP/1.1 only")
    headers = []
    for name, value in mapping(data, "headers", where).items():
        if name not in HEADERS:
            raise Invalid(f"{where}.headers: header {name!r} cannot be configured")
        if value is None or value == "":
            continue  # "unset if blank", as in the toolkit
        if not isinstance(value, str):
            raise Invalid(f"{where}.headers.{name} must be a string (quote it), got {kind(value)}")
        if "\r" in value or "\n" in value:
            raise Invalid(f"{where}.headers.{name} must be a one-line string")
        if HEADERS[name] and value not in HEADERS[name]:
            allowed = " or ".join(HEADERS[name])
            raise Invalid(f"{where}.headers.{name}: {value!r} is not allowed (use {allowed})")
        headers.append((name, value))
    return tuple(headers), notes


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem
