"""The cheap "unchanged" test (``contains``) and the server-managed-field filter (``comparable``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from reconciler.sync.plan import comparable, contains

DESIRED: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]},
                ],
            },
        },
    },
}


def live_of(desired: dict[str, Any]) -> dict[str, Any]:
    """What the API server returns for ``desired``: defaults, bookkeeping and status added."""
    live = copy.deepcopy(desired)
    live["metadata"].update(
        {
            "uid": "0b4c7a1e-0000-4000-8000-000000000001",
            "resourceVersion": "12345",
            "generation": 3,
            "creationTimestamp": "2026-03-02T10:14:07Z",
            "annotations": {"deployment.kubernetes.io/revision": "3"},
            "managedFields": [{"manager": "gitops-reconciler", "operation": "Apply"}],
        }
    )
    live["spec"].update({"progressDeadlineSeconds": 600, "revisionHistoryLimit": 10})
    c = live["spec"]["template"]["spec"]["containers"][0]
    c.update({"imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log"})
    c["ports"][0]["protocol"] = "TCP"
    live["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    live["status"] = {"replicas": 2, "readyReplicas": 2}
    return live


# --- contains ----------------------------------------------------------------------------


def test_live_with_server_defaults_contains_desired() -> None:
    assert contains(DESIRED, live_of(DESIRED))


def test_contains_is_not_symmetric() -> None:
    assert not contains(live_of(DESIRED), DESIRED)


def test_identical_objects_contain_each_other() -> None:
    assert contains(DESIRED, copy.deepcopy(DESIRED))


def test_changed_scalar_is_not_contained() -> None:
    live = live_of(DESIRED)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.26"
    assert not contains(DESIRED, live)


def test_changed_scalar_in_a_list_element_is_not_contained() -> None:
    live = live_of(DESIRED)
    live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 8080
    assert not contains(DESIRED, live)


def test_removed_key_is_not_contained() -> None:
    live = live_of(DESIRED)
    del live["metadata"]["labels"]["app"]
    assert not contains(DESIRED, live)


def test_other_managers_values_do_not_count_as_drift() -> None:
    # An HPA owns replicas: a desired object without replicas never sees it as drift.
    desired = copy.deepcopy(DESIRED)
    del desired["spec"]["replicas"]
    live = live_of(DESIRED)
    live["spec"]["replicas"] = 7
    live["metadata"]["labels"]["team"] = "payments"
    assert contains(desired, live)


def test_but_a_value_desired_sets_does() -> None:
    live = live_of(DESIRED)
    live["spec"]["replicas"] = 7
    assert not contains(DESIRED, live)


@pytest.mark.parametrize(
    ("desired", "live"),
    [
        ({}, {}),
        ({}, {"a": 1}),
        ({"a": 1}, {"a": 1, "b": 2}),
        ({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "d": 3}),
        ({"a": {}}, {"a": {"b": 1}}),
        ({"a": None}, {"a": None}),
        ({"a": [1, 2]}, {"a": [1, 2]}),
        ({"a": []}, {"a": []}),
        ([{"name": "x"}], [{"name": "x", "default": True}]),
        ([[1, {"a": 1}]], [[1, {"a": 1, "b": 2}]]),
        ("s", "s"),
        (0, 0),
        (None, None),
        (1.5, 1.5),
    ],
)
def test_contained(desired: Any, live: Any) -> None:
    assert contains(desired, live)


@pytest.mark.parametrize(
    ("desired", "live"),
    [
        ({"a": 1}, {}),
        ({"a": 1}, {"a": 2}),
        ({"a": 1}, {"b": 1}),
        ({"a": None}, {}),  # an explicit null is a key desired sets
        ({"a": {"b": 1}}, {"a": {}}),
        ({"a": {"b": 1}}, {"a": None}),
        ({"a": {}}, {"a": None}),
        ({"a": {}}, {"a": []}),
        ({}, None),
        ({}, []),
        ({"a": 1}, [("a", 1)]),
        ([], {}),
        ([], None),
        ([1, 2], [1, 2, 3]),  # a list the server extended (injected sidecar): the dry run decides
        ([1, 2, 3], [1, 2]),
        ([1, 2], [2, 1]),  # order matters
        ([{"a": 1}], [{"a": 2}]),
        ([{"a": 1}, {"b": 2}], [{"b": 2}, {"a": 1}]),
        ("1", 1),
        ("true", True),
        ("s", "S"),
        ("", None),
        (0, None),
        (None, 0),
        (None, {}),
        (1, [1]),
    ],
)
def test_not_contained(desired: Any, live: Any) -> None:
    assert not contains(desired, live)


@pytest.mark.parametrize(
    ("desired", "live"),
    [
        (True, 1),
        (1, True),
        (False, 0),
        (0, False),
        (1, 1.0),
        (1.0, 1),
        ({"enabled": True}, {"enabled": 1}),
        ([0], [False]),
    ],
)
def test_known_behaviour_python_numeric_equality(desired: Any, live: Any) -> None:
    """KNOWN BEHAVIOUR: scalars compare with Python ``==``, so ``True == 1 == 1.0`` and
    ``False == 0``: ``contains`` treats these as equal although YAML/JSON would not.

    Typed API fields are coerced or rejected by the server, so this only matters for
    schemaless fields (``x-kubernetes-preserve-unknown-fields``), and only when the
    digest also matches; the dry run is then skipped and such a change is not seen.
    """
    assert contains(desired, live) is True


def test_contains_does_not_mutate_its_arguments() -> None:
    desired, live = copy.deepcopy(DESIRED), live_of(DESIRED)
    before_d, before_l = copy.deepcopy(desired), copy.deepcopy(live)
    contains(desired, live)
    assert desired == before_d
    assert live == before_l


def test_contains_returns_a_real_bool() -> None:
    assert contains({"a": 1}, {"a": 1}) is True
    assert contains({"a": 1}, {"a": 2}) is False
    assert contains([1], [1]) is True


# --- comparable --------------------------------------------------------------------------

SERVER_METADATA = ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink")


def test_comparable_none_is_none() -> None:
    assert comparable(None) is None


def test_comparable_drops_status_and_server_metadata() -> None:
    live = live_of(DESIRED)
    live["metadata"]["selfLink"] = "/apis/apps/v1/namespaces/shop/deployments/web"
    out = comparable(live)
    assert out is not None
    assert "status" not in out
    for key in SERVER_METADATA:
        assert key not in out["metadata"], key


def test_comparable_keeps_identity_labels_annotations_and_spec() -> None:
    live = live_of(DESIRED)
    live["metadata"]["finalizers"] = ["example.com/cleanup"]
    live["metadata"]["ownerReferences"] = [{"kind": "X", "name": "y"}]
    out = comparable(live)
    assert out is not None
    assert out["apiVersion"] == "apps/v1"
    assert out["kind"] == "Deployment"
    assert out["metadata"]["name"] == "web"
    assert out["metadata"]["namespace"] == "shop"
    assert out["metadata"]["labels"] == {"app": "web"}
    assert out["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "3"}
    assert out["metadata"]["finalizers"] == ["example.com/cleanup"]
    assert out["metadata"]["ownerReferences"] == [{"kind": "X", "name": "y"}]
    assert out["spec"] == live["spec"]


def test_comparable_exact_result() -> None:
    o = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a", "namespace": "shop", "uid": "u", "resourceVersion": "1", "labels": {"x": "y"}},
        "data": {"k": "v"},
        "status": {"whatever": True},
    }
    assert comparable(o) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a", "namespace": "shop", "labels": {"x": "y"}},
        "data": {"k": "v"},
    }


def test_comparable_only_drops_top_level_status() -> None:
    # A custom resource may well have a field called "status" inside its spec.
    o = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"status": "on"}}
    out = comparable(o)
    assert out is not None
    assert out["spec"] == {"status": "on"}


def test_comparable_only_drops_server_metadata_at_the_top() -> None:
    # A pod template's metadata is user data, even with a server-looking key in it.
    o = {"kind": "X", "metadata": {"name": "x"}, "spec": {"template": {"metadata": {"generation": 1}}}}
    out = comparable(o)
    assert out is not None
    assert out["spec"]["template"]["metadata"] == {"generation": 1}


def test_comparable_does_not_mutate_its_input() -> None:
    live = live_of(DESIRED)
    live["metadata"]["selfLink"] = "/x"
    before = copy.deepcopy(live)
    out = comparable(live)
    assert out is not None
    assert live == before
    assert "status" in live
    assert "uid" in live["metadata"]
    out["metadata"]["name"] = "changed"  # the metadata mapping is a new one
    assert live["metadata"]["name"] == "web"


@pytest.mark.parametrize("o", [{"kind": "X"}, {"kind": "X", "metadata": None}])
def test_comparable_without_metadata(o: dict[str, Any]) -> None:
    out = comparable(o)
    assert out is not None
    assert out["kind"] == "X"
    assert out["metadata"] == {}


def test_comparable_live_and_dry_run_compare_equal_despite_bookkeeping() -> None:
    # preflight marks an object unchanged when comparable(live) == comparable(dry-run result).
    live = live_of(DESIRED)
    dry = copy.deepcopy(live)
    dry["metadata"].update({"resourceVersion": "12346", "generation": 4, "managedFields": []})
    dry["status"] = {"replicas": 0}
    assert live != dry
    assert comparable(live) == comparable(dry)
    dry["spec"]["replicas"] = 3
    assert comparable(live) != comparable(dry)


def test_comparable_label_change_is_visible() -> None:
    live = live_of(DESIRED)
    changed = copy.deepcopy(live)
    changed["metadata"]["labels"]["app"] = "other"
    assert comparable(live) != comparable(changed)
