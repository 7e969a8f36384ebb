"""Stable reason codes: one per cause of a verdict, the `reason` label of docker_nat_port_info.

A code never contains a rule position or address, so moving rules does not create new series;
the free-text reason (with the deciding rule) is for `check` and the status page. Each code
belongs to exactly one state. docs/verdicts.md lists them (tests/unit/test_docs.py checks it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Code:
    state: str
    meaning: str


CODES: dict[str, Code] = {
    # ok
    "dnat_accepted": Code("ok", "Docker's DNAT applies and the forward path accepts it"),
    "routed_accepted": Code("ok", "gateway mode routed: the forward path accepts it"),
    "proxy_by_design": Code("ok", "Docker writes no rules for it and docker-proxy serves it"),
    "loopback": Code("ok", "bound to loopback: only local clients can connect, by design"),
    "internal_network": Code("ok", "internal network: Docker publishes nothing from it"),
    "gateway_isolated": Code("ok", "gateway mode isolated: no external connectivity, by design"),
    # proxied
    "dnat_missing": Code("proxied", "no DNAT applies; docker-proxy serves it from the host"),
    "untracked_proxied": Code(
        "proxied", "a notrack rule keeps it from NAT; docker-proxy serves it"
    ),
    # masqueraded
    "source_nat": Code("masqueraded", "a MASQUERADE or SNAT towards the bridge hides the client"),
    # misrouted
    "shadowed_by_dnat": Code("misrouted", "an earlier DNAT sends it to another address"),
    "redirected": Code("misrouted", "a REDIRECT sends it to a local port"),
    # dropped
    "dropped_by_rule": Code("dropped", "a DROP or REJECT rule drops the connection"),
    "prerouting_policy_drop": Code("dropped", "a PREROUTING chain policy drops the connection"),
    "forward_policy_drop": Code("dropped", "the FORWARD chain policy drops the connection"),
    "input_policy_drop": Code("dropped", "the INPUT chain policy drops the connection"),
    "reply_dropped": Code("dropped", "a rule or chain policy drops the container's replies"),
    "ip_forward_off": Code("dropped", "forwarding is off (globally, or for the interface)"),
    # unreachable
    "no_proxy": Code("unreachable", "no DNAT applies and no docker-proxy serves the port"),
    "untracked_no_proxy": Code("unreachable", "a notrack rule keeps it from NAT; no docker-proxy"),
    "bridge_down": Code("unreachable", "the container's bridge is down"),
    "routed_elsewhere": Code("unreachable", "the host routes the container's address elsewhere"),
    "no_route": Code("unreachable", "no route (or a blackhole route) to the container"),
    # unknown
    "rules_unreadable": Code("unknown", "the family's rules, or one table, could not be read"),
    "nft_unreadable": Code("unknown", "Docker's native nftables tables could not be read"),
    "undecidable_rule": Code("unknown", "a rule on the path cannot be decided for the client"),
    "route_undecidable": Code("unknown", "a policy routing rule cannot be decided for it"),
    "proxy_unknown": Code("unknown", "no DNAT applies; whether docker-proxy serves it is unknown"),
    "rootless": Code("unknown", "rootless daemon: RootlessKit forwards ports"),
    "unsupported_driver": Code("unknown", "not a bridge network: not evaluated"),
    "unsupported_protocol": Code("unknown", "a protocol other than tcp, udp, sctp"),
}


def policy_drop(chain: str) -> str:
    """The code of a drop by `chain`'s policy."""
    name = f"{chain.lower()}_policy_drop"
    return name if name in CODES else "dropped_by_rule"
