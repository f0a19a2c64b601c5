"""GitSync patches: JSON6902 and strategic merge, with kustomize's target semantics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_render_support import kustomize_bin, write  # noqa: F401 (a fixture)

from reconciler.render import Manifest, Patch, RenderError, RenderOptions, render
from reconciler.render.selectors import Target, parse_selector

OBJECTS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: apps, labels: {app: web, tier: front}}
spec:
  template:
    spec:
      containers:
        - {name: app, image: nginx:1, env: [{name: A, value: "1"}]}
        - {name: proxy, image: envoy:1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: worker, namespace: apps, labels: {app: worker}}
spec:
  template:
    spec:
      containers:
        - {name: app, image: worker:1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: apps, labels: {app: web}}
spec:
  ports: [{port: 80}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: web-reader, annotations: {team: blue}}
rules: []
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write(tmp_path, {"objects.yaml": OBJECTS})


def patched(repo: Path, *patches: dict[str, Any]) -> list[Manifest]:
    return render(repo, ".", RenderOptions(patches=[Patch.from_spec(p) for p in patches]))


def by_name(ms: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {f"{m.obj['kind']}/{m.obj['metadata']['name']}": m.obj for m in ms}


def test_json6902_with_target_kind_and_label_selector(repo: Path) -> None:
    got = by_name(
        patched(
            repo,
            {
                "patch": """
                - op: replace
                  path: /spec/template/spec/containers/0/image
                  value: nginx:2
                - {op: add, path: /metadata/annotations, value: {patched: "yes"}}
                """,
                "target": {"kind": "Deployment", "labelSelector": "app in (web, api),tier"},
            },
        )
    )
    assert got["Deployment/web"]["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"
    assert got["Deployment/web"]["metadata"]["annotations"] == {"patched": "yes"}
    assert got["Deployment/worker"]["spec"]["template"]["spec"]["containers"][0]["image"] == "worker:1"
    assert "annotations" not in got["Service/web"]["metadata"]


def test_target_fields_are_anchored_regexes(repo: Path) -> None:
    op = {"patch": '[{"op": "add", "path": "/metadata/labels/hit", "value": "1"}]'}
    got = by_name(patched(repo, {**op, "target": {"name": "w.*", "kind": "Deploy"}}))  # "Deploy" is not "Deployment"
    assert not any("hit" in o["metadata"].get("labels", {}) for o in got.values())
    got = by_name(patched(repo, {**op, "target": {"name": "w.*", "group": "apps", "version": "v1"}}))
    hits = [k for k, o in got.items() if "hit" in o["metadata"].get("labels", {})]
    assert hits == ["Deployment/web", "Deployment/worker"]


def test_target_namespace_and_annotation_selector(repo: Path) -> None:
    op = {"patch": '[{"op": "add", "path": "/metadata/labels", "value": {"hit": "1"}}]'}
    got = by_name(patched(repo, {**op, "target": {"annotationSelector": "team=blue"}}))
    assert got["ClusterRole/web-reader"]["metadata"]["labels"] == {"hit": "1"}
    # a cluster-scoped object is in no namespace a selector can name, even ".*"-less ones like "default"
    got = by_name(patched(repo, {**op, "target": {"namespace": "default"}}))
    assert all("hit" not in o["metadata"].get("labels", {}) for o in got.values())


def test_patch_matching_nothing_is_fine(repo: Path) -> None:
    before = render(repo, ".")
    assert patched(repo, {"patch": "[{op: remove, path: /spec}]", "target": {"kind": "CronJob"}}) == before
    smp = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: nope, namespace: apps}\nspec: {replicas: 2}\n"
    assert patched(repo, {"patch": smp}) == before


def test_failing_json6902_patch_names_index_operation_and_object(repo: Path) -> None:
    ok = {"patch": "[{op: add, path: /metadata/labels/x, value: y}]", "target": {"kind": "Service"}}
    bad = {"patch": "[{op: replace, path: /spec/nothere/x, value: 1}]", "target": {"kind": "Service"}}
    with pytest.raises(RenderError) as e:
        patched(repo, ok, bad)
    assert str(e.value) == (
        "objects.yaml (document 3): Service/apps/web: patches[1] (JSON6902) operation 0 "
        "(replace /spec/nothere/x) failed: member 'nothere' not found"
    )


def test_json6902_test_failure_does_not_quote_object_content(repo: Path) -> None:
    bad = {"patch": "[{op: test, path: /spec/ports/0/port, value: 81}]", "target": {"kind": "Service"}}
    with pytest.raises(RenderError, match="test failed: the value at the path differs") as e:
        patched(repo, bad)
    assert "80" not in str(e.value)


@pytest.mark.usefixtures("kustomize_bin")
def test_strategic_merge_with_target_merges_containers_by_name(repo: Path) -> None:
    smp = """
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: ignored-with-a-target}
    spec:
      template:
        spec:
          containers:
            - name: app
              env: [{name: B, value: "2"}]
              resources: {limits: {memory: 128Mi}}
    """
    got = by_name(patched(repo, {"patch": smp, "target": {"kind": "Deployment", "labelSelector": "app=web"}}))
    web = got["Deployment/web"]
    assert web["metadata"]["name"] == "web"
    app, proxy = web["spec"]["template"]["spec"]["containers"]
    assert app["name"] == "app"
    assert app["image"] == "nginx:1"
    assert app["env"] == [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]  # merged by name
    assert app["resources"] == {"limits": {"memory": "128Mi"}}
    assert proxy == {"name": "proxy", "image": "envoy:1"}
    assert got["Deployment/worker"]["spec"]["template"]["spec"]["containers"] == [{"name": "app", "image": "worker:1"}]


@pytest.mark.usefixtures("kustomize_bin")
def test_strategic_merge_without_target_selects_by_its_own_identity(repo: Path) -> None:
    smp = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: worker, namespace: apps}\nspec: {replicas: 3}\n"
    ms = patched(repo, {"patch": smp})
    got = by_name(ms)
    assert got["Deployment/worker"]["spec"]["replicas"] == 3
    assert "replicas" not in got["Deployment/web"]["spec"]
    assert [m.file for m in ms] == ["objects.yaml"] * 4  # origin kept
    assert [m.doc for m in ms] == [1, 2, 3, 4]


@pytest.mark.usefixtures("kustomize_bin")
def test_strategic_merge_can_delete_an_object(repo: Path) -> None:
    smp = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: apps}\n$patch: delete\n"
    assert list(by_name(patched(repo, {"patch": smp}))) == [
        "Deployment/web",
        "Deployment/worker",
        "ClusterRole/web-reader",
    ]


@pytest.mark.usefixtures("kustomize_bin")
def test_failing_strategic_merge_patch_names_index_and_object(repo: Path) -> None:
    smp = "apiVersion: v1\nkind: X\nmetadata: {name: x}\nspec:\n  ports: {not: a list}\n"
    with pytest.raises(RenderError) as e:
        patched(repo, {"patch": smp, "target": {"name": "web"}})
    msg = str(e.value)
    assert msg.startswith("objects.yaml (document 3): Service/apps/web: patches[0] (strategic merge) failed: ")


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"patch": "[{op: add, path: /x, value: 1}]"}, "target: a JSON6902 patch needs a target"),
        ({"patch": "spec: {replicas: 1}"}, "patch: a strategic-merge patch without a target needs apiVersion"),
        ({"patch": ""}, "patch: must be a non-empty string"),
        ({"patch": "[{op: add}]", "target": {"kind": "X"}}, "patch: operation 0 needs string fields op and path"),
        ({"patch": "a: [b", "target": {"kind": "X"}}, "patch: invalid YAML at line 2"),
        ({"patch": "a: 1", "target": {"kind": "X", "colour": "red"}}, "target.colour: unknown field"),
        ({"patch": "a: 1", "target": {"name": "web-("}}, "target.name: invalid regular expression"),
        ({"patch": "a: 1", "target": {"labelSelector": "a=b,=c"}}, "target.labelSelector: cannot parse '=c'"),
        ({"patch": "a: 1", "path": "p.yaml"}, "path: unknown field"),
    ],
)
def test_patch_from_spec_names_the_bad_field(spec: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match="^" + needle.replace("(", r"\(").replace("[", r"\[")):
        Patch.from_spec(spec)


def test_label_selector_semantics() -> None:
    sel = parse_selector("app=web, tier!=back, env in (prod,stage), !legacy, team", "s")
    labels = {"app": "web", "env": "prod", "team": "x"}
    assert all(r.matches(labels) for r in sel)
    assert not all(r.matches({**labels, "legacy": "1"}) for r in sel)
    assert not all(r.matches({**labels, "tier": "back"}) for r in sel)
    assert not all(r.matches({"app": "web", "team": "x"}) for r in sel)  # env missing: "in" fails


def test_unnamespaced_object_matches_the_default_namespace() -> None:
    t = Target.parse({"namespace": "default"})
    assert t.matches({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}, cluster_scoped=False)
    assert not t.matches({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}, cluster_scoped=True)


def test_bad_patch_fails_before_any_file_is_read(tmp_path: Path) -> None:
    write(tmp_path, {"broken.yaml": "not: [valid"})
    bad = Patch(patch="[{op: add, path: /x, value: 1}]", target={"kind": "X", "colour": "red"})
    with pytest.raises(RenderError, match=r"^patches\[0\]: target\.colour: unknown field"):
        render(tmp_path, ".", RenderOptions(patches=[bad]))
