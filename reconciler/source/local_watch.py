"""``reconciler sync --dir D --watch``: sync again whenever a file under D changes.

inotify (through watchdog) tells us quickly that *something* changed; what changed does
not matter, because every sync renders the whole folder. So events only set a flag, a
burst of saves (an editor writing a temp file and renaming it, ``git checkout`` of 50
files) collapses into one sync after a short quiet period, and a periodic rescan covers
events the kernel dropped (inotify queue overflow under load).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from reconciler.source.local import tree_digest

log = logging.getLogger("reconciler.watch")


class _Changed(FileSystemEventHandler):
    def __init__(self, flag: threading.Event) -> None:
        self._flag = flag

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads do not change anything
        self._flag.set()


def run(
    root: Path,
    sync: Callable[[], int],
    *,
    quiet: float = 0.2,
    max_delay: float = 1.0,
    rescan: float = 30.0,
    stop: threading.Event | None = None,
) -> None:
    """Sync once, then on every change; returns when ``stop`` is set (or on Ctrl-C)."""
    stop = stop or threading.Event()
    changed = threading.Event()
    observer = Observer()
    observer.schedule(_Changed(changed), str(root), recursive=True)
    observer.start()

    def attempt() -> bool:
        try:
            return sync() == 0
        except Exception:  # a bug in one sync must not end watch mode
            log.exception("sync failed")
            return False

    try:
        digest = tree_digest(root)  # before the sync: an edit made during it is seen afterwards
        if not attempt():
            digest = ""  # retried at the next change or rescan
        last_scan = time.monotonic()
        while not stop.is_set():
            if changed.wait(timeout=0.5):
                first = time.monotonic()
                # Debounce: wait for a quiet period, but never longer than max_delay in total.
                while time.monotonic() - first < max_delay:
                    changed.clear()
                    if not changed.wait(timeout=quiet):
                        break
                changed.clear()
            elif time.monotonic() - last_scan < rescan:
                continue
            last_scan = time.monotonic()
            now = tree_digest(root)
            if now != digest:
                digest = now if attempt() else ""  # a failed sync is retried at the next rescan
    except KeyboardInterrupt:
        pass
    finally:
        observer.stop()
        observer.join(timeout=5)
