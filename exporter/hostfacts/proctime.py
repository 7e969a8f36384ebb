"""Pure parsers for boot time, process start time and systemd timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from exporter.hostfacts.model import HostFactsError

_STARTTIME_FIELD = 22  # proc(5): field 22 of /proc/<pid>/stat, in clock ticks since boot


def parse_boot_time(proc_stat: str) -> float:
    """Boot time (Unix seconds) from the `btime` line of /proc/stat."""
    for line in proc_stat.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "btime" and parts[1].isdigit():
            return float(parts[1])
    raise HostFactsError("/proc/stat has no 'btime <seconds>' line")


def parse_pid_stat(text: str) -> tuple[str, int]:
    """(comm, starttime in clock ticks) from /proc/<pid>/stat.

    comm is in parentheses and may itself contain spaces and parentheses, so the
    fields are counted from the last ')'.
    """
    open_at, close_at = text.find("("), text.rfind(")")
    if open_at < 0 or close_at < open_at:
        raise HostFactsError(f"/proc/<pid>/stat without '(comm)': {text[:80]!r}")
    rest = text[close_at + 1 :].split()
    index = _STARTTIME_FIELD - 3  # rest[0] is field 3 (state)
    if len(rest) <= index or not rest[index].isdigit():
        raise HostFactsError(f"/proc/<pid>/stat has no numeric field {_STARTTIME_FIELD}")
    return text[open_at + 1 : close_at], int(rest[index])


def process_start_time(boot_time: float, start_ticks: int, clock_ticks: int) -> float:
    """Unix start time of a process: btime plus starttime / CLK_TCK."""
    if clock_ticks <= 0:
        raise HostFactsError(f"invalid clock ticks per second: {clock_ticks}")
    return boot_time + start_ticks / clock_ticks


_SYSTEMD_RE = re.compile(
    r"^(?:[A-Z][a-z]{2} )?(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(\.\d{1,6})? "
    r"(UTC|GMT|Z|[+-]\d{2}:?\d{2})$"
)


def parse_systemd_timestamp(text: str, prop: str = "ActiveEnterTimestamp") -> float:
    """Unix seconds from `systemctl show -p <prop>` output.

    Accepts `@<epoch>` (`--timestamp=unix`) and `Thu 2026-11-26 10:00:00[.us] UTC`; zone
    abbreviations other than UTC/GMT are ambiguous, so run systemctl with TZ=UTC.
    """
    lines = [line for line in text.splitlines() if line.startswith(f"{prop}=")]
    if not lines:
        raise HostFactsError(f"systemctl output has no {prop}= line: {text.strip()[:80]!r}")
    value = lines[0].split("=", 1)[1].strip()
    if value in ("", "n/a", "0"):
        raise HostFactsError(f"{prop} is empty: the unit has not been active since boot")
    if re.fullmatch(r"@\d+(\.\d+)?", value):
        return float(value[1:])
    match = _SYSTEMD_RE.match(value)
    if not match:
        raise HostFactsError(
            f"cannot read {prop}={value!r}: expected 'Thu 2026-11-26 10:00:00 UTC' or '@<epoch>' "
            "(time zones other than UTC are ambiguous; systemctl is run with TZ=UTC)"
        )
    stamp = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return stamp.timestamp() + float(match[2] or 0) - _offset_seconds(match[3])


def _offset_seconds(zone: str) -> float:
    if zone in ("UTC", "GMT", "Z"):
        return 0.0
    digits = zone[1:].replace(":", "")
    delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return delta.total_seconds() * (1 if zone[0] == "+" else -1)
