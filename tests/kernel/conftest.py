"""Kernel tests: root, throwaway network namespaces and real iptables/nftables rules."""

from support.markers import mark_folder


def pytest_collection_modifyitems(items):
    mark_folder(__file__, items, "kernel")
