"""Small helpers shared by the test suite."""

from __future__ import annotations

import asyncio
import os

import pytest


def require_or_skip(condition: bool, why: str) -> None:
    """Skip the test when `condition` is false, or fail it when running in CI.

    In CI (env CI=true) a missing capability or binary is a broken runner, not a reason
    to pass silently, so the test fails with `why` instead of being skipped.
    """
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"required in CI: {why}", pytrace=False)
    pytest.skip(why)


def require_lab(backend: str = "nft", engine: str = "20.10") -> None:
    """Skip (or fail in CI) unless this machine can run a tests/support/lab.py Lab with this
    backend and engine."""
    from support.lab import (
        missing_requirements,  # tests/support/lab.py; imported late to keep util light
    )

    missing = missing_requirements(backend, engine)
    require_or_skip(not missing, "test lab unavailable: " + "; ".join(missing))


async def until(cond, what: str) -> None:
    """Wait in the event loop (5 s at most) until `cond()` is true; fail naming `what`."""
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")
