"""Decode Engine API answers (container list, network list, /info, /version) into DockerState.

Pure: takes the JSON the API returned plus what the sources learnt about the daemon process
(its command line, daemon.json, its docker-proxy children) and returns frozen data. Anything
malformed raises DecodeError with a message saying which field was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from exporter.docker.model import Daemon, DockerState, parse_version
from exporter.docker.objects import DecodeError, decode_container, decode_network

__all__ = ["DaemonHints", "DecodeError", "decode_daemon", "decode_state"]


@dataclass(frozen=True, slots=True)
class DaemonHints:
    """What the sources found out about the daemon process itself."""

    pid: int | None = None
    cmdline: tuple[str, ...] | None = None
    daemon_json: dict | None = None
    proxy_argvs: tuple[tuple[str, ...], ...] | None = None  # None: processes not visible


def decode_state(containers, networks, info, version, hints: DaemonHints) -> DockerState:
    if not isinstance(containers, list) or not isinstance(networks, list):
        raise DecodeError("container and network lists must be JSON arrays")
    if not isinstance(info, dict) or not isinstance(version, dict):
        raise DecodeError("/info and /version must be JSON objects")
    daemon = decode_daemon(info, version, hints)
    nets = tuple(decode_network(n) for n in networks)
    by_id = {n.id: n for n in nets}
    conts, bindings = [], []
    for raw in containers:
        c, bs = decode_container(raw, by_id, daemon)
        if bs:
            conts.append(c)
            bindings.extend(bs)
    bindings.sort(key=lambda b: (b.container, b.protocol, b.host_port, b.family, b.host_ip))
    return DockerState(daemon, nets, tuple(conts), tuple(bindings))


def _flag(args: tuple[str, ...] | None, name: str) -> str | None:
    """Value of `--name=value`, `--name value` or bare `--name` (→ "true") in a command line."""
    if not args:
        return None
    value = None
    for i, arg in enumerate(args):
        if arg == f"--{name}":
            nxt = args[i + 1] if i + 1 < len(args) else ""
            value = nxt if nxt in ("true", "false") else "true"
        elif arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
    return value


def _bool(value, default: bool | None) -> bool | None:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _setting(name: str, hints: DaemonHints, default):
    """A daemon setting from its command line, else daemon.json, else the default."""
    value = _flag(hints.cmdline, name)
    if value is not None:
        return _bool(value, default), "cmdline"
    if hints.daemon_json and name in hints.daemon_json:
        return _bool(hints.daemon_json[name], default), "daemon.json"
    return default, "default"


def decode_daemon(info: dict, version: dict, hints: DaemonHints) -> Daemon:
    engine = str(version.get("Version") or info.get("ServerVersion") or "")
    fw = info.get("FirewallBackend") or {}
    sec_opts = info.get("SecurityOptions") or []
    if not isinstance(fw, dict) or not isinstance(sec_opts, list):
        raise DecodeError("/info: FirewallBackend should be an object, SecurityOptions an array")
    fw_info = {str(k): str(v) for k, v in (_pairs(fw.get("Info")))}
    backend = str(fw.get("Driver") or "iptables")
    proxy, source = _userland_proxy(fw_info, hints)
    ip6_default = parse_version(engine) >= (27, 0, 0)
    iptables, _ = _setting("iptables", hints, True)
    ip6tables, _ = _setting("ip6tables", hints, ip6_default)
    sec = " ".join(str(s) for s in sec_opts)
    return Daemon(
        version=engine,
        api_version=str(version.get("ApiVersion") or ""),
        firewall_backend=backend,
        userland_proxy=proxy,
        userland_proxy_source=source,
        iptables=bool(iptables),
        ip6tables=bool(ip6tables) and bool(iptables),
        rootless="name=rootless" in sec,
        firewalld_reloaded_at=_rfc3339(fw_info.get("ReloadedAt")),
        pid=hints.pid,
        proxy_endpoints=_proxy_endpoints(hints.proxy_argvs),
    )


def _pairs(value) -> list[tuple]:
    if not isinstance(value, list):
        return []
    return [tuple(p) for p in value if isinstance(p, list | tuple) and len(p) == 2]


def _userland_proxy(fw_info: dict, hints: DaemonHints) -> tuple[bool | None, str]:
    if "EnableUserlandProxy" in fw_info:
        return _bool(fw_info["EnableUserlandProxy"], None), "api"
    value, source = _setting("userland-proxy", hints, None)
    if value is not None:
        return value, source
    if hints.proxy_argvs:
        return True, "processes"
    if hints.cmdline is not None:
        return True, "default"  # the daemon's command line was read and does not override it
    return None, "unknown"


def _rfc3339(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _proxy_endpoints(argvs) -> frozenset[tuple[str, str, int]] | None:
    if argvs is None:
        return None
    out = set()
    for argv in argvs:
        args = dict(zip(argv[1::2], argv[2::2], strict=False)) if len(argv) > 1 else {}
        args.update({a.split("=", 1)[0]: a.split("=", 1)[1] for a in argv if "=" in a})
        try:
            port = int(args.get("-host-port", ""))
        except ValueError:
            continue
        out.add((args.get("-proto", "tcp"), args.get("-host-ip", ""), port))
    return frozenset(out)
