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

Symbolic links are never followed at the log's own name: a log path that is
a link is refused when a process is spawned (`open_log`), rotation neither
truncates nor writes through a link (the log and its `.N` copies), and
readers open logs with O_NOFOLLOW, so a link planted at a log's name cannot
make procsync write to, or show, another file. A log directory procsync
creates is made with mode 0700 (an existing one is left alone).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .locks import ordered_lock

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
DIR_MODE = 0o700  # a log directory procsync creates
FILE_MODE = 0o600  # a log file (or rotated copy) procsync creates
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class LogFileError(OSError):
    """A log path procsync will not use (a symbolic link, a directory, a pipe)."""


def ensure_log_dir(directory: str | os.PathLike[str]) -> None:
    """Create `directory` and its missing parents with mode 0700; leave existing ones alone."""
    path = Path(directory)
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(folder):
                raise
        else:
            os.chmod(folder, DIR_MODE)  # the umask may have taken bits away; never adds any


def open_log(path: str | os.PathLike[str]) -> int:
    """A write-only, append-only descriptor of the log file `path` (created 0600 if missing).

    Never follows a symbolic link at `path`: LogFileError says so, naming the
    path. Only a regular file (or a character device such as /dev/null) is used.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | _NOFOLLOW,
                     FILE_MODE)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise LogFileError(err.errno, f"log file {name!r} is a symbolic link; procsync does "
                               "not write through links (remove it or point log_file at the "
                               "real file)", name) from None
        if err.errno == errno.ENXIO:  # a FIFO nobody reads
            raise LogFileError(err.errno, f"log file {name!r} is not a regular file", name) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
            raise LogFileError(errno.EINVAL, f"log file {name!r} is not a regular file", name)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_for_reading(path: str | os.PathLike[str], *, quiet: bool = False) -> int | None:
    """A read-only descriptor of the regular file `path`, never through a link; None if none.

    A link at `path` is logged as a warning unless `quiet` (a poller asks often).
    """
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)
    except OSError as err:
        if err.errno == errno.ELOOP and not quiet:
            log.warning("not reading log %s: it is a symbolic link", os.fspath(path))
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
    except OSError:
        os.close(fd)
        return None
    return fd


def rotate(path: str | os.PathLike[str], backups: int) -> bool:
    """Rotate `path` to `path.1` … `path.<backups>` and empty it; False if there was nothing.

    No link is followed: a log that is a link is not rotated (LogFileError),
    older copies are renamed (a link is moved, never written through), and
    `path.1` is created anew (O_EXCL) after whatever had its name is removed.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | _NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise LogFileError(err.errno, f"log file {str(path)!r} is a symbolic link; "
                               "not rotated", str(path)) from None
        raise
    with open(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LogFileError(errno.EINVAL, f"log file {str(path)!r} is not a regular file; "
                               "not rotated", str(path))
        if backups <= 0:
            os.ftruncate(fd, 0)
            return True
        for n in range(backups - 1, 0, -1):
            older = path.with_name(f"{path.name}.{n}")
            try:  # rename moves a link itself, never its target
                os.replace(older, path.with_name(f"{path.name}.{n + 1}"))
            except FileNotFoundError:
                continue
        first = path.with_name(f"{path.name}.1")
        try:
            os.unlink(first)  # only when backups == 1 (else it was just renamed away)
        except FileNotFoundError:
            pass
        out = os.open(first, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, FILE_MODE)
        with open(out, "wb") as dst:
            while True:  # copy until a read finds nothing new, then truncate at once
                chunk = src.read(CHUNK)
                if not chunk:
                    os.ftruncate(fd, 0)
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
    fd = open_for_reading(path)
    if fd is None:
        return []
    with open(fd, "rb") as f:
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


class LineWatch:
    """Finds a line matching `pattern` written to the log `path` after byte `offset`.

    Each `poll()` reads only the bytes written since the last one (a
    rotation's truncate starts it again at the new start), so watching a
    large log costs what is new, not the whole file. Not thread-safe: one
    poller owns it. `close()` releases the descriptor.
    """

    MAX_PARTIAL = 64 * 1024  # a longer unfinished line is checked and dropped

    def __init__(self, path: str | os.PathLike[str], pattern: str, offset: int = 0) -> None:
        self.path = os.fspath(path)
        self.pattern = re.compile(pattern)
        self.offset = offset
        self.seen = False
        self._fd: int | None = None
        self._partial = b""

    @staticmethod
    def size_of(path: str | os.PathLike[str]) -> int:
        """The size of `path` now (0 if it does not exist): where a watch of new lines starts."""
        try:
            return os.stat(path).st_size
        except OSError:
            return 0

    def poll(self) -> bool:
        """Read what is new; True once a matching line has appeared."""
        if self.seen:
            return True
        if self._fd is None:
            self._fd = open_for_reading(self.path, quiet=True)
            if self._fd is None:
                return False
        try:
            size = os.fstat(self._fd).st_size
            if size < self.offset:  # truncated by a rotation: what follows starts at 0
                self.offset, self._partial = 0, b""
            while self.offset < size and not self.seen:
                chunk = os.pread(self._fd, min(CHUNK, size - self.offset), self.offset)
                if not chunk:
                    break
                self.offset += len(chunk)
                self._scan(chunk)
        except OSError:
            self.close()
        return self.seen

    def _scan(self, chunk: bytes) -> None:
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > self.MAX_PARTIAL:
            lines.append(self._partial)
            self._partial = b""
        for line in lines:
            if self.pattern.search(line.replace(b"\0", b"").decode("utf-8", "replace")):
                self.seen = True
                return
        if self._partial and self.pattern.search(self._partial.decode("utf-8", "replace")):
            self.seen = True  # a prompt printed without a newline

    def close(self) -> None:
        """Release the file descriptor."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class LogRotator:
    """A daemon thread that rotates log files past their size limit.

    A log that grew since its last look is looked at again after `interval`
    seconds (1 s); one that did not grow waits twice as long as the last
    time, up to `idle_interval` (8 s), so a fleet of quiet servers costs a
    few stat calls every several seconds, and a log that starts to grow is
    back on the short interval after its next look. `on_missing(path)` is
    called once when a log is found deleted (again after it reappears).
    """

    def __init__(self, targets: Callable[[], list[tuple[str, int, int]]], interval: float = 1.0,
                 *, idle_interval: float = 8.0,
                 on_missing: Callable[[str], None] | None = None) -> None:
        self._targets = targets  # -> [(path, max_bytes, backups)]
        self.interval = interval
        self.idle_interval = max(idle_interval, interval)
        self._on_missing = on_missing
        self._stop = threading.Event()
        self._lock = ordered_lock("logs.rotator")
        self._thread: threading.Thread | None = None
        self._refused: set[str] = set()  # paths already warned about
        self._missing: set[str] = set()  # paths reported to on_missing
        self._looks: dict[str, tuple[int, float, float]] = {}  # path -> (size, wait, due)

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="procsync-logrotate", daemon=True)
            self._thread.start()

    def check_now(self) -> int:
        """Rotate every file over its limit now, whatever its schedule; how many were rotated."""
        return self._check(None)

    def _check(self, now: float | None) -> int:
        """Look at the files due at `now` (monotonic; all when None); how many were rotated."""
        rotated = 0
        targets = self._targets()
        looks: dict[str, tuple[int, float, float]] = {}
        for path, max_bytes, backups in targets:
            last = self._looks.get(path)
            if now is not None and last is not None and last[2] > now:
                looks[path] = last  # not due yet
                continue
            size, wait = -1, self.interval
            try:
                st = os.lstat(path)
                size = st.st_size
                if (stat.S_ISLNK(st.st_mode) or size > max_bytes) and rotate(path, backups):
                    rotated += 1
                    size = 0
                self._refused.discard(path)
                self._missing.discard(path)
                if last is not None and size == last[0]:
                    wait = min(last[1] * 2, self.idle_interval)  # quiet: look less often
            except FileNotFoundError:
                if path not in self._missing and self._on_missing is not None:
                    self._missing.add(path)
                    try:
                        self._on_missing(path)
                    except Exception:
                        log.exception("reporting the deleted log %s failed", path)
                wait = self.idle_interval
            except LogFileError as err:
                if path not in self._refused:  # once, not every second
                    self._refused.add(path)
                    log.warning("%s", err.strerror)
            except OSError:
                log.exception("rotating %s failed", path)
            looks[path] = (size, wait, (now if now is not None else time.monotonic()) + wait)
        self._looks = looks
        self._missing &= looks.keys()
        return rotated

    def _next_due(self) -> float:
        if not self._looks:
            return self.interval
        return max(0.0, min(due for _size, _wait, due in self._looks.values()) - time.monotonic())

    def _run(self) -> None:
        # a file of a new process is looked at within `interval`; others when they are due
        while not self._stop.wait(min(self.interval, self._next_due())):
            try:
                self._check(time.monotonic())
            except Exception:
                log.exception("log rotation failed")

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


__all__ = ["LineWatch", "LogFileError", "LogRotator", "ensure_log_dir", "open_for_reading", "open_log", "rotate",
           "tail_lines"]
