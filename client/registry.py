"""A small OCI distribution client on urllib3: resolve manifests, list tags, copy blobs and manifests.

What it guarantees, because signatures depend on it:
- a manifest is resolved by HEAD, then GET *by the digest the HEAD announced* (so the tag cannot
  move between the two), asking for the four manifest types (OCI manifest and index, Docker v2
  manifest and manifest list);
- the digest is always computed here over the exact bytes received; a `Docker-Content-Digest`
  header, or the digest of a reference, that disagrees is a `RegistryIntegrityError`;
- the media type is checked here: a known type, the same in `Content-Type` and in the body;
- blobs are hashed while they are copied and must match their descriptor's digest and size;
- plain HTTP only for loopback registries or hosts the caller allowed explicitly.
Authentication (anonymous, basic, bearer token) is in `registryauth.py`.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import urlencode, urljoin

import urllib3

from tufnotary.client.challenge import Challenge, parse_challenge
from tufnotary.client.errors import (
    RegistryError,
    RegistryIntegrityError,
    RegistryUnreachableError,
    UsageError,
)
from tufnotary.client.reference import Reference, is_loopback
from tufnotary.client.registryauth import CredentialStore, TokenCache

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # the limit registries apply to manifests
USER_AGENT = "tufnotary-client/0.1.0"
_CHUNK = 1024 * 1024


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Descriptor:
        try:
            digest, size = str(d["digest"]), int(d["size"])
        except (KeyError, TypeError, ValueError) as e:
            raise RegistryError(f"{where}: a descriptor lacks digest or size") from e
        if not digest.startswith("sha256:") or size < 0:
            raise RegistryError(f"{where}: unsupported descriptor digest {digest!r} (sha256 only)")
        platform = d.get("platform") if isinstance(d.get("platform"), dict) else None
        return cls(str(d.get("mediaType", "")), digest, size, platform)


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as the registry served it, digest and media type checked."""

    reference: Reference  # the reference it was resolved from
    digest: str
    media_type: str
    data: bytes = field(repr=False)

    @property
    def length(self) -> int:
        return len(self.data)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def _doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.data)
        return doc

    def children(self) -> list[Descriptor]:
        """The manifests an index references (empty for a manifest)."""
        if not self.is_index:
            return []
        return [Descriptor.from_dict(d, str(self.reference)) for d in self._doc().get("manifests", [])]

    def blobs(self) -> list[Descriptor]:
        """The config and layers of a manifest (empty for an index)."""
        if self.is_index:
            return []
        doc = self._doc()
        out = [Descriptor.from_dict(doc["config"], str(self.reference))]
        out.extend(Descriptor.from_dict(d, str(self.reference)) for d in doc.get("layers", []))
        return out


