"""The `procsync` commands: serve, talk to a running serve, check and export configs.

Each command is a plain click command; `main.py` puts them (`COMMANDS`) in
the `procsync` group. Exit codes: 0 done, 1 the action failed, 2 usage or
config error, 3 no server reachable.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

from ..config import HealthCheck, ServerConfig, SpawnConfig, formation_text
from ..errors import ConfigError, ProcSyncError
from ..redact import shown_command
from .client import ApiClient, ClientError, connect_host, error_text, server_path
from .common import (
    BadConfig,
    Failed,
    config_option,
    fmt_bytes,
    formation_option,
    load_or_fail,
    make_client,
    server_cells,
    table,
    url_option,
)
from .top import run_top, top

ACTION_TIMEOUT = 600.0  # start waits for readiness on the server side (start_timeout)
#: Refusals that leave the server in the asked-for state: success (exit 0), like systemctl.
IDEMPOTENT = {"start": ("already_running",), "stop": ("already_stopped",)}


def status_note(s: dict[str, Any]) -> str:
    """The NOTE cell: an orphan, the last problem (or why it waits, why it was skipped), a job."""
    if s.get("orphaned"):
        return f"port held by orphan pid {s.get('orphaned_pid')}"
    if s.get("message") and s.get("status") not in ("running", "stopped"):
        return str(s["message"]).splitlines()[0]
    if s.get("kind") == "job":
        code = s.get("last_exit_code")
        return "job" + (f", exit code {code}" if code is not None and not s.get("running") else "")
    idle = [p for p in s.get("ports") or [] if p not in (s.get("listening") or [])]
    if s.get("running") and idle and s.get("ports_required") is False:
        return f"not listening on {', '.join(map(str, idle))} (not required)"
    return ""


def status_table(servers: list[dict[str, Any]]) -> str:
    """The `procsync status` table; a GROUP column when any server has a group."""
    grouped = any(s.get("group") for s in servers)
    headers = ["ID", "STATUS", "PID", "HEALTH", "UPTIME", "PORTS", "RESTARTS", "CPU", "MEM", "NOTE"]
    if grouped:
        headers.insert(1, "GROUP")
    rows, colors = [], []
    for s in servers:
        cells = server_cells(s)
        cells["PORTS"] = (",".join(str(p) for p in s.get("ports") or []) or "-", None)
        cells["NOTE"] = (status_note(s), "red" if s.get("orphaned") else None)
        cells["GROUP"] = (str(s.get("group") or "-"), None)
        rows.append([cells[h][0] for h in headers])
        colors.append([cells[h][1] for h in headers])
    return table(headers, rows, colors)


# -- commands that talk to a running serve -------------------------------------------------

@click.command()
@config_option
@formation_option
@click.option("--host", help="Address to listen on (default: [procsync] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port to listen on (default: [procsync] port, 8420; 0 picks one).")
@click.option("--stop-on-exit", is_flag=True, help="Stop the servers when procsync serve exits.")
@click.option("--quiet", "-q", is_flag=True, help="Do not print server events.")
@click.option("--allow-remote-without-token", "allow_remote", is_flag=True,
              help="Listen on a non-loopback --host even though no auth token is set (insecure).")
def serve(config: str, formation: dict[str, int] | None, host: str | None, port: int | None,
          stop_on_exit: bool, quiet: bool, allow_remote: bool) -> None:
    """Run the servers and the dashboard.

    Starts the servers with autostart = true, serves the dashboard and the JSON API,
    and prints a line per start, stop, crash and restart. Ctrl-C or SIGTERM stops
    procsync (the servers keep running unless --stop-on-exit); SIGHUP reloads the config.
    The token is PROCSYNC_AUTH_TOKEN, else auth_token; without one, serve listens on
    loopback addresses only (unless --allow-remote-without-token).
    """
    from .serve import run_serve

    loaded = load_or_fail(config, formation)
    try:
        code = run_serve(loaded, host=host, port=port, stop_on_exit=stop_on_exit, quiet=quiet,
                         allow_remote_without_token=allow_remote)
    except ConfigError as err:
        raise BadConfig(str(err)) from None
    except ProcSyncError as err:
        raise Failed(str(err)) from None
    sys.exit(code)


@click.command()
@config_option
@url_option
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.option("--watch", is_flag=True, help="Keep a live table on screen (same as procsync top).")
@click.option("-n", "--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.1),
              metavar="SECONDS",
              help="With --watch: seconds between refreshes.")
@click.argument("ids", nargs=-1)
def status(config: str, url: str | None, as_json: bool, watch: bool, interval: float,
           ids: tuple[str, ...]) -> None:
    """Show the servers: state, pid, health, uptime, ports.

    Only the IDS given, if any. --json prints the API's answer; --watch redraws a
    live table every -n seconds until Ctrl-C.
    """
    client = make_client(config, url)  # with --watch too: a bad -c fails here, as without it
    if watch:
        if as_json:
            raise click.UsageError("--watch and --json do not go together")
        run_top(client, interval=interval, ids=ids)
        return
    servers = client.get("/servers").get("servers", [])
    if ids:
        unknown = [i for i in ids if i not in {s.get("id") for s in servers}]
        if unknown:
            raise Failed(f"unknown server {unknown[0]!r}")
        servers = [s for s in servers if s.get("id") in ids]
    if as_json:
        click.echo(json.dumps({"servers": servers}, indent=2))
    elif not servers:
        click.echo("no servers")
    else:
        click.echo(status_table(servers))


def _act(action: str, config: str, url: str | None, ids: tuple[str, ...], all_: bool,
         group: str | None = None) -> None:
    if group is not None and (ids or all_):
        raise click.UsageError("give server IDs, --all or --group NAME, not more than one of them")
    if group is None and not ids and not all_:
        raise click.UsageError("give at least one server ID (or --all, or --group NAME)")
    client = make_client(config, url)
    if group is not None:
        _act_group(client, action, group)
        return
    if all_:
        ids = tuple(s["id"] for s in client.get("/servers").get("servers", []))
    _act_each(client, action, ids)


def _outcome(action: str, ok: bool, data: dict[str, Any], status: int) -> tuple[bool, str]:
    """Whether one server's action counts as done, and the line to print for it."""
    code = data.get("error") if "error" in data else data.get("code")
    if code in IDEMPOTENT.get(action, ()):
        ok = True  # the server is already where it was asked to go
    message = data.get("message") or ("done" if ok else error_text(data, status))
    tail = data.get("log_tail") or []
    if tail:
        message += "\n  " + "\n  ".join(tail[-10:])
    return ok, message


