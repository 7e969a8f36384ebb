"""Pure parsing of `iptables --version` output, alternatives links and distro versions."""

from __future__ import annotations

import posixpath
import re

from exporter.hostfacts.model import HostFactsError, IptablesVersion

# 1.8.x prints "(nf_tables)" or "(legacy)"; 1.6.x and older print no suffix and are legacy.
_VERSION_RE = re.compile(r"^iptables v(\d+\.\d+(?:\.\d+)*)(?: \((nf_tables|legacy)\))?\s*$")


def parse_iptables_version(text: str) -> IptablesVersion:
    """Parse `iptables --version` stdout, e.g. `iptables v1.8.9 (nf_tables)`."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        match = _VERSION_RE.match(line)
        if match:
            return IptablesVersion(version=match[1], backend=match[2] or "legacy")
    shown = text.strip()[:120] or "(empty)"
    raise HostFactsError(
        f"unrecognised `iptables --version` output {shown!r}: "
        "expected a line like 'iptables v1.8.9 (nf_tables)'"
    )


def backend_from_link_target(target: str) -> str:
    """Backend named by an alternatives/iptables link target, or "" when it names none.

    `/usr/sbin/iptables-nft` and `xtables-nft-multi` mean nf_tables;
    `/usr/sbin/iptables-legacy` and `xtables-legacy-multi` mean legacy.
    """
    name = posixpath.basename(target.rstrip("/"))
    if re.fullmatch(r"(ip6?tables|xtables)-nft(-multi)?", name):
        return "nf_tables"
    if re.fullmatch(r"(ip6?tables|xtables)-legacy(-multi)?", name):
        return "legacy"
    return ""


def upstream_version(package_version: str) -> str:
    """Upstream part of a distro version: drop an epoch `N:` and the last `-revision`.

    "1:1.8.11-1" -> "1.8.11", "1.8.10-11.el9" -> "1.8.10", "1.8.10-r3" -> "1.8.10".
    """
    version = re.sub(r"^\d+:", "", package_version.strip())
    return version.rsplit("-", 1)[0] if "-" in version else version
