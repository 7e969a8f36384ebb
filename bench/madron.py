"""madron's `iptables-exporter` (PyPI, python-iptables based) on the same legacy rules:
installed into a throwaway venv with the prometheus-client it can still run with, run in the
namespace, scraped like ours. Each of its scrapes reads the tables afresh, so its scrape time
is its whole cost."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

VERSION = "0.9.3"
# 0.9.3 imports HTTPServer from prometheus_client.exposition, which prometheus-client 0.8 and
# later no longer export: it cannot start with today's prometheus-client, so its venv pins 0.7.1.
REQUIREMENTS = (f"iptables-exporter=={VERSION}", "prometheus-client==0.7.1", "python-iptables")
PORT = "19119"


def measure(ns: str, requests: int) -> dict:
    d = tempfile.mkdtemp(prefix="dnb-madron-")
    enter = ["nsenter", f"--net=/run/netns/{ns}"]
    proc = None
    try:
        venv = f"{d}/venv"
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, capture_output=True,
                       timeout=300)  # fmt: skip
        pip = subprocess.run([f"{venv}/bin/pip", "install", "-q", *REQUIREMENTS],
                             capture_output=True, text=True, timeout=600)  # fmt: skip
        if pip.returncode != 0:
            why = pip.stderr.strip()[-300:]
            return {"error": f"pip install {' '.join(REQUIREMENTS)}: {why}"}
        script = f"{venv}/bin/iptables-exporter"
        argv = [*enter, f"{venv}/bin/python", script, "--address", "127.0.0.1", "--port", PORT,
                "--tables", "nat", "filter", "--ip-versions", "4"]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)  # fmt: skip
        url = f"http://127.0.0.1:{PORT}/metrics"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            code = subprocess.run([*enter, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                   "-m", "120", url], capture_output=True, text=True,
                                  timeout=180).stdout  # fmt: skip
            if code == "200":
                break
            time.sleep(0.5)
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace").strip()[-500:]
            return {"error": f"iptables-exporter exited {proc.returncode}: {err}"}
        r = subprocess.run([*enter, sys.executable, "-m", "bench.scrape", url, "--scrapers", "1",
                            "--requests", str(max(1, min(requests, 5)))], capture_output=True,
                           text=True, timeout=1800, cwd=os.path.dirname(os.path.dirname(
                               os.path.abspath(__file__))))  # fmt: skip
        if r.returncode != 0:
            return {"error": f"scraping it failed: {r.stderr.strip()[-300:]}"}
        return {"version": VERSION, "scrape": json.loads(r.stdout)}
    finally:
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        subprocess.run(["rm", "-rf", d], check=False, timeout=60)
