"""File helpers of the state stores: atomic writes, lock files, moving bad files aside.

A crash at any instant leaves a file written by `atomic_write` either old or
new, never torn; it is readable by its owner only (mode 0600). `reserve_aside`
names the `<path>.corrupt-<UTC time>` copy of a file whose content could not
be used.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import StateStoreError

FILE_MODE = 0o600  # state files hold command lines and history: readable by their owner only


def utc_stamp() -> str:
    """The current UTC time as used in moved-aside names: `20261126T120000Z`."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def reserve_aside(path: Path) -> Path:
    """Create and return a new empty `<path>.corrupt-<UTC time>[-N]` that did not exist."""
    base = f"{path}.corrupt-{utc_stamp()}"
    for n in range(10_000):
        target = Path(base if n == 0 else f"{base}-{n}")
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            return target
        except FileExistsError:
            continue
    raise StateStoreError(f"cannot find a free name to move {path} aside")


def fsync_dir(directory: Path) -> None:
    """Flush `directory`'s entries (a rename in it) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_prefix(path: Path) -> str:
    """How the names of `atomic_write`'s temp files for `path` begin."""
    return f".{path.name}.tmp-"


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so a crash at any instant leaves the old file or the new one."""
    tmp = path.with_name(f"{temp_prefix(path)}{os.getpid()}-{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        try:
            os.fchmod(fd, FILE_MODE)  # owner only, whatever the umask or the old file's mode
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def read_all(fd: int) -> bytes:
    """Everything left to read from `fd`."""
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on `lock_path` (created if missing) for the block."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


__all__ = [
    "FILE_MODE",
    "atomic_write",
    "exclusive_lock",
    "fsync_dir",
    "read_all",
    "reserve_aside",
    "temp_prefix",
    "utc_stamp",
]
