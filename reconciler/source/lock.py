"""flock(2)-based locks on the shared cache.

Two workers (threads or processes) may follow the same URL and ref, and so share one cache
directory. flock locks belong to an open file description, so they exclude other threads of
the same process as well as other processes, and the kernel drops them when a holder dies:
a crashed worker never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(path: Path, *, deadline: float) -> Iterator[None]:
    """Hold an exclusive lock on ``path``; TimeoutError if another holder keeps it past ``deadline``
    (a monotonic time), so a stuck worker cannot block the others forever."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{path} is locked by another worker") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def hold_shared(path: Path) -> int:
    """Take a shared lock that marks ``path``'s resource as in use; returns the fd to close later."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def is_unused(path: Path) -> bool:
    """True if nobody holds a lock on ``path`` (so the resource it guards may be removed)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True
