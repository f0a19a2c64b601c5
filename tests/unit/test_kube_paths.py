"""Request paths built from tenant-chosen names never leave the namespace and object they name.

The property: for ANY namespace and name, ``paths.api_path`` either refuses, or yields a path
that — after what urllib3 does to it before sending (dot-segment removal) and what the API
server does to it (percent-decoding, splitting on '/') — names exactly that namespace and
that object.  And ``Kube`` refuses any path with a traversal in it, however it was built.
"""

from __future__ import annotations

import urllib.parse

import pytest
import urllib3
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.kube import paths

# Names an attacker would try, mixed into arbitrary text by hypothesis.
_EVIL = ["..", ".", "/", "%2e", "%2f", "%2F", "%252e", "\\", "?", "#", ";", "x/../..", "%"]
names = st.one_of(
    st.text(min_size=0, max_size=40),
    st.lists(st.sampled_from([*_EVIL, "a", "kube-system", "secrets"]), min_size=1, max_size=8).map("".join),
)


def _as_server_sees(path: str) -> list[str]:
    """The segments the API server routes on: urllib3's normalisation, then percent-decoding."""
    sent = urllib3.util.parse_url("https://apiserver" + path).path or "/"
    return [urllib.parse.unquote(s) for s in sent[1:].split("/")]


@settings(max_examples=3000, deadline=None)
@given(namespace=names, name=names)
def test_no_name_can_leave_its_namespace(namespace: str, name: str) -> None:
    try:
        path = paths.api_path(group="", version="v1", resource="secrets", namespace=namespace, name=name)
    except paths.PathError:
        return
    paths.check_request_path(path)  # what Kube checks before sending: a path we built must pass it
    assert _as_server_sees(path) == ["api", "v1", "namespaces", namespace, "secrets", name]


@settings(max_examples=1000, deadline=None)
@given(namespace=names, name=names)
def test_grouped_status_paths_stay_on_their_object(namespace: str, name: str) -> None:
    try:
        path = paths.api_path(
            group="gitops.reconciler.dev",
            version="v1",
            resource="gitsyncs",
            namespace=namespace,
            name=name,
            subresource="status",
        )
    except paths.PathError:
        return
    assert _as_server_sees(path) == [
        "apis",
        "gitops.reconciler.dev",
        "v1",
        "namespaces",
        namespace,
        "gitsyncs",
        name,
        "status",
    ]


@pytest.mark.parametrize(
    "name",
    ["x/../../../kube-system/secrets/admin", "..", ".", "a%2f..", "a/b", "", "%2e%2e"],
)
def test_the_reported_attacks_are_refused(name: str) -> None:
    with pytest.raises(paths.PathError):
        paths.api_path(group="", version="v1", resource="secrets", namespace="team-a", name=name)


def test_rbac_style_names_stay_readable() -> None:
    path = paths.api_path(
        group="rbac.authorization.k8s.io", version="v1", resource="clusterroles", name="system:controller:job"
    )
    assert path == "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:controller:job"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/namespaces/a/secrets/x/../../../b/secrets/s",
        "/api/v1/namespaces/a/secrets/./s",
        "/api/v1/namespaces/a/secrets/%2e%2e/s",
        "/api/v1/namespaces/a/secrets/x%2Fy",
        "/api/v1/namespaces//secrets/s",
        "/api/v1/namespaces/a/secrets/s?x=1",
        "api/v1/namespaces/a/secrets/s",
    ],
)
def test_kube_refuses_a_traversing_path_however_it_was_built(path: str) -> None:
    with pytest.raises(paths.PathError):
        paths.check_request_path(path)
