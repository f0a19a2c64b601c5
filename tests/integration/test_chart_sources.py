"""Chart fetching against real servers on loopback: a static Helm repository (charts packaged
and indexed by the real Helm), the CNCF distribution registry (charts pushed with ``helm push``),
and ECR credentials from the moto server.  Then the fetched chart is rendered by the real Helm.

No control plane is needed; the binaries are built by scripts/build-tool (errors, never skips).
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import awsserver
import pytest
import yaml
from chartservers import ChartRepoServer, RegistryServer, TokenServer, registry
from helmcharts import build_tool, helm, package, write_demo_chart

from reconciler.render import helm as render_helm
from reconciler.render import tools
from reconciler.source.artifact import SourceError
from reconciler.source.charts import ChartCache, Credentials, HelmRepository, OCIRegistry

VERSIONS = ("0.1.0", "0.2.0", "1.0.0-rc.1")


@pytest.fixture(scope="session")
def helm_bin() -> Iterator[str]:
    path = build_tool("helm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tools.HELM.env, path)
        yield path


@pytest.fixture(scope="session")
def registry_bin() -> str:
    return build_tool("registry")


@pytest.fixture(scope="session")
def packaged(helm_bin: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo chart packaged by Helm in each version: version -> .tgz."""
    root = tmp_path_factory.mktemp("charts")
    out: dict[str, Path] = {}
    for v in VERSIONS:
        src = write_demo_chart(root / f"src-{v}", version=v)
        out[v] = package(helm_bin, src, root / "packages", home=root / "home")
    return out


def make_repo(helm_bin: str, packaged: dict[str, Path], root: Path, **kw: bool) -> ChartRepoServer:
    server = ChartRepoServer(root / "repo", **kw).start()
    for tgz in packaged.values():
        shutil.copy(tgz, server.root)
    helm(helm_bin, "repo", "index", str(server.root), "--url", server.url, home=root / "home")
    return server