def _report(lines: list[tuple[str, bool, str]]) -> None:
    """One line per server (failures on stderr); exit 1 if any failed."""
    failed = 0
    for server_id, ok, message in lines:
        click.echo(f"{server_id}: {message}", err=not ok)
        failed += not ok
    if failed:
        sys.exit(1)


def _act_each(client: ApiClient, action: str, ids: tuple[str, ...]) -> None:
    """POST /servers/<id>/<action> for every id, in parallel."""

    def one(server_id: str) -> tuple[bool, str]:
        try:
            status, data = client.server_action(server_id, action, timeout=ACTION_TIMEOUT)
        except ClientError as err:
            if err.exit_code != 1:
                raise
            return False, str(err)
        data = data if isinstance(data, dict) else {}
        return _outcome(action, status < 400 and bool(data.get("success", True)), data, status)

    with ThreadPoolExecutor(max_workers=min(8, len(ids) or 1)) as pool:
        results = list(pool.map(one, ids))
    _report([(sid, ok, message) for sid, (ok, message) in zip(ids, results, strict=True)])


def _act_group(client: ApiClient, action: str, group: str) -> None:
    """POST /groups/<group>/<action>: one line per server of the group, in dependency order."""
    status, data = client.group_action(group, action, timeout=ACTION_TIMEOUT)
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict):  # unknown group, or a procsync without groups
        raise Failed(error_text(data, status))
    lines = []
    for server_id, result in results.items():
        result = result if isinstance(result, dict) else {}
        ok, message = _outcome(action, bool(result.get("success")), result, status)
        lines.append((str(server_id), ok, message))
    _report(lines)


