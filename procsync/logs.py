"""Process log files: size-based rotation behind a running writer, and reading the tail.

Children write straight to their log file (opened with O_APPEND), so they
never block on a pipe and keep writing if the manager goes away. Rotation
is copy-then-truncate: the file's content is copied to ``<log>.1`` (older
copies shift up to ``.N``), any bytes written during the copy are copied
too, and the file is truncated in place. The child's O_APPEND descriptor
then writes at the new end, so it never notices; only bytes written in the
microseconds between the last copy and the truncate could be lost. A write
that is in flight during the truncate lands past the new end, behind a hole
of NUL bytes (its start is in the copy); readers drop the NULs.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

CHUNK = 64 * 1024


def rotate(path: str | os.PathLike[str], backups: int) -> bool:
    """Rotate `path` to `path.1` … `path.<backups>` and empty it; False if there was nothing."""
    path = Path(path)
    try:
        src = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return False
    with src:
        if backups <= 0:
            os.truncate(path, 0)
            return True
        for n in range(backups - 1, 0, -1):
            older = path.with_name(f"{path.name}.{n}")
            if older.exists():
                os.replace(older, path.with_name(f"{path.name}.{n + 1}"))
        first = path.with_name(f"{path.name}.1")
        with open(first, "wb") as dst:
            while True:  # copy until a read finds nothing new, then truncate at once
                chunk = src.read(CHUNK)
                if not chunk:
                    os.truncate(path, 0)
                    break
                dst.write(chunk)
    return True


def tail_lines(path: str | os.PathLike[str] | None, lines: int = 100) -> list[str]:
    """The last `lines` lines of a log, reaching into `<log>.1` when the file is short.

    Reads backwards in blocks, never the whole file.
    """
    if path is None or lines <= 0:
        return []
    path = Path(path)
    found = _tail_one(path, lines)
    if len(found) < lines:
        older = _tail_one(path.with_name(path.name + ".1"), lines - len(found))
        found = older + found
    return found


def _tail_one(path: Path, lines: int) -> list[str]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return []
    with f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        data = b""
        pos = end
        while pos > 0 and data.count(b"\n") <= lines:
            step = min(CHUNK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    # a write in flight during a rotation can leave a hole of NUL bytes: not text
    text = data.replace(b"\0", b"").decode("utf-8", errors="replace")
    out = text.splitlines()
    return out[-lines:]


class LogRotator:
    """A daemon thread that rotates log files past their size limit, once a second."""

    def __init__(self, targets: Callable[[], list[tuple[str, int, int]]], interval: float = 1.0) -> None:
        self._targets = targets  # -> [(path, max_bytes, backups)]
        self.interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="procsync-logrotate", daemon=True)
            self._thread.start()

    def check_now(self) -> int:
        """Rotate every file over its limit now; how many were rotated."""
        rotated = 0
        for path, max_bytes, backups in self._targets():
            try:
                if os.stat(path).st_size > max_bytes and rotate(path, backups):
                    rotated += 1
            except FileNotFoundError:
                continue
            except OSError:
                log.exception("rotating %s failed", path)
        return rotated

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check_now()
            except Exception:
                log.exception("log rotation failed")

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


__all__ = ["LogRotator", "rotate", "tail_lines"]
