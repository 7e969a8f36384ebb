"""Shared fixtures: the real-Docker test lab (tests/support/lab.py, docs/testing.md).

- `lab`: one default daemon per test module (nft backend, userland proxy on).
- `scratch_lab`: that same lab; iptables rules the test changes are put back afterwards.
- `make_lab(**kwargs)`: a fresh Lab(**kwargs) for tests needing a special daemon, closed
  after the test.
Lab tests skip when root, `ip`, `dockerd`, `busybox`... are missing, and fail instead in CI.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator

import pytest
from support.lab import Lab, LabError, sweep_stale
from support.noskip import pytest_runtest_makereport  # noqa: F401  (CI=true: no skips)
from support.util import require_lab


def pytest_sessionstart(session: pytest.Session) -> None:
    """Reap namespaces, daemons and mounts of earlier crashed runs (dead creating pid)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return
    try:
        reaped = sweep_stale()
    except (OSError, LabError) as e:
        print(f"lab sweep failed: {e}", file=sys.stderr)
        return
    if reaped:
        print(f"lab sweep: removed leftovers of {', '.join(reaped)}", file=sys.stderr)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """A default Docker host shared by the tests of one module."""
    require_lab()
    with Lab() as the_lab:
        yield the_lab


@pytest.fixture
def scratch_lab(lab: Lab) -> Iterator[Lab]:
    """The module's lab; rules changed by the test are restored (and checked) afterwards."""
    snapshot = lab.snapshot_rules()
    yield lab
    lab.restore_rules(snapshot)


@pytest.fixture
def make_lab() -> Iterator[Callable[..., Lab]]:
    """Factory for extra labs, closed after the test.

    e.g. make_lab(backend="legacy", daemon_args=["--userland-proxy=false"])
    """
    labs: list[Lab] = []

    def factory(**kwargs: object) -> Lab:
        require_lab(str(kwargs.get("backend", "nft")))
        labs.append(Lab(**kwargs))
        return labs[-1]

    yield factory
    errors = []
    for each in labs:
        try:
            each.close()
        except LabError as e:
            errors.append(str(e))
    if errors:
        raise LabError("; ".join(errors))
