"""Regenerate alerts/docker-nat.rules.yml from a source checkout (the rules live in
exporter/alerts/rules.py; installed, the same is `docker-nat-exporter alerts`).

    python alerts/build.py                       # rewrite alerts/docker-nat.rules.yml
    python alerts/build.py --job-selector 'job="dnat"' --base-url https://git.example.org/dne \\
        --output /etc/prometheus/docker-nat.rules.yml
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.alerts import build_parser, write  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.set_defaults(output=str(ROOT / "alerts" / "docker-nat.rules.yml"))
    return write(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
