"""Starting one child process with a clean slate, through the C library's posix_spawn().

A process keeps, across exec, the ignored signals and the signal mask of
the thread that started it. A host started with SIGINT ignored (a job
started with ``&`` from a script, nohup for SIGHUP, many service managers)
would otherwise give servers that ignore SIGINT too. `spawn` starts the
child with every signal at its default disposition and an empty signal
mask, in a new session (``setsid``), in `cwd`, with stdin from /dev/null,
stdout and stderr on `output`, and no other descriptor of the parent.

Python's ``os.posix_spawn`` has no action to change the working directory
or to close the other descriptors, and ``subprocess.Popen`` resets only
SIGPIPE and SIGXFSZ (anything more needs ``preexec_fn``: Python code between
fork and exec, unsafe with threads). So this module calls the C library's
``posix_spawn`` through ctypes, with ``posix_spawn_file_actions_addchdir_np``
and ``posix_spawn_file_actions_addclosefrom_np`` (glibc 2.34 and later).
Everything between the fork and the exec runs in C; a failed exec, a
missing program or directory comes back as an OSError, as from Popen.
Where the C library lacks those two functions, `spawn` falls back to
``subprocess.Popen`` (the child then inherits ignored signals and the mask)
and logs a warning once.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from .locks import ordered_lock

log = logging.getLogger(__name__)

# <spawn.h> (glibc)
POSIX_SPAWN_SETSIGDEF = 0x04
POSIX_SPAWN_SETSIGMASK = 0x08
POSIX_SPAWN_SETSID = 0x80

_OPAQUE_WORDS = 128  # 1 KiB for posix_spawnattr_t (336 bytes in glibc) and file actions (80)
_FS_ENCODING = sys.getfilesystemencoding()
_SIGSET_BYTES = 128  # sigset_t in glibc: unsigned longs, bit N-1 for signal N


def _sigset(signals: range) -> ctypes.Array[ctypes.c_ulong]:
    """A sigset_t holding `signals`.

    Built by hand rather than with sigfillset(), which leaves out the C
    library's own two signals (32 and 33 in glibc): posix_spawn would then
    start the child with those two ignored instead of at their default.
    """
    bits = ctypes.sizeof(ctypes.c_ulong) * 8
    words = (ctypes.c_ulong * (_SIGSET_BYTES // ctypes.sizeof(ctypes.c_ulong)))()
    for sig in signals:
        words[(sig - 1) // bits] |= 1 << ((sig - 1) % bits)
    return words


class Child(Protocol):
    """What the manager uses of a started child (subprocess.Popen has it too)."""

    pid: int
    returncode: int | None  # None while it runs; -N for a death by signal N

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class SpawnedChild:
    """A child started by `spawn`: its pid, and its exit status once reaped (waitpid on its pid only)."""

    def __init__(self, pid: int, args: Sequence[str]) -> None:
        self.pid = pid
        self.args = list(args)
        self.returncode: int | None = None
        self._reaping = ordered_lock("spawn.child")  # one waitpid at a time

    def poll(self) -> int | None:
        """The exit code if it has ended (reaping it), else None. Never blocks."""
        if self.returncode is None and self._reaping.acquire(blocking=False):
            try:
                if self.returncode is None:
                    self._reap()
            finally:
                self._reaping.release()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait until it ends; subprocess.TimeoutExpired after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005
        while (code := self.poll()) is None:
            delay = min(delay * 2, 0.05)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
                delay = min(delay, left)
            time.sleep(delay)
        return code

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            # someone else reaped it (SIGCHLD ignored by the host, or a waitpid(-1)): the
            # code is lost; 0, as subprocess says in this case
            self.returncode = 0
            return
        if pid == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)

    def __repr__(self) -> str:
        return f"<SpawnedChild pid={self.pid} returncode={self.returncode}>"


class WorkingDirectoryError(OSError):
    """The child could not change to its working directory (`filename`)."""


class _Libc:
    """The C library's posix_spawn, its file actions, and the attributes every spawn shares."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(None, use_errno=True)
        p, c, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        argtypes: dict[str, list[Any]] = {  # every function used, with its parameters
            "posix_spawn": [ctypes.POINTER(ctypes.c_int), c, p, p, p, p],
            "posix_spawnattr_init": [p], "posix_spawnattr_setflags": [p, ctypes.c_short],
            "posix_spawnattr_setsigdefault": [p, p], "posix_spawnattr_setsigmask": [p, p],
            "posix_spawn_file_actions_init": [p], "posix_spawn_file_actions_destroy": [p],
            "posix_spawn_file_actions_adddup2": [p, i, i],
            "posix_spawn_file_actions_addopen": [p, i, c, i, ctypes.c_uint],
            "posix_spawn_file_actions_addchdir_np": [p, c],
            "posix_spawn_file_actions_addclosefrom_np": [p, i],
        }
        self.fn: dict[str, Any] = {}
        for name, types in argtypes.items():
            fn = getattr(lib, name)  # AttributeError: this C library lacks it
            fn.argtypes = types
            fn.restype = ctypes.c_int
            self.fn[name] = fn
        # made once and only read by posix_spawn: a new session, every signal at its default
        # disposition, an empty mask
        self.attr = (ctypes.c_uint64 * _OPAQUE_WORDS)()
        self.call("posix_spawnattr_init", self.attr)
        self.call("posix_spawnattr_setsigdefault", self.attr, _sigset(range(1, signal.NSIG)))
        self.call("posix_spawnattr_setsigmask", self.attr, _sigset(range(0)))
        self.call("posix_spawnattr_setflags", self.attr,
                  POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)

    def call(self, name: str, *args: Any) -> None:
        result = self.fn[name](*args)
        if result != 0:
            raise OSError(result, f"{name}: {os.strerror(result)}")