@pytest.fixture
def repo(helm_bin: str, packaged: dict[str, Path], tmp_path: Path) -> Iterator[ChartRepoServer]:
    server = make_repo(helm_bin, packaged, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def secure_repo(helm_bin: str, packaged: dict[str, Path], tmp_path: Path) -> Iterator[ChartRepoServer]:
    server = make_repo(helm_bin, packaged, tmp_path, tls=True, auth=True)
    yield server
    server.stop()


def cache(tmp_path: Path) -> ChartCache:
    return ChartCache(tmp_path / "chart-cache")


# --------------------------------------------------------------------------- HTTP repository


@pytest.mark.parametrize(
    ("constraint", "expected"),
    [("*", "0.2.0"), ("~0.1", "0.1.0"), ("0.1.0", "0.1.0"), (">=0.1.0, <1.0.0", "0.2.0"), (">=1.0.0-0", "1.0.0-rc.1")],
)
def test_repository_resolves_helm_ranges_to_the_highest_match(
    repo: ChartRepoServer, tmp_path: Path, packaged: dict[str, Path], constraint: str, expected: str
) -> None:
    chart = HelmRepository(repo.url, cache=cache(tmp_path)).fetch("demo", constraint)
    assert chart.version == expected
    assert chart.digest == "sha256:" + hashlib.sha256(packaged[expected].read_bytes()).hexdigest()
    assert yaml.safe_load((chart.path / "Chart.yaml").read_text())["version"] == expected
    assert chart.revision == f"demo@{expected}@{chart.digest}"


def test_second_fetch_of_the_same_version_downloads_nothing(repo: ChartRepoServer, tmp_path: Path) -> None:
    source = HelmRepository(repo.url, cache=cache(tmp_path))
    first = source.fetch("demo", "^0.1")
    assert repo.downloads() == 1
    second = HelmRepository(repo.url, cache=cache(tmp_path)).fetch("demo", "^0.1")  # a new process, same cache
    assert second == first
    assert repo.downloads() == 1  # the archive was not fetched again
    index_requests = [r for r in repo.requests if r[0] == "/index.yaml"]
    assert len(index_requests) == 2  # the index is asked each time (conditionally: 304 when unchanged)


@pytest.mark.usefixtures("helm_bin")
def test_fetched_chart_renders(repo: ChartRepoServer, tmp_path: Path) -> None:
    chart = HelmRepository(repo.url, cache=cache(tmp_path)).fetch("demo", "0.2.0")
    r = render_helm.render_chart(chart_dir=chart.path, release_name="web", namespace="apps", values={"password": "x"})
    kinds = [f"{o['kind']}/{o['metadata']['name']}" for o in r.objects]
    assert "Service/web-sub" in kinds  # the subchart came with the archive
    assert "ConfigMap/web-extra" not in kinds  # 0.2.0 dropped it
    assert [h.obj["metadata"]["name"] for h in r.pre_hooks(upgrade=False)] == ["web-prepare", "web-migrate"]


def test_basic_auth_and_ca_bundle(secure_repo: ChartRepoServer, tmp_path: Path) -> None:
    creds = Credentials(username=secure_repo.username, password=secure_repo.password)
    chart = HelmRepository(
        secure_repo.url, credentials=creds, ca_pem=secure_repo.ca_pem.decode(), cache=cache(tmp_path)
    ).fetch("demo", "0.1.0")
    assert chart.version == "0.1.0"


@pytest.mark.parametrize("password", [None, "wrong"])
def test_unauthorized_is_a_clear_error(secure_repo: ChartRepoServer, tmp_path: Path, password: str | None) -> None:
    creds = Credentials(username=secure_repo.username, password=password) if password else None
    source = HelmRepository(
        secure_repo.url, credentials=creds, ca_pem=secure_repo.ca_pem.decode(), cache=cache(tmp_path)
    )
    with pytest.raises(SourceError) as e:
        source.fetch("demo", "0.1.0")
    assert str(e.value) == (
        f"chart demo (version '0.1.0'): authentication failed (HTTP 401) at {secure_repo.url}index.yaml: "
        "check the credentials Secret"
    )
    assert secure_repo.password not in str(e.value)


def test_untrusted_certificate_is_a_clear_error(secure_repo: ChartRepoServer, tmp_path: Path) -> None:
    creds = Credentials(username=secure_repo.username, password=secure_repo.password)
    with pytest.raises(
        SourceError,
        match=r"chart demo \(version '0\.1\.0'\): TLS verification failed for https://127\.0\.0\.1:\d+/index"
        r"\.yaml: certificate verify failed \(unable to get local issuer certificate\)$",
    ):
        HelmRepository(secure_repo.url, credentials=creds, cache=cache(tmp_path)).fetch("demo", "0.1.0")


def test_missing_chart_and_unmatched_range(repo: ChartRepoServer, tmp_path: Path) -> None:
    source = HelmRepository(repo.url, cache=cache(tmp_path))
    with pytest.raises(SourceError, match=r"chart nginx: no chart named 'nginx' in http://127\.0\.0\.1:\d+/"):
        source.fetch("nginx", "*")
    with pytest.raises(
        SourceError,
        match=r"chart demo: no version matches '>=5\.0\.0' in .* \(newest: 0\.1\.0, "
        r"0\.2\.0, 1\.0\.0-rc\.1\)",
    ):
        source.fetch("demo", ">=5.0.0")
    with pytest.raises(SourceError, match=r"not a valid constraint"):
        source.fetch("demo", ">>1")


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        (
            "/index.yaml",
            500,
            r"chart demo \(version '0\.1\.0'\): server error \(HTTP 500\) at http://127\.0\.0\.1:\d+/index\.yaml",
        ),
        (
            "/index.yaml",
            404,
            r"chart demo \(version '0\.1\.0'\): not found \(HTTP 404\) at http://127\.0\.0\.1:\d+/index\.yaml",
        ),
        ("/demo-0.1.0.tgz", 404, r"chart demo@0\.1\.0: not found \(HTTP 404\) at .*/demo-0\.1\.0\.tgz"),
    ],
)
def test_server_errors_name_chart_and_cause(
    repo: ChartRepoServer, tmp_path: Path, path: str, status: int, message: str
) -> None:
    repo.fail[path] = status
    with pytest.raises(SourceError, match=message):
        HelmRepository(repo.url, cache=cache(tmp_path)).fetch("demo", "0.1.0")


def test_digest_mismatch_is_refused_and_nothing_is_cached(repo: ChartRepoServer, tmp_path: Path) -> None:
    index = repo.root / "index.yaml"
    text = index.read_text()
    real = hashlib.sha256((repo.root / "demo-0.1.0.tgz").read_bytes()).hexdigest()
    index.write_text(text.replace(real, "f" * 64))
    with pytest.raises(
        SourceError,
        match=rf"chart demo@0\.1\.0: digest mismatch: the index lists sha256:f{{64}}, "
        rf"the archive is sha256:{real}",
    ):
        HelmRepository(repo.url, cache=cache(tmp_path)).fetch("demo", "0.1.0")
    assert not any(p.name == "Chart.yaml" for p in (tmp_path / "chart-cache").rglob("*"))


