"""ruff check and ruff format --check over the whole tree (config in pyproject.toml)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

from support.util import require_or_skip

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    ruff = shutil.which("ruff")
    require_or_skip(ruff is not None, "ruff not installed (pip install -e '.[test]')")
    return subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_check_clean():
    p = _ruff("check", "--no-cache", ".")
    assert p.returncode == 0, p.stdout + p.stderr


def test_ruff_format_clean():
    p = _ruff("format", "--no-cache", "--check", ".")
    assert p.returncode == 0, p.stdout + p.stderr
