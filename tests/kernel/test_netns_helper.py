"""tests/support/netns.py: fresh namespaces replace leftovers and never outlive their block."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from support.netns import NETNS_DIR, create, delete, fresh_name, namespace, reap_dead
from support.util import require_or_skip


@pytest.fixture
def name() -> Iterator[str]:
    require_or_skip(os.geteuid() == 0 and shutil.which("ip") is not None, "needs root and ip")
    n = fresh_name("dnhelp")
    yield n
    delete(n)


def test_a_leftover_of_the_same_name_is_replaced(name: str) -> None:
    leftover = create(name)
    leftover.run(["ip", "link", "add", "stale0", "type", "bridge"])
    with namespace(name) as ns:
        links = ns.run(["ip", "-o", "link", "show"]).stdout
        assert "stale0" not in links
        assert "lo:" in links and "UP" in links.split("lo:")[1].splitlines()[0]
    assert not (NETNS_DIR / name).exists()


def test_the_namespace_is_deleted_when_the_block_fails(name: str) -> None:
    with pytest.raises(RuntimeError, match="body failed"), namespace(name) as ns:
        assert (NETNS_DIR / ns.name).exists()
        raise RuntimeError("body failed")
    assert not (NETNS_DIR / name).exists()


def test_reap_dead_removes_only_namespaces_of_gone_processes(name: str) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = f"dnhelp{gone.pid}x1"
    create(dead)
    create(name)  # ours: this process is alive
    try:
        assert dead in reap_dead("dnhelp")
        assert not (NETNS_DIR / dead).exists()
        assert (NETNS_DIR / name).exists()
    finally:
        delete(dead)
