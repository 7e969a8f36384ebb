"""serve.gcpause: the collector is off inside, restored after, nesting and a disabled collector
respected; what survives a pause frozen, and everything collected every FULL_EVERY pauses."""

import gc
import weakref

import pytest

from exporter.serve import gcpause
from exporter.serve.gcpause import gc_paused


@pytest.fixture(autouse=True)
def _restore():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()
    gc.unfreeze()


def test_off_inside_on_after():
    gc.enable()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_nested_pauses_resume_once_at_the_outer_end():
    gc.enable()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_restored_after_an_exception():
    gc.enable()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("refresh failed")
    assert gc.isenabled()


def test_a_collector_switched_off_stays_off():
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


class Node:
    pass


def cycle_inside() -> weakref.ref:
    a, b = Node(), Node()
    a.other, b.other = b, a
    found = [o for o in gc.get_objects() if type(o) is Node]
    assert len(found) == 2  # nothing collects them while paused
    return weakref.ref(a)


def test_cycles_made_inside_are_collected_at_the_next_full_collection(monkeypatch):
    monkeypatch.setattr(gcpause, "FULL_EVERY", 3)
    monkeypatch.setattr(gcpause, "_ends", 0)
    gc.enable()
    gc.collect()
    with gc_paused():
        node = cycle_inside()
    assert gc.get_freeze_count() > 0  # the survivors are left out of later collections
    gc.collect()
    assert node() is not None  # frozen: not even a full collection sees them
    with gc_paused():
        pass
    assert node() is not None
    with gc_paused():  # the third: everything unfrozen and collected
        pass
    assert gc.get_freeze_count() == 0
    assert node() is None


def test_without_freezing_cycles_made_inside_are_collected_after(monkeypatch):
    monkeypatch.setattr(gcpause, "FREEZE", False)
    gc.enable()
    gc.collect()
    with gc_paused():
        node = cycle_inside()
    assert gc.get_freeze_count() == 0
    assert node() is None
