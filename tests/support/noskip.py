"""With CI=true nothing may skip: a skip there is a broken runner, reported as a failure.

tests/conftest.py imports the hook; `python -m pytest -p support.noskip` loads it elsewhere.
"""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, but CI=true allows no skip: {report.longrepr}"
