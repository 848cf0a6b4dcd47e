"""`load_config(path)`: a procsync.toml or a Procfile, the reader chosen by the file's name."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .files import ConfigFileError, LoadedConfig
from .procfile import load_procfile
from .toml import load_toml


def is_procfile(path: str | os.PathLike[str]) -> bool:
    """True for 'Procfile', 'Procfile.dev', 'x.procfile'; everything else is read as TOML."""
    p = Path(path)
    return p.name.lower().startswith("procfile") or p.suffix.lower() == ".procfile"


def load_config(path: str | os.PathLike[str],
                formation: Mapping[str, int] | str | None = None) -> LoadedConfig:
    """Read a procsync.toml or a Procfile (chosen by file name); ConfigFileError if invalid.

    `formation` (foreman's ``-m``, e.g. ``"web=2,worker=3"``) applies to a Procfile only.
    """
    if is_procfile(path):
        return load_procfile(path, formation)
    if formation:
        raise ConfigFileError(path, None, "formation",
                              "a formation applies to a Procfile, not to a procsync.toml "
                              "(copy the server's table instead)")
    return load_toml(path)


__all__ = ["is_procfile", "load_config"]
