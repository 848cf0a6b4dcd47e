"""Checks answers of the JSON API against its OpenAPI document (procsync.flask_ext.openapi).

`check_answer(doc, method, path, status, content_type, body)` finds the
operation of `path` (a full path under the document's server URL, e.g.
``/procsync/api/servers/web``), the response documented for `status` (or
"NXX", or "default"), and validates a JSON body against that response's
schema (Draft 2020-12, ``#/components/...`` references resolved in the
document, formats such as date-time checked). It raises `AnswerMismatch`
when:

- the path or the method is not documented, unless the answer is the API's
  own "no such route" (a 404 or 405 error body): that is what every
  undocumented path under the prefix must answer. HEAD is checked as GET
  without a body; OPTIONS on a documented path is Flask's automatic answer
  (200, no body) or an error body, as the request guard runs first;
- the status is not documented for the operation;
- the content type is not the documented one (text/event-stream and
  text/plain answers are checked for their type only);
- the JSON body does not conform. Checks are strict: an object whose
  schema lists its properties may carry no other (the served document
  leaves that open so clients tolerate additions; the tests hold the
  answers to what is documented).

`watch_test_clients(monkeypatch)` wraps werkzeug's ``Client.open`` (which
Flask's test client and schemathesis call) so that every
answer a test gets from a procsync API mount of a Flask app is checked;
conftest.py fails the test with what it collected. jsonschema_rs comes with schemathesis (the
test extra); without it nothing is watched.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from procsync.flask_ext.openapi import openapi_document

DOC_URI = "urn:procsync:openapi"
METHODS = ("get", "post", "put", "patch", "delete")
STREAMS = ("text/event-stream",)
TYPE_ONLY = ("text/event-stream", "text/plain")
CHECKED = "_procsync_openapi_checked"  # set on a test response once it is checked
UNROUTED = (404, 405)  # what the API answers on a path or method it has no route for


class AnswerMismatch(AssertionError):
    """An answer that the OpenAPI document does not describe."""


@functools.cache
def document(api_url: str, token: bool) -> dict[str, Any]:
    """The document of a mount at `api_url` (cached: it is the same for every test)."""
    return openapi_document(api_url, token=token)


def check_answer(doc: dict[str, Any], method: str, path: str, status: int, content_type: str,
                 body: bytes | str | Any) -> None:
    """Raise AnswerMismatch unless the answer conforms to `doc` (see the module's doc)."""
    checker_for(doc).check(method, path, status, content_type, body)


_CHECKERS: dict[int, tuple[dict[str, Any], Checker]] = {}


def checker_for(doc: dict[str, Any]) -> Checker:
    """One Checker per document object (its compiled validators are reused)."""
    held = _CHECKERS.get(id(doc))
    if held is None or held[0] is not doc:
        held = _CHECKERS[id(doc)] = (doc, Checker(doc))
    return held[1]


class Checker:
    """The operations of one document, and a validator per response schema (made on first use)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        import jsonschema_rs  # here, not at import: conftest imports this module

        self._jsonschema = jsonschema_rs
        self.doc = doc
        self.base = doc["servers"][0]["url"].rstrip("/")
        self._registry = jsonschema_rs.Registry([(DOC_URI, strict(doc))])
        self._templates = [(template, template_regex(template)) for template in doc["paths"]]
        self._validators: dict[str, Any] = {}

    def operation(self, path: str) -> tuple[str, dict[str, Any]] | None:
        """(template, path item) of a path relative to the API root; literal paths first."""
        item = self.doc["paths"].get(path)
        if item is not None:
            return path, item
        for template, regex in self._templates:
            if regex.fullmatch(path):
                return template, self.doc["paths"][template]
        return None

    def check(self, method: str, path: str, status: int, content_type: str, body: Any) -> None:
        where = f"{method.upper()} {path} -> {status}"
        path = path.split("?", 1)[0]
        if path != self.base and not path.startswith(self.base + "/"):
            raise AnswerMismatch(f"{where}: not under the API root {self.base!r}")
        relative = path[len(self.base):] or "/"
        found = self.operation(relative)
        head = method.lower() == "head"  # answered as GET, without a body
        verb = "get" if head else method.lower()
        if found is not None and verb == "options":  # HTTP's, not an operation: Flask answers it
            if status == 200:
                if body not in (b"", ""):
                    raise AnswerMismatch(f"{where}: OPTIONS answered with a body")
            else:
                self.validate(where, "#/components/schemas/Error", content_type, body)
            return
        if found is None or verb not in found[1]:
            if status in UNROUTED:
                if not head:
                    self.validate(where, "#/components/schemas/Error", content_type, body)
                return
            documented = sorted(m for m in found[1] if m in METHODS) if found else []
            what = "path" if found is None else f"method (documented: {documented})"
            raise AnswerMismatch(f"{where}: undocumented {what}")
        template, item = found
        responses = item[verb]["responses"]
        key = next((k for k in (str(status), f"{status // 100}XX", "default") if k in responses),
                   None)
        if key is None:
            raise AnswerMismatch(f"{where}: status {status} is not documented for "
                                 f"{verb.upper()} {template} (documented: {sorted(responses)})")
        content = responses[key].get("content", {})
        mimetype = content_type.split(";", 1)[0].strip().lower()
        if mimetype not in content:
            raise AnswerMismatch(f"{where}: content type {content_type!r} is not documented "
                                 f"(documented: {sorted(content)})")
        if mimetype in TYPE_ONLY or head:
            return
        pointer = "/".join(["#", "paths", escape(template), verb, "responses", key, "content",
                            escape(mimetype), "schema"])
        self.validate(where, pointer, content_type, body)

    def validate(self, where: str, pointer: str, content_type: str, body: Any) -> None:
        """Validate a JSON `body` against the schema at `pointer` (a fragment of the document)."""
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise AnswerMismatch(f"{where}: {content_type!r} answer where JSON is documented")
        if isinstance(body, bytes | str):
            try:
                body = json.loads(body)
            except ValueError as err:
                raise AnswerMismatch(f"{where}: the body is not JSON ({err})") from None
        validator = self._validators.get(pointer)
        if validator is None:
            validator = self._validators[pointer] = self._jsonschema.Draft202012Validator(
                {"$ref": DOC_URI + quote(pointer, safe="#/~")}, registry=self._registry,
                validate_formats=True)
        errors = [f"  at /{'/'.join(map(str, e.instance_path))}: {e.message}"
                  for e in validator.iter_errors(body)]
        if errors:
            shown = json.dumps(body)[:600]
            raise AnswerMismatch(f"{where}: the body does not conform to {pointer}:\n"
                                 + "\n".join(errors[:10]) + f"\n  body: {shown}")


def escape(part: str) -> str:
    """A JSON-pointer token (RFC 6901)."""
    return part.replace("~", "~0").replace("/", "~1")


def template_regex(template: str) -> re.Pattern[str]:
    """/servers/{server_id}/logs -> a regex whose parameters match one path segment."""
    parts = re.split(r"(\{[^}/]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


def strict(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of `doc` where an object schema that lists properties allows no other."""
    out = copy.deepcopy(doc)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(out["components"])
    visit(out["paths"])
    return out


# -- every answer a Flask test client gets -----------------------------------------------


def api_roots(app: Any) -> list[tuple[str, bool]]:
    """(API root, token set?) of every procsync mount of `app`, longest root first."""
    from procsync.flask_ext.state import STATE_KEY, AppState

    state = app.extensions.get(STATE_KEY)
    if not isinstance(state, AppState):  # no procsync blueprint on this app
        return []
    roots = []
    mounts = state.mounts
    for rule in app.url_map.iter_rules():
        name, _, view = rule.endpoint.rpartition(".")
        if view != "api_openapi" or name not in mounts:
            continue
        # as guard.settings() decides, without an app context (its teardowns are the app's)
        token = bool(mounts[name].options.token or app.config.get("PROCSYNC_AUTH_TOKEN"))
        roots.append((rule.rule[: -len("/openapi.json")], token))
    return sorted(roots, key=lambda root: -len(root[0]))


def answer_problem(app: Any, response: Any) -> str | None:
    """Why `app`'s answer `response` (to a test client) does not conform; None if it does or is
    not an answer of a procsync API."""
    request = getattr(response, "request", None)
    if request is None:
        return None
    path = request.path
    mount = next(((root, token) for root, token in api_roots(app)
                  if path == root or path.startswith(root + "/")), None)
    if mount is None:
        return None
    root, token = mount
    content_type = response.headers.get("Content-Type", "")
    streamed = response.mimetype in STREAMS or request.method == "HEAD"
    body = b"" if streamed else response.get_data()  # never consume an event stream
    try:
        check_answer(document(root, token), request.method, path, response.status_code,
                     content_type, body)
    except AnswerMismatch as err:
        return str(err)
    return None


def watch_test_clients(monkeypatch: Any) -> list[str] | None:
    """Check every answer of a procsync API to a Flask test client; returns the problems found.

    None (nothing watched) when jsonschema_rs is not installed.
    """
    try:
        import jsonschema_rs  # noqa: F401
    except ImportError:
        return None
    from flask import Flask
    from werkzeug.test import Client

    problems: list[str] = []
    original: Callable[..., Any] = Client.open

    def open_and_check(self: Client, *args: Any, **kwargs: Any) -> Any:
        response = original(self, *args, **kwargs)
        # a redirect followed comes back through here: check each answer once
        if isinstance(self.application, Flask) and not getattr(response, CHECKED, False):
            setattr(response, CHECKED, True)
            problem = answer_problem(self.application, response)
            if problem is not None:
                problems.append(problem)
        return response

    monkeypatch.setattr(Client, "open", open_and_check)
    return problems


__all__ = ["AnswerMismatch", "Checker", "answer_problem", "check_answer", "checker_for",
           "document", "watch_test_clients"]
