"""Shared fixtures: the real-Docker test lab (tests/support/lab.py, docs/testing.md).

- `engine`: the Docker engine of the module's labs: "20.10" (the system's), or, in modules
  marked `every_engine`, each of the engines in DNE_LAB_ENGINES (default: all of
  support.lab.ENGINES) in turn.
- `lab`: one default daemon per test module and engine (nft backend, userland proxy on).
- `scratch_lab`: that same lab; iptables rules the test changes are put back afterwards.
- `make_lab(**kwargs)`: a fresh Lab(**kwargs) (of the module's engine unless given) for tests
  needing a special daemon, closed after the test.
Lab tests skip when root, `ip`, `dockerd`, `busybox`... are missing, and fail instead in CI.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator

import pytest
from support.lab import ENGINES, SYSTEM_ENGINE, Lab, LabError, sweep_stale
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


def lab_engines() -> list[str]:
    """The engines `every_engine` modules run on: DNE_LAB_ENGINES ("28", "20.10,26"...) or all."""
    wanted = [e.strip() for e in os.environ.get("DNE_LAB_ENGINES", "").split(",") if e.strip()]
    unknown = sorted(set(wanted) - set(ENGINES))
    if unknown:
        raise pytest.UsageError(f"DNE_LAB_ENGINES: unknown engine {unknown}; known: {ENGINES}")
    return wanted or list(ENGINES)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" in metafunc.fixturenames and metafunc.definition.get_closest_marker("every_engine"):
        metafunc.parametrize("engine", lab_engines(), indirect=True, scope="module")


@pytest.fixture(scope="module")
def engine(request: pytest.FixtureRequest) -> str:
    """The Docker engine of this module's labs (parametrized in `every_engine` modules)."""
    return getattr(request, "param", SYSTEM_ENGINE)


@pytest.fixture(scope="module")
def lab(engine: str) -> Iterator[Lab]:
    """A default Docker host shared by the tests of one module."""
    require_lab(engine=engine)
    with Lab(engine=engine) as the_lab:
        yield the_lab


@pytest.fixture
def scratch_lab(lab: Lab) -> Iterator[Lab]:
    """The module's lab; rules changed by the test are restored (and checked) afterwards."""
    snapshot = lab.snapshot_rules()
    yield lab
    lab.restore_rules(snapshot)


@pytest.fixture
def make_lab(engine: str) -> Iterator[Callable[..., Lab]]:
    """Factory for extra labs (of the module's engine unless given), closed after the test.

    e.g. make_lab(backend="legacy", daemon_args=["--userland-proxy=false"])
    """
    labs: list[Lab] = []

    def factory(**kwargs: object) -> Lab:
        kwargs.setdefault("engine", engine)
        require_lab(str(kwargs.get("backend", "nft")), str(kwargs["engine"]))
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
