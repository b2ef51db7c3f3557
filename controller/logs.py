"""Structured logs: JSON lines for journald/the hall when not on a tty, readable lines on a tty.

Extra fields go in ``extra={"fields": {...}}``; ID numbers must be masked before they get here.
"""
from __future__ import annotations

import json
import logging
import sys
import time


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class Readable(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = getattr(record, "fields", {})
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{stamp} {record.levelname[0]} {record.name}: {record.getMessage()}"
        if tail:
            line += f"  {tail}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup(level: str = "info", stream=None) -> None:
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(Readable() if stream.isatty() else JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt warns once per concurrent publish


def fields(**kv: object) -> dict:
    """``log.info("...", extra=fields(device="coin"))``"""
    return {"fields": kv}
