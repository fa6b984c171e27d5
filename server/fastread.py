"""The fast read path: metadata GETs answered before Flask, the server's hottest and simplest request.

Every TUF client's refresh is a GET of `timestamp.json`; Flask's request machinery costs about three
times what the answer itself does (docs/performance.md). `FastReads` wraps the Flask app as WSGI
middleware and answers `GET /v2/<collection>/_trust/tuf/<file>.json` itself, with the same checks
and the same answer as the Flask route `api.get_metadata`:

- the same rate limit (`auth.charge`), access rule (`auth.authorize` with `PULL_METADATA`) and name
  checks, refusals in the API's JSON error shape with their challenge headers;
- the same bytes and headers (`reads.answer`), from the same read cache;
- the same request id, metrics and access log line (`ops.record`).

Anything else — other methods and routes, a file that is not stored, anything unexpected — goes to
Flask, which answers it as it always did (a request is rate-charged once either way).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from flask import Flask
from werkzeug.wsgi import get_current_url

from tufnotary.server import ops
from tufnotary.server.auth import PULL_METADATA, authorize, charge
from tufnotary.server.errors import ServerError
from tufnotary.server.logs import REQUEST_ID_HEADER, accept_request_id, reset_request_id, set_request_id
from tufnotary.server.names import check_collection, check_role
from tufnotary.server.reads import answer, parse_filename

ROUTE = "/v2/<path:collection>/_trust/tuf/<path:filename>"
"""The Flask rule of `api.get_metadata`: the route label of its metrics, whichever path answered."""
ENDPOINT = "tuf.get_metadata"
# As werkzeug's path converters split it: the shortest collection before "/_trust/tuf/".
_PATH = re.compile(r"/v2/(?P<collection>[^/].*?)/_trust/tuf/(?P<filename>[^/].*)")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FastReads:
    def __init__(self, app: Flask, inner: WSGIApp) -> None:
        self._app = app
        self.inner = inner
        """The Flask application it wraps: every request this does not answer goes there."""

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "GET":
            return self.inner(environ, start_response)
        path = environ.get("PATH_INFO", "")
        match = _PATH.fullmatch(path)
        parsed = parse_filename(match["filename"]) if match else None
        if match is None or parsed is None or "/_trust/tuf/" in match["filename"]:
            return self.inner(environ, start_response)
        started = time.perf_counter()
        request_id = accept_request_id(environ.get("HTTP_X_REQUEST_ID"))
        token = set_request_id(request_id)
        try:
            return self._answer(environ, start_response, path, match["collection"], parsed, request_id, started)
        finally:
            reset_request_id(token)

    def _answer(self, environ: dict[str, Any], start_response: Callable[..., Any], path: str, collection: str,
                parsed: tuple[str, int | None], request_id: str, started: float) -> Iterable[bytes]:
        role, version = parsed
        services = self._app.extensions["tufnotary"]
        keeper = self._app.extensions["tufnotary_auth"]
        address = environ.get("REMOTE_ADDR")
        try:
            check_collection(collection)
            check_role(role)
        except ServerError:
            return self.inner(environ, start_response)  # Flask words the refusal
        try:
            charge(keeper, address, environ)
            authorize(keeper, PULL_METADATA, collection, environ.get("HTTP_AUTHORIZATION"), "GET", path, address,
                      lambda: get_current_url(environ, host_only=True))
        except ServerError as refusal:
            headers = [("Content-Type", "application/json"), *refusal.headers.items()]
            return self._respond(start_response, refusal.http_status, headers, refusal.body(), refusal.code,
                                 environ, path, request_id, started)
        try:
            stored = services.reads.get(collection, role, version)
        except ServerError:
            stored = None
        if stored is None:  # not stored, or the database failed: Flask words it
            return self.inner(environ, start_response)
        status, headers, body = answer(stored, version is not None, environ.get("HTTP_IF_NONE_MATCH"),
                                       services.config.shared_max_age)
        return self._respond(start_response, status, headers, body, "", environ, path, request_id, started)

    @staticmethod
    def _respond(start_response: Callable[..., Any], status: int, headers: list[tuple[str, str]], body: bytes,
                 code: str, environ: dict[str, Any], path: str, request_id: str, started: float) -> list[bytes]:
        if status != 304:
            headers = [*headers, ("Content-Length", str(len(body)))]
        headers = [*headers, (REQUEST_ID_HEADER, request_id)]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        ops.record(ROUTE, ENDPOINT, "GET", path, status, code, time.perf_counter() - started,
                   conditional=bool(environ.get("HTTP_IF_NONE_MATCH")), bytes_in=0)
        return [body]

