"""Docker's answers as read, and the saved-state file `check --save-docker-state` writes and
`check --docker-state` replays: the API answers, the daemon hints and the host's addresses."""

from __future__ import annotations

import json
from dataclasses import dataclass

from exporter.docker.decode import DaemonHints


@dataclass(frozen=True, slots=True)
class DockerRaw:
    """The API answers as JSON, plus what the API does not say (DaemonHints)."""

    containers: list
    networks: list
    info: dict
    version: dict
    hints: DaemonHints


class SavedStateError(ValueError):
    """The text is not a saved Docker state."""


def dump_state(raw: DockerRaw, host_addrs, saved_at: float, extra: dict | None = None) -> str:
    """The saved-state document for `raw` and the host's (interface, address) pairs; `extra`:
    more top-level keys (the host's network, "net")."""
    h = raw.hints
    hints = {
        "pid": h.pid,
        "cmdline": list(h.cmdline) if h.cmdline is not None else None,
        "daemon_json": h.daemon_json,
        "proxy_argvs": [list(a) for a in h.proxy_argvs] if h.proxy_argvs is not None else None,
    }
    doc = {"containers": raw.containers, "networks": raw.networks, "info": raw.info}
    doc |= {"version": raw.version, "hints": hints}
    doc |= {"host_addresses": host_addrs, "saved_at": saved_at} | (extra or {})
    return json.dumps(doc, indent=1)


def load_state(text: str) -> tuple[DockerRaw, tuple | None]:
    """(DockerRaw, host addresses or None) from a saved-state document; SavedStateError when it
    is not one."""
    try:
        doc = json.loads(text)
        h = doc.get("hints") or {}
        hints = DaemonHints(
            pid=h.get("pid"),
            cmdline=tuple(map(str, h["cmdline"])) if h.get("cmdline") is not None else None,
            daemon_json=h.get("daemon_json"),
            proxy_argvs=tuple(tuple(map(str, a)) for a in h["proxy_argvs"])
            if h.get("proxy_argvs") is not None
            else None,
        )
        raw = DockerRaw(doc["containers"], doc["networks"], doc["info"], doc["version"], hints)
        addrs = doc.get("host_addresses")
        return raw, tuple(tuple(a) for a in addrs) if addrs is not None else None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SavedStateError(f"no {exc} field" if isinstance(exc, KeyError) else exc) from None
