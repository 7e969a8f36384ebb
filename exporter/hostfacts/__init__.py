"""Host facts: the iptables build (and whether it is known bad), boot and dockerd start times.

Pure parsers and models only; exporter/sources/host.py (with hostpkg, daemonstart) reads.
"""

from exporter.hostfacts.assemble import assemble_iptables_facts
from exporter.hostfacts.iptables_version import (
    backend_from_link_target,
    parse_iptables_version,
    upstream_version,
)
from exporter.hostfacts.known_bad import KnownBadEntry, match_known_bad, parse_known_bad
from exporter.hostfacts.model import (
    HostFacts,
    HostFactsError,
    InstalledPackage,
    IptablesFacts,
    IptablesVersion,
    KnownBad,
)
from exporter.hostfacts.packages import (
    IPTABLES_PACKAGES,
    parse_apk_installed,
    parse_dpkg_status,
    parse_pacman_desc,
    parse_rpm_query,
    select_iptables_package,
)
from exporter.hostfacts.proctime import (
    parse_boot_time,
    parse_pid_stat,
    parse_systemd_timestamp,
    process_start_time,
)
from exporter.hostfacts.rpmheader import decode_rpm_header, package_from_header
from exporter.hostfacts.selftest import SELF_TEST_SCRIPT, SelfTestError, interpret_self_test

__all__ = [
    "IPTABLES_PACKAGES",
    "SELF_TEST_SCRIPT",
    "HostFacts",
    "HostFactsError",
    "InstalledPackage",
    "IptablesFacts",
    "IptablesVersion",
    "KnownBad",
    "KnownBadEntry",
    "SelfTestError",
    "assemble_iptables_facts",
    "backend_from_link_target",
    "decode_rpm_header",
    "interpret_self_test",
    "match_known_bad",
    "package_from_header",
    "parse_apk_installed",
    "parse_boot_time",
    "parse_dpkg_status",
    "parse_iptables_version",
    "parse_known_bad",
    "parse_pacman_desc",
    "parse_pid_stat",
    "parse_rpm_query",
    "parse_systemd_timestamp",
    "process_start_time",
    "select_iptables_package",
    "upstream_version",
]