_libc: _Libc | None = None
_checked = False


def _load() -> _Libc | None:
    """The C library's functions, or None when it lacks one (looked up once)."""
    global _libc, _checked
    if not _checked:
        try:
            _libc = _Libc()
        except (AttributeError, OSError) as err:
            log.warning("the C library has no posix_spawn_file_actions_addchdir_np or "
                        "addclosefrom_np (%s): children are started with subprocess and inherit "
                        "the signals this process ignores and blocks", err)
            _libc = None
        _checked = True
    return _libc


def available() -> bool:
    """Whether children start through posix_spawn (default signals, empty mask)."""
    return _load() is not None


def _encoded(text: str, what: str) -> bytes:
    if "\0" in text:
        raise ValueError(f"{what} contains a NUL byte")
    return text.encode(_FS_ENCODING, "surrogateescape")  # as os.fsencode()


def _environment(env: Mapping[str, str]) -> list[bytes]:
    entries = []
    for key, value in env.items():
        if not key or "=" in key:
            raise ValueError(f"illegal environment variable name {key!r}")
        entries.append(_encoded(f"{key}={value}", f"environment variable {key!r}"))
    return entries


def _candidates(program: str, env: Mapping[str, str], cwd: str | None) -> Iterator[str]:
    """The paths to try for `program`, in turn: itself when it has a slash, else each PATH entry's.

    As subprocess does: PATH is the child's, and relative paths are relative
    to `cwd`. Paths that do not exist are skipped (they would fail with ENOENT);
    a generator, so the entries after the one that runs are never looked at.
    """
    if "/" in program:
        yield program
        return
    for folder in os.get_exec_path(dict(env)):
        path = os.path.join(folder, program)
        if os.path.exists(os.path.join(cwd, path) if cwd else path):
            yield path


def spawn(argv: Sequence[str], *, env: Mapping[str, str], cwd: str | None, output: int) -> Child:
    """Start `argv` in a new session, with default signals and an empty mask; the started child.

    stdin is /dev/null, stdout and stderr go to the descriptor `output` (the
    caller keeps and closes it), nothing else of this process is inherited.
    A program without a slash is looked up in the PATH of `env`. Raises
    FileNotFoundError, PermissionError or OSError (ENOEXEC...) with the
    program as `filename` when it cannot be run, WorkingDirectoryError
    when `cwd` cannot be entered, ValueError for a NUL byte or a bad
    variable name.
    """
    if not argv:
        raise ValueError("empty command")
    libc = _load()
    if libc is None:
        return subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
        )
    args = [_encoded(a, "an argument") for a in argv]
    envp = _environment(env)
    c_argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
    c_envp = (ctypes.c_char_p * (len(envp) + 1))(*envp, None)
    actions = (ctypes.c_uint64 * _OPAQUE_WORDS)()
    libc.call("posix_spawn_file_actions_init", actions)
    try:
        # in this order, so that `output` may itself be 0, 1 or 2 (a host with closed std streams)
        libc.call("posix_spawn_file_actions_adddup2", actions, output, 1)
        libc.call("posix_spawn_file_actions_adddup2", actions, output, 2)
        libc.call("posix_spawn_file_actions_addopen", actions, 0, b"/dev/null", os.O_RDONLY, 0)
        if cwd is not None:
            libc.call("posix_spawn_file_actions_addchdir_np", actions,
                      _encoded(cwd, "the working directory"))
        libc.call("posix_spawn_file_actions_addclosefrom_np", actions, 3)
        return _run(libc, argv, env, cwd, actions, c_argv, c_envp)
    finally:
        libc.fn["posix_spawn_file_actions_destroy"](actions)


def _run(libc: _Libc, argv: Sequence[str], env: Mapping[str, str], cwd: str | None,
         actions: Any, c_argv: Any, c_envp: Any) -> Child:
    """posix_spawn each candidate path of the program in turn, as execvpe() would."""
    pid = ctypes.c_int(0)
    program = argv[0]
    first_error = 0
    posix_spawn = libc.fn["posix_spawn"]
    for path in _candidates(program, env, cwd):
        result = posix_spawn(ctypes.byref(pid), os.fsencode(path), actions, libc.attr, c_argv, c_envp)
        if result == 0:
            return SpawnedChild(pid.value, argv)
        if cwd is not None and not (os.path.isdir(cwd) and os.access(cwd, os.X_OK)):
            raise WorkingDirectoryError(result, os.strerror(result), cwd)
        if result not in (errno.ENOENT, errno.ENOTDIR) and not first_error:
            first_error = result  # as execvp: the first other error, else "not found"
    code = first_error or errno.ENOENT
    if code == errno.ENOENT and cwd is not None and not os.path.isdir(cwd):
        raise WorkingDirectoryError(code, os.strerror(code), cwd)
    raise OSError(code, os.strerror(code), program)  # FileNotFoundError, PermissionError...


__all__ = ["Child", "SpawnedChild", "WorkingDirectoryError", "available", "spawn"]
