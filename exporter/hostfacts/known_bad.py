"""Known-bad iptables builds: the data file's schema and the pure matcher.

Matching (also in exporter/data/known_bad.toml and docs/host-facts.md):
1. An entry is a candidate when its `upstream_version` equals the build's upstream version
   (from `iptables --version`, else from the package version) and the build's backend is in
   `backends` (an unknown backend counts as possibly affected).
2. Package rules come first. The package revision is used only when its upstream part equals
   the build's upstream version. A rule whose `package_manager` and `package_names` cover the
   installed package decides alone: the build is bad exactly when the full revision is in
   `bad_revisions`; every other revision from that distro is taken as fixed.
3. Otherwise (no package revision known, or a distro no rule covers) an upstream rule (one
   without `package_manager`) matches on the upstream version alone.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from exporter.hostfacts.iptables_version import upstream_version
from exporter.hostfacts.model import HostFactsError, IptablesFacts, KnownBad

BACKENDS = frozenset({"nf_tables", "legacy"})
PACKAGE_MANAGERS = frozenset({"dpkg", "rpm", "apk", "pacman"})
_REQUIRED = {"id", "reason", "urls", "upstream_version", "backends"}
_PACKAGE_KEYS = {"package_manager", "package_names", "bad_revisions"}


@dataclass(frozen=True)
class KnownBadEntry:
    """One `[[entry]]` of known_bad.toml; `package_manager == ""` marks an upstream rule."""

    id: str
    reason: str
    urls: tuple[str, ...]
    upstream_version: str
    backends: tuple[str, ...]
    package_manager: str = ""
    package_names: tuple[str, ...] = ()
    bad_revisions: tuple[str, ...] = ()

    def known_bad(self) -> KnownBad:
        return KnownBad(self.id, self.reason, self.urls)


def match_known_bad(facts: IptablesFacts, entries: tuple[KnownBadEntry, ...]) -> KnownBad | None:
    """The entry the build matches (see the module docstring for the rules), or None."""
    upstream = facts.version or upstream_version(facts.package_version)
    if not upstream:
        return None
    candidates = [
        e
        for e in entries
        if e.upstream_version == upstream and (not facts.backend or facts.backend in e.backends)
    ]
    revision_known = bool(
        facts.package_manager
        and facts.package_name
        and upstream_version(facts.package_version) == upstream
    )
    covering = [
        e
        for e in candidates
        if revision_known
        and e.package_manager == facts.package_manager
        and facts.package_name in e.package_names
    ]
    if covering:
        bad = [e for e in covering if facts.package_version in e.bad_revisions]
        return bad[0].known_bad() if bad else None
    upstream_rules = [e for e in candidates if not e.package_manager]
    return upstream_rules[0].known_bad() if upstream_rules else None


def parse_known_bad(text: str, source: str = "known_bad.toml") -> tuple[KnownBadEntry, ...]:
    """Validate and load the data file; any problem raises HostFactsError naming the entry."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HostFactsError(f"{source}: not valid TOML: {exc}") from None
    unknown = set(data) - {"schema", "entry"}
    if unknown or data.get("schema") != 1 or not isinstance(data.get("entry", []), list):
        raise HostFactsError(f"{source}: expected 'schema = 1' and [[entry]] tables only")
    data.setdefault("entry", [])
    entries = tuple(_entry(raw, _where(source, n, raw)) for n, raw in enumerate(data["entry"], 1))
    ids = [e.id for e in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise HostFactsError(f"{source}: duplicate entry id(s) {duplicates}")
    return entries


def _where(source: str, number: int, raw: object) -> str:
    name = raw.get("id") if isinstance(raw, dict) else None
    return f"{source} entry {number}" + (f" ({name!r})" if isinstance(name, str) else "")


def _entry(raw: object, where: str) -> KnownBadEntry:
    if not isinstance(raw, dict):
        raise HostFactsError(f"{where}: not a table")
    keys = set(raw)
    unknown, missing = sorted(keys - _REQUIRED - _PACKAGE_KEYS), sorted(_REQUIRED - keys)
    if unknown:
        raise HostFactsError(f"{where}: unknown key(s) {unknown}")
    if missing:
        raise HostFactsError(f"{where}: missing key(s) {missing}")
    if keys & _PACKAGE_KEYS and not keys >= _PACKAGE_KEYS:
        raise HostFactsError(f"{where}: a package rule needs all of {sorted(_PACKAGE_KEYS)}")
    for key in keys & {"id", "reason", "upstream_version", "package_manager"}:
        if not isinstance(raw[key], str) or not raw[key]:
            raise HostFactsError(f"{where}: {key} must be a non-empty string")
    lists = {
        key: raw.get(key, []) for key in ("urls", "backends", "package_names", "bad_revisions")
    }
    for key, value in lists.items():
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise HostFactsError(f"{where}: {key} must be a list of non-empty strings")
    if not lists["urls"] or not set(lists["backends"]) <= BACKENDS or not lists["backends"]:
        raise HostFactsError(f"{where}: needs urls and backends from {sorted(BACKENDS)}")
    manager = raw.get("package_manager", "")
    if manager and (manager not in PACKAGE_MANAGERS or not lists["package_names"]):
        raise HostFactsError(
            f"{where}: package_manager must be one of {sorted(PACKAGE_MANAGERS)} with package_names"
        )
    return KnownBadEntry(
        id=raw["id"],
        reason=raw["reason"],
        urls=tuple(lists["urls"]),
        upstream_version=raw["upstream_version"],
        backends=tuple(lists["backends"]),
        package_manager=manager,
        package_names=tuple(lists["package_names"]),
        bad_revisions=tuple(lists["bad_revisions"]),
    )
