"""Server configuration: the records users register, and the files they are loaded from.

- `records`: `ServerConfig`, `SpawnConfig`, `HealthCheck` and their validation;
- `files`: what every file reader returns and raises (`LoadedConfig`, `Settings`,
  `ConfigFileError`);
- `toml`: procsync.toml; `procfile`: a Procfile and its .env; `formation`:
  how many copies of each Procfile process, with foreman's names and ports;
- `loader`: `load_config(path)`, which picks the reader by the file's name.

Every name is importable from ``procsync.config``. This package imports
only procsync's leaf modules.
"""

from __future__ import annotations

from .files import (
    DEFAULT_HOST,
    DEFAULT_INTERVAL,
    DEFAULT_PORT,
    DEFAULT_URL_PREFIX,
    DEFAULT_WEBHOOK_EVENTS,
    STATE_DIR,
    ConfigFileError,
    LoadedConfig,
    Settings,
    Webhook,
    read_text,
    settings_fields,
    settings_summary,
    url_prefix_problem,
)
from .formation import FormationError, formation_text, parse_formation
from .loader import is_procfile, load_config
from .procfile import BASE_PORT, PORT_STEP, load_procfile, parse_dotenv
from .records import (
    AUTORESTART_POLICIES,
    ID_PATTERN,
    MAX_LOG_BACKUPS,
    MAX_LOG_BYTES,
    MAX_SECONDS,
    PRIVATE_ENV,
    HealthCheck,
    MiB,
    ServerConfig,
    SpawnConfig,
    as_server_config,
    check_id,
    check_url,
    child_environ,
    command_text,
    did_you_mean,
    signal_name,
    text_problem,
)
from .toml import (
    SETTINGS_KEYS,
    WEBHOOK_KEYS,
    expand_vars,
    find_line,
    find_line_top,
    load_mapping,
    load_toml,
    mask_vars,
)

__all__ = [
    # records
    "AUTORESTART_POLICIES",
    "HealthCheck",
    "ID_PATTERN",
    "MAX_LOG_BACKUPS",
    "MAX_LOG_BYTES",
    "MAX_SECONDS",
    "MiB",
    "PRIVATE_ENV",
    "ServerConfig",
    "SpawnConfig",
    "as_server_config",
    "check_id",
    "check_url",
    "child_environ",
    "command_text",
    "did_you_mean",
    "signal_name",
    "text_problem",
    # files
    "ConfigFileError",
    "DEFAULT_HOST",
    "DEFAULT_INTERVAL",
    "DEFAULT_PORT",
    "DEFAULT_URL_PREFIX",
    "DEFAULT_WEBHOOK_EVENTS",
    "LoadedConfig",
    "STATE_DIR",
    "Settings",
    "Webhook",
    "read_text",
    "settings_fields",
    "settings_summary",
    "url_prefix_problem",
    # toml
    "SETTINGS_KEYS",
    "WEBHOOK_KEYS",
    "expand_vars",
    "find_line",
    "find_line_top",
    "load_mapping",
    "load_toml",
    "mask_vars",
    # formation
    "FormationError",
    "formation_text",
    "parse_formation",
    # procfile
    "BASE_PORT",
    "PORT_STEP",
    "load_procfile",
    "parse_dotenv",
    # loader
    "is_procfile",
    "load_config",
]
