"""The `iptables -C` self-test: the script run in a throwaway network namespace, and its verdict.

iptables-nft 1.8.11 without upstream commit 40406dbf ignores -i/-o in `-C`, so checking for
a rule that only differs by interface name succeeds (rc 0). A correct build says rc 1.
"""

from __future__ import annotations

from exporter.hostfacts.model import HostFactsError

# Run as `sh -c SCRIPT sh <iptables>` inside `unshare --net`; markers say how far it got.
SELF_TEST_SCRIPT = r"""
ipt="$1"
"$ipt" -N t || { echo "setup-failed: iptables -N t exited $?"; exit 0; }
"$ipt" -A t -i lo ! -o lo -j REJECT || { echo "setup-failed: iptables -A exited $?"; exit 0; }
"$ipt" -C t -i abcdefgh ! -o abcdefgh -j REJECT
echo "check-rc=$?"
"""


class SelfTestError(HostFactsError):
    """The self-test could not run or gave no verdict; the message says why."""


def interpret_self_test(returncode: int, stdout: str, stderr: str) -> bool:
    """True when `-C` claimed a rule with other interface names exists (the bug), False if not."""
    detail = "; ".join(line.strip() for line in stderr.strip().splitlines())[-300:]
    detail = detail or "(no stderr)"
    lines = [line.strip() for line in stdout.splitlines()]
    failed = [line for line in lines if line.startswith("setup-failed")]
    if failed:
        raise SelfTestError(f"self-test setup failed ({failed[0]}): {detail}")
    verdicts = [line for line in lines if line.startswith("check-rc=")]
    if returncode != 0 or not verdicts:
        hint = ""
        if "Operation not permitted" in stderr or "Permission denied" in stderr:
            hint = "; the self-test needs CAP_SYS_ADMIN (unshare --net) and CAP_NET_ADMIN"
        raise SelfTestError(f"self-test did not run (exit {returncode}): {detail}{hint}")
    code = verdicts[0].removeprefix("check-rc=")
    if code == "0":
        return True
    if code == "1":
        return False
    raise SelfTestError(f"self-test gave no verdict: iptables -C exited {code}: {detail}")
