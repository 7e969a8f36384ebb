"""Combine what was read about iptables into one IptablesFacts (pure)."""

from __future__ import annotations

from dataclasses import replace

from exporter.hostfacts.iptables_version import backend_from_link_target, upstream_version
from exporter.hostfacts.known_bad import KnownBadEntry, match_known_bad
from exporter.hostfacts.model import InstalledPackage, IptablesFacts, IptablesVersion
from exporter.hostfacts.packages import IPTABLES_PACKAGES, select_iptables_package


def assemble_iptables_facts(
    *,
    version: IptablesVersion | None,
    packages: tuple[InstalledPackage, ...],
    package_manager: str,
    alternative: str,
    entries: tuple[KnownBadEntry, ...],
    check_command_broken: bool | None = None,
    errors: tuple[str, ...] = (),
) -> IptablesFacts:
    """Version/backend from the binary when it ran, else from the package and alternatives link.

    `packages` are the installed packages `package_manager` lists (only the iptables ones
    matter); `alternative` is the iptables link target, "" when there is none.
    """
    backend = version.backend if version else backend_from_link_target(alternative)
    package, warnings = select_iptables_package(packages, backend)
    errors = errors + warnings
    if package_manager and package is None:
        names = ", ".join(IPTABLES_PACKAGES)
        errors += (f"{package_manager} lists none of the packages {names}",)
    facts = IptablesFacts(
        version=version.version
        if version
        else upstream_version(package.version if package else ""),
        backend=backend,
        package_name=package.name if package else "",
        package_version=package.version if package else "",
        package_manager=package_manager if package else "",
        alternative=alternative,
        check_command_broken=check_command_broken,
        errors=errors,
    )
    return replace(facts, known_bad=match_known_bad(facts, entries))
