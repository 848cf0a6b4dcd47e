"""Where the extension keeps its state: in the app's ``extensions``, as Flask's extensions do.

- ``app.extensions["procsync"]`` is the app's `ServerOrchestrator`, as the
  docs promise (`ProcSync.init_app` puts it there; a blueprint made with an
  orchestrator sets it when the app has none).
- ``app.extensions["procsync.state"]`` is an `AppState`: one `Mount` per
  registration of a procsync blueprint, keyed by the blueprint's full name
  (``request.blueprint``: "procsync", "admin.procsync"...), with that mount's
  orchestrator and options. A second key, so the first keeps its promise and
  one app can mount two blueprints with their own tokens or orchestrators.

Views find everything through `current_mount()`, `current_orchestrator()` and
`current_hub()`; the SSE hub itself belongs to the orchestrator (see
`events.HubRegistry`), shared by every app that serves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import Flask, current_app, request

from .events import EventHub, hub_for
from .guard import ApiError, Options

if TYPE_CHECKING:
    from ..orchestrator import ServerOrchestrator

ORCHESTRATOR_KEY = "procsync"
STATE_KEY = "procsync.state"


@dataclass(frozen=True, slots=True)
class Mount:
    """One registration of a procsync blueprint: its orchestrator (None: the app's) and options."""

    orchestrator: ServerOrchestrator | None
    options: Options


@dataclass(slots=True)
class AppState:
    """procsync's state for one app: its mounted blueprints by full name."""

    mounts: dict[str, Mount] = field(default_factory=dict)


def app_state(app: Flask) -> AppState:
    """The AppState of `app`, made on first use."""
    state = app.extensions.get(STATE_KEY)
    if not isinstance(state, AppState):
        state = app.extensions[STATE_KEY] = AppState()
    return state


def current_mount() -> Mount:
    """The mount that the current request was routed to."""
    state = current_app.extensions.get(STATE_KEY)
    mount = state.mounts.get(request.blueprint or "") if isinstance(state, AppState) else None
    if mount is None:
        raise ApiError(500, "not_configured",
                       f"blueprint {request.blueprint!r} is not a mounted procsync blueprint")
    return mount


def current_orchestrator() -> ServerOrchestrator:
    """The orchestrator of the current request's mount, else the app's."""
    orchestrator = current_mount().orchestrator
    if orchestrator is None:
        orchestrator = current_app.extensions.get(ORCHESTRATOR_KEY)
    if orchestrator is None:
        raise ApiError(500, "not_configured", "no orchestrator: call ProcSync.init_app first")
    return orchestrator


def current_hub() -> EventHub:
    """The event hub of the current request's orchestrator."""
    return hub_for(current_orchestrator())


__all__ = ["ORCHESTRATOR_KEY", "STATE_KEY", "AppState", "Mount", "app_state", "current_hub",
           "current_mount", "current_orchestrator"]
