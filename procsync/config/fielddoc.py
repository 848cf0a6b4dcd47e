"""Reference documentation carried by the config records' fields.

Each field of ServerConfig, HealthCheck's table, Settings (`[procsync]`) and
Webhook is declared with `documented(...)`, which keeps its TOML type, meaning
and an example in the field's metadata. The configuration reference of the
documentation site is generated from them (docs/config.md), and a test loads
every example, so the reference cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

_KEY = "procsync"


def documented(default: Any = dataclasses.MISSING, *, toml: str, doc: str, example: str,
               default_text: str | None = None) -> Any:
    """A dataclass field with its reference entry.

    `toml` is how the value is written in a procsync.toml, `example` a TOML line
    that sets it (``stop_timeout = 20``), `default_text` what to show (Markdown)
    as the default when the field's Python default does not say it (a computed one).
    `doc` is Markdown too.
    """
    meta = {_KEY: (toml, doc, example, default_text)}
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True)
class FieldDoc:
    """One field's reference entry."""

    name: str
    toml: str
    default: str | None  # Markdown; None: the field is required
    doc: str
    example: str


def _toml_value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def field_docs(cls: type) -> list[FieldDoc]:
    """The reference entries of a record's fields, in declaration order.

    ValueError names a field declared without `documented`: every field of a
    documented record must say what it is.
    """
    docs = []
    for f in dataclasses.fields(cls):
        entry = f.metadata.get(_KEY)
        if entry is None:
            raise ValueError(f"{cls.__name__}.{f.name} has no reference entry (use documented())")
        toml, doc, example, default_text = entry
        if default_text is not None:
            default: str | None = default_text
        elif f.default is not dataclasses.MISSING:
            default = f"`{_toml_value(f.default)}`"
        else:
            default = None
        docs.append(FieldDoc(f.name, toml, default, doc, example))
    return docs


__all__ = ["FieldDoc", "documented", "field_docs"]
