"""The server lifecycle: every (state, event) pair against a table written out here, and its docs."""

from __future__ import annotations

import ast
import logging
import pathlib

import pytest

from procsync import ServerConfig
from procsync.orchestrator import lifecycle
from procsync.orchestrator.lifecycle import (
    EVENTS,
    STATES,
    IllegalTransition,
    ServerState,
    advance,
    step,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
ANY = STATES
IDLE = ("stopped", "exited", "crashed", "fatal", "completed", "skipped")
UP = ("starting", "running")
BACK = "<back>"  # to the state before the start or the stop

# The lifecycle as the docs promise it: event -> (from which states, to which state).
EXPECTED: dict[str, tuple[tuple[str, ...], str]] = {
    "start": ((*IDLE, "backoff"), "starting"),
    "wait": ((*IDLE, "backoff"), "waiting"),
    "deps_met": (("waiting",), "starting"),
    "skip": (("waiting",), "skipped"),
    "cancel_wait": (("waiting",), "stopped"),
    "job_done": (UP, "completed"),
    "ready": (("starting",), "running"),
    "not_ready": (("starting",), "running"),
    "start_refused": (("starting",), BACK),
    "start_raised": (("starting",), "crashed"),
    "stop": (UP, "stopping"),
    "stop_failed": (("stopping",), BACK),
    "stopped": (("stopping",), "stopped"),
    "cancel_restart": (("backoff",), "stopped"),
    "restart_due": (UP, "backoff"),
    "gave_up": (UP, "fatal"),
    "exited_ok": (UP, "exited"),
    "died": (UP, "crashed"),
    "adopt": (ANY, "running"),
    "ended_unseen": (ANY, "crashed"),
    **{f"observed_{s}": (ANY, s) for s in STATES},
}


def test_the_events_are_the_documented_ones():
    assert set(EVENTS) == set(EXPECTED)
    assert STATES == ("stopped", "waiting", "starting", "running", "stopping", "backoff", "exited",
                      "crashed", "fatal", "completed", "skipped")


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("event", sorted(EXPECTED))
def test_every_state_and_event(state, event):
    sources, to = EXPECTED[event]
    if state not in sources:
        with pytest.raises(IllegalTransition, match=f"{event!r} is not allowed in state {state!r}"):
            step(state, event)
        return
    new, effects = step(state, event, previous="fatal")
    assert new == ("fatal" if to == BACK else to)
    assert isinstance(effects, tuple)


def test_an_illegal_event_is_refused_logged_and_not_applied(caplog):
    server = ServerState("web", ServerConfig(command="x"), status="stopped", generation=4, pid=None)
    with caplog.at_level(logging.WARNING, logger="procsync.orchestrator"):
        assert advance(server, "ready") is False
    assert (server.status, server.generation) == ("stopped", 4)
    assert "'ready' is not allowed in state 'stopped'" in caplog.text


def test_effects_are_applied_with_the_transition():
    server = ServerState("web", ServerConfig(command="x"), status="running", pid=42, ready=True,
                         restarts=3, generation=7, message="hello", verdict="healthy")
    assert advance(server, "stop")
    assert (server.status, server.previous, server.generation, server.pid) == ("stopping", "running", 8, 42)
    assert advance(server, "stop_failed")  # back to where it was
    assert server.status == "running"
    assert advance(server, "stop") and advance(server, "stopped")
    assert (server.status, server.pid, server.ready, server.restarts, server.message,
            server.verdict) == ("stopped", None, False, 0, None, None)


def test_a_start_from_backoff_goes_back_to_crashed_when_refused():
    server = ServerState("web", ServerConfig(command="x"), status="backoff", restarts=2)
    assert advance(server, "start")
    assert advance(server, "start_refused")
    assert server.status == "crashed"  # the cancelled backoff has ended
    assert server.restarts == 2


def test_status_is_assigned_in_the_lifecycle_module_only():
    """Every status change in the orchestrator and instances packages goes through advance()."""
    offenders = []
    for package in ("orchestrator", "instances"):
        for path in (ROOT / "procsync" / package).glob("*.py"):
            if path.name == "lifecycle.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                targets = []
                if isinstance(node, ast.Assign):
                    targets = node.targets
                elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                    targets = [node.target]
                for target in targets:
                    for t in (target.elts if isinstance(target, ast.Tuple) else [target]):
                        if isinstance(t, ast.Attribute) and t.attr == "status":
                            offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_the_docs_show_the_table_of_the_code():
    text = (ROOT / "docs" / "orchestrator.md").read_text()
    assert lifecycle.docs_section() in text, (
        "docs/orchestrator.md is out of date; run: python -c \"from procsync.orchestrator."
        "lifecycle import main; main(['docs/orchestrator.md'])\"")
