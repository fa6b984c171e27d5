"""Who may do what: every route of the API declares the access it needs (`requires`), and
`guard` checks it before the route runs — rate limit, collection name, bearer token, grant.

A route without a declared need is refused (deny by default). Failures are `UNAUTHORIZED`
(401, with a registry `WWW-Authenticate: Bearer` challenge) or `DENIED` (403). The server's own
token endpoint (`/_tufnotary/token`) lives here too. Tokens and passwords are never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, g, jsonify, request

from tufnotary.server.audit import AuditEntry
from tufnotary.server.auth_config import AuthConfig
from tufnotary.server.errors import (
    BadRequestError,
    DeniedError,
    NotFoundError,
    ServerError,
    TooManyRequestsError,
    UnauthorizedError,
)
from tufnotary.server.names import check_collection
from tufnotary.server.ratelimit import RateLimiter, retry_after
from tufnotary.server.tokens import (
    ANONYMOUS,
    CATALOG,
    REGISTRY,
    REPOSITORY,
    Grant,
    Principal,
    TokenIssuer,
    TokenVerifier,
    load_jwks,
)
from tufnotary.server.users import UsersFile

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
TOKEN_PATH = "/_tufnotary/token"
_NEED_ATTRIBUTE = "_tufnotary_need"
SERVER_SUBJECT = "tufnotary-server"


@dataclass(frozen=True)
class Need:
    """The access a route needs.

    kind: "ping" (any caller who could pull anything), "repository" (`action` on the route's
    collection), "catalog" (`registry:catalog:*`), or "token" (the token endpoint, which
    checks basic credentials itself). `anonymous`: anonymous pull, when on, satisfies it.
    `scope_actions`: what a challenge tells the client to ask for (a publisher needs both).
    """

    kind: str
    action: str = "pull"
    anonymous: bool = False
    scope_actions: str = ""


PING = Need("ping", anonymous=True)
PULL_METADATA = Need("repository", "pull", anonymous=True, scope_actions="pull")
PULL_CHANGEFEED = Need("repository", "pull", scope_actions="pull")
PUSH = Need("repository", "push", scope_actions="pull,push")
ADMIN = Need("repository", "*", scope_actions="*")
CATALOG_ADMIN = Need("catalog", "*", scope_actions="*")
TOKEN = Need("token")


def requires(need: Need) -> Callable[[F], F]:
    def mark(view: F) -> F:
        setattr(view, _NEED_ATTRIBUTE, need)
        return view

    return mark


@dataclass
class Gatekeeper:
    """What `guard` checks with, built once per app from `AuthConfig`."""

    config: AuthConfig
    verifier: TokenVerifier
    issuer: TokenIssuer | None = None
    users: UsersFile | None = None
    limiter: RateLimiter | None = None


def build_gatekeeper(config: AuthConfig) -> Gatekeeper:
    """Raise ValueError when auth is on but nothing could ever be allowed (no issuer, no users
    file, no anonymous pull): such a server would refuse every request, so it does not start."""
    keys = []
    if config.jwks_file:
        assert config.issuer
        keys += load_jwks(Path(config.jwks_file), config.issuer)
    issuer = users = None
    if config.users_file:
        assert config.token_key
        issuer = TokenIssuer(Path(config.token_key).read_bytes(), config.token_issuer, config.service,
                             config.token_ttl)
        keys.append(issuer.trusted_key)
        users = UsersFile(Path(config.users_file))
    if config.enabled and not keys and not config.anonymous_pull:
        raise ValueError(
            "authentication is on but nothing is configured to authenticate with: set "
            "TUFNOTARY_SERVER_AUTH_USERS_FILE and TUFNOTARY_SERVER_AUTH_TOKEN_KEY (the server's own "
            "tokens), or TUFNOTARY_SERVER_AUTH_ISSUER and TUFNOTARY_SERVER_AUTH_JWKS_FILE (an external "
            "token server), or TUFNOTARY_SERVER_AUTH_ANONYMOUS_PULL=true for a read-only server; "
            "TUFNOTARY_SERVER_AUTH=none turns authentication off (docs/auth.md)")
    limiter = RateLimiter(config.rate_limit, config.rate_burst) if config.rate_limit > 0 else None
    return Gatekeeper(config, TokenVerifier(keys, config.service, config.algorithms, config.leeway),
                      issuer, users, limiter)


def _gatekeeper() -> Gatekeeper:
    return current_app.extensions["tufnotary_auth"]


def client_address() -> str | None:
    return request.remote_addr


def principal() -> Principal:
    """Who the current request is (set by `guard`)."""
    return g.get("tufnotary_principal", ANONYMOUS)


def audit_entry(action: str, collection: str, details: dict[str, Any]) -> AuditEntry:
    """An audit entry of the current request's caller."""
    who = principal()
    if who.issuer:
        details = {**details, "issuer": who.issuer}
    return AuditEntry(action, collection, who.subject, client_address(), details)


def _challenge(error: ServerError, config: AuthConfig, host_url: Callable[[], str], scope: str | None,
               problem: str | None) -> ServerError:
    realm = config.realm or host_url().rstrip("/") + TOKEN_PATH
    parts = [f'realm="{realm}"', f'service="{config.service}"']
    if scope:
        parts.append(f'scope="{scope}"')
    if problem:
        parts.append(f'error="{problem}"')
    error.headers["WWW-Authenticate"] = "Bearer " + ",".join(parts)
    return error


def _bearer(keeper: Gatekeeper, header: str | None) -> Principal | None:
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("send a bearer token (Authorization: Bearer <token>) from the token realm")
    return keeper.verifier.verify(token.strip())


