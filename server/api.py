"""The HTTP API: routes under /v2/<collection>/_trust/tuf/, and the JSON error body.

Routes only translate between HTTP and the domain (`publish`, the store, the signer);
every ServerError becomes `{"errors": [{"code", "message", "detail"}]}` with its status.
"""

from __future__ import annotations

import logging
import re

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from tufnotary.server.config import max_file_bytes
from tufnotary.server.errors import (
    BadRoleError,
    MalformedMetadataError,
    NotFoundError,
    ServerError,
    UploadTooLargeError,
)
from tufnotary.server.names import check_collection, check_role
from tufnotary.server.publish import ONLINE_ROLES, publish

log = logging.getLogger(__name__)
bp = Blueprint("tuf", __name__)

_VERSIONED = re.compile(r"(?P<version>[0-9]+)\.(?P<role>.+)\.json")
_CURRENT = re.compile(r"(?P<role>.+)\.json")
_KEY = re.compile(r"(?P<role>timestamp|snapshot)\.key")
# Versioned files never change: any cache may keep them. Current files change on publish.
_IMMUTABLE = "public, max-age=31536000, immutable"
_MUTABLE = "no-cache"


def _services():
    return current_app.extensions["tufnotary"]


def error_response(error: ServerError) -> Response:
    response = jsonify({"errors": [error.to_dict()]})
    response.status_code = error.http_status
    return response


@bp.app_errorhandler(ServerError)
def _on_server_error(error: ServerError) -> Response:
    if error.http_status >= 500:
        log.warning("request failed: %s %s", error.code, error.message)
    return error_response(error)


@bp.app_errorhandler(HTTPException)
def _on_http_error(error: HTTPException) -> Response:
    """Routing and protocol errors (404, 405, 413...) in the same JSON shape as ours."""
    if isinstance(error, RequestEntityTooLarge):
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return error_response(
            UploadTooLargeError(f"the upload is larger than the server's limit of {limit} bytes")
        )
    code = (error.name or "error").upper().replace(" ", "_")
    response = jsonify({"errors": [{"code": code, "message": error.description, "detail": None}]})
    response.status_code = error.code or 500
    return response


@bp.app_errorhandler(Exception)
def _on_unexpected(error: Exception) -> Response:
    log.exception("unexpected error")
    return error_response(ServerError("internal server error; the request was not applied"))


@bp.get("/v2/")
def ping() -> Response:
    return jsonify({})


@bp.post("/v2/<path:collection>/_trust/tuf/")
def post_metadata(collection: str) -> Response:
    check_collection(collection)
    services = _services()
    uploads: dict[str, bytes] = {}
    for field, storage in request.files.items(multi=True):
        role = check_role(field)
        if role in uploads:
            raise BadRoleError(f"{role} appears twice in the upload", {"role": role})
        limit = max_file_bytes(services.config, role)
        data = storage.read(limit + 1)
        if len(data) > limit:
            raise UploadTooLargeError(
                f"{role} is larger than {limit} bytes, the most this server (and a standard TUF client) "
                "accepts for it: split targets into delegated roles or hash bins",
                {"role": role, "limit": limit},
            )
        uploads[role] = data
    if request.form:
        raise MalformedMetadataError(
            "upload each role as a file part named after the role (multipart/form-data)",
            {"fields": sorted(request.form)},
        )
    versions = publish(services.store, services.signer, services.config, collection, uploads)
    log.info("published %s: %s", collection, versions)
    return jsonify({"collection": collection, "versions": versions})


@bp.delete("/v2/<path:collection>/_trust/tuf/")
def delete_collection(collection: str) -> Response:
    """Delete the signer keys first: if the signer is down nothing is deleted and a retry works,
    and a collection re-created under the same name never meets its predecessor's keys."""
    check_collection(collection)
    services = _services()
    keys = services.signer.list_keys(collection)
    for key in keys:
        services.signer.delete_key(key.keyid)
    if not services.store.delete_collection(collection) and not keys:
        raise NotFoundError(f"collection {collection} does not exist")
    log.info("deleted collection %s", collection)
    return jsonify({"collection": collection, "deleted": True})


@bp.get("/v2/<path:collection>/_trust/tuf/<path:filename>")
def get_metadata(collection: str, filename: str) -> Response:
    check_collection(collection)
    services = _services()
    if match := _KEY.fullmatch(filename):
        return _online_key(collection, match["role"])
    version: int | None = None
    if match := _VERSIONED.fullmatch(filename):
        version, role = int(match["version"]), match["role"]
    elif match := _CURRENT.fullmatch(filename):
        role = match["role"]
    else:
        raise NotFoundError(f"{filename} is not a metadata file name (role.json or N.role.json)")
    check_role(role)
    stored = services.store.get(collection, role, version)
    if stored is None:
        what = f"version {version} of {role}" if version is not None else role
        raise NotFoundError(f"{collection} has no {what} metadata", {"role": role, "version": version})
    etag = f'"{stored.sha256}"'
    response = Response(stored.data, mimetype="application/json")
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = _IMMUTABLE if version is not None else _MUTABLE
    if request.headers.get("If-None-Match") == etag:
        response = Response(status=304, headers={"ETag": etag, "Cache-Control": response.headers["Cache-Control"]})
    return response


def _online_key(collection: str, role: str) -> Response:
    assert role in ONLINE_ROLES
    signer = _services().signer
    key = signer.get_public_key(collection, role) or signer.create_key(collection, role)
    return jsonify({"keyid": key.keyid, **key.to_dict()})


@bp.post("/v2/<path:collection>/_trust/tuf/<any(timestamp, snapshot):role>.key")
def rotate_online_key(collection: str, role: str) -> Response:
    """Start rotating a server-managed key: the signer makes a pending key and the server keeps
    signing with the current one until a root listing the new key is published."""
    check_collection(collection)
    signer = _services().signer
    if signer.get_public_key(collection, role) is None:
        raise NotFoundError(f"{collection} has no server-managed {role} key to rotate; GET {role}.key creates one")
    key = signer.rotate_key(collection, role)
    log.info("started rotating the %s key of %s: pending %s", role, collection, key.keyid)
    return jsonify({"keyid": key.keyid, **key.to_dict(), "state": "pending"})
