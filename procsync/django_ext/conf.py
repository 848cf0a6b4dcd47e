"""The ``PROCSYNC`` setting of a Django project, read and checked like a procsync.toml.

Either ``{"config": "path/to/procsync.toml"}`` (or a Procfile, with an
optional ``"formation"``), or the file's content inline:
``{"servers": {...}, "state_file": ..., "log_dir": ..., "interval": ...}``
with the keys of the ``[procsync]`` table. Besides those:

- ``"view"`` and ``"control"``: who may read the API and dashboard, and who
  may start and stop servers: ``"staff"`` (the default for both),
  ``"superuser"``, ``"authenticated"`` or a permission name
  (``"app_label.codename"``). Whoever may control may view.
- ``"test"``: ``{"state_file": ..., "log_dir": ...}`` used under a test run
  instead of a temporary folder (as ``DATABASES[...]["TEST"]``).

Every problem is an ImproperlyConfigured naming the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ..config import SETTINGS_KEYS, LoadedConfig, did_you_mean, load_config, load_mapping
from ..errors import ConfigError

SETTING = "PROCSYNC"
RULES = ("staff", "superuser", "authenticated")
OWN_KEYS = ("config", "formation", "servers", "view", "control", "test")
TEST_KEYS = ("state_file", "log_dir")


@dataclass(frozen=True, slots=True)
class Conf:
    """The ``PROCSYNC`` setting, checked: the servers and settings, and who may do what."""

    loaded: LoadedConfig
    view: str = "staff"
    control: str = "staff"
    test_state_file: str | None = None
    test_log_dir: str | None = None


def read_conf(value: Any, base_dir: str | os.PathLike[str]) -> Conf:
    """Check the ``PROCSYNC`` setting `value`; relative paths are relative to `base_dir`."""
    if value is None:
        raise ImproperlyConfigured(
            f"settings.{SETTING} is not set: give {{'config': 'path/to/procsync.toml'}} or "
            "{'servers': {...}} (the servers as in a procsync.toml)")
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"settings.{SETTING} must be a dict, not {type(value).__name__}")
    for key in value:
        if key not in (*OWN_KEYS, *SETTINGS_KEYS):
            raise ImproperlyConfigured(f"settings.{SETTING}: unknown key {key!r}"
                                       f"{did_you_mean(str(key), [*OWN_KEYS, *SETTINGS_KEYS])}")
    folder = Path(base_dir)
    try:
        loaded = _servers(value, folder)
    except ConfigError as err:
        raise ImproperlyConfigured(str(err)) from None
    test = value.get("test", {})
    if not isinstance(test, Mapping) or any(k not in TEST_KEYS for k in test):
        raise ImproperlyConfigured(f"settings.{SETTING}['test'] must be a dict with the keys "
                                   f"{', '.join(TEST_KEYS)}, not {test!r}")
    paths = {key: _path(f"['test']['{key}']", test[key], folder) for key in TEST_KEYS if key in test}
    return Conf(loaded, view=_rule("view", value.get("view", "staff")),
                control=_rule("control", value.get("control", "staff")),
                test_state_file=paths.get("state_file"), test_log_dir=paths.get("log_dir"))


def _servers(value: Mapping[str, Any], folder: Path) -> LoadedConfig:
    if "config" in value:
        inline = [k for k in value if k == "servers" or k in SETTINGS_KEYS]
        if inline:
            raise ImproperlyConfigured(
                f"settings.{SETTING}: give 'config' or {inline[0]!r}, not both ('{inline[0]}' "
                "belongs in the file)")
        path = _path("['config']", value["config"], folder)
        return load_config(path, value.get("formation"))
    if "formation" in value:
        raise ImproperlyConfigured(f"settings.{SETTING}: 'formation' goes with 'config' (a Procfile)")
    if "servers" not in value:
        raise ImproperlyConfigured(f"settings.{SETTING} needs 'config' (a procsync.toml or Procfile) "
                                   "or 'servers'")
    table = {k: v for k, v in value.items() if k in SETTINGS_KEYS}
    return load_mapping({"procsync": table, "servers": value["servers"]},
                        source=f"settings.{SETTING}", folder=folder)


def _path(key: str, value: Any, folder: Path) -> str:
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise ImproperlyConfigured(f"settings.{SETTING}{key} must be a path, not {value!r}")
    return str(folder / Path(value).expanduser())


def _rule(key: str, rule: Any) -> str:
    if not isinstance(rule, str) or not (rule in RULES or rule.count(".") == 1):
        raise ImproperlyConfigured(
            f"settings.{SETTING}['{key}'] must be one of {', '.join(map(repr, RULES))} or a "
            f"permission name ('app_label.codename'), not {rule!r}")
    return rule


def allows(rule: str, user: Any) -> bool:
    """Whether `user` (a Django user, maybe anonymous) meets `rule`."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if rule == "authenticated":
        return True
    if rule == "staff":
        return bool(user.is_staff)
    if rule == "superuser":
        return bool(user.is_superuser)
    return bool(user.has_perm(rule))


__all__ = ["RULES", "SETTING", "Conf", "allows", "read_conf"]
