"""Charts from an OCI registry (``oci://host/path/chart``), over the distribution API directly.

Why not ``helm pull``: the digest must be known before the download (it keys the chart cache,
so a no-op reconcile downloads nothing) and verified after it, and credentials should not be
written to a registry config file.  Three requests resolve a chart: the tag list (only for a
range), the manifest (its digest is the chart's identity, as ``helm pull`` prints it), and the
chart layer blob (skipped when cached; its sha256 must equal the layer digest).

Auth: anonymous first; a 401 with ``WWW-Authenticate: Basic`` is answered with the
credentials, one with ``Bearer realm=...`` by a token from the realm (sent the credentials,
if any).  ECR hosts (``<account>.dkr.ecr.<region>.amazonaws.com``), or ``provider="aws"``,
get their credentials from boto3's ``ecr.get_authorization_token``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from reconciler.source.artifact import SourceError
from reconciler.source.charts import archive, semver
from reconciler.source.charts.cache import CacheKey, ChartCache
from reconciler.source.charts.model import ChartArtifact
from reconciler.source.charts.transport import Credentials, Response, Transport, status_error

CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_TAGS_BYTES = 16 * 1024 * 1024
_ECR_HOST = re.compile(r"^(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


@dataclass(frozen=True)
class OCIReference:
    host: str  # host[:port]
    repository: str  # path/chart
    name: str  # the chart name: the last path segment

    @classmethod
    def parse(cls, url: str) -> OCIReference:
        if not url.startswith("oci://"):
            raise SourceError(f"chart {url}: an OCI chart reference starts with oci://")
        rest = url.removeprefix("oci://").strip("/")
        host, _, repo = rest.partition("/")
        if not host or not repo or "@" in host or any(p in ("", ".", "..") for p in repo.split("/")):
            raise SourceError(f"chart {url}: expected oci://host/path/chart")
        if ":" in repo.rsplit("/", 1)[-1] or "@" in repo:
            raise SourceError(f"chart {url}: put the version in the version field, not in the reference")
        return cls(host=host, repository=repo, name=repo.rsplit("/", 1)[-1])

    def __str__(self) -> str:
        return f"oci://{self.host}/{self.repository}"


def ecr_region(host: str) -> str | None:
    """The region of an ECR registry host, or None when ``host`` is not ECR."""
    m = _ECR_HOST.match(host.split(":", 1)[0])
    return m.group("region") if m else None


def ecr_credentials(client: Any) -> Credentials:
    """Credentials from ``ecr.get_authorization_token`` (``client`` is a boto3 ECR client)."""
    try:
        data = client.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        user, _, password = base64.b64decode(data).decode().partition(":")
    except Exception as e:  # botocore raises many types; the message must stay one line, no token
        raise SourceError(f"ECR login failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    return Credentials(username=user, password=password)


def default_ecr_client(region: str) -> Any:
    import boto3

    return boto3.client("ecr", region_name=region)


def tag_to_version(tag: str) -> str:
    return tag.replace("_", "+")  # Helm stores "+" (not allowed in tags) as "_"


class OCIRegistry:
    """Fetch charts from one registry host (TLS with a CA bundle, or plain HTTP for loopback tests)."""

    def __init__(
        self,
        *,
        credentials: Credentials | None = None,
        provider: Literal["generic", "aws"] = "generic",
        ca_pem: str | None = None,
        plain_http: bool = False,
        cache: ChartCache | None = None,
        limits: archive.ArchiveLimits | None = None,
        ecr_client_factory: Callable[[str], Any] = default_ecr_client,
        transport: Transport | None = None,
    ) -> None:
        self.credentials = credentials
        self.provider = provider
        self.scheme = "http" if plain_http else "https"
        self.cache = cache or ChartCache()
        self.limits = limits or archive.ArchiveLimits()
        self.ecr_client_factory = ecr_client_factory
        self.transport = transport or Transport(ca_pem=ca_pem)
        self._tokens: dict[str, str] = {}  # scope -> Authorization header

    def _credentials(self, ref: OCIReference) -> Credentials | None:
        if self.credentials is not None:
            return self.credentials
        region = ecr_region(ref.host)
        if self.provider == "aws" or region:
            return ecr_credentials(self.ecr_client_factory(region or "us-east-1"))
        return None

    def _get(self, ref: OCIReference, url: str, *, what: str, accept: str = "", max_bytes: int) -> Response:
        scope = f"repository:{ref.repository}:pull"
        headers = {"Accept": accept} if accept else {}
        if scope in self._tokens:
            headers["Authorization"] = self._tokens[scope]
        resp = self.transport.get(url, what=what, headers=headers, max_bytes=max_bytes, ok=(200, 401))
        if resp.status != 401:
            return resp
        self._tokens[scope] = self._authorize(ref, resp.headers.get("www-authenticate", ""), what=what, scope=scope)
        headers["Authorization"] = self._tokens[scope]
        return self.transport.get(url, what=what, headers=headers, max_bytes=max_bytes)

    def _authorize(self, ref: OCIReference, challenge: str, *, what: str, scope: str) -> str:
        creds = self._credentials(ref)
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if creds is None:
                raise SourceError(f"{what}: {ref} requires credentials (HTTP 401) and none were given")
            return creds.header()
        if scheme != "bearer":
            raise SourceError(f"{what}: {ref} answered 401 with an unsupported challenge {scheme!r}")
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise SourceError(f"{what}: {ref} sent a token realm that is not a URL")
        query = {"scope": params.get("scope") or scope}
        if params.get("service"):
            query["service"] = params["service"]
        token_url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {"Authorization": creds.header()} if creds else {}
        resp = self.transport.get(token_url, what=what, headers=headers, max_bytes=1 << 20)
        try:
            body = json.loads(resp.body)
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise SourceError(f"{what}: the token service of {ref} returned no token")
        return f"Bearer {token}"

    def _base(self, ref: OCIReference) -> str:
        return f"{self.scheme}://{ref.host}/v2/{ref.repository}"

    def tags(self, ref: OCIReference, *, version: str = "*") -> list[str]:
        url = f"{self._base(ref)}/tags/list?n=1000"
        out: list[str] = []
        for _ in range(100):  # pages
            resp = self._get(ref, url, what=f"chart {ref.name} (version {version!r})", max_bytes=MAX_TAGS_BYTES)
            try:
                tags = json.loads(resp.body).get("tags") or []
            except (ValueError, AttributeError):
                raise SourceError(f"chart {ref.name}: {ref} returned a malformed tag list") from None
            out += [t for t in tags if isinstance(t, str)]
            link = _NEXT.search(resp.headers.get("link", ""))
            if not link:
                break
            url = urllib.parse.urljoin(url, link.group(1))
        return out

    def fetch(self, url: str, version: str) -> ChartArtifact:
        """The chart at ``url`` (``oci://host/path/chart``) for ``version`` (a tag or a Helm range)."""
        ref = OCIReference.parse(url)
        version = version.strip() or "*"
        if semver.is_exact(version):
            resolved = version
        else:
            try:
                constraint = semver.parse_constraint(version)
            except semver.ConstraintError as e:
                raise SourceError(f"chart {ref.name}: version {version!r} is not a valid constraint: {e}") from None
            tags = self.tags(ref, version=version)
            best = constraint.best([tag_to_version(t) for t in tags])
            if best is None:
                have = ", ".join(semver.newest([tag_to_version(t) for t in tags], 5))
                raise SourceError(
                    f"chart {ref.name}: no version matches {version!r} in {ref} (newest: {have or 'none'})"
                )
            resolved = best
        label = f"{ref.name}@{resolved}"
        manifest_url = f"{self._base(ref)}/manifests/{resolved.replace('+', '_')}"
        try:
            resp = self._get(ref, manifest_url, what=f"chart {label}", accept=MANIFEST, max_bytes=MAX_MANIFEST_BYTES)
        except SourceError as e:
            if "HTTP 404" in e.reason:
                raise SourceError(f"chart {label}: no such chart or version in {ref} (HTTP 404)") from None
            raise
        digest = "sha256:" + hashlib.sha256(resp.body).hexdigest()
        if (claimed := resp.headers.get("docker-content-digest")) and claimed != digest:
            raise SourceError(f"chart {label}: manifest digest mismatch: registry says {claimed}, content is {digest}")
        key = CacheKey(repository=str(ref), name=ref.name, version=resolved, digest=digest)
        if (cached := self.cache.get(key)) is not None:
            return ChartArtifact(name=ref.name, version=resolved, digest=digest, path=cached, source=str(ref))
        layer = self._chart_layer(resp.body, label=label)
        blob = self._get(
            ref,
            f"{self._base(ref)}/blobs/{layer}",
            what=f"chart {label}",
            max_bytes=self.limits.max_compressed_bytes,
        )
        got = "sha256:" + hashlib.sha256(blob.body).hexdigest()
        if got != layer:
            raise SourceError(f"chart {label}: digest mismatch: the manifest lists {layer}, the blob is {got}")
        path = self.cache.put(
            key,
            lambda d: archive.extract(blob.body, d, chart=ref.name, label=label, version=resolved, limits=self.limits),
        )
        return ChartArtifact(name=ref.name, version=resolved, digest=digest, path=path, source=str(ref))

    def _chart_layer(self, body: bytes, *, label: str) -> str:
        try:
            manifest = json.loads(body)
            layers = [lyr for lyr in manifest.get("layers", []) if lyr.get("mediaType") == CHART_LAYER]
        except (ValueError, AttributeError, TypeError):
            raise SourceError(f"chart {label}: the registry returned a malformed manifest") from None
        if len(layers) != 1 or not re.fullmatch(r"sha256:[0-9a-f]{64}", str(layers[0].get("digest", ""))):
            raise SourceError(f"chart {label}: the artifact is not a Helm chart (no single {CHART_LAYER} layer)")
        return str(layers[0]["digest"])


__all__ = ["OCIReference", "OCIRegistry", "ecr_credentials", "ecr_region", "status_error"]
