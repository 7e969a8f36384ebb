"""End to end: Prometheus, Alertmanager, promtool/amtool, the container image and deploy files."""

from support.markers import mark_folder


def pytest_collection_modifyitems(items):
    mark_folder(__file__, items, "e2e")
