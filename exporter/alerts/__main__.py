"""`python -m exporter.alerts`: the alerting rules on stdout (see exporter.alerts)."""

import sys

from exporter.alerts import main

sys.exit(main())
