"""A Flask app with a login that mounts procsync: "viewer" may look, "operator" may act.

Run it (from the repository root):

    python examples/flask_admin/app.py              # http://127.0.0.1:5000/
    flask --app examples/flask_admin/app.py run     # the same, through Flask's command

Log in as viewer / viewer or operator / operator, then open /procsync/.
Under gunicorn, one worker with threads (the page keeps two streams open):

    FLASK_SECRET_KEY=change-me gunicorn -k gthread -w 1 --threads 16 \
        --chdir examples/flask_admin 'app:create_app()'

The state file and the servers' logs go to the app's instance folder
(examples/flask_admin/instance/) unless STATE_FILE and LOG_DIR say otherwise.
"""

from __future__ import annotations

import atexit
import logging
import secrets
import sys
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, redirect, render_template_string, request, session, url_for
from werkzeug.security import check_password_hash, generate_password_hash

from procsync import ServerOrchestrator
from procsync.flask_ext import ProcSync

log = logging.getLogger(__name__)

# In a real app the users live in your database. Here each password is the user name.
USERS = {
    "viewer": {"password": generate_password_hash("viewer"), "may": {"view"}},
    "operator": {"password": generate_password_hash("operator"), "may": {"view", "control"}},
}

DEFAULT_CONFIG: dict[str, Any] = {
    "SESSION_COOKIE_SAMESITE": "Lax",
    "STATE_FILE": None,  # None: <instance folder>/process-state.json
    "LOG_DIR": None,  # None: <instance folder>/logs
    "SERVERS": {  # id -> the keys of a [servers.<id>] table of procsync.toml
        "web": {
            "command": [sys.executable, "-m", "http.server", "8050", "--bind", "127.0.0.1"],
            "ports": [8050],
        },
    },
}


def current_user() -> dict[str, Any] | None:
    """The user named by this request's session cookie, or None."""
    return USERS.get(session.get("user", ""))


def procsync_auth(action: str) -> bool:
    """procsync asks this on every API request: action is "view" (GET) or "control" (POST)."""
    user = current_user()
    return user is not None and action in user["may"]


procsync_ext = ProcSync(auth=procsync_auth)
pages = Blueprint("pages", __name__)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(DEFAULT_CONFIG)
    app.config.from_prefixed_env()  # FLASK_SECRET_KEY=... sets SECRET_KEY
    app.config.update(config or {})
    if not app.config.get("SECRET_KEY"):
        log.warning("no SECRET_KEY: using a random one, so logins end with this process")
        app.config["SECRET_KEY"] = secrets.token_hex(32)

    orchestrator = create_orchestrator(app)
    atexit.register(orchestrator.shutdown)  # servers keep running; the next start adopts them
    procsync_ext.init_app(app, orchestrator)  # dashboard at /procsync/, API at /procsync/api
    app.register_blueprint(pages)
    return app


def create_orchestrator(app: Flask) -> ServerOrchestrator:
    """An initialized orchestrator for the servers of ``app.config["SERVERS"]``."""
    instance = Path(app.instance_path)
    state_file = Path(app.config["STATE_FILE"] or instance / "process-state.json")
    log_dir = Path(app.config["LOG_DIR"] or instance / "logs")
    state_file.parent.mkdir(parents=True, exist_ok=True)
    orchestrator = ServerOrchestrator(state_file, log_dir=log_dir)
    orchestrator.register_servers(app.config["SERVERS"])
    orchestrator.initialize()  # adopts what an earlier run left running
    return orchestrator


LOGIN_PAGE = """<!doctype html>
<title>Log in</title>
<form method="post">
  <p>{{ error }}</p>
  <label>User <input name="username" autofocus></label>
  <label>Password <input name="password" type="password"></label>
  <button>Log in</button>
</form>
"""

HOME_PAGE = """<!doctype html>
<title>Admin</title>
<p>Logged in as {{ name }} (may {{ may|sort|join(" and ") }}).</p>
<p><a href="{{ url_for('procsync.index') }}">Servers</a></p>
<form method="post" action="{{ url_for('pages.logout') }}"><button>Log out</button></form>
"""


@pages.before_app_request
def dashboard_needs_login():
    """Send anonymous visitors of procsync's page to the login form (the API answers 403)."""
    if request.endpoint == "procsync.index" and current_user() is None:
        return redirect(url_for("pages.login", next=request.path))
    return None


@pages.get("/")
def home():
    if current_user() is None:
        return redirect(url_for("pages.login"))
    return render_template_string(HOME_PAGE, name=session["user"], may=current_user()["may"])


@pages.route("/login", methods=["GET", "POST"])
def login():
    error = ""
    if request.method == "POST":
        name = request.form.get("username", "")
        password = request.form.get("password", "")
        user = USERS.get(name)
        if user is not None and check_password_hash(user["password"], password):
            session.clear()
            session["user"] = name
            return redirect(local_path(request.args.get("next", "")))
        error = "Wrong user name or password."
    return render_template_string(LOGIN_PAGE, error=error), 401 if error else 200


def local_path(target: str) -> str:
    """`target` if it is a path on this site, else "/" (no redirect to another site)."""
    if target.startswith("/") and "//" not in target and "\\" not in target:
        return target
    return "/"


@pages.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("pages.login"))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    create_app().run(port=5000, threaded=True)
