"""The OpenAPI 3 description of the server's HTTP API, served at `/_tufnotary/openapi.json`.

`tests/ops/test_openapi.py` checks that every Flask route is described here and every path here is
a Flask route, so this document cannot drift from `api.py` and `ops.py` unnoticed. Paths use
`{collection}` for a collection name, which may contain `/` (like an OCI repository name).
"""

from __future__ import annotations

from typing import Any

from tufnotary.server.errors import ServerError

_ERROR_REF = {"$ref": "#/components/responses/Error"}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _ERROR_REF for status in statuses}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_COLLECTION = {
    "name": "collection", "in": "path", "required": True,
    "description": "Collection name: lower-case path components joined by '/', at most 255 characters",
    "schema": {"type": "string", "maxLength": 255},
}
_TUF_METADATA = {"type": "object", "required": ["signed", "signatures"],
                 "properties": {"signed": {"type": "object"}, "signatures": {"type": "array"}}}
_CHANGEFEED_QUERY = [
    {"name": "since", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}},
]
_PUBLIC_KEY = {
    "type": "object", "required": ["keyid", "keytype", "scheme", "keyval"],
    "properties": {"keyid": {"type": "string"}, "keytype": {"type": "string"}, "scheme": {"type": "string"},
                   "keyval": {"type": "object", "properties": {"public": {"type": "string"}}},
                   "state": {"type": "string", "enum": ["pending"]}},
}


def _error_codes() -> list[str]:
    codes: set[str] = set()
    stack: list[type[ServerError]] = [ServerError]
    while stack:
        cls = stack.pop()
        codes.add(cls.code)
        stack.extend(cls.__subclasses__())
    return sorted(codes)


