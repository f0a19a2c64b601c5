"""The ``spec.helm`` schema of deploy/crd-gitsync.yaml on the real API server: a full helm spec is
stored as written and parses to the same model the controller uses; bad ones are refused at
admission (OpenAPI and CEL), with the field named.
"""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.gitsync.helmspec import ChartOrigin, CRDPolicy, parse_helm
from reconciler.kube import client

GIT = {"git": {"url": "https://git.example.com/org/fleet.git", "ref": {"branch": "main"}}}
HELM: dict[str, Any] = {
    "chart": {
        "spec": {
            "chart": "external-dns",
            "version": "~1.21",
            "repository": {
                "url": "oci://registry.example.com/charts",
                "secretRef": {"name": "registry"},
                "certSecretRef": {"name": "registry-ca"},
                "provider": "generic",
                "insecure": False,
            },
        }
    },
    "interval": "10m",
    "releaseName": "external-dns",
    "targetNamespace": "kube-system",
    "values": {"policy": "sync", "domainFilters": ["example.com"], "nested": {"a": [1, {"b": None}]}},
    "valuesFiles": ["values/external-dns.yaml"],
    "valuesFrom": [
        {"kind": "Secret", "name": "dns", "valuesKey": "token", "targetPath": "env[0].value", "optional": True}
    ],
    "install": {"crds": "CreateReplace", "disableHooks": False},
    "upgrade": {"crds": "Skip"},
    "skipCRDs": False,
}


def _create(kube: client.Kube, ns: str, name: str, helm: dict[str, Any]) -> dict[str, Any]:
    body = {
        "apiVersion": "gitops.reconciler.dev/v1",
        "kind": "GitSync",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"source": GIT, "helm": helm},
    }
    obj: dict[str, Any] = kube.request("POST", f"/apis/gitops.reconciler.dev/v1/namespaces/{ns}/gitsyncs", body=body)
    return obj


@pytest.mark.usefixtures("crd")
def test_a_helm_spec_is_stored_as_written_and_parses(kube: client.Kube, namespace: str) -> None:
    stored = _create(kube, namespace, "dns", HELM)["spec"]["helm"]
    assert stored == HELM  # no field pruned by the schema, none defaulted
    h = parse_helm(stored, gitsync_name="dns")
    assert h.chart.origin is ChartOrigin.OCI
    assert h.install.crds is CRDPolicy.CREATE_REPLACE
    assert h.values_from[0].target_path == "env[0].value"


@pytest.mark.usefixtures("crd")
@pytest.mark.parametrize(
    ("helm", "says"),
    [
        pytest.param({}, "spec.helm.chart", id="no-chart"),
        pytest.param({"chart": {"spec": {"version": "1"}}}, "spec.helm.chart.spec.chart", id="no-chart-name"),
        pytest.param(
            {"chart": {"spec": {"chart": "c", "repository": {"url": "ftp://h/x"}}}},
            "spec.helm.chart.spec.repository.url",
            id="url-scheme",
        ),
        pytest.param(
            {"chart": {"spec": {"chart": "c", "repository": {"url": "https://u:p@h/x"}}}},
            "spec.helm.chart.spec.repository.url",
            id="url-credentials",
        ),
        pytest.param(
            {"chart": {"spec": {"chart": "c", "repository": {"url": "https://h/x", "insecure": True}}}},
            "insecure (plain HTTP) is only for an oci:// registry",
            id="insecure-http",
        ),
        pytest.param(
            {"chart": {"spec": {"chart": "c", "repository": {"url": "oci://h/x", "provider": "azure"}}}},
            "spec.helm.chart.spec.repository.provider",
            id="provider",
        ),
        pytest.param(
            {"chart": {"spec": {"chart": "c"}}, "releaseName": "x" * 54}, "spec.helm.releaseName", id="release"
        ),
        pytest.param(
            {"chart": {"spec": {"chart": "c"}}, "valuesFrom": [{"kind": "Pod", "name": "x"}]},
            "spec.helm.valuesFrom[0].kind",
            id="values-from-kind",
        ),
        pytest.param(
            {"chart": {"spec": {"chart": "c"}}, "install": {"crds": "Replace"}}, "spec.helm.install.crds", id="crds"
        ),
        pytest.param({"chart": {"spec": {"chart": "c"}}, "interval": "soon"}, "spec.helm.interval", id="interval"),
    ],
)
def test_an_invalid_helm_spec_is_rejected(kube: client.Kube, namespace: str, helm: dict[str, Any], says: str) -> None:
    with pytest.raises(client.KubeError) as err:
        _create(kube, namespace, "invalid", helm)
    assert err.value.status == 422, err.value
    assert says in err.value.message, err.value.message