def test_credentials_are_not_sent_to_another_origin(helm_bin: str, packaged: dict[str, Path], tmp_path: Path) -> None:
    """The index points at a chart URL on another server: it gets no Authorization header."""
    other = ChartRepoServer(tmp_path / "other", auth=True).start()
    try:
        shutil.copy(packaged["0.1.0"], other.root)
        main = ChartRepoServer(tmp_path / "main", auth=True).start()
        other.password = main.password  # same password: only the origin check keeps it from being sent
        try:
            shutil.copy(packaged["0.1.0"], main.root)
            helm(helm_bin, "repo", "index", str(main.root), "--url", other.url, home=tmp_path / "home")
            source = HelmRepository(
                main.url, credentials=Credentials(main.username, main.password), cache=cache(tmp_path)
            )
            with pytest.raises(SourceError, match=r"chart demo@0\.1\.0: authentication failed \(HTTP 401\)"):
                source.fetch("demo", "0.1.0")
            assert other.requests == [("/demo-0.1.0.tgz", 401)]
        finally:
            main.stop()
    finally:
        other.stop()


# --------------------------------------------------------------------------- OCI registry


def push(helm_bin: str, reg: RegistryServer, tgz: Path, home: Path) -> str:
    args = ["push", str(tgz), f"oci://{reg.host}/charts"]
    if reg.auth:
        args += ["--username", reg.username, "--password", reg.password]
    args += ["--ca-file", str(reg.ca_file)] if reg.tls else ["--plain-http"]
    out = helm(helm_bin, *args, home=home)
    m = re.search(r"Digest: (sha256:[0-9a-f]{64})", out)
    assert m, out
    return m.group(1)


@pytest.fixture
def plain_registry(registry_bin: str, tmp_path: Path) -> Iterator[RegistryServer]:
    with registry(registry_bin, tmp_path / "registry") as reg:
        yield reg


def test_oci_chart_by_range_and_tag_with_cache(
    helm_bin: str, plain_registry: RegistryServer, packaged: dict[str, Path], tmp_path: Path
) -> None:
    digests = {v: push(helm_bin, plain_registry, packaged[v], tmp_path / "home") for v in VERSIONS}
    url = f"oci://{plain_registry.host}/charts/demo"
    source = OCIRegistry(plain_http=True, cache=cache(tmp_path))
    chart = source.fetch(url, "^0.1")
    assert (chart.version, chart.digest) == ("0.1.0", digests["0.1.0"])  # the digest `helm push` printed
    assert source.fetch(url, "*").version == "0.2.0"
    assert source.fetch(url, "1.0.0-rc.1").version == "1.0.0-rc.1"
    assert plain_registry.blob_downloads() == 3
    again = OCIRegistry(plain_http=True, cache=cache(tmp_path)).fetch(url, "^0.1")
    assert again == chart
    assert plain_registry.blob_downloads() == 3  # cached: manifest checked, chart not downloaded


def test_oci_missing_chart_and_unmatched_range(
    helm_bin: str, plain_registry: RegistryServer, packaged: dict[str, Path], tmp_path: Path
) -> None:
    push(helm_bin, plain_registry, packaged["0.1.0"], tmp_path / "home")
    source = OCIRegistry(plain_http=True, cache=cache(tmp_path))
    with pytest.raises(
        SourceError,
        match=r"chart demo@0\.9\.0: no such chart or version in oci://.*/charts/demo "
        r"\(HTTP 404\)",
    ):
        source.fetch(f"oci://{plain_registry.host}/charts/demo", "0.9.0")
    with pytest.raises(SourceError, match=r"chart nope \(version '\*'\): not found \(HTTP 404\)"):
        source.fetch(f"oci://{plain_registry.host}/charts/nope", "*")
    with pytest.raises(SourceError, match=r"chart demo: no version matches '\^2' in .* \(newest: 0\.1\.0\)"):
        source.fetch(f"oci://{plain_registry.host}/charts/demo", "^2")


def test_oci_basic_auth_over_tls(helm_bin: str, registry_bin: str, packaged: dict[str, Path], tmp_path: Path) -> None:
    with registry(registry_bin, tmp_path / "registry", auth=True, tls=True) as reg:
        digest = push(helm_bin, reg, packaged["0.2.0"], tmp_path / "home")
        url = f"oci://{reg.host}/charts/demo"
        ca = reg.ca_pem.decode()
        chart = OCIRegistry(
            credentials=Credentials(reg.username, reg.password), ca_pem=ca, cache=cache(tmp_path)
        ).fetch(url, "~0.2")
        assert chart.digest == digest
        with pytest.raises(
            SourceError, match=r"chart demo \(version '~0\.2'\): oci://.* requires credentials \(HTTP 401\)"
        ):
            OCIRegistry(ca_pem=ca, cache=cache(tmp_path / "b")).fetch(url, "~0.2")
        with pytest.raises(SourceError, match=r"chart demo \(version '~0\.2'\): authentication failed \(HTTP 401\)"):
            OCIRegistry(credentials=Credentials(reg.username, "wrong"), ca_pem=ca, cache=cache(tmp_path / "c")).fetch(
                url, "~0.2"
            )
        with pytest.raises(SourceError, match=r"TLS verification failed .*certificate verify failed"):
            OCIRegistry(credentials=Credentials(reg.username, reg.password), cache=cache(tmp_path / "d")).fetch(
                url, "~0.2"
            )


