"""The HTTP API: routes under /v2/<collection>/_trust/tuf/, the changefeeds, and the JSON error body.

Routes only translate between HTTP and the domain (`publish`, the store, the signer);
every ServerError becomes `{"errors": [{"code", "message", "detail"}]}` with its status.
Every route declares the access it needs (`auth.requires`), checked by `auth.guard` first;
every change is recorded in the audit log with who made it.
"""

from __future__ import annotations

import logging
import re

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from tufnotary.server.auth import ADMIN, CATALOG_ADMIN, PING, PULL_CHANGEFEED, PULL_METADATA, PUSH
from tufnotary.server.auth import audit_entry, guard, requires
from tufnotary.server.config import max_file_bytes
from tufnotary.server.errors import (
    BadRequestError,
    BadRoleError,
    MalformedMetadataError,
    NotFoundError,
    ServerError,
    UploadTooLargeError,
)
from tufnotary.server.names import check_collection, check_role
from tufnotary.server.publish import ONLINE_ROLES, publish
from tufnotary.server.reads import answer, parse_filename

log = logging.getLogger(__name__)
bp = Blueprint("tuf", __name__)
bp.before_request(guard)

_KEY = re.compile(r"(?P<role>timestamp|snapshot)\.key")


def _services():
    return current_app.extensions["tufnotary"]


def error_response(error: ServerError) -> Response:
    return Response(error.body(), status=error.http_status, mimetype="application/json", headers=error.headers)


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
@requires(PING)
def ping() -> Response:
    return jsonify({})


@bp.post("/v2/<path:collection>/_trust/tuf/")
@requires(PUSH)
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
    versions = publish(services.store, services.signer, services.config, collection, uploads,
                       audit=lambda details: audit_entry("publish", collection, details))
    log.info("published %s: %s", collection, versions)
    return jsonify({"collection": collection, "versions": versions})


@bp.delete("/v2/<path:collection>/_trust/tuf/")
@requires(ADMIN)
def delete_collection(collection: str) -> Response:
    """Delete the signer keys first: if the signer is down nothing is deleted and a retry works,
    and a collection re-created under the same name never meets its predecessor's keys.
    The audit record (with the versions and keys deleted) is stored with the deletion."""
    check_collection(collection)
    services = _services()
    versions = {role: f.version for role, f in services.store.current(collection).items()}
    keys = services.signer.list_keys(collection)
    for key in keys:
        services.signer.delete_key(key.keyid)
    entry = audit_entry("delete", collection, {"roles": versions, "signer_keys": sorted(k.keyid for k in keys)})
    if not services.store.delete_collection(collection, audit=entry):
        if not keys:
            raise NotFoundError(f"collection {collection} does not exist")
        services.store.append_audit(entry)
    log.info("deleted collection %s", collection)
    return jsonify({"collection": collection, "deleted": True})


@bp.get("/v2/<path:collection>/_trust/tuf/<path:filename>")
@requires(PULL_METADATA)
def get_metadata(collection: str, filename: str) -> Response:
    """Also answered, identically, by `fastread.FastReads` before Flask when it can."""
    check_collection(collection)
    services = _services()
    if _KEY.fullmatch(filename):
        raise NotFoundError(f"{filename} is served by its own route")  # unreachable: get_online_key
    parsed = parse_filename(filename)
    if parsed is None:
        raise NotFoundError(f"{filename} is not a metadata file name (role.json or N.role.json)")
    role, version = parsed
    check_role(role)
    stored = services.reads.get(collection, role, version)
    if stored is None:
        what = f"version {version} of {role}" if version is not None else role
        raise NotFoundError(f"{collection} has no {what} metadata", {"role": role, "version": version})
    status, headers, body = answer(stored, version is not None, request.headers.get("If-None-Match"),
                                   services.config.shared_max_age)
    return Response(body, status=status, headers=headers)


@bp.get("/v2/<path:collection>/_trust/tuf/<any(timestamp, snapshot):role>.key")
@requires(PUSH)
def get_online_key(collection: str, role: str) -> Response:
    """The server-managed public key of `role`, created on first request: part of initialising a
    collection, so it needs push (consumers get the key from root.json)."""
    check_collection(collection)
    assert role in ONLINE_ROLES
    services = _services()
    key = services.signer.get_public_key(collection, role)
    if key is None:
        key = services.signer.create_key(collection, role)
        services.store.append_audit(audit_entry("key-create", collection, {"role": role, "keyid": key.keyid}))
        log.info("created the %s key of %s: %s", role, collection, key.keyid)
    return jsonify({"keyid": key.keyid, **key.to_dict()})


@bp.post("/v2/<path:collection>/_trust/tuf/<any(timestamp, snapshot):role>.key")
@requires(ADMIN)
def rotate_online_key(collection: str, role: str) -> Response:
    """Start rotating a server-managed key: the signer makes a pending key and the server keeps
    signing with the current one until a root listing the new key is published."""
    check_collection(collection)
    services = _services()
    signer = services.signer
    current = signer.get_public_key(collection, role)
    if current is None:
        raise NotFoundError(f"{collection} has no server-managed {role} key to rotate; GET {role}.key creates one")
    key = signer.rotate_key(collection, role)
    services.store.append_audit(audit_entry("key-rotate", collection, {
        "role": role, "keyid": key.keyid, "previous_keyid": current.keyid, "state": "pending"}))
    log.info("started rotating the %s key of %s: pending %s", role, collection, key.keyid)
    return jsonify({"keyid": key.keyid, **key.to_dict(), "state": "pending"})


MAX_CHANGEFEED_LIMIT = 1000


def _int_arg(name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequestError(f"{name} must be a whole number", {name: raw[:32]})
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        raise BadRequestError(f"{name} must be between {minimum} and {maximum}", {name: value})
    return value


def _changefeed(collection: str | None) -> Response:
    since = _int_arg("since", 0, 0)
    limit = _int_arg("limit", 100, 1, MAX_CHANGEFEED_LIMIT)
    records = _services().store.audit_records(collection, since=since, limit=limit + 1)
    more = len(records) > limit
    records = records[:limit]
    return jsonify({"records": [r.to_dict() for r in records],
                    "next": records[-1].seq if records else since, "more": more})


@bp.get("/v2/<path:collection>/_trust/changefeed")
@requires(PULL_CHANGEFEED)
def collection_changefeed(collection: str) -> Response:
    """The audit records of one collection after `since` (a record's seq), oldest first."""
    return _changefeed(check_collection(collection))


@bp.get("/v2/_trust/changefeed")
@requires(CATALOG_ADMIN)
def changefeed() -> Response:
    """The audit records of every collection (admins: registry:catalog:*)."""
    return _changefeed(None)
