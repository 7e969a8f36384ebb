"""serve.gcpause: the collector is off inside, restored after, nesting and a disabled collector
respected."""

import gc

import pytest

from exporter.serve.gcpause import gc_paused


@pytest.fixture(autouse=True)
def _restore():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


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


def test_cycles_made_inside_are_collected_after():
    class Node:
        pass

    gc.enable()
    gc.collect()
    with gc_paused():
        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        found = [o for o in gc.get_objects() if type(o) is Node]
        assert len(found) == 2  # nothing collects them while paused
        del found
    assert not [o for o in gc.get_objects() if type(o) is Node]
