"""Command line: `serve` (the default) runs the exporter, `check` prints the verdicts, `alerts`
prints the Prometheus alerting rules."""

from __future__ import annotations

import argparse
import sys

from exporter import __version__, logs
from exporter.config import (
    COMMON,
    SERVE,
    ConfigError,
    env_defaults,
    parse_bool,
    parse_client,
    parse_docker_host,
    parse_duration,
)
from exporter.serve.refresh import RefreshOptions


def _add_flags(p: argparse.ArgumentParser, flags) -> None:
    defaults = env_defaults(flags)
    for f in flags:
        extra = f" (one of: {', '.join(f.choices)})" if f.choices else ""
        env = f"{f.env} or {f.fallback_env}" if f.fallback_env else f.env
        help_ = f"{f.help}{extra}; env {env}; default {f.default!r}"
        if f.boolean:
            # as kingpin: `--x` and `--no-x`; `--x=false` (and the old `--x false`) still work
            p.add_argument(f"--{f.name}", dest=f.name, default=defaults[f.name], nargs="?",
                           const="true", metavar="BOOL", help=help_)  # fmt: skip
            p.add_argument(f"--no-{f.name}", dest=f.name, action="store_const", const="false",
                           help=f"turn --{f.name} off")  # fmt: skip
            continue
        p.add_argument(
            f"--{f.name}", dest=f.name, default=defaults[f.name], metavar="VALUE", help=help_
        )


def build_parser(alerts: bool = True) -> argparse.ArgumentParser:
    """`alerts`: with the `alerts` command's flags (they import its YAML writer, which the
    exporter itself never needs: 1.5 MiB of a running exporter's memory)."""
    p = argparse.ArgumentParser(
        prog="docker-nat-exporter",
        description="Checks every published Docker port against the rules the kernel holds.",
    )
    p.add_argument("--version", action="version", version=f"docker-nat-exporter {__version__}")
    sub = p.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the Prometheus exporter (the default)")
    _add_flags(serve, COMMON + SERVE)
    check = sub.add_parser("check", help="print every published port's state and exit")
    _add_flags(check, COMMON)
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.add_argument("--docker-state", metavar="FILE", help="replay a saved Docker state")
    check.add_argument("--iptables-save", metavar="FILE", help="use saved iptables-save output")
    check.add_argument("--ip6tables-save", metavar="FILE", help="use saved ip6tables-save output")
    check.add_argument("--nft-ruleset", metavar="FILE", help="use saved `nft -j list ruleset`")
    check.add_argument("--ipset-save", metavar="FILE", help="use saved `ipset save` output")
    check.add_argument("--save-docker-state", metavar="FILE", help="also save Docker's answers")
    alerts_sub = sub.add_parser("alerts", help="print the Prometheus alerting rules")
    if alerts:
        from exporter.alerts import build_parser as alerts_parser

        alerts_parser(alerts_sub)
    return p


def refresh_options(ns: argparse.Namespace) -> RefreshOptions:
    v = vars(ns)
    for f in COMMON:
        if f.choices and v[f.name] not in f.choices:
            choices = ", ".join(f.choices)
            raise ConfigError(f"--{f.name}: {v[f.name]!r} is not one of {choices}")
    clients = tuple(
        (fam, addr)
        for fam, flag in (("ipv4", "probe.client-ipv4"), ("ipv6", "probe.client-ipv6"))
        if (addr := parse_client(v[flag], fam, flag))
    )
    return RefreshOptions(
        docker_host=parse_docker_host(v["docker.host"]),
        docker_timeout=parse_duration(v["docker.timeout"], "docker.timeout"),
        command_timeout=parse_duration(v["iptables.timeout"], "iptables.timeout"),
        host_root=v["host.root"],
        reader=v["iptables.reader"],
        self_test=parse_bool(v["iptables.self-test"], "iptables.self-test"),
        clients=clients,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["serve", *argv]
    ns = build_parser(alerts=argv[0] == "alerts").parse_args(argv)
    try:
        if ns.command == "alerts":
            from exporter.alerts import write as write_alerts

            return write_alerts(ns)
        if ns.command == "check":
            from exporter.cli.check import run_check

            opts = refresh_options(ns)  # validates --log.level and --log.format too
            logs.setup(vars(ns)["log.level"], vars(ns)["log.format"])
            return run_check(ns, opts)
        from exporter.serve.service import run_service

        return run_service(ns, refresh_options(ns))
    except ConfigError as exc:
        print(f"docker-nat-exporter: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
