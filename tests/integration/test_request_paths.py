"""On the real API server: a path that climbs out of its namespace is never sent.

Before kube/paths.py, ``GET /api/v1/namespaces/team-a/secrets/x/../../../kube-system/secrets/admin``
went out as ``/api/v1/namespaces/kube-system/secrets/admin`` (urllib3 removes dot segments)
and returned that Secret to anyone who could choose the name.
"""

from __future__ import annotations

import base64
import uuid

import pytest

from reconciler.kube import client, paths

SECRET_VALUE = "s3cr3t-admin-token-that-must-not-leak"


@pytest.fixture
def admin_secret(kube: client.Kube) -> str:
    name = f"admin-{uuid.uuid4().hex[:6]}"
    kube.request(
        "POST",
        "/api/v1/namespaces/kube-system/secrets",
        body={
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "data": {"token": base64.b64encode(SECRET_VALUE.encode()).decode()},
        },
    )
    return name


def test_the_raw_traversal_would_have_read_kube_system(kube: client.Kube, admin_secret: str) -> None:
    """The attack is real: the normalised path does reach kube-system's Secret (sent here on purpose)."""
    sec = kube.get(
        paths.api_path(group="", version="v1", resource="secrets", namespace="kube-system", name=admin_secret)
    )
    assert base64.b64decode(sec["data"]["token"]).decode() == SECRET_VALUE


@pytest.mark.parametrize(
    "evil",
    [
        "x/../../../kube-system/secrets/{name}",
        "../../kube-system/secrets/{name}",
        "x%2F..%2F..%2F..%2Fkube-system%2Fsecrets%2F{name}",
    ],
)
def test_a_traversing_name_sends_no_request(kube: client.Kube, admin_secret: str, evil: str) -> None:
    name = evil.format(name=admin_secret)
    before = sum(kube.requests.values())
    with pytest.raises(paths.PathError):
        kube.get(paths.api_path(group="", version="v1", resource="secrets", namespace="team-a", name=name))
    with pytest.raises(paths.PathError):  # and a path pasted together by hand is stopped at the door
        kube.get(f"/api/v1/namespaces/team-a/secrets/{name}")
    assert sum(kube.requests.values()) == before, "a request left the process"
