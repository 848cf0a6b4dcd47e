"""Flask extension: a JSON admin API, live events and a dashboard page for procsync.

    from procsync.flask_ext import ProcSync
    ProcSync(app, orchestrator)            # or ProcSync().init_app(app, orchestrator)
"""

from __future__ import annotations

from .extension import ProcSync
from .views import create_blueprint

__all__ = ["ProcSync", "create_blueprint"]
