"""Flask extension: a JSON admin API, live events and a dashboard page for procsync.

    from procsync.flask_ext import ProcSync
    ProcSync(app, orchestrator)            # or ProcSync().init_app(app, orchestrator)

Modules: `extension` (ProcSync, init_app), `blueprint` (create_blueprint: the
routes, the request guard, JSON errors), `views` (one function per route),
`state` (what lives in ``app.extensions``), `guard` (request checks),
`events` (signals to SSE, one hub per orchestrator), `logstream` (a log
followed as SSE), `openapi` (the API's OpenAPI document).
"""

from __future__ import annotations

from .blueprint import create_blueprint
from .extension import ProcSync

__all__ = ["ProcSync", "create_blueprint"]
