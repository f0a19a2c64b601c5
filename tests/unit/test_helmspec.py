"""``spec.helm`` parsing: the typed model, Flux's defaults, and errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.gitsync.helmspec import (
    ChartOrigin,
    CRDPolicy,
    Phase,
    Provider,
    parse_helm,
)
from reconciler.gitsync.spec import SpecError
from reconciler.render.helm_values import ValuesReference


def helm(**fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"chart": {"spec": {"chart": "charts/web"}}}
    spec.update(fields)
    return spec


def test_a_chart_path_in_the_source_with_flux_defaults() -> None:
    h = parse_helm(helm(), gitsync_name="web")
    assert h.chart.origin is ChartOrigin.SOURCE
    assert (h.chart.chart, h.chart.version, h.chart.repository) == ("charts/web", "*", None)
    assert h.release_name == "web"
    assert h.target_namespace is None
    assert h.interval is None
    assert h.install == Phase(crds=CRDPolicy.CREATE)
    assert h.upgrade == Phase(crds=CRDPolicy.SKIP)
    assert (h.values, h.values_files, h.values_from) == ({}, (), ())
    assert h.secret_names() == ()


def test_every_field_of_a_repository_chart() -> None:
    h = parse_helm(
        {
            "chart": {
                "spec": {
                    "chart": "cluster-autoscaler",
                    "version": "9.x",
                    "repository": {
                        "url": "https://kubernetes.github.io/autoscaler/",
                        "secretRef": {"name": "repo-auth"},
                        "certSecretRef": {"name": "repo-ca"},
                    },
                }
            },
            "interval": "10m",
            "releaseName": "autoscaler",
            "targetNamespace": "kube-system",
            "values": {"awsRegion": "eu-west-1"},
            "valuesFiles": ["values/prod.yaml"],
            "valuesFrom": [
                {"kind": "ConfigMap", "name": "cluster-vars"},
                {"kind": "Secret", "name": "tokens", "valuesKey": "token", "targetPath": "a.b", "optional": True},
            ],
            "install": {"crds": "CreateReplace"},
            "upgrade": {"crds": "CreateReplace", "disableHooks": True},
        },
        gitsync_name="addons",
    )
    repo = h.chart.repository
    assert repo is not None
    assert h.chart.origin is ChartOrigin.REPOSITORY
    assert repo.url == "https://kubernetes.github.io/autoscaler"  # trailing slash dropped
    assert (repo.secret_ref, repo.cert_secret_ref, repo.provider, repo.insecure) == (
        "repo-auth",
        "repo-ca",
        Provider.GENERIC,
        False,
    )
    assert (h.chart.chart, h.chart.version, h.release_name, h.target_namespace) == (
        "cluster-autoscaler",
        "9.x",
        "autoscaler",
        "kube-system",
    )
    assert h.interval == 600.0
    assert h.values == {"awsRegion": "eu-west-1"}
    assert h.values_files == ("values/prod.yaml",)
    assert h.values_from == (
        ValuesReference(kind="ConfigMap", name="cluster-vars"),
        ValuesReference(kind="Secret", name="tokens", values_key="token", target_path="a.b", optional=True),
    )
    assert h.install == Phase(crds=CRDPolicy.CREATE_REPLACE)
    assert h.upgrade == Phase(crds=CRDPolicy.CREATE_REPLACE, disable_hooks=True)
    assert h.secret_names() == ("repo-auth", "repo-ca", "tokens")


def test_an_oci_chart_on_ecr() -> None:
    h = parse_helm(
        helm(
            chart={
                "spec": {
                    "chart": "external-dns",
                    "version": "1.21.1",
                    "repository": {"url": "oci://123456789012.dkr.ecr.eu-west-1.amazonaws.com/c", "provider": "aws"},
                }
            }
        ),
        gitsync_name="dns",
    )
    assert h.chart.origin is ChartOrigin.OCI
    assert h.chart.repository is not None
    assert h.chart.repository.provider is Provider.AWS


def test_skip_crds_sets_both_phases_to_skip() -> None:
    h = parse_helm(helm(skipCRDs=True), gitsync_name="web")
    assert h.install.crds is CRDPolicy.SKIP
    assert h.upgrade.crds is CRDPolicy.SKIP


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"chart": None}, "spec.helm.chart: expected a mapping"),
        ({"chart": {"spec": {}}}, "spec.helm.chart.spec.chart: required"),
        ({"chart": {"spec": {"chart": "../outside"}}}, "spec.helm.chart.spec.chart: '../outside' must be relative"),
        ({"chart": {"spec": {"chart": "/abs"}}}, "spec.helm.chart.spec.chart: '/abs' must be relative"),
        ({"chart": {"name": "x"}}, "spec.helm.chart.name: unknown field"),
        (
            {"chart": {"spec": {"chart": "web", "version": ">=1 <<2", "repository": {"url": "https://h/"}}}},
            "spec.helm.chart.spec.version: '>=1 <<2' is not a version or range",
        ),
        (
            {"chart": {"spec": {"chart": "we b", "repository": {"url": "https://h/"}}}},
            "spec.helm.chart.spec.chart: 'we b' is not a chart name",
        ),
        (
            {"chart": {"spec": {"chart": "web", "repository": {"url": "ftp://h/x"}}}},
            "spec.helm.chart.spec.repository.url: 'ftp://h/x' must be an http://, https:// or oci:// URL",
        ),
        (
            {"chart": {"spec": {"chart": "web", "repository": {"url": "https://u:p@h/"}}}},
            "spec.helm.chart.spec.repository.url: no credentials",
        ),
        (
            {"chart": {"spec": {"chart": "web", "repository": {"url": "https://h/", "insecure": True}}}},
            "spec.helm.chart.spec.repository.insecure: only for an oci:// registry",
        ),
        (
            {"chart": {"spec": {"chart": "web", "repository": {"url": "oci://h/c", "provider": "azure"}}}},
            "spec.helm.chart.spec.repository.provider: 'azure' is not one of generic, aws",
        ),
        (
            {"chart": {"spec": {"chart": "web", "repository": {"url": "https://h/", "secretRef": {"name": "A/b"}}}}},
            "spec.helm.chart.spec.repository.secretRef.name: 'A/b' is not a valid object name",
        ),
        ({"releaseName": "x" * 54}, "spec.helm.releaseName: 'xxxx"),
        ({"targetNamespace": "Kube_System"}, "spec.helm.targetNamespace: 'Kube_System' is not a valid namespace"),
        ({"interval": "soon"}, "spec.helm.interval:"),
        ({"values": ["a"]}, "spec.helm.values: expected a mapping"),
        ({"valuesFiles": "values.yaml"}, "spec.helm.valuesFiles: expected a list"),
        ({"valuesFiles": ["../../etc/passwd"]}, "spec.helm.valuesFiles[0]: '../../etc/passwd' must be relative"),
        ({"valuesFrom": [{"kind": "Pod", "name": "x"}]}, "spec.helm.valuesFrom[0].kind: 'Pod' must be ConfigMap"),
        ({"valuesFrom": [{"kind": "Secret"}]}, "spec.helm.valuesFrom[0].name: None is not a valid object name"),
        (
            {"valuesFrom": [{"kind": "Secret", "name": "s", "valuesKey": "a/b"}]},
            "spec.helm.valuesFrom[0].valuesKey: 'a/b' is not a valid",
        ),
        ({"valuesFrom": [{"kind": "Secret", "name": "s", "optional": "yes"}]}, "spec.helm.valuesFrom[0].optional:"),
        ({"install": {"crds": "Replace"}}, "spec.helm.install.crds: 'Replace' is not one of Skip, Create"),
        ({"upgrade": {"wait": True}}, "spec.helm.upgrade.wait: unknown field"),
        ({"skipCRDs": True, "install": {"crds": "Create"}}, "spec.helm.skipCRDs: contradicts spec.helm.install.crds"),
        ({"postRenderers": []}, "spec.helm.postRenderers: unknown field"),
    ],
)
def test_errors_name_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_helm(helm(**fields), gitsync_name="web")
    assert str(e.value).startswith(message), str(e.value)


def test_a_gitsync_name_too_long_for_a_release_says_to_set_release_name() -> None:
    with pytest.raises(SpecError, match=r"releaseName \(default: the GitSync name\)"):
        parse_helm(helm(), gitsync_name="a" * 60)


def test_not_a_mapping() -> None:
    with pytest.raises(SpecError, match=r"^spec\.helm: expected a mapping"):
        parse_helm("chart: x", gitsync_name="web")