def _action_command(action: str, doc: str) -> click.Command:
    """`procsync start|stop|restart ID... | --all | --group NAME`."""

    @click.command(name=action, help=doc)
    @config_option
    @url_option
    @click.option("--all", "all_", is_flag=True, help="Every registered server.")
    @click.option("--group", "-g", metavar="NAME",
                  help="Every server of group NAME, in dependency order.")
    @click.argument("ids", nargs=-1)
    def command(config: str, url: str | None, all_: bool, group: str | None,
                ids: tuple[str, ...]) -> None:
        _act(action, config, url, ids, all_, group)

    return command


start = _action_command("start", "Start servers by ID (after what they depend on); waits until "
                                 "each is ready. Exit 1 if any failed.")
stop = _action_command("stop", "Stop servers by ID (stop signal to the group, then SIGKILL). "
                               "Exit 1 if any failed.")
restart = _action_command("restart", "Restart servers by ID. Exit 1 if any failed.")


@click.command()
@config_option
@url_option
@click.option("-n", "--lines", default=100, show_default=True, type=click.IntRange(1, 10000),
              help="How many of the last lines to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until interrupted.")
@click.argument("server_id", metavar="ID")
def logs(config: str, url: str | None, lines: int, follow: bool, server_id: str) -> None:
    """Print the last lines of a server's log (-f: and follow it)."""
    client = make_client(config, url)
    if not follow:
        for line in client.get(f"{server_path(server_id, '/logs')}?lines={lines}").get("lines", []):
            click.echo(line)
        return
    try:
        for event, data in client.stream(f"{server_path(server_id, '/logs/stream')}?lines={lines}"):
            if event in ("lines", "message"):
                try:
                    payload = json.loads(data)
                except ValueError:
                    payload = {"lines": [data]}
                for line in payload.get("lines", []) if isinstance(payload, dict) else [str(payload)]:
                    click.echo(line)
            elif event == "rotated":
                click.echo("--- log rotated ---", err=True)
    except KeyboardInterrupt:
        return
    raise client.unreachable("the log stream was closed (procsync serve stopped?)")


@click.command()
@config_option
@url_option
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.argument("ids", nargs=-1, metavar="[ID]...")
def history(config: str, url: str | None, limit: int, as_json: bool, ids: tuple[str, ...]) -> None:
    """Show recent lifecycle events of the servers IDS (every server when none is given).

    Starts, stops, exits, crashes and restarts, newest first; the last -n of
    them, with a SERVER column when there are several servers.
    """
    client = make_client(config, url)
    every = not ids
    if every:
        ids = tuple(s["id"] for s in client.get("/servers").get("servers", []))
    entries: list[dict[str, Any]] = []
    for server_id in dict.fromkeys(ids):
        data = client.get(f"{server_path(server_id, '/history')}?limit={limit}")
        entries += data.get("history", [])
    entries.sort(key=lambda e: str(e.get("at", "")), reverse=True)  # ISO 8601 UTC sorts as text
    entries = entries[:limit]
    if as_json:
        click.echo(json.dumps({"history": entries}, indent=2))
        return
    if not entries:
        click.echo("no history" if every else f"no history for {', '.join(ids)}")
        return
    several = every or len(set(ids)) > 1
    rows = []
    for e in entries:
        exit_code = e.get("exit_code")
        row = [str(e.get("at", ""))[:19].replace("T", " "), str(e.get("event")),
               str(e.get("pid") or "-"), "-" if exit_code is None else str(exit_code),
               str(e.get("reason") or "")]
        rows.append([str(e.get("id")), *row] if several else row)
    headers = ["AT (UTC)", "EVENT", "PID", "EXIT", "REASON"]
    click.echo(table(["SERVER", *headers] if several else headers, rows))


