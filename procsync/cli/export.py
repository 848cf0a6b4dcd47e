"""Writing the servers of a config as systemd units or a supervisord config.

`export_systemd(loaded, folder)` writes one ``procsync-<id>.service`` per
server; `export_supervisord(loaded, folder)` writes ``supervisord.conf``
(runnable with ``supervisord -c``) which includes ``procsync-programs.conf``
(one ``[program:<id>]`` per server, ready to include from an existing
supervisord setup). Both are INI files that configparser reads back.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

from ..config import LoadedConfig, ServerConfig, SpawnConfig
from ..errors import ProcSyncError


class ExportError(ProcSyncError):
    """A server cannot be expressed in the target format."""


SYSTEMD_RESTART = {"no": "no", "on-failure": "on-failure", "always": "always"}
SUPERVISORD_RESTART = {"no": "false", "on-failure": "unexpected", "always": "true"}


def argv_of(server_id: str, config: ServerConfig) -> list[str]:
    """The argument vector the server runs, with the executable made absolute when found on PATH."""
    argv = SpawnConfig(id=server_id, command=config.command, shell=config.shell).argv()
    if not os.path.isabs(argv[0]) and os.sep not in argv[0]:
        search = (config.env or {}).get("PATH") if config.env else None
        found = shutil.which(argv[0], path=search)
        if found:
            argv[0] = found
    return argv


def log_file_of(loaded: LoadedConfig, server_id: str, config: ServerConfig) -> str:
    """Where the server's output goes: its log_file, else <log_dir>/<id>.log."""
    return config.log_file or os.path.join(loaded.settings.log_dir, f"{server_id}.log")


def _systemd_quote(word: str) -> str:
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    escaped = escaped.replace("%", "%%").replace("$", "$$")
    if escaped and not any(c in escaped for c in " \t'\";\\") and escaped == word:
        return escaped
    return f'"{escaped}"'


def systemd_unit(loaded: LoadedConfig, server_id: str, config: ServerConfig, *, user: bool = False) -> str:
    """The text of one systemd service unit for `server_id`."""
    argv = argv_of(server_id, config)
    lines = [
        f"# Written by procsync export from {loaded.path}",
        "[Unit]",
        f"Description={config.name or server_id} (procsync server {server_id})",
        "After=network.target",
    ]
    if config.autorestart != "no":
        window = max(config.stable_after, 1.0) * (config.max_restarts + 1)
        lines += [f"StartLimitIntervalSec={window:g}", f"StartLimitBurst={config.max_restarts + 1}"]
    lines += [
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(_systemd_quote(w) for w in argv),
    ]
    if config.cwd:
        lines.append(f"WorkingDirectory={config.cwd}")
    env = {"PROCSYNC_ID": server_id, **(config.env or {})}
    lines.append("Environment=" + " ".join(_systemd_quote(f"{k}={v}") for k, v in env.items()))
    log_file = log_file_of(loaded, server_id, config)
    lines += [
        f"KillSignal={config.stop_signal}",
        "KillMode=control-group",
        f"TimeoutStopSec={config.stop_timeout:g}",
        f"TimeoutStartSec={config.start_timeout:g}",
        f"Restart={SYSTEMD_RESTART[config.autorestart]}",
        f"RestartSec={config.backoff_initial:g}",
        f"StandardOutput=append:{log_file}",
        "StandardError=inherit",
        "",
        "[Install]",
        f"WantedBy={'default.target' if user else 'multi-user.target'}",
        "",
    ]
    return "\n".join(lines)


def export_systemd(loaded: LoadedConfig, folder: str | os.PathLike[str], *, user: bool = False) -> list[Path]:
    """Write procsync-<id>.service for every server into `folder`; the paths written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for server_id, config in loaded.registry.items():
        path = out / f"procsync-{server_id}.service"
        path.write_text(systemd_unit(loaded, server_id, config, user=user), encoding="utf-8")
        written.append(path)
    return written


def _supervisord_value(text: str) -> str:
    return text.replace("%", "%%").replace("\n", " ")


def _supervisord_env(server_id: str, env: dict[str, str]) -> str:
    # supervisord splits this with a non-POSIX shlex: no escapes, a value is quoted with " or '.
    parts = []
    for key, value in env.items():
        quote = '"' if '"' not in value else "'"
        if quote in value or "\n" in value:
            raise ExportError(f"server {server_id!r}: env.{key}: supervisord cannot take a value "
                              "holding both quote characters or a newline")
        parts.append(f"{key}={quote}{_supervisord_value(value)}{quote}")
    return ",".join(parts)


def supervisord_program(loaded: LoadedConfig, server_id: str, config: ServerConfig) -> str:
    """One [program:<id>] section."""
    argv = argv_of(server_id, config)
    lines = [
        f"[program:{server_id}]",
        f"command={_supervisord_value(shlex.join(argv))}",
    ]
    if config.cwd:
        lines.append(f"directory={_supervisord_value(config.cwd)}")
    env = {"PROCSYNC_ID": server_id, **(config.env or {})}
    lines += [
        f"environment={_supervisord_env(server_id, env)}",
        f"autostart={'true' if config.autostart else 'false'}",
        f"autorestart={SUPERVISORD_RESTART[config.autorestart]}",
        f"startretries={config.max_restarts}",
        f"startsecs={0 if not (config.awaited_ports() or config.health) else 1}",
        f"stopsignal={config.stop_signal.removeprefix('SIG')}",
        f"stopwaitsecs={max(1, round(config.stop_timeout))}",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={_supervisord_value(log_file_of(loaded, server_id, config))}",
        f"stdout_logfile_maxbytes={config.log_max_bytes}",
        f"stdout_logfile_backups={config.log_backups}",
        "",
    ]
    return "\n".join(lines)


def export_supervisord(loaded: LoadedConfig, folder: str | os.PathLike[str]) -> list[Path]:
    """Write supervisord.conf and procsync-programs.conf into `folder`; the paths written."""
    out = Path(folder).resolve()
    out.mkdir(parents=True, exist_ok=True)
    programs = out / "procsync-programs.conf"
    sections = [f"; Written by procsync export from {loaded.path}\n"]
    sections += [supervisord_program(loaded, sid, cfg) for sid, cfg in loaded.registry.items()]
    programs.write_text("\n".join(sections), encoding="utf-8")
    main = out / "supervisord.conf"
    main.write_text("\n".join([
        f"; Written by procsync export from {loaded.path}",
        f"; Run with: supervisord -c {main}",
        "[supervisord]",
        f"logfile={_supervisord_value(str(out / 'supervisord.log'))}",
        f"pidfile={_supervisord_value(str(out / 'supervisord.pid'))}",
        f"childlogdir={_supervisord_value(loaded.settings.log_dir)}",
        "",
        "[unix_http_server]",
        f"file={_supervisord_value(str(out / 'supervisor.sock'))}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_supervisord_value(str(out / 'supervisor.sock'))}",
        "",
        "[include]",
        f"files={programs.name}",
        "",
    ]), encoding="utf-8")
    return [main, programs]


__all__ = ["ExportError", "export_supervisord", "export_systemd", "supervisord_program", "systemd_unit"]
