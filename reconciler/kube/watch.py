"""List-then-watch with resourceVersion tracking, bookmarks and relist on 410 Gone.

The client library's watch helper does not advance resourceVersion when it is not
deserializing and gives up after one 410; a controller that runs for weeks needs both
handled, so this is our own small loop.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from reconciler.kube.client import Kube, KubeError, UnreachableError

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], None]  # ("ADDED"|"MODIFIED"|"DELETED"|"RELISTED", object)


def _call(handler: Handler, type_: str, *, obj: dict[str, Any], path: str) -> None:
    """A failing handler must not end the watch: log it and go on with the next event."""
    try:
        handler(type_, obj)
    except Exception:
        log.exception("watch %s: handler failed on a %s event", path, type_)


def watch(
    kube: Kube,
    path: str,
    *,
    handler: Handler,
    stop: threading.Event,
    query: Sequence[tuple[str, str]] = (),
    kind: str = "",
    api_version: str = "",
    timeout_seconds: int = 300,
) -> None:
    """Run until ``stop`` is set. After every (re)list the handler sees each object as
    "RELISTED" and then a ("RELISTED", {}) marker, so it can drop what disappeared."""
    rv: str | None = None
    backoff = 0.5
    while not stop.is_set():
        try:
            if rv is None:
                doc = kube.get(path, query=list(query))
                for item in doc.get("items", []):
                    item.setdefault("kind", kind)
                    item.setdefault("apiVersion", api_version)
                    _call(handler, "RELISTED", obj=item, path=path)
                _call(handler, "RELISTED", obj={}, path=path)
                rv = str(doc["metadata"]["resourceVersion"])
            q = [
                *query,
                ("watch", "1"),
                ("resourceVersion", rv),
                ("allowWatchBookmarks", "true"),
                ("timeoutSeconds", str(timeout_seconds)),
            ]
            for line in kube.stream_lines(path, q, timeout=(10.0, timeout_seconds + 30.0)):
                if stop.is_set():
                    return
                ev = json.loads(line)
                obj = ev.get("object") or {}
                if ev.get("type") == "ERROR":
                    if obj.get("code") == 410:  # our resourceVersion is too old: list again
                        rv = None
                        break
                    raise KubeError(
                        status=int(obj.get("code") or 500),
                        reason=str(obj.get("reason")),
                        message=str(obj.get("message")),
                        method="WATCH",
                        path=path,
                    )
                rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                if ev.get("type") == "BOOKMARK":
                    continue
                _call(handler, str(ev.get("type")), obj=obj, path=path)
            backoff = 0.5
        except (KubeError, UnreachableError, ValueError) as e:
            log.warning("watch %s: %s; retrying in %.1fs", path, e, backoff)
            if isinstance(e, KubeError) and e.status == 410:
                rv = None
            stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)
