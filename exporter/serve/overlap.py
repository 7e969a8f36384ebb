"""Reads that overlap: each in its own thread (they wait on subprocesses and sockets, which
release the GIL), joined by the refresh that started them."""

from __future__ import annotations

import threading
import time


class Started:
    """`fn(*args)` running in a thread from now. `result()` waits for it and returns what it
    returned or raises what it raised; `seconds` is how long it ran (after `result()`)."""

    def __init__(self, fn, *args) -> None:
        self.seconds = 0.0
        self._value, self._exc = None, None
        self._thread: threading.Thread | None = threading.Thread(
            target=self._run, args=(fn, args), daemon=True
        )
        self._thread.start()

    @classmethod
    def here(cls, fn, *args) -> Started:
        """`fn(*args)` run now, in the calling thread, kept as a Started is. What allocates
        most is best run here: memory a thread frees stays with its malloc arena."""
        job = cls.__new__(cls)
        job.seconds, job._value, job._exc, job._thread = 0.0, None, None, None
        job._run(fn, args)
        return job

    def _run(self, fn, args) -> None:
        t = time.perf_counter()
        try:
            self._value = fn(*args)
        except BaseException as exc:  # handed to the thread that joins
            self._exc = exc
        finally:
            self.seconds = time.perf_counter() - t

    def result(self):
        if self._thread is not None:
            self._thread.join()
        if self._exc is not None:
            raise self._exc
        return self._value
