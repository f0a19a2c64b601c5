"""Bad chart input through ``reconciler diff|sync --chart``: exit 2, one message that names the
chart, the version and the cause, and nothing applied to the real control plane.

A chart is untrusted input from a server the user does not run, so every case is served for real by
each of the chart servers in tests/chartservers.py: the HTTP(S) Helm repository and the CNCF
distribution registry (OCI).  The CLI has no CA flag: it trusts the system store, which the tests
point at the servers' throwaway CA with ``SSL_CERT_FILE`` (left unset for the bad-certificate case).
Archives that Helm itself would refuse to package (``../``, a symlink, an oversized file) are built
with tarfile and published as they are: an index.yaml entry, or a manifest pushed through the
registry's HTTP API.

The same causes have controller-level tests elsewhere: a range that matches nothing
(test_helm_gitsync, ArtifactFailed) and a template that fails (test_helm_gitsync, BuildFailed).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import ssl
import tarfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartservers import ChartRepoServer, RegistryServer
from click.testing import CliRunner, Result
from helmcharts import build_tool, package, write_demo_chart

from reconciler import cli
from reconciler.kube import client
from reconciler.render import tools

OWNER_LABEL = "gitops.reconciler.dev/sync"
PASSWORD = "pw-bad-input-0c4f7a"
CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
CHART_CONFIG = "application/vnd.cncf.helm.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def helm_bin() -> Iterator[str]:
    path = build_tool("helm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tools.HELM.env, path)
        yield path


@pytest.fixture(scope="module")
def registry_bin() -> str:
    return build_tool("registry")


@pytest.fixture(scope="module")
def good_tgz(helm_bin: str, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    root = tmp_path_factory.mktemp("bad-input-chart")
    return package(helm_bin, write_demo_chart(root / "src"), root / "pkg", home=root / "home").read_bytes()


def doctored(good: bytes, extra: tarfile.TarInfo, data: bytes | None = None) -> bytes:
    """The packaged demo chart with one more member: what a hostile or broken server could serve."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(good), mode="r:gz") as src, tarfile.open(fileobj=raw, mode="w") as out:
        for member in src.getmembers():
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
        if data is not None:
            extra.size = len(data)
        out.addfile(extra, io.BytesIO(data) if data is not None else None)
    return gzip.compress(raw.getvalue(), compresslevel=1)


def escaping(good: bytes) -> bytes:
    return doctored(good, tarfile.TarInfo("demo/../../evil.yaml"), b"kind: ConfigMap\n")


def symlinked(good: bytes) -> bytes:
    link = tarfile.TarInfo("demo/templates/leak.yaml")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return doctored(good, link)


def oversized(good: bytes) -> bytes:
    return doctored(good, tarfile.TarInfo("demo/files/big.bin"), b"\0" * (21 * 1024 * 1024))  # limit: 20 MiB


@dataclass
class Served:
    """One chart server with the demo chart published on it, and the CLI flags that name it."""

    kind: str
    args: list[str]
    ca_file: Path | None  # trusted through SSL_CERT_FILE unless the case is the bad certificate
    stop: Callable[[], None]
    corrupt: Callable[[], None] = field(default=lambda: None)  # serve other bytes under the digest
    fail: Callable[[int], None] = field(default=lambda status: None)  # make the chart answer an HTTP error


def serve_repo(tmp: Path, tgz: bytes, *, auth: bool) -> Served:
    server = ChartRepoServer(tmp / "repo", tls=True, auth=auth).start()
    (server.root / "demo-0.1.0.tgz").write_bytes(tgz)
    entry = {
        "apiVersion": "v2",
        "name": "demo",
        "version": "0.1.0",
        "digest": hashlib.sha256(tgz).hexdigest(),
        "urls": ["demo-0.1.0.tgz"],
    }
    (server.root / "index.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "entries": {"demo": [entry]}}))
    (ca := tmp / "repo-ca.pem").write_bytes(server.ca_pem)

    def corrupt() -> None:
        (server.root / "demo-0.1.0.tgz").write_bytes(tgz + b"\0")

    def fail(status: int) -> None:
        server.fail["/demo-0.1.0.tgz" if status == 404 else "/index.yaml"] = status

    args = ["--chart", server.url, "--chart-name", "demo", "--chart-version", "0.1.0"]
    return Served("repo", args, ca, server.stop, corrupt, fail)


def push(reg: RegistryServer, repo: str, tag: str, tgz: bytes) -> Path:
    """Push a chart through the registry's HTTP API (no Helm: it would refuse a doctored archive);
    returns the layer's blob file in the registry's storage."""
    ctx = ssl.create_default_context(cafile=str(reg.ca_file))
    base = f"https://{reg.host}/v2/{repo}"

    def call(method: str, url: str, body: bytes = b"", ctype: str = "application/octet-stream") -> Any:
        req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": ctype})  # noqa: S310 (https to loopback)
        return urllib.request.urlopen(req, context=ctx, timeout=30)  # noqa: S310

    def blob(data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        location = call("POST", f"{base}/blobs/uploads/").headers["Location"]
        url = location if location.startswith("http") else f"https://{reg.host}{location}"
        call("PUT", f"{url}{'&' if '?' in url else '?'}digest={digest}", data)
        return {"digest": digest, "size": len(data)}

    config = json.dumps({"apiVersion": "v2", "name": repo.rsplit("/", 1)[-1], "version": tag}).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CHART_CONFIG, **blob(config)},
        "layers": [{"mediaType": CHART_LAYER, **blob(tgz)}],
    }
    call("PUT", f"{base}/manifests/{tag}", json.dumps(manifest).encode(), OCI_MANIFEST)
    layer = manifest["layers"][0]["digest"].removeprefix("sha256:")  # type: ignore[index]
    return next((reg.root / "data").rglob(f"blobs/sha256/*/{layer}/data"))


