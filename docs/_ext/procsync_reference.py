"""Markdown references generated from procsync's code.

Used by the Sphinx extension (procsync_docs) at build time and by
tests/test_docs_site.py, which checks that every field, signal and route
appears. Nothing here is kept by hand: the text comes from the config
records' field metadata (procsync.config.fielddoc), procsync.signals.DOCS
and the OpenAPI document of the Flask extension.
"""

from __future__ import annotations

import json
from typing import Any

from procsync import signals
from procsync.config.fielddoc import FieldDoc, field_docs
from procsync.config.files import Settings, Webhook
from procsync.config.records import HealthCheck, ServerConfig
from procsync.flask_ext.openapi import openapi_document

RECORDS: dict[str, type] = {
    "settings": Settings,
    "server": ServerConfig,
    "health": HealthCheck,
    "webhook": Webhook,
}
API_ROOT = "/procsync/api"


def cell(text: str) -> str:
    """`text` made safe for one cell of a Markdown table."""
    return " ".join(text.split()).replace("|", "\\|")


def code(text: str) -> str:
    """`text` as inline code, whatever backticks it holds."""
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _entry(which: str, doc: FieldDoc) -> str:
    default = "required" if doc.default is None else f"default {doc.default}"
    return "\n".join([
        f"(config-{which}-{doc.name})=",
        f"**{code(doc.name)}** · {cell(doc.toml)} · {cell(default)}",
        f": {cell(doc.doc)}",
        "",
        f"  Example: {code(doc.example)}",
        "",
    ])


def config_table(which: str) -> str:
    """The reference of one config record ("settings", "server", "health" or "webhook"):
    a definition list, one entry per field, each with an anchor ``config-<which>-<field>``."""
    try:
        record = RECORDS[which]
    except KeyError:
        raise ValueError(f"procsync-config: unknown record {which!r}; "
                         f"known: {', '.join(RECORDS)}") from None
    return "\n".join(_entry(which, doc) for doc in field_docs(record))


def signals_table() -> str:
    """Every signal with its sender, payload keys and when it is sent."""
    lines = ["| signal | sender | payload keys | sent when |", "|---|---|---|---|"]
    for doc in signals.DOCS.values():
        keys = ", ".join(code(k) for k in doc.keys)
        if doc.optional:
            keys += "; sometimes " + ", ".join(code(k) for k in doc.optional)
        lines.append(f"| {code(doc.name)} | {doc.sender} | {keys} | {cell(doc.when)} |")
    return "\n".join(lines) + "\n"


def document() -> dict[str, Any]:
    """The OpenAPI document as the extension serves it under the default prefix, with a token."""
    return openapi_document(API_ROOT, token=True)


def _schema_name(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[1]
        return f"[{name}](#schema-{name.lower()})"
    return code(json.dumps(schema, sort_keys=True))


def _body(answer: dict[str, Any]) -> str:
    parts = []
    for mime, content in answer.get("content", {}).items():
        name = _schema_name(content.get("schema"))
        parts.append(f"{name} ({mime})" if name else mime)
    return "; ".join(parts)


def http_api_markdown() -> str:
    """Every route of the JSON API: method, path, parameters, body and answers; then the schemas."""
    doc = document()
    out = [f"All paths are under `{API_ROOT}` (the default prefix; `PROCSYNC_URL_PREFIX` moves "
           "it). The same document is served by every running instance at "
           f"`{API_ROOT}/openapi.json`.", "", "## Routes", ""]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            out += [f"### {method.upper()} {path}", "", cell(op.get("summary", "")), ""]
            params = op.get("parameters", [])
            if params:
                out += ["| parameter | in | meaning |", "|---|---|---|"]
                for p in params:
                    out.append(f"| {code(p['name'])} | {p['in']} | "
                               f"{cell(p.get('description', ''))} |")
                out.append("")
            body = op.get("requestBody")
            if body:
                out += [f"Body: {_body(body)}", ""]
            out += ["| status | meaning | body |", "|---|---|---|"]
            for status, answer in op["responses"].items():
                out.append(f"| {status} | {cell(answer.get('description', ''))} | "
                           f"{_body(answer)} |")
            out.append("")
    out += ["## Schemas", ""]
    for name, schema in doc["components"]["schemas"].items():
        out += [f"(schema-{name.lower()})=", f"### {name}", ""]
        if schema.get("description"):
            out += [cell(schema["description"]), ""]
        out += ["```json", json.dumps(schema, indent=2), "```", ""]
    return "\n".join(out)


__all__ = ["RECORDS", "cell", "config_table", "document", "http_api_markdown", "signals_table"]
