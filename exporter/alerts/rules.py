"""The alerting rules, as data: every metric selector carries the job selector, every alert a
runbook_url under the project's base URL (exporter.project). Rendered by exporter.alerts."""

from __future__ import annotations

from exporter.project import PROJECT_URL, doc_url

JOB_SELECTOR = 'job="docker-nat"'
STALE_AFTER_SECONDS = 120  # 8 default refresh intervals (--refresh.interval=15s)
BROKEN_STATES = "misrouted|dropped|unreachable"

PORT = "{{ $labels.host_ip }}:{{ $labels.host_port }}/{{ $labels.protocol }}"
CONTAINER = "container {{ $labels.container }}"
ON = "on {{ $labels.instance }}"
PORT_KEY = ("job", "instance", "container", "host_ip", "host_port", "protocol")
# every label of a port's series: joins between them are one to one
PORT_ON = (
    "on (job, instance, container, network, family, protocol, host_ip, host_port, container_port)"
)
POLICY_OWNERS = 'owner=~"docker-user|host"'  # the admin's rules (docs/verdicts.md)
HOST_KEY = ("job", "instance")


def lookup(query: str, keys: tuple[str, ...], body: str, orelse: str = "") -> str:
    """Template text rendering `body` with `.` = the first series of `query{keys…}`, else `orelse`.

    The query runs when the alert is evaluated, so a missing info series only shortens the text;
    it never keeps the alert from firing (a PromQL join would). `keys` are labels of the alert.
    """
    metric, _, tail = query.partition(" ")
    matchers = ",".join(f"{k}=%q" for k in keys)
    args = " ".join(f"$labels.{k}" for k in keys)
    fmt = f"{metric}{{{matchers}}}" + (f" {tail}" if tail else "")
    otherwise = f"{{{{ else }}}}{orelse}" if orelse else ""
    return (
        f'{{{{ with printf "{fmt}" {args} | query }}}}{{{{ with first . }}}}{body}{{{{ end }}}}'
        f"{otherwise}{{{{ end }}}}"
    )


# The label is a stable code (docs/verdicts.md#reason-codes); `check` on the host names the rule.
REASON = lookup(
    "docker_nat_port_info",
    PORT_KEY,
    " Reason: {{ .Labels.reason }} (`docker-nat-exporter check` on the host names the rule).",
)


def alert(name, expr, for_, severity, scope, summary, description) -> dict:
    rule = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity, "scope": scope}
    rule["annotations"] = {"summary": summary, "description": description}
    return rule  # runbook_url: added by rules(), which knows the base URL


