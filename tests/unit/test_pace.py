"""The refresh CPU budget (serve.pace) and the scheduler's judging of nf_tables changes, on a
fake clock: no timing is measured here, every time is simulated."""

from __future__ import annotations

import itertools

import pytest
from support.corefix import BASE_G27, decode, web_doc

from exporter.rules.family import FamilyRules
from exporter.rules.lazysave import parse_save_lazy
from exporter.rules.nftevents import Change
from exporter.serve.pace import WINDOW, Pace
from exporter.serve.refresh import RefreshOptions
from exporter.serve.scheduler import Holder, Scheduler

BUDGET, DEBOUNCE, INTERVAL = 0.05, 0.2, 15.0


def simulate(cost: float, seconds: float = 600.0, every: float = 0.1):
    """Events every `every` s; each refresh costs `cost` CPU seconds. Returns (refresh start
    times, the longest wait from an unanswered event to the refresh that answered it)."""
    pace, t, starts, longest = Pace(BUDGET, 0.0), 0.0, [], 0.0
    while t < seconds:
        starts.append(t)
        pace.spent(cost, t)
        asked = (int(t / every) + 1) * every  # the first event after this refresh began
        nxt = pace.due(asked, DEBOUNCE, t + INTERVAL, asked)
        longest = max(longest, nxt - asked)
        t = nxt
    return starts, longest


@pytest.mark.parametrize("cost", [0.02, 0.2, 0.5, 0.7])
def test_under_endless_events_refreshes_stay_within_the_budget(cost):
    starts, longest = simulate(cost)
    spent = cost * len(starts)
    assert spent <= BUDGET * 600 + BUDGET * WINDOW + cost  # the budget, one bucket, one refresh
    assert longest <= INTERVAL  # no starvation: never later than the interval's refresh


def test_cheap_refreshes_follow_the_events_after_the_debounce():
    starts, longest = simulate(0.001, seconds=10)
    assert longest == pytest.approx(DEBOUNCE)
    assert len(starts) > 10 / (DEBOUNCE + 0.1) - 2


def test_the_interval_wins_over_the_budget():
    starts, longest = simulate(2.0, seconds=120)  # 2 s of CPU each: 40 s apart by the budget
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert max(gaps) <= INTERVAL + 0.1 and longest <= INTERVAL


def test_a_quiet_host_is_answered_at_once_even_after_a_costly_refresh():
    pace = Pace(BUDGET, 0.0)
    pace.spent(1.0, 0.0)  # a cold refresh: within the bucket (3 s at 5 %)
    assert pace.due(5.0, DEBOUNCE, 15.0, 5.0) == 5.0 + DEBOUNCE
    pace.spent(4.0, 5.5)  # the bucket overdrawn: wait until it filled back to empty
    assert pace.free_at(5.5) > 5.5
    assert pace.due(6.0, DEBOUNCE, 100.0, 6.0) == pytest.approx(pace.free_at(6.0))
    assert pace.due(6.0, DEBOUNCE, 8.0, 6.0) == 8.0  # but never after the interval's refresh


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def scheduler() -> Scheduler:
    sched = Scheduler(RefreshOptions(), INTERVAL, DEBOUNCE, 300.0, Holder(),
                      snapshot_fn=lambda opts: None, clock=Clock())  # fmt: skip
    rs = parse_save_lazy(BASE_G27, "ipv4", "nf_tables")
    rules = {"ipv4": FamilyRules("ipv4", (rs,), nft_error=""),
             "ipv6": FamilyRules("ipv6", (), nft_error="")}  # fmt: skip
    sched.state.analyse(decode(web_doc()), rules, (("eth0", "192.0.2.1"),), None)
    return sched


def test_only_relevant_changes_ask_for_a_refresh():
    sched = scheduler()
    sched.changes([Change("ip", "filter", "INPUT", "rule")] * 50)
    assert sched.asked_at is None
    assert sched.state.chains.pending == {}  # no feed started: nothing to remember
    sched.started(0.0)
    sched.changes([Change("ip", "filter", "INPUT", "rule")])
    assert sched.asked_at is None and sched.state.chains.pending == {"ipv4": {"filter": {"INPUT"}}}
    sched.changes([Change("ip", "nat", "DOCKER", "rule")])
    assert sched.asked_at == sched.clock.now
    sched.clock.now += 5
    sched.changes([Change("ip", "nat", "DOCKER", "rule")])
    assert sched.asked_at == sched.clock.now - 5  # the first unanswered event counts


def test_changes_during_a_refresh_are_judged_after_it():
    sched = scheduler()
    sched.refreshing = True
    sched.changes([Change("ip", "nat", "DOCKER", "rule")])
    assert sched.asked_at is None and sched.unjudged
    sched.refreshing = False
    unjudged, sched.unjudged = sched.unjudged, []
    sched._judge(unjudged)
    assert sched.asked_at is not None
