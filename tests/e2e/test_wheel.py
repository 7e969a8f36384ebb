"""The package as pip installs it (issue 15 item 8): a wheel built from the checkout (pip's
isolated build, so setuptools>=77 from pyproject) installed into a fresh venv renders the alerts
with no source checkout in reach, and carries the licence and its metadata."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from exporter.project import PROJECT_URL

ROOT = Path(__file__).resolve().parents[2]


def run(argv, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, **kw)


def test_installed_wheel_renders_alerts_and_carries_the_license(tmp_path):
    # the venv sees the running interpreter's site-packages for the dependencies (no downloads
    # but setuptools for the build); the package itself only from the wheel
    venv = tmp_path / "venv"
    p = run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    assert p.returncode == 0, p.stderr
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    p = run([*pip, "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT)])
    assert p.returncode == 0, p.stdout + p.stderr
    [wheel] = (tmp_path / "dist").glob("docker_nat_exporter-*.whl")
    with zipfile.ZipFile(wheel) as z:
        [meta] = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = z.read(meta).decode()
        licenses = [n for n in z.namelist() if "/licenses/" in n]
        assert licenses and "Apache License" in z.read(licenses[0]).decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert f"Project-URL: Homepage, {PROJECT_URL}" in metadata
    p = run([*pip, "install", "-q", "--no-deps", "--force-reinstall", str(wheel)])
    assert p.returncode == 0, p.stdout + p.stderr

    cli = str(venv / "bin" / "docker-nat-exporter")
    base = "https://git.example.org/ops/dne"
    p = run([cli, "alerts", "--base-url", base], cwd=tmp_path)  # far from the checkout
    assert p.returncode == 0, p.stderr
    doc = yaml.safe_load(p.stdout)
    rules = [r for g in doc["groups"] for r in g["rules"]]
    committed = yaml.safe_load((ROOT / "alerts" / "docker-nat.rules.yml").read_text())
    assert len(rules) == sum(len(g["rules"]) for g in committed["groups"])
    assert all(r["annotations"]["runbook_url"].startswith(f"{base}/blob/main/docs/") for r in rules)
    p = run([str(venv / "bin" / "python"), "-c", "import exporter; print(exporter.__file__)"],
            cwd=tmp_path)  # fmt: skip
    assert p.stdout.startswith(str(venv)), p.stdout  # the installed copy answered, not ROOT
