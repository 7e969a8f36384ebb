"""The project's home: one base URL for every link the project makes (runbook_url annotations,
the image's OCI labels, the status page, the systemd unit, pyproject's [project.urls]).

A fork or a mirror passes its own base to `docker-nat-exporter alerts --base-url` and to the
image build (`--build-arg PROJECT_URL=…`); the documents are under `docs/` of its main branch.
"""

from __future__ import annotations

PROJECT_URL = "https://github.com/docker-nat-exporter/docker-nat-exporter"


def doc_url(page: str, anchor: str = "", base: str = PROJECT_URL) -> str:
    """The URL of docs/`page` (e.g. "runbook.md") under `base`, at `anchor` if given."""
    url = f"{base.rstrip('/')}/blob/main/docs/{page}"
    return f"{url}#{anchor}" if anchor else url
