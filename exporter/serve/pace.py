"""A CPU budget for refreshes: when the next event-driven refresh may start.

A token bucket of CPU seconds: it fills at `budget` (a fraction of one core) up to `budget ×
WINDOW`, and every refresh takes what it cost (its thread's CPU time plus its commands'). While
the bucket is not empty an event-driven refresh starts as soon as the debounce is over; once it
is, the refresh waits until the bucket has filled back to empty. So over any long stretch the
refreshes use at most `budget` of a core plus one bucket, a quiet host still answers a change at
once, and a host that keeps changing gets refreshes as often as their own cost allows: cheap
ones (one chain read again) often, a whole read of 50,000 rules seldom.

The due time depends only on the first event still unanswered and the bucket, never on events
after it: a burst of events cannot postpone a refresh (no starvation), and the interval's
refresh comes at its time whatever the bucket holds.
"""

from __future__ import annotations

WINDOW = 60.0  # seconds of budget the bucket holds: the burst a quiet host may spend at once


class Pace:
    def __init__(self, budget: float, now: float) -> None:
        """`budget`: a fraction of one core (0.05 for 5 %)."""
        self.rate, self.capacity = budget, budget * WINDOW
        self.tokens, self.at = self.capacity, now

    def _fill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now

    def spent(self, cpu_seconds: float, now: float) -> None:
        self._fill(now)
        self.tokens -= cpu_seconds

    def free_at(self, now: float) -> float:
        """The earliest time a refresh may start within the budget."""
        self._fill(now)
        return now if self.tokens >= 0 else now + -self.tokens / self.rate

    def due(self, asked_at: float, debounce: float, deadline: float, now: float) -> float:
        """When a refresh asked for at `asked_at` starts: after the debounce, within the budget,
        and never after `deadline` (the interval's refresh)."""
        return min(max(asked_at + debounce, self.free_at(now)), deadline)
