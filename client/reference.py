"""OCI references: `registry[:port]/repository[:tag][@sha256:hex]`, parsed and printed.

A reference without a registry host (`net-monitor:1.0`, `library/alpine`) names Docker Hub, as
`docker` does. Registry hosts on loopback (`localhost`, `127.0.0.0/8`, `::1`) are spoken to over
plain HTTP; any other host only over HTTPS unless the caller allows it explicitly.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from tufnotary.client.errors import UsageError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"sha256:[0-9a-f]{64}"
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_REFERENCE_RE = re.compile(rf"(?:(?P<host>{_HOST})/)?(?P<repo>{_REPOSITORY})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
TAG_RE = re.compile(_TAG)
DIGEST_RE = re.compile(_DIGEST)
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"


def _looks_like_host(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost" or first.startswith("[")


@dataclass(frozen=True)
class Reference:
    """One parsed reference; at least one of `tag` and `digest` is set once `resolved`."""

    registry: str  # host[:port] as written (docker.io for Docker Hub)
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """`registry/repository`, the reference without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What the manifests endpoint is asked for: the digest when known, else the tag."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str | None) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_reference(text: str, default_tag: str | None = "latest") -> Reference:
    """Parse `text`; a reference with neither tag nor digest gets `default_tag`."""
    match = _REFERENCE_RE.fullmatch(text.strip())
    if match is None or len(text) > 512:
        raise UsageError(
            f"invalid OCI reference {text!r}: expected REGISTRY/REPOSITORY[:TAG][@sha256:HEX], "
            "e.g. registry.example.com/networking/net-monitor:1.0"
        )
    host, repo = match["host"], match["repo"]
    if host is not None and not _looks_like_host(host):
        repo, host = f"{host.lower()}/{repo}", None
        if not re.fullmatch(_REPOSITORY, repo):
            raise UsageError(f"invalid repository name in {text!r}: use lowercase path components")
    if host is None:
        host = DOCKER_HUB
        if "/" not in repo:
            repo = f"library/{repo}"
    tag = match["tag"]
    if tag is None and match["digest"] is None:
        tag = default_tag
    return Reference(host.lower(), repo, tag, match["digest"])


def parse_repository(text: str) -> Reference:
    """`registry/repository` with no tag or digest (for `audit`)."""
    ref = parse_reference(text, default_tag=None)
    if ref.tag is not None or ref.digest is not None:
        raise UsageError(f"give a repository without tag or digest, not {text!r}")
    return ref


def is_loopback(registry: str) -> bool:
    """True when `registry` (host[:port]) is on the loopback interface."""
    host = registry
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
