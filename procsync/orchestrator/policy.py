"""The auto-restart policy: whether, when and how often a server that ended is started again.

Pure logic, no processes and no threads, so the orchestrator's state
machine is easy to test:

- policy "no" never restarts, "on-failure" restarts after a non-zero (or
  unknown) exit code or a death by signal, "always" after any exit that
  nobody asked for;
- the k-th consecutive restart waits 0 s for k = 1, then
  ``min(backoff_initial * 2 ** (k - 2), backoff_max)``;
- ``max_restarts = N`` allows N consecutive restarts; the next unrequested
  exit is fatal;
- a process that stayed up ``stable_after`` seconds resets the count.
"""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass

from ..config import ServerConfig

NONE, RESTART, FATAL = "none", "restart", "fatal"


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Seconds to wait before the `attempt`-th consecutive restart (1-based)."""
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, not {attempt!r}")
    if attempt == 1:
        return 0.0
    try:
        delay = initial * 2 ** (attempt - 2)
    except OverflowError:
        return maximum
    return min(delay, maximum)


def wants_restart(policy: str, exit_code: int | None, success: tuple[int, ...] = (0,)) -> bool:
    """Whether `policy` restarts a process that ended on its own with `exit_code`."""
    if policy == "always":
        return True
    if policy == "on-failure":
        return exit_code not in success
    return False


def describe_exit(exit_code: int | None, success: tuple[int, ...] = (0,)) -> str:
    """An exit as plain words: "exited with code 0", "crashed with exit code 3", "was killed by SIGKILL".

    A code in `success` (the server's success_exit_codes) "exited".
    """
    if exit_code is None:
        return "ended (exit code unknown)"
    if exit_code in success:
        return f"exited with code {exit_code}"
    if exit_code < 0:
        try:
            name = _signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"was killed by {name}"
    return f"crashed with exit code {exit_code}"


def exit_event(exit_code: int | None, success: tuple[int, ...] = (0,)) -> str:
    """The history event for an unrequested exit: "exited" for a success code, else "crashed"."""
    return "exited" if exit_code in success else "crashed"


@dataclass(frozen=True, slots=True)
class RestartDecision:
    """What to do after an unrequested exit."""

    action: str  # "none" | "restart" | "fatal"
    restarts: int  # the consecutive restart count after this decision
    delay: float = 0.0  # seconds to wait before restarting (action "restart")
    status: str = "crashed"  # status to show now: backoff | fatal | exited | crashed | completed
    reason: str = ""  # what happened, e.g. "crashed with exit code 3"
    message: str = ""  # reason plus what happens next, for people


def decide(config: ServerConfig, restarts: int, exit_code: int | None, *,
           uptime: float | None = None, reason: str | None = None) -> RestartDecision:
    """Decide what follows an unrequested exit.

    `restarts` is the consecutive restart count so far; `uptime` how long
    the process ran (a run of `stable_after` seconds or more resets the
    count); `reason` overrides the description of the exit (e.g. "health
    check failed").
    """
    success = tuple(config.success_exit_codes)
    what = reason or describe_exit(exit_code, success)
    if uptime is not None and uptime >= config.stable_after:
        restarts = 0
    failed = reason is not None or exit_code not in success
    if config.kind == "job" and not failed:  # a job that finished: never restarted
        return RestartDecision(NONE, 0, status="completed", reason=what, message=what)
    if not wants_restart(config.autorestart, 1 if failed else 0, (0,)):
        status = "crashed" if failed else "exited"
        return RestartDecision(NONE, restarts, status=status, reason=what, message=what)
    if restarts >= config.max_restarts:
        times = restarts + 1
        last = "unknown" if exit_code is None else str(exit_code)
        verb = "failed" if reason else ("crashed" if failed else "exited")
        message = f"fatal: {verb} {times} time{'s' if times != 1 else ''} in a row, last exit code {last}"
        if reason:
            message += f" ({reason})"
        return RestartDecision(FATAL, restarts, status="fatal", reason=what, message=message)
    attempt = restarts + 1
    delay = backoff_delay(attempt, config.backoff_initial, config.backoff_max)
    message = f"{what}; restarting in {delay:.1f} s (attempt {attempt} of {config.max_restarts})"
    return RestartDecision(RESTART, attempt, delay=delay, status="backoff", reason=what, message=message)


__all__ = [
    "FATAL",
    "NONE",
    "RESTART",
    "RestartDecision",
    "backoff_delay",
    "decide",
    "describe_exit",
    "exit_event",
    "wants_restart",
]