def test_oci_ecr_credentials_from_boto3(
    aws: awsserver.MotoServer, helm_bin: str, registry_bin: str, packaged: dict[str, Path], tmp_path: Path
) -> None:
    """provider aws: the password is what ecr.get_authorization_token (moto) issues; the registry
    accepts only that."""
    ecr = aws.client("ecr")
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    with registry(registry_bin, tmp_path / "registry", auth=True, username=user, password=password) as reg:
        push(helm_bin, reg, packaged["0.1.0"], tmp_path / "home")
        regions: list[str] = []

        def factory(region: str) -> object:
            regions.append(region)
            return aws.client("ecr", region_name=region)

        chart = OCIRegistry(provider="aws", plain_http=True, ecr_client_factory=factory, cache=cache(tmp_path)).fetch(
            f"oci://{reg.host}/charts/demo", "0.1.0"
        )
        assert chart.version == "0.1.0"
        assert regions == ["us-east-1"]  # loopback is not an ECR host name: the default region


def test_registry_binary_is_the_pinned_build(registry_bin: str) -> None:
    assert re.search(r"/registry-v3\.1\.2-go[0-9.]+/registry$", registry_bin)
    out = subprocess.run([registry_bin, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.split()[-1] == "v3.1.2"  # the -X version stamp took (not "+unknown")


def test_oci_tampered_blob_is_refused_and_nothing_is_cached(
    helm_bin: str, plain_registry: RegistryServer, packaged: dict[str, Path], tmp_path: Path
) -> None:
    """The registry's storage is altered behind its back: it serves other bytes under the digest."""
    push(helm_bin, plain_registry, packaged["0.1.0"], tmp_path / "home")
    layer = "sha256:" + hashlib.sha256(packaged["0.1.0"].read_bytes()).hexdigest()
    blob = next((plain_registry.root / "data").rglob(f"blobs/sha256/*/{layer.removeprefix('sha256:')}/data"))
    blob.write_bytes(packaged["0.2.0"].read_bytes())
    with pytest.raises(
        SourceError,
        match=rf"chart demo@0\.1\.0: digest mismatch: the manifest lists {layer}, the blob is sha256:[0-9a-f]{{64}}$",
    ):
        OCIRegistry(plain_http=True, cache=cache(tmp_path)).fetch(f"oci://{plain_registry.host}/charts/demo", "0.1.0")
    assert not any(p.name == "Chart.yaml" for p in (tmp_path / "chart-cache").rglob("*"))


def test_oci_bearer_token_flow(helm_bin: str, registry_bin: str, packaged: dict[str, Path], tmp_path: Path) -> None:
    """The registry answers 401 Bearer realm=...: the token service gets the credentials, the
    registry gets the token; a wrong password is refused by the token service."""
    tokens = TokenServer(tmp_path / "token").start()
    try:
        with registry(registry_bin, tmp_path / "registry", token_server=tokens) as reg:
            digest = push(helm_bin, reg, packaged["0.1.0"], tmp_path / "home")
            url = f"oci://{reg.host}/charts/demo"
            tokens.requests.clear()
            source = OCIRegistry(
                credentials=Credentials(tokens.username, tokens.password), plain_http=True, cache=cache(tmp_path)
            )
            chart = source.fetch(url, "^0.1")
            assert chart.digest == digest
            assert len(tokens.requests) == 1  # one token for tags, manifest and blob of the same repository
            assert "scope=repository%3Acharts%2Fdemo%3Apull" in tokens.requests[0]
            with pytest.raises(
                SourceError,
                match=r"chart demo \(version '\^0\.1'\): authentication failed \(HTTP 401\) "
                r"at http://127\.0\.0\.1:\d+/token",
            ):
                OCIRegistry(
                    credentials=Credentials(tokens.username, "wrong"), plain_http=True, cache=cache(tmp_path / "b")
                ).fetch(url, "^0.1")
    finally:
        tokens.stop()