@click.command(name="kill-orphan")
@config_option
@url_option
@click.argument("server_id", metavar="ID")
@click.argument("pid", type=click.IntRange(min=1))
def kill_orphan(config: str, url: str | None, server_id: str, pid: int) -> None:
    """Kill an untracked process holding a server's port.

    Refused unless PID is, right now, a process procsync does not track that listens on
    one of server ID's ports.
    """
    client = make_client(config, url)
    status, data = client.call("POST", server_path(server_id, "/kill-orphan"), {"pid": pid},
                               timeout=ACTION_TIMEOUT)
    if status >= 400 or not data.get("success", False):
        raise Failed(error_text(data, status))
    click.echo(f"{server_id}: {data.get('message') or f'killed orphan pid {pid}'}")


@click.command()
@config_option
@url_option
@click.argument("ids", nargs=-1, metavar="[ID]...")
def reload(config: str, url: str | None, ids: tuple[str, ...]) -> None:
    """Re-read the config in the running serve, or reload servers by ID.

    Without ID: applies only the differences: new servers are added (and started if
    autostart), removed ones stopped, changed running ones restarted.

    With IDs: sends each server its reload_signal (for example SIGHUP) instead of
    restarting it; the process keeps its pid. Exit 1 if any failed.
    """
    client = make_client(config, url)
    if ids:
        _act_each(client, "reload", ids)
        return
    status, data = client.call("POST", "/reload", timeout=ACTION_TIMEOUT)
    if status == 400 and data.get("error") == "bad_config":
        raise BadConfig(error_text(data, status))
    if status in (404, 405, 501):
        raise Failed(f"this procsync server does not support reload ({error_text(data, status)})")
    if status >= 400:
        raise Failed(error_text(data, status))
    changes = data.get("changes", {})
    if not any(v != "unchanged" for v in changes.values()):
        click.echo("no changes")
    for server_id, change in changes.items():
        if change != "unchanged":
            click.echo(f"{server_id}: {change}")


# -- offline commands ------------------------------------------------------------------------

def describe_health(health: HealthCheck | None, ports: tuple[int, ...]) -> str:
    if health is None:
        return f"ports {', '.join(map(str, ports))} open" if ports else "process alive"
    if health.http:
        return f"http {health.http}" + (f" (status {health.expect_status})" if health.expect_status else "")
    if health.tcp:
        return f"tcp port {health.tcp}"
    return f"command {shown_command(health.command or ())}"


def describe_ports(config: ServerConfig) -> str:
    ports = ", ".join(map(str, config.ports)) or "-"
    if config.ports and not config.ports_required:
        ports += " (offered: it need not listen there; ready once it runs)"
    return ports


def runtime_warnings(server_id: str, config: ServerConfig) -> list[str]:
    """Problems of the machine now (not of the file): missing cwd, executable not on PATH."""
    problems = []
    try:
        config.check_runtime(server_id)
    except ConfigError as err:
        problems.append(str(err))
    if not config.shell:
        try:
            program = SpawnConfig(id=server_id, command=config.command).argv()[0]
        except ConfigError as err:
            return [*problems, str(err)]
        search = (config.env or {}).get("PATH") if config.env else None
        if os.sep in program:
            full = program if os.path.isabs(program) else os.path.join(config.cwd or ".", program)
            if not os.access(full, os.X_OK):
                problems.append(f"server {server_id!r}: command: {program!r} is not an executable file")
        elif shutil.which(program, path=search) is None:
            problems.append(f"server {server_id!r}: command: {program!r} is not found on PATH")
    return problems


