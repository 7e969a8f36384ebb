"""Each test folder's conftest marks its own tests, so `-m "not kernel and not lab"` really
leaves out everything that needs root, a network namespace or a daemon."""

from __future__ import annotations

from pathlib import Path

import pytest


def mark_folder(conftest: str, items: list[pytest.Item], marker: str) -> None:
    folder = Path(conftest).resolve().parent
    for item in items:
        if folder in Path(item.path).resolve().parents:
            item.add_marker(getattr(pytest.mark, marker))
