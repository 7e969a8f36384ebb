"""Pure tests: no root, no network namespace, no daemon; the whole folder runs in seconds."""

from support.markers import mark_folder


def pytest_collection_modifyitems(items):
    mark_folder(__file__, items, "unit")
