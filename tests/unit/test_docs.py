"""The README and docs stay true to the code: flags, metric names, the test command."""

from __future__ import annotations

import pathlib
import re

from support.servicefix import FIX

from exporter.config import COMMON, SERVE
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
