"""The cyclic garbage collector held off while a refresh builds its objects.

A cold refresh at 5,000 bindings allocates millions of objects (the Docker JSON, the rules of
the chains read, expected rules, walks, verdicts) and keeps most of them until the next one.
Python's collector would scan that growing heap again and again as it grows: four to six full
collections per refresh, 0.5-1 s of CPU at that size, and finding almost nothing (frozen
dataclasses and tuples, no cycles; what dies goes by reference counting). Paused, the survivors
are scanned once, by the young-generation collection at the end.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_holders = 0  # refreshes inside `gc_paused` now (one at a time in the service; tests nest)
_resume = False  # whether the collector was on when the first of them came in


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The collector off inside (when it was on), back on and one young collection after."""
    global _holders, _resume
    with _lock:
        if _holders == 0:
            _resume = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            last = _holders == 0 and _resume
            if last:
                gc.enable()
        if last:
            gc.collect(0)  # what the collector would do at the next allocation, here and now
