"""Old home of the config-file loader, kept so ``from procsync.configfile import load_config`` works.

Everything lives in `procsync.config` now; import from there.
"""

from __future__ import annotations

from .config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_URL_PREFIX,
    SETTINGS_KEYS,
    ConfigFileError,
    LoadedConfig,
    Settings,
    Webhook,
    expand_vars,
    is_procfile,
    load_config,
    load_toml,
    url_prefix_problem,
)

__all__ = [
    "ConfigFileError",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_URL_PREFIX",
    "LoadedConfig",
    "SETTINGS_KEYS",
    "Settings",
    "Webhook",
    "expand_vars",
    "is_procfile",
    "load_config",
    "load_toml",
    "url_prefix_problem",
]
