"""Packaging (issue 15 item 8): the licence, pyproject's SPDX string and URLs, and one base URL
for every link (exporter/project.py) in pyproject, the image's labels, the systemd unit and the
alerts."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from exporter.alerts import render
from exporter.project import PROJECT_URL, doc_url

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_file_is_the_apache_2_text():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    for part in (
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
        "9. Accepting Warranty or Additional Liability.",
        "END OF TERMS AND CONDITIONS",
    ):
        assert part in text, part  # fmt: skip
    assert len(text) > 11000  # the whole text, not a notice


def test_pyproject_declares_the_license_as_an_spdx_string():
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert not any("License ::" in c for c in project.get("classifiers", []))  # PEP 639 forbids
    [setuptools] = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    found = re.fullmatch(r"setuptools>=(\d+)", setuptools.replace(" ", ""))
    assert found and int(found.group(1)) >= 77, setuptools  # the first to accept the string


def test_project_urls_share_the_one_base():
    urls = PYPROJECT["project"]["urls"]
    assert {"Homepage", "Documentation", "Source", "Issues", "Changelog"} <= set(urls)
    assert urls["Homepage"] == urls["Source"] == PROJECT_URL
    assert all(u.startswith(PROJECT_URL) for u in urls.values()), urls


def test_image_labels_take_the_base_url_from_a_build_arg():
    text = (ROOT / "Dockerfile").read_text()
    [default] = re.findall(r"^ARG PROJECT_URL=(\S+)$", text, re.M)
    assert default == PROJECT_URL
    labels = dict(re.findall(r'org\.opencontainers\.image\.(\w+)="([^"]*)"', text))
    assert labels["source"] == labels["url"] == "${PROJECT_URL}"
    assert labels["documentation"] == "${PROJECT_URL}/blob/main/docs/deploy.md"
    assert labels["licenses"] == "Apache-2.0"
    assert text.count(PROJECT_URL) == 1  # no other guessed host
    assert re.search(r"^COPY pyproject\.toml README\.md LICENSE ", text, re.M)
    allowed = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!LICENSE" in allowed  # the build context must hold what the wheel's metadata names


def test_systemd_unit_documentation_uses_the_base():
    unit = (ROOT / "deploy" / "systemd" / "docker-nat-exporter.service").read_text()
    [doc] = re.findall(r"^Documentation=(\S+)$", unit, re.M)
    assert doc == doc_url("deploy.md")


def test_alerts_render_from_the_package_with_another_base():
    base = "https://git.example.org/ops/dne"
    doc = yaml.safe_load(render(base_url=base))
    urls = [r["annotations"]["runbook_url"] for g in doc["groups"] for r in g["rules"]]
    committed = yaml.safe_load((ROOT / "alerts" / "docker-nat.rules.yml").read_text())
    assert len(urls) == sum(len(g["rules"]) for g in committed["groups"]) > 10
    assert all(u.startswith(f"{base}/blob/main/docs/runbook.md#dockernat") for u in urls), urls
    assert PROJECT_URL not in render(base_url=base).split("\n", 2)[2]
