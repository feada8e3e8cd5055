"""Structured logs: one JSON object per line, with the ModelDeployment's namespace/name.

kopf's per-object loggers attach the object as `record.k8s_ref`; our own lines
outside kopf handlers (the resync loop) use `object_logger()`, which does the same.
Both end up as top-level `namespace` and `name` keys, so `jq 'select(.name=="fraud-detector")'` works.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# What handlers and the reconciler log to: kopf's per-object adapter or a plain logger.
Logger = logging.Logger | logging.LoggerAdapter[Any]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            line["namespace"] = ref.get("namespace")
            line["name"] = ref.get("name")
            line["kind"] = ref.get("kind")
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def setup(level: int = logging.INFO, fmt: str = "json") -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The watch streams' HTTP chatter, and kopf's "Handler ... succeeded." on every watch
    # event, are noise at INFO; their warnings and errors still show.
    if level > logging.DEBUG:
        for name in ("aiohttp", "kopf.objects"):
            logging.getLogger(name).setLevel(logging.WARNING)


def object_logger(namespace: str, name: str) -> logging.LoggerAdapter[logging.Logger]:
    return logging.LoggerAdapter(
        logging.getLogger("modelship"),
        {"k8s_ref": {"kind": "ModelDeployment", "namespace": namespace, "name": name}},
    )