def openapi_document() -> dict[str, Any]:
    tuf = "/v2/{collection}/_trust/tuf/"
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "tufnotary metadata server",
            "version": "1",
            "description": "Standard TUF 1.0 metadata for many collections. Every error body is "
                           "{\"errors\": [{\"code\", \"message\", \"detail\"}]} with a stable code (docs/api.md).",
        },
        "paths": {
            "/v2/": {"get": {"summary": "Ping", "operationId": "ping",
                             "responses": {"200": _json({"type": "object"}, "The server answers")}}},
            tuf: {
                "parameters": [_COLLECTION],
                "post": {
                    "summary": "Atomic publish: one file part per role, named after the role",
                    "operationId": "publish",
                    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                        "type": "object", "additionalProperties": {"type": "string", "format": "binary"}}}}},
                    "responses": {
                        "200": _json({"type": "object", "required": ["collection", "versions"], "properties": {
                            "collection": {"type": "string"},
                            "versions": {"type": "object", "additionalProperties": {"type": "integer"}}}},
                            "Every file stored in one transaction; the version of each role written"),
                        **_errors(400, 401, 403, 409, 413, 429, 500, 502, 503),
                    },
                },
                "delete": {
                    "summary": "Delete a collection's metadata and its signer keys", "operationId": "deleteCollection",
                    "responses": {"200": _json({"type": "object"}, "Deleted"), **_errors(400, 401, 403, 404, 503)},
                },
            },
            tuf + "{filename}": {
                "parameters": [_COLLECTION, {
                    "name": "filename", "in": "path", "required": True,
                    "description": "ROLE.json (current), N.ROLE.json (immutable version N), timestamp.key or "
                                   "snapshot.key (the server-managed public key, created on first request)",
                    "schema": {"type": "string"}}],
                "get": {
                    "summary": "Signed metadata of a role, or a server-managed public key",
                    "operationId": "getMetadata",
                    "parameters": [{"name": "If-None-Match", "in": "header", "required": False,
                                    "schema": {"type": "string"}}],
                    "responses": {"200": _json({"oneOf": [_TUF_METADATA, _PUBLIC_KEY]}, "The file or key"),
                                  "304": {"description": "Not modified (ETag matched)"},
                                  **_errors(400, 404, 502, 503)},
                },
            },
            tuf + "{role}.key": {
                "parameters": [_COLLECTION, {"name": "role", "in": "path", "required": True,
                                             "schema": {"type": "string", "enum": ["timestamp", "snapshot"]}}],
                "get": {
                    "summary": "The server-managed public key of the role, created in the signer on first request",
                    "operationId": "getOnlineKey",
                    "responses": {"200": _json(_PUBLIC_KEY, "The active key"), **_errors(400, 401, 403, 502, 503)},
                },
                "post": {
                    "summary": "Start rotating a server-managed key (returns the pending key)",
                    "operationId": "rotateOnlineKey",
                    "responses": {"200": _json(_PUBLIC_KEY, "The pending key"), **_errors(400, 401, 403, 404, 502, 503)},
                },
            },
            "/v2/{collection}/_trust/changefeed": {
                "parameters": [_COLLECTION, *_CHANGEFEED_QUERY],
                "get": {"summary": "The collection's audit records (who published or deleted what, when)",
                        "operationId": "collectionChangefeed",
                        "responses": {"200": _json({"type": "object"}, "Audit records, oldest first"),
                                      **_errors(400, 401, 403, 429)}}},
            "/v2/_trust/changefeed": {
                "parameters": _CHANGEFEED_QUERY,
                "get": {"summary": "Every collection's audit records (catalog admins)", "operationId": "changefeed",
                        "responses": {"200": _json({"type": "object"}, "Audit records, oldest first"),
                                      **_errors(400, 401, 403, 429)}}},
            "/_tufnotary/token": {"get": {
                "summary": "Docker registry token endpoint: HTTP basic credentials in, a bearer token out "
                           "(docs/auth.md)",
                "operationId": "token",
                "parameters": [{"name": "service", "in": "query", "required": False, "schema": {"type": "string"}},
                               {"name": "scope", "in": "query", "required": False,
                                "schema": {"type": "array", "items": {"type": "string"}}}],
                "security": [{"basic": []}],
                "responses": {"200": _json({"type": "object", "properties": {
                    "token": {"type": "string"}, "access_token": {"type": "string"},
                    "expires_in": {"type": "integer"}}}, "A token"), **_errors(400, 401, 404, 429)}}},
            "/_tufnotary/health": {"get": {
                "summary": "Liveness: the process answers", "operationId": "health",
                "responses": {"200": _json({"type": "object"}, "Alive")}}},
            "/_tufnotary/ready": {"get": {
                "summary": "Readiness: the database and the signer answer", "operationId": "ready",
                "parameters": [{"name": "checks", "in": "query", "required": False,
                                "description": "comma-separated subset of database,signer",
                                "schema": {"type": "string"}}],
                "responses": {"200": _json({"$ref": "#/components/schemas/Readiness"}, "Ready"),
                              "503": _json({"$ref": "#/components/schemas/Readiness"}, "A dependency failed")}}},
            "/metrics": {"get": {
                "summary": "Prometheus metrics of every worker", "operationId": "metrics",
                "responses": {"200": {"description": "Prometheus text exposition",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/_tufnotary/openapi.json": {"get": {
                "summary": "This document", "operationId": "openapi",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3 document")}}},
        },
        "components": {
            "schemas": {
                "Error": {"type": "object", "required": ["errors"], "properties": {"errors": {
                    "type": "array", "items": {"type": "object", "required": ["code", "message"], "properties": {
                        "code": {"type": "string", "description": "stable code: " + ", ".join(_error_codes())},
                        "message": {"type": "string"}, "detail": {}}}}}},
                "Readiness": {"type": "object", "properties": {
                    "status": {"type": "string", "enum": ["ready", "unready"]},
                    "checks": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                        "ok": {"type": "boolean"}, "error": {"type": "string"}, "message": {"type": "string"}}}}}},
            },
            "responses": {"Error": _json({"$ref": "#/components/schemas/Error"}, "An error with a stable code")},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "basic": {"type": "http", "scheme": "basic"}},
        },
        "security": [{"bearer": []}, {}],
    }
