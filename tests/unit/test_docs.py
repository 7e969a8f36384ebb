"""The README and docs stay true to the code: flags, metric names, the test command."""

from __future__ import annotations

import pathlib
import re
import tomllib

import yaml
from support.servicefix import FIX

from exporter.config import COMMON, DEFAULT_PORT, SERVE
from exporter.path.codes import CODES

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
METRICS_DOC = (ROOT / "docs" / "metrics.md").read_text()


def test_every_flag_is_documented_in_the_readme():
    for flag in COMMON + SERVE:
        assert f"`--{flag.name}`" in README, flag.name


def test_readme_defaults_match_the_code():
    for flag in COMMON + SERVE:
        row = next((ln for ln in README.splitlines() if ln.startswith(f"| `--{flag.name}`")), "")
        if row and flag.default:
            assert f"`{flag.default}`" in row, (flag.name, flag.default, row)


def test_every_exported_metric_is_in_the_contract():
    golden = (FIX / "metrics.golden.txt").read_text()
    names = set(re.findall(r"^# TYPE (\S+) ", golden, re.M))
    assert names, "golden exposition has no metrics"
    for name in names:
        assert f"`{name}" in METRICS_DOC, f"{name} is exported but not in docs/metrics.md"


def test_metrics_doc_example_is_real_output():
    golden = set((FIX / "metrics.golden.txt").read_text().splitlines())
    block = METRICS_DOC.split("## Example exposition", 1)[1]
    lines = [ln for ln in block.split("```")[1].splitlines() if ln.strip()]
    assert len(lines) > 10
    for line in lines:
        assert line in golden, f"docs/metrics.md example line not produced by the exporter: {line}"


def test_ci_runs_the_readme_test_command():
    command = README.split("## Run the tests", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    command = command.strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert command in ci.splitlines(), f"{command!r} is not a line of .ci/run"


def test_verdicts_doc_lists_every_reason_code():
    block = (ROOT / "docs" / "verdicts.md").read_text().split("## Reason codes", 1)[1]
    rows = re.findall(r"^\| `([a-z_]+)` \| `([a-z]+)` \|", block, re.M)
    assert rows == [(code, c.state) for code, c in CODES.items()]


DEPLOY_DOC = (ROOT / "docs" / "deploy.md").read_text()


def test_python_floor_is_stated_where_users_install():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    floor = pyproject["project"]["requires-python"].removeprefix(">=")
    for doc in (README, DEPLOY_DOC):
        said = re.search(r"Python is older than (\d+\.\d+)\*?\*? \(([^)]*)\)", doc)
        assert said and said.group(1) == floor, "say which hosts need the image"
        assert "Ubuntu 22.04" in said.group(2) and "RHEL 9" in said.group(2)


def test_deploy_doc_names_the_common_traps():
    traps = DEPLOY_DOC.split("## Common traps", 1)[1].split("\n## ", 1)[0]
    assert "--security-opt label=disable" in traps and "docker.sock:ro,z" in traps
    assert "Never put `:z` or `:Z` on the `/:/host`" in traps
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yml").read_text())
    listen = compose["services"]["exporter"]["environment"][
        "DOCKER_NAT_EXPORTER_WEB_LISTEN_ADDRESS"
    ]
    assert f'DOCKER_NAT_EXPORTER_WEB_LISTEN_ADDRESS: "{listen}"' in traps
    assert compose["services"]["prometheus"]["extra_hosts"] == ["host.docker.internal:host-gateway"]
    project = re.search(r"docker compose -p (\S+) -f deploy/compose.yml", README).group(1)
    ufw = re.search(r"docker network inspect (\S+) .*\n.*ufw allow from \"\$subnet\" to any port "
                    r"(\d+) proto tcp", traps)  # fmt: skip
    assert ufw and ufw.group(1) == f"{project}_default" and int(ufw.group(2)) == DEFAULT_PORT
    assert "label=disable" in (ROOT / "deploy" / "compose.yml").read_text()
