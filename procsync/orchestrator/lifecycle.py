"""The server lifecycle: one table of (state, event) -> (new state, effects), and the record it moves.

`step(state, event)` is a pure function over `TABLE`. `advance(server,
event)` is the only code that assigns a server's status: it looks the pair
up, refuses (and logs) an event the table does not allow in that state,
and applies the bookkeeping effects the table names. What a transition
means outside the record (spawning, signals, store writes) stays with the
part that asked for it.

The docs' state table is generated from `TABLE` (`markdown_table()`), and a
test checks the docs against it. A new state (for example "completed" for a
job that ran to its end, or "skipped" for a server whose dependency failed)
is a new row in STATES and new entries in TABLE.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime

from ..config import ServerConfig

log = logging.getLogger("procsync.orchestrator")

# states
STOPPED, STARTING, RUNNING, STOPPING = "stopped", "starting", "running", "stopping"
BACKOFF, EXITED, CRASHED, FATAL = "backoff", "exited", "crashed", "fatal"
WAITING, COMPLETED, SKIPPED = "waiting", "completed", "skipped"
STATES: tuple[str, ...] = (STOPPED, WAITING, STARTING, RUNNING, STOPPING, BACKOFF, EXITED, CRASHED,
                           FATAL, COMPLETED, SKIPPED)
ACTIVE = (STARTING, RUNNING, STOPPING)  # a process of ours exists
LIVE_RECORD = (*ACTIVE, BACKOFF)  # a record the owner (or the leader) still acts on
PENDING = (WAITING, BACKOFF)  # no process, but a start is pending (a stop cancels it)
IDLE = (STOPPED, EXITED, CRASHED, FATAL, COMPLETED, SKIPPED)  # no process and nothing pending

# effects: the bookkeeping a transition does to the record
NEW_GENERATION = "new_generation"  # a new generation: older readiness waits and jobs lapse
CLEAR_PROCESS = "clear_process"  # no live process: pid, readiness and verdict cleared
RESET_RESTARTS = "reset_restarts"  # the consecutive restart count starts again at 0
CLEAR_MESSAGE = "clear_message"  # the last message no longer applies
REMEMBER = "remember"  # keep the state left, to go back to it (PREVIOUS)

PREVIOUS = "<previous>"  # in TABLE: back to the state before the start or the stop


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """Where `event` leads from one state, what it does, and why it exists."""

    to: str
    effects: tuple[str, ...]
    doc: str


def _rules() -> dict[tuple[str, str], Rule]:
    table: dict[tuple[str, str], Rule] = {}

    def allow(event: str, sources: tuple[str, ...], to: str, effects: tuple[str, ...], doc: str) -> None:
        for source in sources:
            table[(source, event)] = Rule(to, effects, doc)

    allow("start", (*IDLE, BACKOFF), STARTING, (REMEMBER, NEW_GENERATION, CLEAR_PROCESS),
          "a start by request, or a due automatic restart")
    allow("wait", (*IDLE, BACKOFF), WAITING, (REMEMBER, NEW_GENERATION, CLEAR_PROCESS),
          "a start whose dependencies are not met yet")
    allow("deps_met", (WAITING,), STARTING, (), "every dependency met its condition")
    allow("skip", (WAITING,), SKIPPED, (NEW_GENERATION,),
          "a dependency can no longer meet its condition")
    allow("cancel_wait", (WAITING,), STOPPED, (NEW_GENERATION, RESET_RESTARTS, CLEAR_MESSAGE),
          "a stop while it waits for its dependencies")
    allow("ready", (STARTING,), RUNNING, (), "its ports answer or its health check passes")
    allow("not_ready", (STARTING,), RUNNING, (),
          "start_timeout passed: left running, reported unhealthy")
    allow("start_refused", (STARTING,), PREVIOUS, (),
          "nothing was spawned (port taken, bad config, cancelled): back to where it was")
    allow("start_raised", (STARTING,), CRASHED, (NEW_GENERATION, CLEAR_PROCESS),
          "the start failed unexpectedly; what it spawned is stopped")
    allow("stop", (STARTING, RUNNING), STOPPING, (REMEMBER, NEW_GENERATION),
          "a stop or restart by request")
    allow("stop_failed", (STOPPING,), PREVIOUS, (), "the process outlived every signal")
    allow("stopped", (STOPPING,), STOPPED, (CLEAR_PROCESS, RESET_RESTARTS, CLEAR_MESSAGE),
          "the stopped process and its leftovers are gone")
    allow("cancel_restart", (BACKOFF,), STOPPED,
          (NEW_GENERATION, CLEAR_PROCESS, RESET_RESTARTS, CLEAR_MESSAGE),
          "a stop while an automatic restart is pending")
    # an unrequested exit (or a start that could not spawn, restarting automatically),
    # after the restart policy decided
    for event, to, doc in (("restart_due", BACKOFF, "the policy restarts it (after a backoff)"),
                           ("gave_up", FATAL, "max_restarts consecutive restarts failed"),
                           ("exited_ok", EXITED, "a success code, and the policy does not restart"),
                           ("job_done", COMPLETED, "a job ended with a success code"),
                           ("died", CRASHED, "a failure, and the policy does not restart")):
        allow(event, (STARTING, RUNNING), to, (NEW_GENERATION, CLEAR_PROCESS),
              f"unrequested exit: {doc}")
    allow("adopt", STATES, RUNNING, (NEW_GENERATION, CLEAR_MESSAGE),
          "a live process proven to be the server's is adopted")
    allow("ended_unseen", STATES, CRASHED, (NEW_GENERATION, CLEAR_PROCESS),
          "its recorded process ended while procsync was not watching")
    for state in STATES:  # another instance's record, or a stored record at recovery
        allow(f"observed_{state}", STATES, state, (NEW_GENERATION,),
              f"the store says {state!r} (another instance acted, or at recovery)")
    return table


TABLE: dict[tuple[str, str], Rule] = _rules()
EVENTS: tuple[str, ...] = tuple(dict.fromkeys(event for _, event in TABLE))


class IllegalTransition(ValueError):
    """An event the lifecycle does not allow in the current state."""

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"event {event!r} is not allowed in state {state!r}")
        self.state = state
        self.event = event


def step(state: str, event: str, previous: str = STOPPED) -> tuple[str, tuple[str, ...]]:
    """(new state, effects) for `event` in `state`; `previous` is where PREVIOUS leads.

    Raises IllegalTransition for a pair the table does not allow.
    """
    rule = TABLE.get((state, event))
    if rule is None:
        raise IllegalTransition(state, event)
    return (previous if rule.to == PREVIOUS else rule.to), rule.effects


def observed(status: str) -> str:
    """The event that takes a server to `status` as a store record shows it."""
    if status not in STATES:
        raise IllegalTransition("?", f"observed_{status}")
    return f"observed_{status}"


@dataclasses.dataclass(eq=False)
class ServerState:
    """The orchestrator's mutable record of one registered server (never handed out).

    Guarded by the orchestrator's registry lock. `status` changes only
    through `advance`.
    """

    id: str
    config: ServerConfig
    status: str = STOPPED
    previous: str = STOPPED  # the state before the current start or stop
    pid: int | None = None  # the live process, if any
    last_pid: int | None = None
    pgid: int | None = None
    create_time: float | None = None
    started_at: datetime | None = None
    restarts: int = 0  # consecutive automatic restarts
    last_exit_code: int | None = None
    last_failure: str | None = None  # why the last unrequested exit happened
    message: str | None = None
    generation: int = 0  # bumped by every start, stop and decided exit
    ready: bool = False
    verdict: str | None = None  # our own health verdict ("healthy"/"unhealthy") ...
    verdict_at: datetime | None = None  # ... and when it was reached
    kill_reason: str | None = None  # set when we kill it for failing health checks
    log_file: str | None = None
    ended: dict[int, int | None] = dataclasses.field(default_factory=dict)  # generation -> exit code
    restart_gen: int | None = None  # the generation a scheduled automatic restart is for
    owner: str | None = None  # the instance (InstanceId.token) whose process this is
    # this run (since the last start): what dependency conditions ask about
    run_spawned: bool = False  # its process was spawned (or adopted)
    run_ready: bool = False  # it became ready
    log_seen: bool = False  # its ready_log_line appeared


def advance(server: ServerState, event: str) -> bool:
    """Apply `event` to `server` (under the registry lock); False (and a log line) if refused."""
    try:
        to, effects = step(server.status, event, server.previous)
    except IllegalTransition as err:
        log.warning("server %r: %s; ignored", server.id, err)
        return False
    if REMEMBER in effects:
        # a start that fails before spawning goes back to this (a cancelled backoff has ended)
        server.previous = CRASHED if server.status == BACKOFF else server.status
        if to in (STARTING, WAITING):  # a new run
            server.run_spawned = server.run_ready = server.log_seen = False
    if NEW_GENERATION in effects:
        server.generation += 1
        server.restart_gen = None
    if CLEAR_PROCESS in effects:
        server.pid = None
        server.ready = False
        server.verdict = server.verdict_at = None
    if RESET_RESTARTS in effects:
        server.restarts = 0
    if CLEAR_MESSAGE in effects:
        server.message = None
    if log.isEnabledFor(logging.DEBUG):
        log.debug("server %r: %s -> %s on %s", server.id, server.status, to, event)
    server.status = to
    return True


def markdown_table() -> str:
    """The lifecycle as a Markdown table, one row per event (the docs embed it)."""
    rows = ["| event | from | to | effects | when |", "|---|---|---|---|---|"]
    by_event: dict[str, list[str]] = {}
    for (state, event) in TABLE:
        by_event.setdefault(event, []).append(state)
    for event, sources in by_event.items():
        rule = TABLE[(sources[0], event)]
        if event.startswith("observed_"):
            continue
        src = "any" if set(sources) == set(STATES) else ", ".join(sources)
        to = "the state before" if rule.to == PREVIOUS else rule.to
        effects = ", ".join(rule.effects) or "-"
        rows.append(f"| `{event}` | {src} | {to} | {effects} | {rule.doc} |")
    rows.append(f"| `observed_<state>` | any | that state | {NEW_GENERATION} | "
                "the store says so (another instance acted, or at recovery) |")
    return "\n".join(rows)





def mermaid() -> str:
    """The lifecycle as a Mermaid state diagram (the docs embed it).

    Events allowed in every state (`adopt`, `ended_unseen`, `observed_<state>`)
    and the ones that go back to the state before (PREVIOUS) are in the table only.
    """
    lines = ["stateDiagram-v2", f"    [*] --> {STOPPED}"]
    for (state, event), rule in TABLE.items():
        if rule.to == PREVIOUS or event in ("adopt", "ended_unseen") or event.startswith("observed_"):
            continue
        lines.append(f"    {state} --> {rule.to}: {event}")
    return "\n".join(lines)


DOCS_START = "<!-- lifecycle: generated from procsync/orchestrator/lifecycle.py -->"
DOCS_END = "<!-- lifecycle: end -->"


def docs_section() -> str:
    """The generated part of docs/orchestrator.md: the diagram and the table."""
    return "\n".join([DOCS_START, "", "```mermaid", mermaid(), "```", "", markdown_table(), "",
                      DOCS_END])


def main(argv: list[str] | None = None) -> int:
    """Print the generated section, or (given PATH) rewrite PATH's generated section in place.

    ``python -c "from procsync.orchestrator.lifecycle import main; main(['docs/orchestrator.md'])"``
    """
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(docs_section())
        return 0
    path = args[0]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start, end = text.find(DOCS_START), text.find(DOCS_END)
    if start < 0 or end < 0:
        print(f"{path}: no section between {DOCS_START!r} and {DOCS_END!r}", file=sys.stderr)
        return 1
    with open(path, "w", encoding="utf-8") as f:
        f.write(text[:start] + docs_section() + text[end + len(DOCS_END):])
    return 0


__all__ = [
    "ACTIVE",
    "COMPLETED",
    "PENDING",
    "SKIPPED",
    "WAITING",
    "mermaid",
    "EVENTS",
    "IDLE",
    "LIVE_RECORD",
    "PREVIOUS",
    "STATES",
    "TABLE",
    "IllegalTransition",
    "Rule",
    "ServerState",
    "advance",
    "docs_section",
    "main",
    "markdown_table",
    "observed",
    "step",
]
