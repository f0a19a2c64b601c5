"""JSON log lines on stdout, one object per line.

``kubectl logs deploy/reconciler | grep ERROR`` must answer "why is it broken", so every
line carries the GitSync, the revision, the object and a reason when it has them, and a
failed sync is exactly one ERROR line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

FIELDS = ("gitsync", "revision", "object", "reason")


class JsonFormatter(logging.Formatter):
    converter = time.gmtime  # type: ignore[assignment]  # timestamps in UTC, as the "Z" says

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


# Libraries whose DEBUG output carries credentials: botocore logs canonical requests and
# signatures (enough to rebuild an EKS bearer token) and request headers with session tokens;
# urllib3 and kubernetes log headers with bearer tokens.  --log-level DEBUG is for our code.
QUIET = ("urllib3", "kubernetes", "git", "botocore", "boto3", "s3transfer")


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
