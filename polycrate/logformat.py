"""Log line formats of the long-running commands: `text` for people, `json` for log collectors.

`json` writes one object per line with `time` (UTC, RFC 3339), `level`, `logger`, `message`,
`key` when the line belongs to the reconcile of one object (`Kind/namespace/name`, set by the
reconcile task through `log_key`, or passed as `extra={"key": ...}`) and `exception` for a
traceback. Only the message and the key go into a line: record arguments are rendered into the
message, never added as fields, so nothing a caller did not mean to log ends up in the output.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The object whose reconcile is running in this thread or task, for the `key` field.
log_key: ContextVar[str | None] = ContextVar("polycrate_log_key", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, plus key and exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        key = getattr(record, "key", None) or log_key.get()
        if key:
            line["key"] = str(key)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["exception"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False)


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def use_log_format(log_format: LogFormat, logger: logging.Logger | None = None) -> None:
    """Give every handler of `logger` (default: the root logger) the format; add one on stderr if none."""
    logger = logger or logging.getLogger()
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler(sys.stderr))
    for handler in logger.handlers:
        handler.setFormatter(formatter(log_format))
