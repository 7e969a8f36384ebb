"""Typed configuration: Prometheus-style dotted flags, each also read from the environment.

Defaults first, then the environment (`DOCKER_NAT_EXPORTER_WEB_LISTEN_ADDRESS` for
`--web.listen-address`; for `--docker.host`, Docker's own `DOCKER_HOST` when ours is unset), then
the command line; validated once, with messages that name the flag.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

ENV_PREFIX = "DOCKER_NAT_EXPORTER_"
DEFAULT_PORT = 9841


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Flag:
    name: str
    default: str
    help: str
    choices: tuple[str, ...] = ()
    boolean: bool = False
    fallback_env: str = ""  # a conventional variable read when ours is unset (DOCKER_HOST)

    @property
    def env(self) -> str:
        return ENV_PREFIX + re.sub(r"[.-]", "_", self.name).upper()


COMMON = (
    Flag(
        "docker.host",
        "unix:///var/run/docker.sock",
        "Docker Engine API address",
        fallback_env="DOCKER_HOST",
    ),
    Flag("docker.timeout", "10s", "timeout of each Docker API call"),
    Flag(
        "iptables.reader",
        "save",
        "how to read rules: save (iptables-*-save, all backends) "
        "or iptc (python-iptables, legacy backend only)",
        ("save", "iptc"),
    ),
    Flag("iptables.timeout", "10s", "timeout of each iptables-*-save run"),
    Flag(
        "iptables.self-test",
        "false",
        "run the `iptables -C` self-test in a throwaway namespace (needs CAP_SYS_ADMIN)",
        boolean=True,
    ),
    Flag(
        "host.root", "/", "where the host's root filesystem is mounted (e.g. /host in a container)"
    ),
    Flag(
        "probe.client-ipv4",
        "",
        "model only remote clients with this IPv4 address (default: every remote "
        "address, in the classes the rules tell apart)",
    ),
    Flag("probe.client-ipv6", "", "model only remote clients with this IPv6 address"),
    Flag("log.level", "info", "log level", ("debug", "info", "warn", "error")),
    Flag("log.format", "logfmt", "log format", ("logfmt", "json")),
)
SERVE = (
    Flag("web.listen-address", f":{DEFAULT_PORT}", "address to listen on ([host]:port)"),
    Flag("web.telemetry-path", "/metrics", "path under which to expose metrics"),
    Flag("web.config.file", "", "exporter-toolkit web configuration (TLS, basic auth)"),
    Flag("web.max-requests", "40", "maximum concurrent requests (0: no limit)"),
    Flag("refresh.interval", "15s", "refresh the snapshot at least this often"),
    Flag("refresh.debounce", "200ms", "wait this long after an event before refreshing"),
    Flag(
        "refresh.cpu-budget",
        "5",
        "percent of one core that refreshes on events may use on average (they slow down to "
        "stay within it; the interval's refresh always runs)",
    ),
    Flag(
        "refresh.host-facts-interval",
        "5m",
        "re-read the iptables build (package databases, self-test) this often",
    ),
    Flag("max-bindings", "5000", "export per-port series for at most this many bindings"),
)


def parse_percent(text: str, flag: str) -> float:
    """`5`, `2.5` or `5%`: a percentage above 0 and at most 100, as a fraction."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        value = -1.0
    if not 0 < value <= 100:
        raise ConfigError(f"--{flag}: {text!r} is not a percentage above 0 and at most 100")
    return value / 100


def parse_duration(text: str, flag: str) -> float:
    """Prometheus durations: `15s`, `1m30s`, `500ms`, `2h`."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.fullmatch(r"((\d+)(ms|s|m|h|d))+", text.strip())
    if not parts:
        raise ConfigError(f"--{flag}: {text!r} is not a duration (examples: 15s, 1m, 500ms)")
    total = sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d)", text))
    if total <= 0:
        raise ConfigError(f"--{flag}: must be greater than zero")
    return total


def parse_listen(text: str, flag: str = "web.listen-address") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--{flag}: {text!r} is not [host]:port")
    host = host.strip("[]")
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9.-]+", host):
                raise ConfigError(f"--{flag}: {host!r} is not a host name or address") from None
    return host, int(port)


def parse_bool(text: str, flag: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"--{flag}: {text!r} is not true or false")


def parse_docker_host(text: str) -> str:
    if not re.match(r"^(unix|tcp|ssh|http|https)://", text):
        raise ConfigError(
            f"--docker.host: {text!r} must start with unix://, tcp:// or ssh:// "
            "(set by the flag, DOCKER_NAT_EXPORTER_DOCKER_HOST or DOCKER_HOST)"
        )
    return text


def parse_client(text: str, family: str, flag: str) -> str:
    if not text:
        return ""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(f"--{flag}: {text!r} is not an IP address") from None
    if (ip.version == 6) != (family == "ipv6"):
        raise ConfigError(f"--{flag}: {text!r} is not an {family} address")
    return str(ip)


def env_defaults(flags, environ=None) -> dict[str, str]:
    """Each flag's value before the command line: our variable, else the flag's conventional
    one (an empty DOCKER_HOST counts as unset, as Docker's CLI has it), else the default."""
    environ = os.environ if environ is None else environ

    def value(f: Flag) -> str:
        if f.env in environ:
            return environ[f.env]
        return (environ.get(f.fallback_env) if f.fallback_env else None) or f.default

    return {f.name: value(f) for f in flags}