def port_alerts(s) -> list[dict]:
    state = lookup("docker_nat_port_state == 1", PORT_KEY, "{{ .Labels.state }}", "broken")
    broken = "max without (state) (" + s("docker_nat_port_state", f'state=~"{BROKEN_STATES}"')
    admin = s("docker_nat_port_info", POLICY_OWNERS)
    return [
        alert(
            "DockerNatPublishedPortBroken",
            f"{broken}) == 1 unless {PORT_ON} {admin}",
            "2m",
            "critical",
            "port",
            "A published Docker port does not reach its container.",
            f"Published port {PORT} of {CONTAINER} {ON} is {state}: new connections from remote "
            f"clients do not reach the container.{REASON}",
        ),
        alert(
            "DockerNatPublishedPortBlocked",
            f"({broken}) == 1) * {PORT_ON} group_left (owner) {admin}",
            "15m",
            "warning",
            "port",
            "An admin's firewall rule closes a published Docker port to every remote client.",
            f"Published port {PORT} of {CONTAINER} {ON} is {state} for every remote client by "
            "a rule of {{ $labels.owner }} (DOCKER-USER and what it jumps to: docker-user; ufw, "
            "firewalld, nftables.conf: host). Docker's own rules are fine; if the port should be "
            f"reachable, allow it in that firewall.{REASON}",
        ),
        alert(
            "DockerNatPublishedPortProxied",
            s("docker_nat_port_state", 'state="proxied"') + " == 1",
            "10m",
            "warning",
            "port",
            "A published Docker port is served only by docker-proxy.",
            f"Published port {PORT} of {CONTAINER} {ON} has no DNAT rule in effect and only "
            "docker-proxy serves it: connections work, but the container sees the proxy's address "
            f"instead of the client's, and the port dies if the proxy is disabled.{REASON}",
        ),
        alert(
            "DockerNatPublishedPortMasqueraded",
            s("docker_nat_port_state", 'state="masqueraded"') + " == 1",
            "30m",
            "warning",
            "port",
            "A source NAT rule hides remote clients' addresses from a published Docker port.",
            f"Published port {PORT} of {CONTAINER} {ON} is delivered, but a MASQUERADE or SNAT "
            "rule on the way to the bridge rewrites the source: the container sees a host address "
            f"instead of the client's (logs, allow-lists and rate limits see one client).{REASON}",
        ),
        alert(
            "DockerNatPortStateUnknown",
            s("docker_nat_port_state", 'state="unknown"')
            + " == 1 unless on (job, instance) "
            + s("docker_nat_docker_info", 'rootless="true"'),
            "15m",
            "warning",
            "port",
            "The exporter cannot tell whether a published Docker port works.",
            f"The exporter cannot judge published port {PORT} of {CONTAINER} {ON}: a rule on the "
            "path is one it cannot evaluate, the rules could not be read, or they live where it "
            f"cannot see them.{REASON}",
        ),
        alert(
            "DockerNatPortRuleMissing",
            s("docker_nat_rule_present", 'kind=~"hairpin_masquerade|loopback_drop"') + " == 0",
            "10m",
            "warning",
            "port",
            "A per-port rule Docker installs is missing, though remote clients are unaffected.",
            f"The {{{{ $labels.kind }}}} rule Docker installs for published port {PORT} of "
            f"{CONTAINER} {ON} is missing (hairpin_masquerade: the container cannot reach itself "
            "through the published port; loopback_drop: other hosts on the link can reach a "
            "port bound to a loopback address).",
        ),
    ]


def exposure_alerts(s) -> list[dict]:
    """Opt-in per target: they fire only for series that carry the target label
    exposure_alert="on" (set it in the scrape config of the hosts you want them for)."""
    public = s("docker_nat_port_exposure", 'exposure="public", exposure_alert="on"')
    return [
        alert(
            "DockerNatPublishedPortPublic",
            f"{public} == 1",
            "15m",
            "warning",
            "port",
            "A published Docker port is open to every address.",
            f"Published port {PORT} of {CONTAINER} {ON} accepts new connections from every "
            "remote address: no DOCKER-USER or host rule restricts it (ufw's INPUT rules do "
            "not apply to published ports). Bind it to 127.0.0.1 or an internal address, or "
            "restrict it in DOCKER-USER, if it should not be public.",
        ),
    ]


def host_alerts(s) -> list[dict]:
    build = lookup(
        "docker_nat_iptables_info",
        HOST_KEY,
        " {{ .Labels.version }} (package {{ .Labels.package_version }}, {{ .Labels.backend }})",
    )
    entry = lookup(
        "docker_nat_iptables_known_bad_reason_info",
        HOST_KEY,
        " ({{ .Labels.id }}: {{ .Labels.reason }}; see {{ .Labels.url }})",
    )
    bridge = "{{ with $labels.bridge }} for bridge {{ . }}{{ end }}"
    return [
        alert(
            "DockerNatJumpMissing",
            s("docker_nat_jump_present") + " == 0",
            "2m",
            "critical",
            "host",
            "A jump rule Docker's firewall layout needs is missing.",
            "The {{ $labels.family }} {{ $labels.table }} chain {{ $labels.chain }} "
            f"{ON} has no jump to {{{{ $labels.target }}}}{bridge}: published ports "
            "that depend on it do not work.",
        ),
        alert(
            "DockerNatBridgeRulesMissing",
            s("docker_nat_rules_missing", 'kind="bridge_rule"') + " > 0",
            "10m",
            "warning",
            "host",
            "Per-bridge rules Docker installs are missing.",
            "{{ $value }} of the {{ $labels.family }} per-bridge rules Docker's layout expects "
            f"are missing {ON} (masquerading, isolation or conntrack rules of a network).",
        ),
        alert(
            "DockerNatStaleRules",
            s("docker_nat_stale_rules") + " > 0",
            "15m",
            "warning",
            "host",
            "Docker's chains hold rules that belong to no live published port.",
            "{{ $value }} DNAT or ACCEPT rule(s) in the {{ $labels.family }} "
            f"{{{{ $labels.table }}}} chain {{{{ $labels.chain }}}} {ON} belong to no live "
            "binding; an earlier one can capture traffic meant for a current container.",
        ),
        alert(
            "DockerNatIptablesKnownBad",
            s("docker_nat_iptables_known_bad") + " == 1",
            "5m",
            "warning",
            "host",
            "The host's iptables build is known to make Docker lose rules.",
            f"The iptables build{build} {ON} is listed as breaking Docker{entry}. Docker may "
            "already have skipped rules and will skip more when it next programs them.",
        ),
        alert(
            "DockerNatIptablesCheckCommandBroken",
            s("docker_nat_iptables_check_command_broken") + " == 1",
            "5m",
            "warning",
            "host",
            "iptables -C ignores interface names, so Docker skips rules it believes exist.",
            f"The iptables self-test {ON} found that `iptables -C` ignores interface names: "
            "Docker will silently skip per-bridge rules the next time it programs them "
            "(daemon restart, reboot, new network).",
        ),
        alert(
            "DockerNatIptablesBackendsMixed",
            s("docker_nat_iptables_backends_mixed") + " == 1",
            "15m",
            "warning",
            "host",
            "Both iptables backends (nf_tables and legacy) hold rules.",
            f"Both the nf_tables and the legacy iptables backend hold rules {ON}; both apply "
            "to packets, and tools using the other backend see only half of the ruleset.",
        ),
    ]


