"""What the rtnetlink feed (sources.watch.NetEvents) lets a refresh skip: reading the host's
addresses, links, routes and policy rules again (six `ip -j` commands, ~15 ms) when no
notification came since they were last read.

A read is tagged with the feed's generation taken before it starts; any notification (whether
or not it changes a verdict), lost notifications, the feed starting or stopping bump the
generation, so a read is reused only while the feed ran throughout and told nothing since.
Without the feed (no socket, not started yet), every refresh reads.
"""

from __future__ import annotations

import threading


class NetWatch:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = False
        self.generation = 0

    def started(self) -> None:
        with self.lock:
            self.running, self.generation = True, self.generation + 1

    def changed(self) -> None:
        with self.lock:
            self.generation += 1

    def stopped(self) -> None:
        with self.lock:
            self.running, self.generation = False, self.generation + 1

    def token(self) -> int | None:
        """The generation a read starting now is tagged with; None: no feed, do not reuse."""
        with self.lock:
            return self.generation if self.running else None
