"""Pure parts of chart sources: OCI references, ECR hosts, index parsing, charts in the tree."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from reconciler.source.artifact import SourceError
from reconciler.source.charts import chart_from_tree
from reconciler.source.charts.oci import OCIReference, ecr_region, tag_to_version
from reconciler.source.charts.repository import parse_index, resolve
from reconciler.source.charts.transport import Credentials, ca_from_secret, redact_url, same_origin


def test_oci_reference() -> None:
    ref = OCIReference.parse("oci://registry.example:5000/team/charts/web/")
    assert (ref.host, ref.repository, ref.name) == ("registry.example:5000", "team/charts/web", "web")
    assert str(ref) == "oci://registry.example:5000/team/charts/web"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://x/y", "starts with oci://"),
        ("oci://host", "expected oci://host/path/chart"),
        ("oci://host/a/../b", "expected oci://host/path/chart"),
        ("oci://user@host/a", "expected oci://host/path/chart"),
        ("oci://host/charts/web:1.0.0", "put the version in the version field"),
    ],
)
def test_bad_oci_references(url: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        OCIReference.parse(url)


def test_ecr_hosts() -> None:
    assert ecr_region("123456789012.dkr.ecr.eu-west-1.amazonaws.com") == "eu-west-1"
    assert ecr_region("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com") == "us-gov-west-1"
    assert ecr_region("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn:443") == "cn-north-1"
    assert ecr_region("ghcr.io") is None
    assert ecr_region("123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil.example") is None


def test_tags_map_underscore_back_to_plus() -> None:
    assert tag_to_version("1.2.3_build.4") == "1.2.3+build.4"


INDEX = b"""
apiVersion: v1
entries:
  web:
    - {version: 1.0.0, urls: [web-1.0.0.tgz], digest: abc}
    - {version: 1.1.0, urls: [https://cdn.example/web-1.1.0.tgz]}
    - {version: 2.0.0-rc.1, urls: [web-2.0.0-rc.1.tgz], digest: def}
    - {version: 3.0.0, urls: []}
    - not-an-entry
"""


def test_parse_and_resolve_index() -> None:
    entries = parse_index(INDEX, name="web", repo="https://charts.example/")
    assert [e.version for e in entries] == ["1.0.0", "1.1.0", "2.0.0-rc.1"]  # malformed entries ignored
    assert resolve(entries, "^1", name="web", repo="r").version == "1.1.0"
    assert resolve(entries, "1.0.0", name="web", repo="r").digest == "abc"
    assert resolve(entries, "", name="web", repo="r").version == "1.1.0"  # no prereleases by default
    with pytest.raises(
        SourceError,
        match=r"chart web: no version matches '\^3' in r \(newest: 1\.0\.0, 1\.1\.0, "
        r"2\.0\.0-rc\.1\)",
    ):
        resolve(entries, "^3", name="web", repo="r")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"entries: [", r"chart web: index\.yaml of r is not valid YAML at line \d+"),
        (b"apiVersion: v1\n", r"chart web: index\.yaml of r has no entries"),
        (b"entries: {other: []}", r"chart web: no chart named 'web' in r"),
    ],
)
def test_bad_indexes(text: bytes, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        parse_index(text, name="web", repo="r")


def test_credentials_are_never_printed() -> None:
    c = Credentials(username="u", password="hunter2")
    assert "hunter2" not in repr(c)
    assert Credentials.from_secret({"username": "u", "password": "p"}) == Credentials("u", "p")
    assert Credentials.from_secret({}) is None
    assert redact_url("https://user:pw@host:8443/path/x.tgz?sig=secret") == "https://host:8443/path/x.tgz"
    assert same_origin("https://h:1/a", "https://h:1/b")
    assert not same_origin("https://h:1/a", "https://h:2/a")
    assert not same_origin("https://h/a", "http://h/a")


def chart(root: Path, rel: str = "charts/web", version: str = "1.0.0") -> Path:
    d = root / rel
    (d / "templates").mkdir(parents=True)
    (d / "Chart.yaml").write_text(f"apiVersion: v2\nname: web\nversion: {version}\n")
    (d / "templates" / "cm.yaml").write_text("kind: ConfigMap\n")
    return d


def test_chart_from_tree_digest_follows_content(tmp_path: Path) -> None:
    d = chart(tmp_path)
    a = chart_from_tree(tmp_path, "charts/web")
    assert (a.name, a.version, a.path, a.source) == ("web", "1.0.0", d.resolve(), "charts/web")
    assert chart_from_tree(tmp_path, "./charts/web/").digest == a.digest
    (d / "templates" / "cm.yaml").write_text("kind: Secret\n")
    assert chart_from_tree(tmp_path, "charts/web").digest != a.digest


def test_chart_from_tree_refusals(tmp_path: Path) -> None:
    root = tmp_path / "src"
    d = chart(root)
    (tmp_path / "host-file").write_text("secret")
    with pytest.raises(SourceError, match=r"chart \.\./: points outside the source"):
        chart_from_tree(root, "../")
    with pytest.raises(SourceError, match=r"chart /etc: the chart path must be relative"):
        chart_from_tree(root, "/etc")
    with pytest.raises(SourceError, match=r"chart nope: no such directory"):
        chart_from_tree(root, "nope")
    with pytest.raises(SourceError, match=r"chart charts: not a Helm chart \(no Chart\.yaml\)"):
        chart_from_tree(root, "charts")
    (d / "templates" / "leak.yaml").symlink_to(tmp_path / "host-file")
    with pytest.raises(SourceError, match=r"chart charts/web: templates/leak\.yaml is a symlink leading out"):
        chart_from_tree(root, "charts/web")


def test_docker_config_secret() -> None:
    auth = base64.b64encode(b"robot:s3cret").decode()
    data = {
        ".dockerconfigjson": json.dumps(
            {
                "auths": {
                    "https://registry.example:5000/v1/": {"auth": auth},
                    "ghcr.io": {"username": "u", "password": "p"},
                }
            }
        )
    }
    assert Credentials.from_docker_config(data, "registry.example:5000") == Credentials("robot", "s3cret")
    assert Credentials.from_docker_config(data, "ghcr.io") == Credentials("u", "p")
    assert Credentials.from_docker_config(data, "other.example") is None
    assert Credentials.from_docker_config({}, "ghcr.io") is None
    with pytest.raises(SourceError, match=r"\.dockerconfigjson is not valid JSON"):
        Credentials.from_docker_config({".dockerconfigjson": "{"}, "ghcr.io")


def test_ca_from_secret() -> None:
    assert ca_from_secret({"ca.crt": "PEM"}) == "PEM"
    assert ca_from_secret({"caFile": "OLD"}) == "OLD"
    assert ca_from_secret({"tls.crt": "x"}) is None
