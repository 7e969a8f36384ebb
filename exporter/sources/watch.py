"""Change notifications: the Docker events stream and `nft monitor` for nf_tables rulesets.

Each watcher calls `notify(reason)` on a change and re-establishes itself with backoff when its
stream drops (daemon restart, nft killed). Both are read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable

from exporter.sources.docker_api import client
from exporter.sources.run import which

log = logging.getLogger("docker_nat_exporter")
BACKOFF = (0.5, 1, 2, 5, 10, 30)
EVENT_FILTERS = {"type": ["container", "network", "daemon"]}
RELEVANT = {
    "start",
    "die",
    "destroy",
    "create",
    "connect",
    "disconnect",
    "reload",
    "restart",
    "kill",
}


class DockerEvents:
    """Follows GET /events in a thread (the SDK's stream is blocking)."""

    def __init__(self, base_url: str, notify: Callable[[str], None], timeout: float = 10.0):
        self.base_url, self.notify, self.timeout = base_url, notify, timeout
        self.stop = threading.Event()
        self._stream = None
        self.thread = threading.Thread(target=self._loop, name="docker-events", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(Exception):
            if self._stream is not None:
                self._stream.close()

    def _loop(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                api = client(self.base_url, self.timeout)
                self._stream = api.events(decode=True, filters=EVENT_FILTERS)
                if failures:
                    self.notify("docker events stream re-established")
                failures = 0
                for event in self._stream:
                    if self.stop.is_set():
                        break
                    action = str(event.get("Action") or event.get("status") or "")
                    if action.split(":")[0] in RELEVANT:
                        self.notify(f"docker {event.get('Type')} {action}")
            except Exception as exc:  # stream dropped or daemon down: retry with backoff
                if self.stop.is_set():
                    break
                log.debug("docker events stream: %s", exc)
            if self.stop.is_set():
                break
            self.notify("docker events stream ended")
            self.stop.wait(BACKOFF[min(failures, len(BACKOFF) - 1)])
            failures += 1


class NftMonitor:
    """Runs `nft monitor ruleset` and reports every change to a ruleset of this namespace."""

    def __init__(self, notify: Callable[[str], None], native=None) -> None:
        self.notify = notify
        self.native = native  # a sources.nftwatch.NativeWatch to tell of every change
        self.proc: asyncio.subprocess.Process | None = None

    @staticmethod
    def available() -> bool:
        return which("nft") is not None

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    which("nft") or "nft",
                    "monitor",
                    "ruleset",
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                assert self.proc.stdout is not None
                if self.native is not None:
                    self.native.started()
                while line := await self.proc.stdout.readline():
                    failures = 0
                    if self.native is not None:
                        self.native.line(line.decode("utf-8", "replace"))
                    if line.strip() and not line.startswith(b"#"):
                        self.notify("nftables ruleset changed")
                await self.proc.wait()
            except OSError as exc:
                log.warning("nft monitor cannot run: %s", exc)
            finally:
                if self.native is not None:
                    self.native.stopped()
                await self.close()
            await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
            failures += 1

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            # not proc.kill(): its poll() may reap a child that just died under asyncio's
            # child watcher, which then logs "Unknown child process pid ..." on stderr
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await self.proc.wait()
