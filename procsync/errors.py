"""The exceptions procsync raises: one base class, one subclass per kind of failure."""

from __future__ import annotations

import os


class ProcSyncError(Exception):
    """Base of everything procsync raises."""


class ConfigError(ProcSyncError, ValueError):
    """A server's configuration is invalid; names the server id and the field."""

    def __init__(self, server_id: str, field: str, problem: str) -> None:
        super().__init__(f"server {server_id!r}: {field}: {problem}")
        self.server_id = server_id
        self.field = field
        self.problem = problem


class SpawnError(ProcSyncError, OSError):
    """A command could not be started (missing executable, bad cwd, permission)."""

    def __init__(self, process_id: str, problem: str) -> None:
        super().__init__(f"cannot start {process_id!r}: {problem}")
        self.id = process_id
        self.problem = problem


class DuplicateProcessError(ProcSyncError):
    """A process with this id is already running."""

    def __init__(self, process_id: str, pid: int | None = None) -> None:
        where = f" (pid {pid})" if pid else ""
        super().__init__(f"process {process_id!r} is already running{where}")
        self.id = process_id
        self.pid = pid


class ProcessNotFound(ProcSyncError, KeyError):
    """No process or server is known by this id."""

    def __init__(self, process_id: str, what: str = "process") -> None:
        super().__init__(process_id)
        self.id = process_id
        self.what = what

    def __str__(self) -> str:
        return f"unknown {self.what} {self.id!r}"


class IdentityMismatch(ProcSyncError):
    """A pid is alive but is not the process we recorded (its create_time differs)."""

    def __init__(self, process_id: str, pid: int, problem: str) -> None:
        super().__init__(f"{process_id!r}: pid {pid} {problem}")
        self.id = process_id
        self.pid = pid


class ProtectedProcessError(IdentityMismatch):
    """A pid procsync never adopts or signals: PID 1, its own process or one of its ancestors."""

    def __init__(self, process_id: str, pid: int, why: str) -> None:
        super().__init__(process_id, pid, f"is {why}; procsync never adopts or signals it")
        self.why = why


class StateStoreError(ProcSyncError):
    """The state store cannot be read or written at all (not bad content: that is moved aside)."""


class ForkedOrchestratorError(ProcSyncError, RuntimeError):
    """A ServerOrchestrator that had started was used in a process forked from its own."""

    def __init__(self, parent_pid: int) -> None:
        super().__init__(
            f"this ServerOrchestrator was started in process {parent_pid} and this process "
            f"({os.getpid()}) is a fork of it: its threads and locks did not survive the fork. "
            "Create (or at least initialize) the orchestrator after the fork: with gunicorn, "
            "run without --preload or create it in a post_fork / post_worker_init hook; "
            "with other pre-forking servers, in the worker's start-up hook."
        )
        self.parent_pid = parent_pid


__all__ = [
    "ConfigError",
    "DuplicateProcessError",
    "ForkedOrchestratorError",
    "IdentityMismatch",
    "ProcSyncError",
    "ProcessNotFound",
    "ProtectedProcessError",
    "SpawnError",
    "StateStoreError",
]
