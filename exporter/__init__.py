"""docker-nat-exporter: checks Docker's published ports against the rules the kernel holds."""

__version__ = "0.1.0"
