"""Logging in logfmt or JSON, one line per record, to stderr."""

from __future__ import annotations

import json
import logging
import sys
import time

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR}  # fmt: skip


def _ts(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage().replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        level = {"WARNING": "warn"}.get(record.levelname, record.levelname.lower())
        return f'ts={_ts(record)} level={level} msg="{msg}"'


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = {"WARNING": "warn"}.get(record.levelname, record.levelname.lower())
        return json.dumps({"ts": _ts(record), "level": level, "msg": record.getMessage()})


def setup(level: str, fmt: str) -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    log = logging.getLogger("docker_nat_exporter")
    log.handlers[:] = [handler]
    log.setLevel(LEVELS[level])
    log.propagate = False
    root = logging.getLogger()  # asyncio, aiohttp, urllib3: same format, warnings and up
    root.handlers[:] = [handler]
    root.setLevel(max(LEVELS[level], logging.WARNING))
    return log
