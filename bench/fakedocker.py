"""A Docker Engine API stand-in on a unix socket, for hosts with thousands of bindings.

Serves the subset the exporter uses (through the docker SDK with version="auto"): GET /_ping,
/version (unversioned, for the version negotiation, and /v1.NN/version), /v1.NN/info,
/v1.NN/containers/json, /v1.NN/networks, and /v1.NN/events as a chunked stream that stays open
and quiet (a live daemon with nothing happening). Answers are recorded JSON, serialised once.

    python -m bench.fakedocker SOCKET DOC.json     (DOC: bench.gen.docker_json output)
"""

from __future__ import annotations

import json
import os
import re
import signal
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler

_PATH = re.compile(r"^(?:/v1\.\d+)?(/[a-z_/]+)")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: dict[str, bytes] = {}
    stop = threading.Event()

    def do_GET(self) -> None:
        m = _PATH.match(self.path)
        path = m.group(1) if m else ""
        if path == "/events":
            return self._events()
        body = b"OK" if path == "/_ping" else self.bodies.get(path)
        if body is None:
            return self._send(404, b'{"message":"page not found"}')
        self._send(200, body, "text/plain" if path == "/_ping" else "application/json")

    def do_HEAD(self) -> None:
        self._send(200, b"")

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Api-Version", "1.41")
        self.end_headers()
        self.wfile.write(body)

    def _events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        self.stop.wait()  # nothing happens on this host; the stream ends with the server
        self.close_connection = True

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args) -> None:
        pass


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serve(sock: str, doc: dict) -> None:
    Handler.bodies = {
        "/version": json.dumps(doc["version"]).encode(),
        "/info": json.dumps(doc["info"]).encode(),
        "/containers/json": json.dumps(doc["containers"]).encode(),
        "/networks": json.dumps(doc["networks"]).encode(),
    }
    if os.path.exists(sock):
        os.unlink(sock)
    server = Server(sock, Handler)

    def shutdown(*_):
        Handler.stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    print("ready", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if os.path.exists(sock):
            os.unlink(sock)


if __name__ == "__main__":
    with open(sys.argv[2]) as f:
        serve(sys.argv[1], json.load(f))