def exporter_alerts(s, job: str) -> list[dict]:
    return [
        alert(
            "DockerNatSourceDown",
            s("docker_nat_source_up") + " == 0",
            "5m",
            "warning",
            "exporter",
            "The exporter cannot read one of its sources.",
            f"The docker-nat-exporter {ON} cannot read its {{{{ $labels.source }}}} source; "
            "port verdicts that depend on it are unknown or missing.",
        ),
        alert(
            "DockerNatSnapshotStale",
            f"time() - {s('docker_nat_last_refresh_timestamp_seconds')} > {STALE_AFTER_SECONDS}",
            "3m",
            "warning",
            "exporter",
            "The exporter serves an old snapshot.",
            f"The snapshot served by the docker-nat-exporter {ON} was taken "
            "{{ $value | humanizeDuration }} ago; its port verdicts may no longer be true.",
        ),
        alert(
            "DockerNatExporterDown",
            f"up{{{job}}} == 0",
            "5m",
            "warning",
            "exporter",
            "Prometheus cannot scrape the docker-nat-exporter.",
            "Prometheus cannot scrape the docker-nat-exporter at {{ $labels.instance }} "
            "(job {{ $labels.job }}); Docker's published ports there are not being checked.",
        ),
        alert(
            "DockerNatExporterAbsent",
            f"absent(up{{{job}}})",
            "10m",
            "warning",
            "exporter",
            "Prometheus has no docker-nat-exporter target.",
            f"Prometheus has no target matching {{{job}}}; no host's published ports are "
            "being checked.",
        ),
        alert(
            "DockerNatDockerDaemonRestarted",
            f"changes({s('docker_nat_docker_daemon_start_time_seconds')}[15m]) > 0",
            None,
            "info",
            "host",
            "The Docker daemon restarted.",
            f"dockerd {ON} restarted in the last 15 minutes and reprogrammed its firewall rules.",
        ),
    ]


def rules(job: str = JOB_SELECTOR, base_url: str = PROJECT_URL) -> dict:
    def s(metric: str, extra: str = "") -> str:
        return f"{metric}{{{job}{', ' + extra if extra else ''}}}"

    groups = [
        {"name": "docker-nat-ports", "rules": port_alerts(s)},
        {"name": "docker-nat-exposure", "rules": exposure_alerts(s)},
        {"name": "docker-nat-host", "rules": host_alerts(s)},
        {"name": "docker-nat-exporter", "rules": exporter_alerts(s, job)},
    ]
    for g in groups:
        for r in g["rules"]:
            r["annotations"]["runbook_url"] = doc_url("runbook.md", r["alert"].lower(), base_url)
    return {"groups": groups}
