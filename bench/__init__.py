"""Benchmark harness for docker-nat-exporter: `python -m bench --help` (docs/performance.md)."""
