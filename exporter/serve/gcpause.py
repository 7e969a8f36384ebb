"""The cyclic garbage collector held off while a refresh builds its objects.

A cold refresh at 5,000 bindings allocates millions of objects (the Docker JSON, the rules of
the chains read, expected rules, walks, verdicts) and keeps most of them until the next one.
Python's collector would scan that growing heap again and again as it grows: four to six full
collections per refresh, 0.5-1 s of CPU at that size, and finding almost nothing (frozen
dataclasses and tuples, no cycles; what dies goes by reference counting). Paused, and at the
end the survivors are frozen (gc.freeze: left out of later collections; a young collection
scanning them cost 25-45 ms at 50,000 rules x 1,000 bindings, ~90 ms at 5,000). What is frozen
still goes by reference counting when it dies; cyclic garbage made meanwhile waits for the full
collection of everything, unfrozen, every FULL_EVERY pauses.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_holders = 0  # refreshes inside `gc_paused` now (one at a time in the service; tests nest)
_resume = False  # whether the collector was on when the first of them came in
_ends = 0  # pauses ended with the collector on, since start

FREEZE = True  # what survives a pause is frozen (gc.freeze) instead of scanned
FULL_EVERY = 100  # pauses between full collections of everything, the frozen objects included


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The collector off inside (when it was on), back on after and the survivors frozen: left
    out of every later collection until a full one, every FULL_EVERY pauses, unfreezes and
    collects everything (the cyclic garbage made meanwhile goes then). Without FREEZE: one young
    collection after."""
    global _holders, _resume, _ends
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
                _ends += 1
                full = _ends % FULL_EVERY == 0
        if last and not FREEZE:
            gc.collect(0)  # what the collector would do at the next allocation, here and now
        elif last and full:
            gc.unfreeze()
            gc.collect()
        elif last:
            gc.freeze()
