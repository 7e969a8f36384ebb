"""Lab tests: a real dockerd in its own network namespace (tests/support/lab.py)."""

from support.markers import mark_folder


def pytest_collection_modifyitems(items):
    mark_folder(__file__, items, "lab")
