"""Generate the Grafana dashboards docker-nat-overview.json and docker-nat-host.json.

    python -m dashboards.build        # from the repository root: rewrite both JSON files

The JSON files are committed (Grafana provisioning and manual import use them as they are);
tests/e2e/test_dashboards.py checks that they equal this script's output. Queries select the job and
host through the $job and $instance variables, so no job name is written into them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .host import host
from .overview import overview

HERE = Path(__file__).resolve().parent
DASHBOARDS = {"docker-nat-overview.json": overview, "docker-nat-host.json": host}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    for name in DASHBOARDS:
        (HERE / name).write_text(render(name), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
