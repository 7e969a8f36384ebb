"""Container HEALTHCHECK: is the exporter answering HTTP on its listen address?

Standard library only (runs with the image's Python). The address comes from
DOCKER_NAT_EXPORTER_WEB_LISTEN_ADDRESS (default :9841). With --web.config.file the server may
speak TLS and require basic auth: plain HTTP is tried first, then HTTPS without certificate
verification (this only checks liveness on the loopback), and a 401 counts as alive.
Exit 0: healthy; exit 1: not answering.
"""

import http.client
import os
import ssl
import sys

TIMEOUT = 4.0


def target() -> tuple[str, int]:
    address = os.environ.get("DOCKER_NAT_EXPORTER_WEB_LISTEN_ADDRESS", ":9841")
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


def probe(conn: http.client.HTTPConnection) -> int:
    try:
        conn.request("GET", "/-/healthy")
        return conn.getresponse().status
    finally:
        conn.close()


def main() -> int:
    try:
        host, port = target()
    except ValueError:
        print("bad DOCKER_NAT_EXPORTER_WEB_LISTEN_ADDRESS", file=sys.stderr)
        return 1
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    attempts = (
        http.client.HTTPConnection(host, port, timeout=TIMEOUT),
        http.client.HTTPSConnection(host, port, timeout=TIMEOUT, context=insecure),
    )
    errors = []
    for conn in attempts:
        try:
            status = probe(conn)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{type(conn).__name__}: {exc}")
            continue
        if status in (200, 401):
            return 0
        errors.append(f"{type(conn).__name__}: HTTP {status}")
    print(f"exporter not healthy on {host}:{port}: {'; '.join(errors)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
