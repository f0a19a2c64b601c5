"""Masked diffs: readable changes, RFC 6902 patches, and never a Secret value in any output."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import deepdiff
import jsonpatch
import pytest

from reconciler.sync import diffing
from reconciler.sync.diffing import MASK_AFTER, MASK_BEFORE

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
T0 = "2026-03-02T10:14:07Z"

# Every Secret value below is one of these; each must be absent from every output, in plain
# text and in base64 (how the API server stores and returns `data`).
PLAINS = ["hunter2-Pr0d-DB-pass", "s3cr3t-rotated-2026", "ghp_k3yAddedLater", "stringdata-only-value"]
FORBIDDEN = [*PLAINS, *(base64.b64encode(p.encode()).decode() for p in PLAINS)]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def managed_fields(*data_keys: str) -> list[dict[str, Any]]:
    return [
        {
            "manager": "gitops-reconciler",
            "operation": "Apply",
            "apiVersion": "v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:data": {f"f:{k}": {} for k in data_keys},
                "f:metadata": {"f:labels": {"f:gitops.reconciler.dev/sync": {}}},
                "f:type": {},
            },
        }
    ]


def secret(data: dict[str, str] | None = None, *, last_applied: bool = False, **extra: Any) -> dict[str, Any]:
    """A Secret as the API server returns it (``data`` base64, managedFields, no status)."""
    data = {"password": b64(PLAINS[0]), "username": b64("shop")} if data is None else data
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "db",
            "namespace": "shop",
            "uid": "0c3f2b1a-5d6e-4f70-8a9b-1c2d3e4f5a6b",
            "resourceVersion": "48299",
            "creationTimestamp": T0,
            "labels": {"gitops.reconciler.dev/sync": "reconciler-system.addons"},
            "managedFields": managed_fields(*(data if isinstance(data, dict) else {})),
        },
        "data": data,
        "type": "Opaque",
    }
    if last_applied:
        manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": data}
        obj["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(manifest) + "\n"}
    obj.update(extra)
    return obj


def deployment(replicas: int = 2, image: str = "ghcr.io/acme/web:1.4.2", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "generation": 3,
            "labels": {"app.kubernetes.io/name": "web", **labels},
            "annotations": {"deployment.kubernetes.io/revision": "3"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "web"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "args": ["--port=8080", "--log-format=json"],
                            "env": [{"name": "DB_HOST", "value": "db.shop.svc"}],
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                        }
                    ]
                },
            },
        },
    }


def all_outputs(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """Everything any function of the module shows for this pair, as one searchable string."""
    parts: list[Any] = [
        diffing.human_diff(before, after),
        diffing.json_patch(before, after),
        diffing.masked_pair(before, after),
        diffing.human_diff(after, before),
        diffing.json_patch(after, before),
    ]
    for obj in (before, after):
        if obj is not None:
            parts.append(diffing.mask_secret(obj))
    if before is not None and after is not None:
        parts += [diffing.changed_paths(before, after), diffing.changed_paths(after, before)]
    return repr(parts) + json.dumps(parts, default=str)


def assert_no_secret(text: str) -> None:
    for value in FORBIDDEN:
        assert value not in text


# --- no leak, on every path ----------------------------------------------------------------


def _rotated() -> tuple[dict[str, Any], dict[str, Any]]:
    return secret(), secret({"password": b64(PLAINS[1]), "username": b64("shop")})


def _key_added() -> tuple[dict[str, Any], dict[str, Any]]:
    before = secret()
    return before, secret({**before["data"], "token": b64(PLAINS[2])})


def _key_removed() -> tuple[dict[str, Any], dict[str, Any]]:
    after = secret()
    return secret({**after["data"], "token": b64(PLAINS[2])}), after


def _string_data() -> tuple[dict[str, Any], dict[str, Any]]:
    desired = secret({}, stringData={"password": PLAINS[3], "api-key": PLAINS[2]})
    desired["metadata"].pop("managedFields")
    return secret(), desired


def _string_data_changed() -> tuple[dict[str, Any], dict[str, Any]]:
    return secret(stringData={"password": PLAINS[3]}), secret(stringData={"password": PLAINS[0]})


def _last_applied_only() -> tuple[dict[str, Any], dict[str, Any]]:
    return secret(last_applied=True), secret()


def _last_applied_both() -> tuple[dict[str, Any], dict[str, Any]]:
    before = secret(last_applied=True)
    after = secret({"password": b64(PLAINS[1]), "username": b64("shop")}, last_applied=True)
    after["metadata"]["labels"]["team"] = "payments"
    return before, after


def _malformed_data() -> tuple[dict[str, Any], dict[str, Any]]:
    return secret(), secret(PLAINS[1])  # type: ignore[arg-type]  # `data` a string, as a broken manifest has it


def _data_to_list() -> tuple[dict[str, Any], dict[str, Any]]:
    return secret(), secret([PLAINS[1], b64(PLAINS[2])])  # type: ignore[arg-type]


def _data_to_null() -> tuple[dict[str, Any], dict[str, Any]]:
    after = secret()
    after["data"] = None
    return secret(), after


def _non_secret_last_applied() -> tuple[dict[str, Any], dict[str, Any]]:
    # A ConfigMap applied client-side from a manifest that also inlined a credential: the
    # annotation is the only place the value lives.
    before: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "app",
            "namespace": "shop",
            "annotations": {
                LAST_APPLIED: json.dumps({"kind": "ConfigMap", "data": {"DB_PASSWORD": PLAINS[0]}}),
                "team": "payments",
            },
        },
        "data": {"LOG_LEVEL": "info"},
    }
    after = copy.deepcopy(before)
    after["metadata"]["annotations"][LAST_APPLIED] = json.dumps({"kind": "ConfigMap", "data": {"X": PLAINS[1]}})
    after["data"]["LOG_LEVEL"] = "debug"
    return before, after


def _deployment_last_applied_added() -> tuple[dict[str, Any], dict[str, Any]]:
    after = deployment()
    after["metadata"]["annotations"][LAST_APPLIED] = json.dumps({"env": [{"name": "TOKEN", "value": PLAINS[2]}]})
    return deployment(), after


PAIRS = {
    "value-rotated": _rotated,
    "key-added": _key_added,
    "key-removed": _key_removed,
    "stringData-desired-vs-live-data": _string_data,
    "stringData-changed": _string_data_changed,
    "last-applied-on-one-side": _last_applied_only,
    "last-applied-on-both-sides": _last_applied_both,
    "data-malformed-string": _malformed_data,
    "data-became-list": _data_to_list,
    "data-became-null": _data_to_null,
    "configmap-last-applied": _non_secret_last_applied,
    "deployment-last-applied-added": _deployment_last_applied_added,
}


@pytest.mark.parametrize("make", PAIRS.values(), ids=PAIRS.keys())
def test_no_function_ever_shows_a_secret_value(make: Any) -> None:
    before, after = make()
    assert_no_secret(all_outputs(before, after))


@pytest.mark.parametrize(
    "obj",
    [
        secret(),
        secret(last_applied=True),
        secret({}, stringData={"password": PLAINS[3]}),
        secret(last_applied=True, stringData={"api-key": PLAINS[2]}),
    ],
    ids=["data", "data+last-applied", "stringData", "everything"],
)
def test_created_and_deleted_secrets_show_no_value(obj: dict[str, Any]) -> None:
    assert_no_secret(all_outputs(None, obj))
    assert_no_secret(all_outputs(obj, None))
    assert diffing.human_diff(None, obj)[0] == "+ (new object)"
    assert diffing.human_diff(obj, None) == ["- (object deleted)"]


def test_secret_with_another_api_version_is_masked_too() -> None:
    # A look-alike in another group costs a less useful diff; a missed real Secret would leak.
    before = secret(apiVersion="example.com/v1")
    after = secret({"password": b64(PLAINS[1])}, apiVersion="example.com/v1")
    assert_no_secret(all_outputs(before, after))


# --- what the masked output does say -------------------------------------------------------


def test_rotated_value_shows_which_key_changed() -> None:
    before, after = _rotated()
    assert diffing.human_diff(before, after) == ["data.password: *** (before) -> *** (after)"]
    assert diffing.json_patch(before, after) == [{"op": "replace", "path": "/data/password", "value": MASK_AFTER}]
    assert diffing.changed_paths(before, after) == ["data.password"]


def test_added_and_removed_keys() -> None:
    before, after = _key_added()
    assert diffing.human_diff(before, after) == [
        "+ data.token: *** (after)",
        # managedFields names keys, never values: the key list may show
        '+ metadata.managedFields[0].fieldsV1["f:data"]["f:token"]: {}',
    ]
    assert diffing.human_diff(after, before) == [
        "- data.token",
        '- metadata.managedFields[0].fieldsV1["f:data"]["f:token"]',
    ]
    assert {"op": "remove", "path": "/data/token"} in diffing.json_patch(after, before)


def test_unchanged_secret_values_do_not_show_up() -> None:
    before = secret()
    after = secret()
    after["metadata"]["labels"]["team"] = "payments"
    assert diffing.human_diff(before, after) == ["+ metadata.labels.team: payments"]
    assert diffing.json_patch(before, after) == [{"op": "add", "path": "/metadata/labels/team", "value": "payments"}]


def test_string_data_diff_names_keys() -> None:
    before, after = _string_data_changed()
    assert diffing.human_diff(before, after) == ["stringData.password: *** (before) -> *** (after)"]


def test_mask_secret() -> None:
    obj = secret(last_applied=True, stringData={"api-key": PLAINS[2]})
    original = copy.deepcopy(obj)
    masked = diffing.mask_secret(obj)
    assert masked["data"] == {"password": "***", "username": "***"}
    assert masked["stringData"] == {"api-key": "***"}
    assert "annotations" not in masked["metadata"]
    assert masked["metadata"]["managedFields"] == obj["metadata"]["managedFields"]
    assert obj == original  # a copy: the caller's object is untouched
    masked["metadata"]["labels"]["x"] = "y"
    assert "x" not in obj["metadata"]["labels"]


def test_mask_secret_leaves_other_kinds_alone_except_last_applied() -> None:
    dep = deployment()
    assert diffing.mask_secret(dep) == dep
    assert diffing.mask_secret(dep) is not dep
    cm = _non_secret_last_applied()[0]
    masked = diffing.mask_secret(cm)
    assert masked["metadata"]["annotations"] == {"team": "payments"}
    assert masked["data"] == {"LOG_LEVEL": "info"}  # ConfigMap data is not secret
    assert LAST_APPLIED in cm["metadata"]["annotations"]


def test_masked_pair_tokens() -> None:
    before = secret({"same": b64("x"), "changed": b64(PLAINS[0]), "gone": b64(PLAINS[1])})
    after = secret({"same": b64("x"), "changed": b64(PLAINS[1]), "new": b64(PLAINS[2])})
    b, a = diffing.masked_pair(before, after)
    assert b is not None
    assert a is not None
    assert b["data"] == {"same": "***", "changed": MASK_BEFORE, "gone": MASK_BEFORE}
    assert a["data"] == {"same": "***", "changed": MASK_AFTER, "new": MASK_AFTER}
    assert before["data"]["changed"] == b64(PLAINS[0])  # inputs untouched


def test_masked_pair_one_sided() -> None:
    b, a = diffing.masked_pair(None, secret())
    assert b is None
    assert a is not None
    assert set(a["data"].values()) == {MASK_AFTER}
    b, a = diffing.masked_pair(secret(), None)
    assert a is None
    assert b is not None
    assert set(b["data"].values()) == {MASK_BEFORE}
    assert diffing.masked_pair(None, None) == (None, None)


def test_last_applied_never_counts_as_a_change() -> None:
    before, after = _last_applied_only()
    assert diffing.human_diff(before, after) == []
    assert diffing.changed_paths(before, after) == []
    b, a = _deployment_last_applied_added()
    assert diffing.human_diff(b, a) == []
    assert diffing.json_patch(b, a) == []


def test_empty_annotations_left_by_last_applied_are_dropped() -> None:
    b, _ = diffing.masked_pair(secret(last_applied=True), None)
    assert b is not None
    assert "annotations" not in b["metadata"]


# --- human diff format ---------------------------------------------------------------------


def test_human_diff_of_a_deployment() -> None:
    before = deployment()
    after = deployment(3, "ghcr.io/acme/web:1.5.0", team="web")
    after["spec"]["template"]["spec"]["containers"][0]["args"].pop()
    after["metadata"]["annotations"].pop("deployment.kubernetes.io/revision")
    assert diffing.human_diff(before, after) == [
        '- metadata.annotations["deployment.kubernetes.io/revision"]',
        "+ metadata.labels.team: web",
        "spec.replicas: 2 -> 3",
        "- spec.template.spec.containers[0].args[1]",
        "spec.template.spec.containers[0].image: ghcr.io/acme/web:1.4.2 -> ghcr.io/acme/web:1.5.0",
    ]
    assert diffing.changed_paths(before, after) == [
        'metadata.annotations["deployment.kubernetes.io/revision"]',
        "metadata.labels.team",
        "spec.replicas",
        "spec.template.spec.containers[0].args[1]",
        "spec.template.spec.containers[0].image",
    ]


def test_human_diff_added_mapping_is_listed_key_by_key() -> None:
    before = deployment()
    after = deployment()
    after["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] = {"cpu": "1", "memory": "256Mi"}
    after["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/os": "linux", "karpenter.sh/nodepool": "web"}
    assert diffing.human_diff(before, after) == [
        "+ spec.template.spec.containers[0].resources.limits.cpu: 1",
        "+ spec.template.spec.containers[0].resources.limits.memory: 256Mi",
        '+ spec.template.spec.nodeSelector["karpenter.sh/nodepool"]: web',
        '+ spec.template.spec.nodeSelector["kubernetes.io/os"]: linux',
    ]


def test_human_diff_added_list_item_and_list_values() -> None:
    before = deployment()
    after = deployment()
    after["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "MODE", "value": "prod"})
    after["spec"]["template"]["spec"]["tolerations"] = [{"key": "dedicated", "operator": "Exists"}]
    assert diffing.human_diff(before, after) == [
        "+ spec.template.spec.containers[0].env[1].name: MODE",
        "+ spec.template.spec.containers[0].env[1].value: prod",
        '+ spec.template.spec.tolerations: [{"key": "dedicated", "operator": "Exists"}]',
    ]


def test_human_diff_type_change_quotes_strings() -> None:
    assert diffing.human_diff({"spec": {"replicas": 2}}, {"spec": {"replicas": "2"}}) == ['spec.replicas: 2 -> "2"']
    assert diffing.human_diff({"a": {"b": 1}}, {"a": [1]}) == ['a: {"b": 1} -> [1]']


def test_human_diff_quotes_ambiguous_strings_and_cuts_long_ones() -> None:
    before = {"data": {"config.yaml": "a: 1\nb: 2\n", "empty": "x", "pad": "x", "big": "x"}}
    after = {"data": {"config.yaml": "a: 1\nb: 3\n", "empty": "", "pad": " x", "big": "y" * 500}}
    lines = diffing.human_diff(before, after)
    assert lines[0] == "data.big: x -> " + "y" * 117 + "..."
    assert lines[1] == 'data["config.yaml"]: "a: 1\\nb: 2\\n" -> "a: 1\\nb: 3\\n"'
    assert lines[2] == 'data.empty: x -> ""'
    assert lines[3] == 'data.pad: x -> " x"'
    assert all("\n" not in line for line in lines)


def test_human_diff_values_as_json() -> None:
    before = {"spec": {"suspend": False, "paused": None, "ratio": 0.5}}
    after = {"spec": {"suspend": True, "paused": None, "ratio": 0.75}}
    assert diffing.human_diff(before, after) == ["spec.ratio: 0.5 -> 0.75", "spec.suspend: false -> true"]


def test_human_diff_is_independent_of_key_order() -> None:
    before = deployment()
    after = deployment(4, team="web", tier="frontend")
    shuffled_before = json.loads(json.dumps(before), object_pairs_hook=lambda kv: dict(reversed(kv)))
    shuffled_after = json.loads(json.dumps(after), object_pairs_hook=lambda kv: dict(reversed(kv)))
    assert diffing.human_diff(before, after) == diffing.human_diff(shuffled_before, shuffled_after)
    assert diffing.human_diff(before, after) == [
        "+ metadata.labels.team: web",
        "+ metadata.labels.tier: frontend",
        "spec.replicas: 2 -> 4",
    ]


def test_human_diff_new_object_lists_top_level_fields() -> None:
    assert diffing.human_diff(None, deployment()) == [
        "+ (new object)",
        "+ apiVersion: apps/v1",
        "+ kind: Deployment",
        "+ metadata",
        "+ spec",
    ]


def test_equal_and_absent() -> None:
    dep = deployment()
    assert diffing.human_diff(dep, copy.deepcopy(dep)) == []
    assert diffing.json_patch(dep, copy.deepcopy(dep)) == []
    assert diffing.changed_paths(dep, copy.deepcopy(dep)) == []
    assert diffing.human_diff(None, None) == []
    assert diffing.json_patch(None, None) == []


def test_equal_objects_never_reach_deepdiff_or_jsonpatch(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the == fast path was skipped")

    monkeypatch.setattr(deepdiff, "DeepDiff", boom)
    monkeypatch.setattr(jsonpatch, "make_patch", boom)
    big = {"data": {f"key-{i}": {"nested": [i, str(i)]} for i in range(200)}}
    assert diffing.human_diff(big, copy.deepcopy(big)) == []
    assert diffing.json_patch(big, copy.deepcopy(big)) == []
    assert diffing.changed_paths(big, copy.deepcopy(big)) == []


def test_inputs_are_never_modified() -> None:
    pairs = [make() for make in PAIRS.values()] + [(deployment(), deployment(3))]
    for before, after in pairs:
        snapshot = copy.deepcopy((before, after))
        all_outputs(before, after)
        assert (before, after) == snapshot


# --- RFC 6902 ------------------------------------------------------------------------------


def test_json_patch_turns_before_into_after() -> None:
    before = deployment()
    after = deployment(3, "ghcr.io/acme/web:1.5.0", team="web")
    after["spec"]["template"]["spec"]["containers"][0]["args"] = ["--port=9090"]
    patch = diffing.json_patch(before, after)
    assert jsonpatch.apply_patch(before, patch) == after
    assert {"op": "replace", "path": "/spec/replicas", "value": 3} in patch
    json.dumps(patch)  # plain JSON, ready for a report


def test_json_patch_on_secrets_applies_to_the_masked_pair() -> None:
    before, after = _key_added()
    b, a = diffing.masked_pair(before, after)
    assert jsonpatch.apply_patch(b, diffing.json_patch(before, after)) == a


def test_json_patch_created_and_deleted() -> None:
    created = diffing.json_patch(None, secret())
    assert created[0]["op"] == "replace"
    assert created[0]["path"] == ""
    assert created[0]["value"]["data"] == {"password": MASK_AFTER, "username": MASK_AFTER}
    assert diffing.json_patch(deployment(), None) == [{"op": "replace", "path": "", "value": None}]


def test_json_patch_escapes_pointer_tokens() -> None:
    before = deployment()
    after = deployment(team="web")
    after["metadata"]["labels"]["app.kubernetes.io/part-of"] = "shop"
    patch = diffing.json_patch(before, after)
    assert {"op": "add", "path": "/metadata/labels/app.kubernetes.io~1part-of", "value": "shop"} in patch


def test_changed_paths_of_a_live_secret_vs_git() -> None:
    live = secret(last_applied=True)
    desired = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "db",
            "namespace": "shop",
            "labels": {"gitops.reconciler.dev/sync": "reconciler-system.addons"},
        },
        "data": {"password": b64(PLAINS[1]), "username": b64("shop")},
        "type": "Opaque",
    }
    paths = diffing.changed_paths(live, desired)
    assert "data.password" in paths
    assert "data.username" not in paths
    assert not any(p.startswith("metadata.annotations") for p in paths)
    assert_no_secret(repr(paths))


def test_changed_paths_tolerates_a_missing_side() -> None:
    assert diffing.changed_paths(None, secret()) == ["(whole object)"]  # type: ignore[arg-type]
    assert_no_secret(repr(diffing.changed_paths(secret(), None)))  # type: ignore[arg-type]