RATE_CHARGED = "tufnotary.rate_charged"
"""WSGI environ key: the wait `charge` already computed for this request (the fast read path
charges before it falls through to Flask, and a request is charged once)."""


def charge(keeper: Gatekeeper, address: str | None, environ: dict[str, Any]) -> None:
    """Spend one request of the client's rate limit; TooManyRequestsError when it has none left."""
    if keeper.limiter is None:
        return
    wait = environ.get(RATE_CHARGED)
    if wait is None:
        wait = environ[RATE_CHARGED] = keeper.limiter.take(address or "unknown")
    if wait > 0:
        error = TooManyRequestsError("too many requests from this client: slow down and retry",
                                     {"retry_after": retry_after(wait)})
        error.headers["Retry-After"] = retry_after(wait)
        raise error


def authorize(keeper: Gatekeeper, need: Need, collection: str | None, authorization: str | None,
              method: str, path: str, address: str | None, host_url: Callable[[], str]) -> Principal | None:
    """Who the caller is if `need` allows them on `collection` (None: anonymous, allowed); raise
    UnauthorizedError or DeniedError, with the challenge naming the token realm (by default on
    `host_url()`, asked only then), otherwise. Reads nothing but its arguments."""
    config = keeper.config
    if need.kind == "token" or not config.enabled:
        return None
    scope = None
    if need.kind == "repository":
        scope = f"{REPOSITORY}:{collection}:{need.scope_actions}"
    elif need.kind == "catalog":
        scope = f"{REGISTRY}:{CATALOG}:*"
    try:
        who = _bearer(keeper, authorization)
    except UnauthorizedError as e:
        log.info("refused %s %s from %s: %s", method, path, address, e.message)
        raise _challenge(e, config, host_url, scope, "invalid_token") from None
    if who is None:
        if need.anonymous and config.anonymous_pull and need.action == "pull":
            return None
        raise _challenge(UnauthorizedError("authentication required: get a token from the realm of the "
                                           "WWW-Authenticate challenge"), config, host_url, scope, None)
    if need.kind == "ping":
        return who
    allowed = who.allows(REGISTRY, CATALOG, "*") if need.kind == "catalog" else \
        who.allows(REPOSITORY, collection or "", need.action)
    if not allowed:
        log.info("denied %s %s to %s from %s", method, path, who.subject, address)
        raise _challenge(DeniedError(f"{who.subject} may not {need.action} "
                                     + (f"collection {collection}" if collection else "the catalog"),
                                     {"scope": scope}), config, host_url, scope, "insufficient_scope")
    return who


def need_of(view: Callable[..., Any] | None) -> Need | None:
    return getattr(view, _NEED_ATTRIBUTE, None)


def guard() -> None:
    """Before every request of the API's blueprints: rate limit, name, token, grant."""
    keeper = _gatekeeper()
    charge(keeper, client_address(), request.environ)
    need = need_of(current_app.view_functions.get(request.endpoint or ""))
    if need is None:
        raise DeniedError("this route declares no access rule, so nobody may use it")
    collection = None
    if need.kind == "repository":
        collection = check_collection((request.view_args or {}).get("collection", ""))
    who = authorize(keeper, need, collection, request.headers.get("Authorization"), request.method,
                    request.path, client_address(), lambda: request.host_url)
    if who is not None:
        g.tufnotary_principal = who


token_bp = Blueprint("auth", __name__)
token_bp.before_request(guard)


def _granted(requested: Grant, user_grants: tuple[Grant, ...]) -> Grant | None:
    """The part of `requested` the user may have (the registry token spec's intersection)."""
    if "*" in requested.name:
        actions = {a for a in requested.actions
                   if any(g.name == requested.name and g.type == requested.type
                          and ("*" in g.actions or a in g.actions) for g in user_grants)}
    else:
        actions = {a for a in requested.actions
                   if any(g.allows(requested.type, requested.name, a) for g in user_grants)}
    return Grant(requested.type, requested.name, frozenset(actions)) if actions else None


@token_bp.get(TOKEN_PATH)
@requires(TOKEN)
def issue_token() -> Response:
    """Docker registry token endpoint: HTTP basic credentials in, `{"token", "expires_in"}` out."""
    keeper = _gatekeeper()
    if keeper.issuer is None or keeper.users is None:
        raise NotFoundError("this server issues no tokens: ask the realm of its WWW-Authenticate challenge")
    service = request.args.get("service")
    if service is not None and service != keeper.config.service:
        raise BadRequestError(f"this token endpoint issues tokens for service {keeper.config.service!r}")
    credentials = request.authorization
    if credentials is None or credentials.type != "basic" or not credentials.username:
        error = UnauthorizedError("send a user name and password (HTTP basic authentication)")
        error.headers["WWW-Authenticate"] = f'Basic realm="{keeper.config.service}"'
        raise error
    user = keeper.users.authenticate(credentials.username, credentials.password or "")
    if user is None:
        log.info("token refused: wrong password or unknown user %r from %s", credentials.username[:64],
                 client_address())
        error = UnauthorizedError("wrong user name or password")
        error.headers["WWW-Authenticate"] = f'Basic realm="{keeper.config.service}"'
        raise error
    grants = []
    for scope in request.args.getlist("scope"):
        for one in scope.split(" "):
            if not one:
                continue
            try:
                requested = Grant.parse(one)
            except ValueError as e:
                raise BadRequestError(f"scope {one[:300]!r} does not parse: {e}") from e
            granted = _granted(requested, user.access)
            if granted is not None:
                grants.append(granted)
    token, expires_in = keeper.issuer.issue(user.name, grants)
    log.info("issued a token to %s from %s: %s", user.name, client_address(), [g.scope() for g in grants])
    return jsonify({"token": token, "access_token": token, "expires_in": expires_in})
