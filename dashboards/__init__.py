"""Generator of the Grafana dashboards in this folder: `python -m dashboards.build`."""