def serve_oci(tmp: Path, tgz: bytes, *, auth: bool, binary: str) -> Served:
    reg = RegistryServer(binary, tmp / "registry", tls=True).start()
    blob = push(reg, "charts/demo", "0.1.0", tgz)
    if auth:  # restart the same storage behind htpasswd: the chart is there, the CLI has no credentials
        reg.stop()
        reg = RegistryServer(binary, tmp / "registry", tls=True, auth=True).start()
    assert reg.ca_file is not None

    def corrupt() -> None:
        blob.write_bytes(tgz + b"\0")

    def fail(status: int) -> None:
        if status == 404:  # the manifest is gone: the tag answers 404
            tag = next((reg.root / "data").rglob("_manifests/tags/0.1.0"))
            shutil.rmtree(tag)
        else:  # the registry's storage is damaged (a tag link that is no digest): it answers 500
            next((reg.root / "data").rglob("_manifests/tags/0.1.0/current/link")).write_text("not-a-digest")

    args = ["--chart", f"oci://{reg.host}/charts/demo", "--chart-version", "0.1.0"]
    return Served("oci", args, reg.ca_file, reg.stop, corrupt, fail)


@dataclass(frozen=True)
class Case:
    """One bad input: how to serve it, what to do to the server, what the message must say."""

    archive: Callable[[bytes], bytes] = lambda good: good
    auth: bool = False
    trust: bool = True
    status: int = 0  # the server answers this for the chart (0: it does not fail)
    corrupt: bool = False
    values: str = f"password: {PASSWORD}\n"
    cause: str = ""  # a regular expression


CASES = {
    "401": Case(auth=True, cause=r"(authentication failed|requires credentials) \(HTTP 401\)"),
    "404": Case(status=404, cause=r"not found|HTTP 404"),
    "500": Case(status=500, cause=r"server error \(HTTP 500\)"),
    "bad-certificate": Case(trust=False, cause=r"TLS verification failed .*certificate verify failed"),
    "template-fails": Case(values="greeting: no password\n", cause=r"helm template failed: .*password is required"),
    "values-not-yaml": Case(values="greeting: [unclosed\n", cause=r"values are not valid YAML"),
    "archive-escapes": Case(archive=escaping, cause=r"'demo/\.\./\.\./evil\.yaml' escapes the chart directory"),
    "archive-symlink": Case(archive=symlinked, cause=r"'demo/templates/leak\.yaml' is a link"),
    "archive-too-big": Case(archive=oversized, cause=r"'demo/files/big\.bin' is \d+ bytes, over the limit of \d+"),
    "digest-mismatch": Case(corrupt=True, cause=r"digest mismatch: the (index|manifest) lists sha256:[0-9a-f]{64}"),
}


def invoke(*argv: str) -> Result:
    return CliRunner().invoke(cli.cli, list(argv), catch_exceptions=False)


def ours(kube: client.Kube, ns: str) -> list[str]:
    """Every object in ``ns`` that carries our owner label (what a sync would have applied)."""
    found = []
    for collection in ("configmaps", "secrets", "services", "serviceaccounts"):
        items = kube.get(f"/api/v1/namespaces/{ns}/{collection}", query=[("labelSelector", OWNER_LABEL)])["items"]
        found += [f"{collection}/{o['metadata']['name']}" for o in items]
    return found


@pytest.mark.usefixtures("helm_bin")
@pytest.mark.parametrize("command", ["diff", "sync"])
@pytest.mark.parametrize("server", ["repo", "oci"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_chart_input_exits_2_naming_chart_version_and_cause(
    case: str,
    server: str,
    command: str,
    good_tgz: bytes,
    registry_bin: str,
    cluster: Any,
    kube: client.Kube,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = CASES[case]
    tgz = c.archive(good_tgz)
    if server == "repo":
        served = serve_repo(tmp_path, tgz, auth=c.auth)
    else:
        served = serve_oci(tmp_path, tgz, auth=c.auth, binary=registry_bin)
    try:
        if c.trust and served.ca_file:
            monkeypatch.setenv("SSL_CERT_FILE", str(served.ca_file))
        if c.status:
            served.fail(c.status)
        if c.corrupt:
            served.corrupt()
        (values := tmp_path / "values.yaml").write_text(c.values)
        (src := tmp_path / "src").mkdir()
        common = ["--dir", str(src), "--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace]
        release = ["--release-name", "web", "--target-namespace", namespace, "--name", "bad"]
        r = invoke(command, *common, *served.args, *release, "--values", str(values))
    finally:
        served.stop()
    assert r.exit_code == 2, r.output
    assert re.search(r"chart demo\b.*0\.1\.0", r.output), r.output
    assert re.search(c.cause, r.output), r.output
    assert PASSWORD not in r.output
    assert ours(kube, namespace) == [], "nothing applied"
