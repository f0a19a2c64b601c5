"""The Helm render step (``gitsync.helmrender.render_helm``) end to end with the real Helm, a real
HTTP(S) chart repository and the real OCI registry on loopback: chart from each of the three
places, values in Flux's order, the render cache (no ``helm`` run and no download on a no-op),
hooks and CRDs split for the sync, and bad input that names the chart and never a Secret value.

No control plane is needed; Helm and the registry are built by scripts/build-tool.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import awsserver
import pytest
from chartservers import ChartRepoServer, registry
from helmcharts import build_tool, helm, package, write_stack_chart

from reconciler.gitsync.helmrender import HelmInputs, HelmRender, render_helm
from reconciler.gitsync.helmspec import parse_helm
from reconciler.render import tools
from reconciler.render.errors import RenderError
from reconciler.render.helm_cache import RenderCache
from reconciler.source.artifact import SourceError
from reconciler.source.charts import ChartCache
from reconciler.source.charts.resolver import ChartResolver

KUBE = "v1.35.4"
APIS = ("v1", "apps/v1", "batch/v1", "policy/v1")
TOKEN = "tok-7f3a9c41e2"  # a Secret-sourced value: must never be printed


@pytest.fixture(scope="module")
def helm_bin() -> Iterator[str]:
    path = build_tool("helm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tools.HELM.env, path)
        yield path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A fetched revision with the chart under charts/ and a values file."""
    root = tmp_path / "revision"
    write_stack_chart(root / "charts")
    (root / "values").mkdir()
    (root / "values" / "prod.yaml").write_text("replicas: 3\npolicy: upsert-only\n")
    return root


class Step:
    """One resolver and one render cache, as the controller keeps them between reconciles."""

    def __init__(self, tmp_path: Path) -> None:
        self.resolver = ChartResolver(cache=ChartCache(tmp_path / "chart-cache"))
        self.cache = RenderCache(max_entries=4)

    def __call__(self, root: Path, helm_spec: dict[str, Any], **kw: Any) -> HelmRender:
        kw.setdefault("kube_version", KUBE)
        kw.setdefault("api_versions", APIS)
        inputs = HelmInputs(root=root, spec=parse_helm(helm_spec, gitsync_name="addons"), namespace="apps", **kw)
        return render_helm(inputs, resolver=self.resolver, cache=self.cache)


def names(manifests: Any) -> list[str]:
    return sorted(f"{m.obj['kind']}/{m.obj['metadata']['name']}" for m in manifests)


def source_spec(**fields: Any) -> dict[str, Any]:
    return {"chart": {"spec": {"chart": "charts/stack"}}, **fields}


@pytest.mark.usefixtures("helm_bin")
def test_chart_from_the_source_splits_crds_objects_and_hooks(tree: Path, tmp_path: Path) -> None:
    r = Step(tmp_path)(tree, source_spec(releaseName="rel"))
    assert re.fullmatch(r"stack@1\.0\.0@sha256:[0-9a-f]{64}", r.revision)
    assert not r.cached
    # crds/ of the CRD subchart (files that start with '---'), applied on install, skipped on upgrade
    assert names(r.crds) == [
        "CustomResourceDefinition/gadgets.stack.example.com",
        "CustomResourceDefinition/gizmos.stack.example.com",
    ]
    assert names(r.objects(upgrade=True)) == names(r.manifests)
    assert names(r.objects(upgrade=False)) == sorted(names(r.crds) + names(r.manifests))
    # library chart helpers, tpl, .Capabilities semverCompare (policy/v1), lookup against nothing;
    # the exporter subchart is vendored but its condition is false
    assert names(r.manifests) == ["Deployment/rel-stack", "PodDisruptionBudget/rel-stack", "Secret/rel-stack"]
    by_kind = {m.obj["kind"]: m.obj for m in r.manifests}
    assert by_kind["PodDisruptionBudget"]["apiVersion"] == "policy/v1"
    assert by_kind["Deployment"]["metadata"]["annotations"] == {"owner": "rel"}
    assert by_kind["Deployment"]["metadata"]["labels"]["app.kubernetes.io/instance"] == "rel"
    assert by_kind["Secret"]["stringData"]["origin"] == "rendered"
    assert [h.obj["metadata"]["name"] for h in r.pre_hooks(upgrade=True)] == ["rel-stack-migrate"]
    assert r.pre_hooks(upgrade=False) == ()
    assert [h.obj["metadata"]["name"] for h in r.post_hooks(upgrade=False)] == ["rel-stack-ready"]
    assert r.pre_hooks(upgrade=True)[0].delete_policies == frozenset({"hook-succeeded"})
    assert r.skipped == ("ConfigMap/rel-stack-cleanup: hook pre-delete has no counterpart in a sync",)


