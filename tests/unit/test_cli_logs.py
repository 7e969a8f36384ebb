"""`check` applies --log.level and --log.format as `serve` does (logfmt or JSON on stderr)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from exporter.cli.main import main


@pytest.fixture
def chatty_check(monkeypatch) -> Iterator[None]:
    """`check` replaced by one that logs at each level, ours and a third party's; the logging
    setup main() installs is undone afterwards."""
    ours, root = logging.getLogger("docker_nat_exporter"), logging.getLogger()
    saved = (ours.handlers[:], ours.level, ours.propagate, root.handlers[:], root.level)

    def run_check(ns, opts) -> int:
        ours.debug("debug line")
        ours.info("info line")
        ours.warning("warn line")
        logging.getLogger("urllib3.connectionpool").warning("third party")
        return 0

    monkeypatch.setattr("exporter.cli.check.run_check", run_check)
    yield
    ours.handlers[:], ours.level, ours.propagate = saved[0], saved[1], saved[2]
    root.handlers[:], root.level = saved[3], saved[4]


def test_check_logs_json_at_the_chosen_level(chatty_check, capsys) -> None:
    assert main(["check", "--log.level=warn", "--log.format=json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["level"], r["msg"]) for r in lines] == [
        ("warn", "warn line"),
        ("warn", "third party"),
    ]
    assert all(r["ts"].endswith("Z") for r in lines)


def test_check_logs_logfmt_by_default_and_debug_when_asked(chatty_check, capsys) -> None:
    assert main(["check", "--log.level", "debug"]) == 0
    err = capsys.readouterr().err.splitlines()
    got = [line.split(" ", 1)[1] for line in err]  # without ts=
    assert got == [
        'level=debug msg="debug line"',
        'level=info msg="info line"',
        'level=warn msg="warn line"',
        'level=warn msg="third party"',  # third parties: warnings and up
    ]


def test_check_refuses_an_unknown_log_level(chatty_check, capsys) -> None:
    assert main(["check", "--log.level=verbose"]) == 2
    assert (
        "--log.level: 'verbose' is not one of debug, info, warn, error" in capsys.readouterr().err
    )