def policy_rows(c: ServerConfig) -> list[list[str]]:
    """`check` lines for the start-order and policy fields a server sets (none when default)."""
    rows = []
    codes = tuple(c.success_exit_codes)
    if c.kind != "server":
        rows.append(["kind", f"{c.kind} (success: exit {', '.join(map(str, codes))})"])
    elif codes != (0,):
        rows.append(["success", "exit " + ", ".join(map(str, codes))])
    if c.group:
        rows.append(["group", c.group])
    deps = c.depends_on or {}  # normalised to id -> condition; a list means "started"
    pairs = deps.items() if isinstance(deps, Mapping) else ((dep, "started") for dep in deps)
    described = ", ".join(f"{dep} ({cond})" for dep, cond in pairs)
    if described:
        rows.append(["depends_on", described])
    if c.restart_dependents:
        rows.append(["dependents", "restarted after it restarts"])
    if c.ready_log_line:
        rows.append(["ready when", f"a log line matches {c.ready_log_line!r}"])
    if c.memory_limit:
        rows.append(["memory", f"limit {fmt_bytes(int(c.memory_limit))}, then {c.memory_action}"])
    if c.restart_schedule:
        rows.append(["schedule", f"restart {c.restart_schedule}"])
    if c.reload_signal:
        rows.append(["reload", f"sends {c.reload_signal}"])
    if c.env_file:
        rows.append(["env_file", c.env_file])
    return rows


@click.command()
@config_option
@formation_option
def check(config: str, formation: dict[str, int] | None) -> None:
    """Validate a config and show what serve would run.

    Warns (on stderr) about a missing cwd or an executable not found on PATH.
    """
    loaded = load_or_fail(config, formation)
    s = loaded.settings
    n = len(loaded.registry)
    shape = f", formation {formation_text(loaded.formation)}" if loaded.formation else ""
    click.echo(f"{config}: OK ({loaded.format}, {n} server{'s' if n != 1 else ''}{shape})")
    hooks = ", ".join(h.url for h in s.webhooks) or "none"
    click.echo(table(["SETTING", "VALUE"], [
        ["dashboard", f"http://{connect_host(s.host)}:{s.port}{s.url_prefix}/"],
        ["state_file", s.state_file], ["log_dir", s.log_dir], ["interval", f"{s.interval:g}s"],
        ["history", f"{s.history:g}s" if s.history else "off"],
        ["auth_token", "set" if s.auth_token else "not set"], ["webhooks", hooks],
    ]))
    warnings = []
    for server_id, c in loaded.registry.items():
        click.echo("")
        click.echo(f"[{server_id}]" + (" autostart" if c.autostart else ""))
        restart = c.autorestart
        if restart != "no":
            restart += f" (max {c.max_restarts}, backoff {c.backoff_initial:g}s..{c.backoff_max:g}s)"
        rows = [["command", shown_command(c.command) + ("  (shell)" if c.shell else "")],
                ["cwd", c.cwd or "(current directory)"],
                ["ports", describe_ports(c)],
                ["health", describe_health(c.health if isinstance(c.health, HealthCheck) else None,
                                           c.awaited_ports())],
                ["autorestart", restart]]
        if c.env:
            rows.append(["env", ", ".join(sorted(c.env))])
        rows += policy_rows(c)
        if c.name and c.name != server_id:
            rows.insert(0, ["name", c.name])
        for key, value in rows:
            click.echo(f"  {key:<12} {value}")
        warnings += runtime_warnings(server_id, c)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


@click.command()
@config_option
@formation_option
@click.argument("kind", type=click.Choice(["systemd", "supervisord"]))
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder to write the files into (created if missing).")
@click.option("--user", is_flag=True, help="systemd: units for 'systemctl --user' (WantedBy=default.target).")
def export(config: str, formation: dict[str, int] | None, kind: str, output: str, user: bool) -> None:
    """Write systemd units or a supervisord config.

    systemd: one procsync-<id>.service per server. supervisord: supervisord.conf
    (run it with supervisord -c) including procsync-programs.conf.
    """
    from .export import export_supervisord, export_systemd

    loaded = load_or_fail(config, formation)
    if not loaded.registry:
        raise BadConfig(f"{config}: defines no servers")
    try:
        paths = export_systemd(loaded, output, user=user) if kind == "systemd" else export_supervisord(loaded, output)
    except OSError as err:
        raise Failed(f"cannot write to {output}: {err.strerror or err}") from None
    except ProcSyncError as err:
        raise BadConfig(str(err)) from None
    for path in paths:
        click.echo(f"wrote {path}")



#: Every command of the `procsync` group.
COMMANDS: tuple[click.Command, ...] = (
    serve, status, top, start, stop, restart, logs, history, kill_orphan, reload, check, export,
)