@pytest.mark.usefixtures("helm_bin")
def test_a_no_op_render_runs_no_helm_and_a_change_renders_again(tree: Path, tmp_path: Path) -> None:
    step = Step(tmp_path)
    first = step(tree, source_spec())
    again = step(tree, source_spec())
    assert again.cached
    assert step.cache.renders == 1
    assert [m.obj for m in again.manifests] == [m.obj for m in first.manifests]
    again.manifests[0].obj["metadata"]["labels"] = {"x": "edited by the sync"}  # a copy: the cache is untouched
    assert "labels" not in step(tree, source_spec()).manifests[0].obj["metadata"]
    assert step.cache.renders == 1
    step(tree, source_spec(values={"replicas": 5}))  # values changed
    step(tree, source_spec(), kube_version="v1.34.0")  # the cluster was upgraded
    (tree / "charts/stack/templates/extra.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    changed = step(tree, source_spec())  # the chart changed in git
    assert step.cache.renders == 4
    assert changed.revision != first.revision
    assert "ConfigMap/x" in names(changed.manifests)


@pytest.mark.usefixtures("helm_bin")
def test_values_merge_in_flux_order_and_secret_values_are_never_printed(tree: Path, tmp_path: Path) -> None:
    objects = {
        ("ConfigMap", "cluster"): {"values.yaml": 'replicas: 4\npodAnnotations: \'{"team": "a"}\'\n'},
        ("Secret", "tokens"): {"token": TOKEN},
    }
    spec = source_spec(
        valuesFiles=["values/prod.yaml"],
        valuesFrom=[
            {"kind": "ConfigMap", "name": "cluster"},
            {"kind": "Secret", "name": "tokens", "valuesKey": "token", "targetPath": "token"},
            {"kind": "Secret", "name": "absent", "optional": True},
        ],
        values={"replicas": 6},
    )
    r = Step(tmp_path)(tree, spec, objects=objects)
    deployment = next(m.obj for m in r.manifests if m.obj["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 6  # inline wins
    assert deployment["metadata"]["annotations"] == {"team": "a"}  # the ConfigMap beat the file
    assert "--policy=upsert-only" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]  # the file
    assert next(m.obj for m in r.manifests if m.obj["kind"] == "Secret")["stringData"]["token"] == TOKEN
    assert r.sensitive == frozenset({TOKEN})
    assert TOKEN not in repr(r)
    with pytest.raises(RenderError) as e:
        Step(tmp_path)(tree, {**spec, "values": {"explode": True}}, objects=objects)
    assert "chart stack@1.0.0" in str(e.value)
    assert "explode is set (token ***)" in str(e.value)
    assert TOKEN not in str(e.value)
    assert TOKEN not in repr(
        HelmInputs(root=tree, spec=parse_helm(spec, gitsync_name="a"), namespace="n", objects=objects)
    )


@pytest.mark.usefixtures("helm_bin")
@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"values": {"policy": "delete-all"}}, RenderError, r"chart stack@1\.0\.0: helm template failed: .*policy"),
        (
            {"valuesFiles": ["values/missing.yaml"]},
            RenderError,
            r"chart stack@1\.0\.0: values/missing\.yaml: no such file",
        ),
        (
            {"valuesFrom": [{"kind": "ConfigMap", "name": "absent"}]},
            RenderError,
            r"chart stack@1\.0\.0: valuesFrom\[0\] \(ConfigMap/absent key 'values\.yaml'\): "
            r"ConfigMap 'absent' not found \(and the reference is not optional\)",
        ),
        ({"chart": {"spec": {"chart": "charts/none"}}}, SourceError, r"chart charts/none: no such directory"),
    ],
)
def test_bad_input_names_the_chart_and_the_cause(
    tree: Path, tmp_path: Path, change: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Step(tmp_path)(tree, source_spec(**change))


@pytest.mark.usefixtures("helm_bin")
def test_an_unvendored_dependency_says_how_to_vendor_it(tmp_path: Path) -> None:
    write_stack_chart(tmp_path / "revision" / "charts", vendor_all=False)
    with pytest.raises(
        RenderError, match=r"dependencies ui are declared in Chart\.yaml but not vendored.*helm dependency build"
    ):
        Step(tmp_path)(tmp_path / "revision", source_spec())


def test_a_chart_path_cannot_leave_the_source(tree: Path, tmp_path: Path) -> None:
    (tree / "escape").symlink_to(tmp_path)
    with pytest.raises(SourceError, match=r"chart escape: points outside the source"):
        Step(tmp_path)(tree, source_spec(chart={"spec": {"chart": "escape"}}))


# --------------------------------------------------------------------------- HTTP(S) repository and OCI


@pytest.fixture
def stack_tgz(helm_bin: str, tmp_path: Path) -> Path:
    return package(
        helm_bin, write_stack_chart(tmp_path / "src", version="1.2.0"), tmp_path / "pkg", home=tmp_path / "home"
    )


def test_chart_from_an_https_repository_with_basic_auth_and_ca(helm_bin: str, stack_tgz: Path, tmp_path: Path) -> None:
    with ChartRepoServer(tmp_path / "repo", tls=True, auth=True) as repo:
        shutil.copy(stack_tgz, repo.root)
        helm(helm_bin, "repo", "index", str(repo.root), "--url", repo.url, home=tmp_path / "home")
        objects = {
            ("Secret", "repo-auth"): {"username": repo.username, "password": repo.password},
            ("Secret", "repo-ca"): {"ca.crt": repo.ca_pem.decode()},
        }
        spec = {
            "chart": {
                "spec": {
                    "chart": "stack",
                    "version": "~1.2",
                    "repository": {
                        "url": repo.url,
                        "secretRef": {"name": "repo-auth"},
                        "certSecretRef": {"name": "repo-ca"},
                    },
                }
            }
        }
        step = Step(tmp_path)
        first = step(tmp_path, spec, objects=objects)
        assert first.revision.startswith("stack@1.2.0@sha256:")
        assert "Deployment/addons-stack" in names(first.manifests)
        second = step(tmp_path, spec, objects=objects)
        assert second.cached
        assert (repo.downloads(), step.cache.renders) == (1, 1)  # index checked, chart not downloaded, no helm run
        with pytest.raises(
            SourceError, match=r"chart stack@~1\.2: Secret 'repo-auth' \(repository\.secretRef\) not found"
        ):
            step(tmp_path, spec, objects={})
        bad_auth = {**objects, ("Secret", "repo-auth"): {"username": repo.username, "password": "wrong"}}
        with pytest.raises(SourceError, match=r"chart stack \(version '~1\.2'\): authentication failed \(HTTP 401\)"):
            Step(tmp_path / "other")(tmp_path, spec, objects=bad_auth)


def test_chart_from_an_oci_registry_with_docker_config_credentials(
    helm_bin: str, stack_tgz: Path, tmp_path: Path
) -> None:
    with registry(build_tool("registry"), tmp_path / "registry", auth=True) as reg:
        helm(
            helm_bin,
            "push",
            str(stack_tgz),
            f"oci://{reg.host}/charts",
            "--plain-http",
            "--username",
            reg.username,
            "--password",
            reg.password,
            home=tmp_path / "home",
        )
        auth = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
        docker = json.dumps({"auths": {reg.host: {"auth": auth}}})
        objects = {("Secret", "registry"): {".dockerconfigjson": docker}}
        repository = {"url": f"oci://{reg.host}/charts", "secretRef": {"name": "registry"}, "insecure": True}
        spec = {"chart": {"spec": {"chart": "stack", "version": ">=1.0.0", "repository": repository}}}
        step = Step(tmp_path)
        first = step(tmp_path, spec, objects=objects)
        assert first.revision.startswith("stack@1.2.0@sha256:")
        assert step(tmp_path, spec, objects=objects).cached
        assert (reg.blob_downloads(), step.cache.renders) == (1, 1)


@pytest.mark.usefixtures("helm_bin")
def test_interval_reuses_a_resolved_chart_without_asking_the_repository(stack_tgz: Path, tmp_path: Path) -> None:
    with ChartRepoServer(tmp_path / "repo") as repo:
        shutil.copy(stack_tgz, repo.root)
        helm(build_tool("helm"), "repo", "index", str(repo.root), "--url", repo.url, home=tmp_path / "home")
        now = [1000.0]
        step = Step(tmp_path)
        step.resolver.clock = lambda: now[0]
        spec = {"chart": {"spec": {"chart": "stack", "repository": {"url": repo.url}}}, "interval": "10m"}
        step(tmp_path, spec)
        asked = len(repo.requests)
        now[0] += 599
        assert step(tmp_path, spec).cached
        assert len(repo.requests) == asked  # within the interval: no request at all
        now[0] += 2
        assert step(tmp_path, spec).cached
        assert repo.requests[asked:] == [("/index.yaml", 0)]  # past it: the index is asked again, nothing else


@pytest.mark.usefixtures("helm_bin")
def test_chart_from_ecr_with_provider_aws(aws: awsserver.MotoServer, stack_tgz: Path, tmp_path: Path) -> None:
    """provider aws and no secretRef: the registry accepts only the password moto's ECR issues."""
    token = aws.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    with registry(build_tool("registry"), tmp_path / "registry", auth=True, username=user, password=password) as reg:
        helm(
            build_tool("helm"),
            *("push", str(stack_tgz), f"oci://{reg.host}/charts", "--plain-http"),
            *("--username", user, "--password", password),
            home=tmp_path / "home",
        )
        step = Step(tmp_path)
        step.resolver.ecr_client_factory = lambda region: aws.client("ecr", region_name=region)
        repository = {"url": f"oci://{reg.host}/charts", "provider": "aws", "insecure": True}
        r = step(tmp_path, {"chart": {"spec": {"chart": "stack", "version": "1.2.0", "repository": repository}}})
        assert r.revision.startswith("stack@1.2.0@sha256:")
        anonymous = {**repository, "provider": "generic"}
        with pytest.raises(SourceError, match=r"chart stack@1\.2\.0: .* requires credentials \(HTTP 401\)"):
            Step(tmp_path / "b")(
                tmp_path, {"chart": {"spec": {"chart": "stack", "version": "1.2.0", "repository": anonymous}}}
            )