def check_manifest(ref: Reference, data: bytes, content_type: str, digest: str) -> Manifest:
    """A Manifest from bytes the registry served, or the reason they cannot be one."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in MANIFEST_TYPES:
        raise RegistryError(
            f"{ref}: the registry served media type {media_type or 'none'!r}, not an OCI or Docker "
            "v2 manifest or index (schema 1 manifests are not supported)"
        )
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise RegistryError(f"{ref}: the manifest is not JSON") from e
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
        raise RegistryError(f"{ref}: the manifest is not schema version 2")
    declared = doc.get("mediaType")
    if declared is not None and declared != media_type:
        raise RegistryIntegrityError(
            f"{ref}: the registry says {media_type} but the manifest declares {declared}"
        )
    if declared is None and media_type not in (OCI_MANIFEST, OCI_INDEX):
        raise RegistryError(f"{ref}: a Docker manifest must declare its mediaType")
    shape_ok = ("manifests" in doc) if media_type in INDEX_TYPES else ("config" in doc)
    if not shape_ok:
        raise RegistryIntegrityError(f"{ref}: the manifest's content does not match its media type {media_type}")
    manifest = Manifest(ref, digest, media_type, data)
    manifest.children() if manifest.is_index else manifest.blobs()  # descriptors parse
    return manifest


class RegistryClient:
    """Client of any number of OCI registries, with one credential store and token cache."""

    def __init__(
        self,
        credentials: CredentialStore | None = None,
        insecure: Iterable[str] = (),
        timeout: float = 30.0,
    ) -> None:
        self.credentials = credentials or CredentialStore()
        self.insecure = frozenset(h.lower() for h in insecure)
        self.tokens = TokenCache()
        self._challenges: dict[str, Challenge] = {}
        self._pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout, 10.0), read=timeout),
            headers={"User-Agent": USER_AGENT},
        )

    # --- transport ------------------------------------------------------------------------

    def plain_http(self, registry: str) -> bool:
        return is_loopback(registry) or registry.lower() in self.insecure

    def base_url(self, ref: Reference) -> str:
        scheme = "http" if self.plain_http(ref.registry) else "https"
        return f"{scheme}://{ref.api_host}/v2/"

    def _auth_header(self, registry: str, scopes: frozenset[str]) -> str | None:
        challenge = self._challenges.get(registry)
        if challenge is None:
            return None
        creds = self.credentials.get(registry)
        if challenge.scheme == "basic":
            if creds is not None and creds.identity_token is not None:
                raise RegistryError(f"{registry} asks for a password, and its credentials are an "
                                    "identity token (for token-auth registries): log in with a "
                                    "password or set TUFNOTARY_REGISTRY_USERNAME/PASSWORD", 401)
            return creds.basic_header() if creds else None
        if challenge.scheme == "bearer":
            realm, service = challenge.params.get("realm", ""), challenge.params.get("service", "")
            token = self.tokens.get(realm, service, scopes)
            if token is None:
                token = self._fetch_token(registry, challenge, scopes)
            return f"Bearer {token}"
        return None

    def _fetch_token(self, registry: str, challenge: Challenge, scopes: frozenset[str]) -> str:
        realm, service = challenge.params.get("realm", ""), challenge.params.get("service", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"{registry}: the registry's token realm {realm!r} is not a URL")
        realm_host = urllib3.util.parse_url(realm).netloc or ""
        if realm.startswith("http://") and not self.plain_http(realm_host):
            raise RegistryError(
                f"{registry}: refusing to ask for a token over plain HTTP at {realm} "
                "(allow the host explicitly with --insecure-registry)"
            )
        query = [("service", service)] if service else []
        creds = self.credentials.get(registry)
        try:
            if creds is not None and creds.identity_token is not None:
                # The OAuth2 flow of the token spec: the identity token is a refresh token.
                form = [("grant_type", "refresh_token"), ("refresh_token", creds.identity_token),
                        ("client_id", USER_AGENT.split("/")[0]), ("scope", " ".join(sorted(scopes))), *query]
                response = self._pool.request(
                    "POST", realm, body=urlencode(form), redirect=False,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    retries=urllib3.Retry(total=2, read=0, redirect=0))
            else:
                headers = {"Authorization": creds.basic_header()} if creds is not None else {}
                query += [("scope", s) for s in sorted(scopes)]
                url = realm + ("&" if "?" in realm else "?") + urlencode(query)
                response = self._pool.request("GET", url, headers=headers, redirect=False,
                                              retries=urllib3.Retry(total=2, read=0, redirect=0))
        except urllib3.exceptions.HTTPError as e:
            raise RegistryUnreachableError(f"cannot reach the token service of {registry}: "
                                           f"{getattr(e, 'reason', None) or e}") from e
        if response.status in (401, 403):
            raise RegistryError(
                f"{registry}: the token service refused "
                + ("the credentials" if creds else "anonymous access")
                + f" for {', '.join(sorted(scopes)) or 'the registry'} (HTTP {response.status}); "
                "log in with 'docker login' or set TUFNOTARY_REGISTRY_USERNAME/PASSWORD",
                response.status,
            )
        try:
            body = json.loads(response.data)
            token = str(body.get("token") or body.get("access_token") or "")
            expires_in = float(body.get("expires_in", 60))
        except (ValueError, AttributeError, TypeError):
            token, expires_in = "", 0.0
        if response.status != 200 or not token:
            raise RegistryError(f"{registry}: the token service answered HTTP {response.status} "
                                "without a token", response.status)
        self.tokens.put(realm, service, scopes, token, expires_in)
        return token

    def request(
        self,
        method: str,
        ref: Reference,
        path: str,
        scopes: frozenset[str],
        what: str,
        headers: dict[str, str] | None = None,
        body: Any = None,
        stream: bool = False,
        redirect: bool = False,
        ok: tuple[int, ...] = (200,),
        url: str | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """One request to `ref`'s registry, authenticating once on a 401 challenge."""
        full = url or urljoin(self.base_url(ref), path)
        retry_read = 0 if method in ("POST", "PUT", "PATCH") else 2
        for attempt in (1, 2):
            sent = {"User-Agent": USER_AGENT, **(headers or {})}
            auth = self._auth_header(ref.registry, scopes)
            if auth is not None:
                sent["Authorization"] = auth
            if hasattr(body, "seek"):
                body.seek(0)
            try:
                response = self._pool.request(
                    method, full, headers=sent, body=body, preload_content=not stream,
                    redirect=redirect,
                    retries=urllib3.Retry(total=2, read=retry_read, redirect=5 if redirect else 0,
                                          status=0, backoff_factor=0.2),
                )
            except urllib3.exceptions.HTTPError as e:
                reason = getattr(e, "reason", None) or e
                raise RegistryUnreachableError(
                    f"{what}: cannot reach registry {ref.registry}: {reason}"
                ) from e
            if response.status == 401 and attempt == 1:
                challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
                response.drain_conn()
                if challenge is None or challenge.scheme not in ("basic", "bearer"):
                    raise RegistryError(f"{what}: registry {ref.registry} wants an unsupported "
                                        "authentication scheme", 401)
                if challenge.scheme == "basic" and self.credentials.get(ref.registry) is None:
                    raise RegistryError(
                        f"{what}: registry {ref.registry} requires credentials: log in with "
                        "'docker login' (~/.docker/config.json) or set TUFNOTARY_REGISTRY_USERNAME "
                        "and TUFNOTARY_REGISTRY_PASSWORD", 401)
                if challenge.scheme == "basic" and not self.plain_http(ref.registry) and full.startswith("http://"):
                    raise RegistryError(f"{what}: refusing to send credentials over plain HTTP", 401)
                previous = self._challenges.get(ref.registry)
                if previous is not None and previous.scheme == "bearer":
                    p = previous.params
                    self.tokens.forget(p.get("realm", ""), p.get("service", ""), scopes)
                self._challenges[ref.registry] = challenge
                continue
            if response.status == 401:
                creds = self.credentials.get(ref.registry)
                raise RegistryError(
                    f"{what}: registry {ref.registry} refused "
                    + ("the credentials" if creds else "anonymous access")
                    + f" for {', '.join(sorted(scopes))} (HTTP 401); log in with 'docker login' "
                    "or set TUFNOTARY_REGISTRY_USERNAME/PASSWORD", 401)
            if response.status not in ok:
                raise self._error(response, what)
            return response
        raise RegistryError(f"{what}: registry {ref.registry} refused the credentials (HTTP 401)", 401)

    @staticmethod
    def _error(response: urllib3.BaseHTTPResponse, what: str) -> RegistryError:
        try:
            data = response.data if response.data else response.read(64 * 1024)
            first = json.loads(data)["errors"][0]
            code, message = str(first.get("code", "")), str(first.get("message", ""))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            code, message = "", ""
        text = f"{what}: registry answered HTTP {response.status}"
        if code:
            text += f" ({code}: {message})" if message else f" ({code})"
        return RegistryError(text, response.status, code)

    # --- manifests -----------------------------------------------------------------------

    @staticmethod
    def pull_scope(ref: Reference) -> frozenset[str]:
        return frozenset({f"repository:{ref.repository}:pull"})

    @staticmethod
    def push_scope(ref: Reference) -> frozenset[str]:
        return frozenset({f"repository:{ref.repository}:pull,push"})

    def resolve(self, ref: Reference) -> Manifest:
        """The manifest `ref` names now, its digest computed here."""
        what = f"resolving {ref}"
        accept = {"Accept": ", ".join(MANIFEST_TYPES)}
        scopes = self.pull_scope(ref)
        head = self.request("HEAD", ref, f"{ref.repository}/manifests/{ref.identifier}", scopes,
                            what, headers=accept)
        announced = head.headers.get("Docker-Content-Digest")
        expected = ref.digest
        if expected and announced and announced != expected:
            raise RegistryIntegrityError(f"{what}: the registry announced {announced}")
        by = expected or announced or ref.identifier
        response = self.request("GET", ref, f"{ref.repository}/manifests/{by}", scopes, what,
                                headers=accept, stream=True)
        try:
            data = response.read(MAX_MANIFEST_BYTES + 1)
        finally:
            response.release_conn()
        if len(data) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"{what}: the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
        digest = sha256_digest(data)
        for claimed, source in ((expected, "the reference"), (announced, "the registry's HEAD"),
                                (response.headers.get("Docker-Content-Digest"), "the registry's GET")):
            if claimed and claimed != digest:
                raise RegistryIntegrityError(
                    f"{what}: the manifest served hashes to {digest}, not {claimed} as {source} says"
                )
        return check_manifest(ref, data, response.headers.get("Content-Type", ""), digest)

    def exists(self, ref: Reference) -> bool:
        """True when `ref` names a manifest in its registry (False on 404)."""
        try:
            self.request("HEAD", ref, f"{ref.repository}/manifests/{ref.identifier}",
                         self.pull_scope(ref), f"looking up {ref}",
                         headers={"Accept": ", ".join(MANIFEST_TYPES)})
        except RegistryError as e:
            if e.status == 404:
                return False
            raise
        return True

    def tags(self, ref: Reference) -> list[str]:
        """Every tag of `ref`'s repository (following pagination)."""
        what = f"listing the tags of {ref.name}"
        out: list[str] = []
        url: str | None = urljoin(self.base_url(ref), f"{ref.repository}/tags/list?n=1000")
        while url is not None:
            response = self.request("GET", ref, "", self.pull_scope(ref), what, url=url)
            try:
                out.extend(str(t) for t in (json.loads(response.data).get("tags") or []))
            except (ValueError, AttributeError) as e:
                raise RegistryError(f"{what}: the registry's answer is not a tag list") from e
            link = response.headers.get("Link", "")
            url = urljoin(url, link.split(";")[0].strip(" <>")) if 'rel="next"' in link else None
        return sorted(set(out))

    def put_manifest(self, ref: Reference, manifest: Manifest) -> str:
        """Store `manifest`'s exact bytes at `ref` (tag or digest); return the digest, checked."""
        what = f"pushing the manifest of {ref}"
        response = self.request(
            "PUT", ref, f"{ref.repository}/manifests/{ref.identifier}", self.push_scope(ref), what,
            headers={"Content-Type": manifest.media_type}, body=manifest.data, ok=(200, 201),
        )
        stored = response.headers.get("Docker-Content-Digest")
        if stored and stored != manifest.digest:
            raise RegistryIntegrityError(f"{what}: the registry stored {stored}, not {manifest.digest}")
        return manifest.digest

    # --- blobs ---------------------------------------------------------------------------

    def blob_exists(self, ref: Reference, digest: str) -> bool:
        try:
            self.request("HEAD", ref, f"{ref.repository}/blobs/{digest}", self.pull_scope(ref),
                         f"checking blob {digest[:19]} in {ref.name}")
        except RegistryError as e:
            if e.status == 404:
                return False
            raise
        return True

    def fetch_blob(self, ref: Reference, blob: Descriptor) -> IO[bytes]:
        """The blob's bytes in a temporary file, digest and size checked."""
        what = f"fetching blob {blob.digest[:19]} from {ref.name}"
        response = self.request("GET", ref, f"{ref.repository}/blobs/{blob.digest}",
                                self.pull_scope(ref), what, stream=True, redirect=True)
        out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=8 * _CHUNK)
        h, size = hashlib.sha256(), 0
        try:
            for chunk in response.stream(_CHUNK):
                size += len(chunk)
                if size > blob.size:
                    break
                h.update(chunk)
                out.write(chunk)
        finally:
            response.release_conn()
        if size != blob.size or "sha256:" + h.hexdigest() != blob.digest:
            out.close()
            raise RegistryIntegrityError(f"{what}: the registry served other bytes than {blob.digest}")
        out.seek(0)
        return out

    def _start_upload(self, ref: Reference, scopes: frozenset[str], query: str, what: str
                      ) -> urllib3.BaseHTTPResponse:
        return self.request("POST", ref, f"{ref.repository}/blobs/uploads/{query}", scopes, what,
                            headers={"Content-Length": "0"}, ok=(201, 202))

    def push_blob(self, ref: Reference, data: IO[bytes] | bytes, digest: str, size: int) -> None:
        """Upload a blob monolithically (POST, then PUT with its digest)."""
        what = f"uploading blob {digest[:19]} to {ref.name}"
        started = self._start_upload(ref, self.push_scope(ref), "", what)
        self._finish_upload(ref, started, data, digest, size, what, self.push_scope(ref))

    def _finish_upload(self, ref: Reference, started: urllib3.BaseHTTPResponse, data: IO[bytes] | bytes,
                       digest: str, size: int, what: str, scopes: frozenset[str]) -> None:
        location = started.headers.get("Location")
        if not location:
            raise RegistryError(f"{what}: the registry gave no upload location")
        url = urljoin(self.base_url(ref), location)
        url += ("&" if "?" in url else "?") + urlencode({"digest": digest})
        self.request("PUT", ref, "", scopes, what, url=url, body=data,
                     headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                     ok=(201, 204))

    def copy_blob(self, src: Reference, dst: Reference, blob: Descriptor) -> str:
        """Make `blob` of `src` available in `dst`: 'present', 'mounted' or 'copied'."""
        if self.blob_exists(dst, blob.digest):
            return "present"
        what = f"copying blob {blob.digest[:19]} from {src.name} to {dst.name}"
        scopes = self.push_scope(dst)
        if src.registry == dst.registry:
            scopes = scopes | self.pull_scope(src)
            query = "?" + urlencode({"mount": blob.digest, "from": src.repository})
            started = self._start_upload(dst, scopes, query, what)
            if started.status == 201:
                return "mounted"
        else:
            started = self._start_upload(dst, scopes, "", what)
        with self.fetch_blob(src, blob) as data:
            self._finish_upload(dst, started, data, blob.digest, blob.size, what, scopes)
        return "copied"

    def copy(self, manifest: Manifest, dst: Reference, log: list[str] | None = None) -> str:
        """Copy `manifest` (recursively, for an index) and its blobs to `dst`; digest unchanged."""
        src = manifest.reference
        if dst.digest and dst.digest != manifest.digest:
            raise UsageError(f"{dst} names digest {dst.digest}, but {src} is {manifest.digest}")
        for child in manifest.children():
            child_manifest = self.resolve(src.with_digest(child.digest))
            self.copy(child_manifest, dst.with_digest(child.digest), log)
        for blob in manifest.blobs():
            how = self.copy_blob(src, dst, blob)
            if log is not None:
                log.append(f"blob {blob.digest} {how}")
        target = dst if dst.tag or dst.digest else dst.with_digest(manifest.digest)
        return self.put_manifest(target, manifest)
