"""Follow a server's log file as SSE, across rotation and truncation (like ``tail -F``)."""

from __future__ import annotations

import codecs
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO

from ..logs import open_for_reading, tail_lines
from .events import comment, dumps, sse

POLL_INTERVAL = 0.1  # seconds between looks at the file
MAX_BATCH = 500  # lines per SSE event


class LogFollower:
    """Reads the lines appended to a log file, across rotation and truncation.

    Handles both rotation styles: rename (the path names a new file: the rest of
    the old one is read, then the new one from its start) and copy-then-truncate
    (procsync's own: the bytes not read yet are taken from ``<log>.1``, then the
    file is read again from its start). A truncation is noticed even when the
    file has grown past the old position again, by comparing the last bytes read.
    `path_fn` is asked for the path each time the file must be (re)opened, so a
    log that does not exist yet is picked up once the server starts. Files are
    opened with O_NOFOLLOW: a symbolic link at the log's name is never read.
    """

    TAIL = 64  # bytes remembered to recognise the file we were reading

    def __init__(self, path_fn: Callable[[], str | None]) -> None:
        self._path_fn = path_fn
        self._file: IO[bytes] | None = None
        self._path: str | None = None
        self._inode: tuple[int, int] | None = None
        self._tail = b""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._partial = ""
        self._partial_bytes = b""
        self.rotations = 0

    def start_at_end(self, backlog: int = 0) -> list[str]:
        """Open the file (if it exists) at its end; the last `backlog` lines before that point.

        Taking both from one open file leaves no gap and no repeat between the
        backlog and the lines that follow.
        """
        lines: list[str] = []
        if self._open():
            assert self._file is not None
            end = self._file.seek(0, os.SEEK_END)
            if backlog > 0:
                lines = self._lines_before(end, backlog)
            self._file.seek(max(0, end - self.TAIL))
            self._tail = self._file.read(self.TAIL)
        if backlog > 0 and len(lines) < backlog:
            path = self._path or self._path_fn()
            if path:
                lines = tail_lines(path + ".1", backlog - len(lines)) + lines
        return lines

    def _lines_before(self, end: int, count: int) -> list[str]:
        assert self._file is not None
        data, pos = b"", end
        while pos > 0 and data.count(b"\n") <= count:
            step = min(65536, pos)
            pos -= step
            self._file.seek(pos)
            data = self._file.read(step) + data
        if not data.endswith(b"\n"):  # an unfinished last line is sent once it is complete
            cut = data.rfind(b"\n") + 1
            self._partial_bytes = data[cut:]
            data = data[:cut]
        return data.decode("utf-8", "replace").splitlines()[-count:]

    def _open(self) -> bool:
        path = self._path_fn()
        if not path:
            return False
        fd = open_for_reading(path, quiet=True)  # never through a symbolic link
        if fd is None:
            return False
        f = open(fd, "rb")  # noqa: SIM115 - closed in close()
        st = os.fstat(f.fileno())
        if self._file is not None:
            self._file.close()
        self._file, self._path, self._inode = f, path, (st.st_dev, st.st_ino)
        self._tail = b""
        return True

    def _read_raw(self) -> bytes:
        assert self._file is not None
        chunks = []
        while chunk := self._file.read(65536):
            chunks.append(chunk)
        data = b"".join(chunks)
        if data:
            self._tail = (self._tail + data)[-self.TAIL:]
        return data

    def _check(self) -> str | None:
        """"renamed", "truncated" or None (same file, only appended to)."""
        assert self._file is not None and self._path is not None
        try:
            st = os.lstat(self._path)  # a link put in its place is another file
        except OSError:
            return "renamed"  # moved away, the new one not created yet
        if (st.st_dev, st.st_ino) != self._inode:
            return "renamed"
        pos = self._file.tell()
        if st.st_size < pos:
            return "truncated"
        if self._tail and pos >= len(self._tail):
            if os.pread(self._file.fileno(), len(self._tail), pos - len(self._tail)) != self._tail:
                return "truncated"  # emptied and written again past our position
        return None

    def _rest_from_backup(self, pos: int) -> bytes:
        """The bytes after `pos` that a copy-then-truncate rotation moved into <log>.1."""
        assert self._path is not None
        fd = open_for_reading(self._path + ".1", quiet=True)
        if fd is None:
            return b""
        try:
            with open(fd, "rb") as backup:
                n = len(self._tail)
                backup.seek(pos - n)
                if backup.read(n) != self._tail:
                    return b""  # not the content we were reading
                return backup.read()
        except (OSError, ValueError):
            return b""

    def poll(self) -> tuple[list[str], bool]:
        """The complete new lines since the last call, and whether the log was rotated."""
        rotated = False
        data = b""
        if self._file is None:
            if not self._open():
                return [], False
            # A file that appears (or reappears) is read from its start.
        else:
            change = self._check()  # before reading: a truncated file must not be read at the old offset
            if change == "renamed":
                data = self._read_raw()  # written to the old file before the rename
                if self._open():
                    rotated = True
            elif change == "truncated":
                assert self._file is not None
                data += self._rest_from_backup(self._file.tell())
                self._file.seek(0)
                self._tail = b""
                rotated = True
        if rotated:
            self.rotations += 1
        if self._file is not None:
            data += self._read_raw()
        if self._partial_bytes:
            data, self._partial_bytes = self._partial_bytes + data, b""
        if not data:
            return [], rotated
        text = self._partial + self._decoder.decode(data)
        lines = text.split("\n")
        self._partial = lines.pop()
        return [line.rstrip("\r") for line in lines], rotated

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def stream_log(
    path_fn: Callable[[], str | None],
    backlog: int = 0,
    *,
    heartbeat: float = 15.0,
    stop: threading.Event | None = None,
) -> Iterator[bytes]:
    """SSE bytes: the last `backlog` lines (event `lines`), then each batch of new lines.

    A rotation sends an event `rotated`. A comment line goes out every `heartbeat` s.
    """
    stop = stop or threading.Event()
    follower = LogFollower(path_fn)
    try:
        first = follower.start_at_end(backlog)
        yield b"retry: 2000\n\n"
        if first:
            yield sse("lines", dumps({"lines": first}))
        else:
            yield comment("following")
        last_sent = time.monotonic()
        while not stop.wait(POLL_INTERVAL):
            lines, rotated = follower.poll()
            out = []
            if rotated:
                out.append(sse("rotated", dumps({"rotations": follower.rotations})))
            for i in range(0, len(lines), MAX_BATCH):
                out.append(sse("lines", dumps({"lines": lines[i : i + MAX_BATCH]})))
            if out:
                yield b"".join(out)
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent >= heartbeat:
                yield comment("heartbeat")
                last_sent = time.monotonic()
    finally:
        follower.close()


__all__ = ["LogFollower", "stream_log"]
