"""GitSync spec parsing: defaults, durations, and errors that name the field."""

from __future__ import annotations

import re
from typing import Any

import pytest

from reconciler.gitsync.spec import SpecError, parse, parse_duration


def gs(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "apps", "namespace": "team-a"},
        "spec": {"source": {"git": {"url": "ssh://git@h/r.git"}}, **spec},
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("1.5h", 5400), ("2m3s", 123), ("5", 5), ("0.5", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "interval") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "m", "5 m", "5d", "-5s", "5s junk", "5us"])
def test_bad_durations_name_the_field(text: str) -> None:
    with pytest.raises(SpecError, match=r"^spec\.interval: "):
        parse_duration(text, "interval")


def test_defaults() -> None:
    s = parse(gs())
    assert s.git.url == "ssh://git@h/r.git"
    assert (s.path, s.interval, s.retry_interval, s.timeout) == (".", 300, 60, 300)
    assert s.prune is True
    assert s.wait is False
    assert (s.policy_mode, s.drift_mode, s.suspend) == ("enforce", "correct", False)


def test_full_spec() -> None:
    s = parse(
        gs(
            path="./clusters/prod",
            interval="1m",
            dependsOn=[{"name": "crds"}, {"name": "base", "namespace": "infra"}],
            substitute={"CLUSTER_NAME": "prod"},
            substituteFrom=[{"kind": "ConfigMap", "name": "vars"}, {"kind": "Secret", "name": "s", "optional": True}],
            policy={"mode": "audit"},
            drift={"mode": "warn"},
            targetNamespace="apps",
        )
    )
    assert [(d.namespace, d.name) for d in s.depends_on] == [("team-a", "crds"), ("infra", "base")]
    assert s.substitute == {"CLUSTER_NAME": "prod"}
    assert [(v.kind, v.name, v.optional) for v in s.substitute_from] == [
        ("ConfigMap", "vars", False),
        ("Secret", "s", True),
    ]
    assert (s.policy_mode, s.drift_mode, s.target_namespace) == ("audit", "warn", "apps")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"source": {}}, "spec.source.git.url"),
        ({"source": {"git": {"url": "x", "ref": {"branch": "a", "tag": "b"}}}}, "spec.source.git.ref"),
        ({"prune": "yes"}, "spec.prune"),
        ({"policy": {"mode": "strict"}}, "spec.policy.mode"),
        ({"substituteFrom": [{"kind": "Pod", "name": "x"}]}, "spec.substituteFrom[0]"),
        ({"substitute": {"A": 1}}, "spec.substitute"),
        ({"source": {"bucket": {"bucket": "ab"}}}, "spec.source.bucket.bucket"),
        ({"source": {"bucket": {"prefix": "prod/"}}}, "spec.source.bucket.bucket"),
        ({"source": {"bucket": "fleet"}}, "spec.source.bucket"),
        ({"source": {"bucket": {"bucket": "fleet", "endpoint": "minio:9000"}}}, "spec.source.bucket.endpoint"),
        ({"source": {"bucket": {"bucket": "fleet", "region": 1}}}, "spec.source.bucket.region"),
        ({"source": {"git": {"url": "ssh://git@h/r.git"}, "bucket": {"bucket": "fleet"}}}, "spec.source:"),
        ({"path": "/"}, "spec.path: '/' must be a relative path inside the source"),
        ({"path": "/etc"}, "spec.path: '/etc' must be a relative path"),
        ({"path": ".."}, "spec.path: '..' must not contain '..'"),
        ({"path": "apps/../../x"}, "spec.path: 'apps/../../x' must not contain '..'"),
        ({"path": "apps\\..\\x"}, "spec.path:"),
        ({"patches": ["a: 1"]}, "spec.patches[0]: expected an object"),
    ],
)
def test_errors_name_the_field(spec: dict[str, Any], field: str) -> None:
    obj = gs()
    obj["spec"].update(spec)
    with pytest.raises(SpecError) as e:
        parse(obj)
    assert str(e.value).startswith(field)


def test_bucket_source() -> None:
    obj = gs()
    obj["spec"]["source"] = {
        "bucket": {
            "bucket": "fleet",
            "prefix": "prod/",
            "region": "eu-west-1",
            "endpoint": "http://127.0.0.1:9000",
            "secretRef": {"name": "s3-keys"},
        }
    }
    s = parse(obj)
    assert s.git is None
    assert s.bucket is not None
    assert s.source is s.bucket
    assert (s.bucket.bucket, s.bucket.prefix, s.bucket.region, s.bucket.endpoint) == (
        "fleet",
        "prod/",
        "eu-west-1",
        "http://127.0.0.1:9000",
    )
    assert s.bucket.secret_ref is not None
    assert s.bucket.secret_ref.name == "s3-keys"


def test_bucket_source_defaults_use_the_environment() -> None:
    obj = gs()
    obj["spec"]["source"] = {"bucket": {"bucket": "fleet"}}
    b = parse(obj).bucket
    assert b is not None
    assert (b.prefix, b.region, b.endpoint, b.secret_ref) == ("", None, None, None)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            {"source": {"git": {"url": "https://h/r", "secretRef": {"name": "x/../../../kube-system/secrets/admin"}}}},
            "spec.source.git.secretRef.name",
        ),
        (
            {"source": {"bucket": {"bucket": "fleet", "secretRef": {"name": ".."}}}},
            "spec.source.bucket.secretRef.name",
        ),
        (
            {"source": {"git": {"url": "https://h/r"}}, "substituteFrom": [{"kind": "Secret", "name": "a/../b"}]},
            "spec.substituteFrom[0].name",
        ),
        (
            {"source": {"git": {"url": "https://h/r"}}, "substituteFrom": [{"kind": "ConfigMap", "name": "A%2F"}]},
            "spec.substituteFrom[0].name",
        ),
        ({"source": {"git": {"url": "https://h/r"}}, "serviceAccountName": "../admin"}, "spec.serviceAccountName"),
        ({"source": {"git": {"url": "https://h/r"}}, "targetNamespace": "kube-system/x"}, "spec.targetNamespace"),
        (
            {"source": {"git": {"url": "https://h/r"}}, "dependsOn": [{"name": "a", "namespace": ".."}]},
            "spec.dependsOn[0].namespace",
        ),
        ({"source": {"git": {"url": "https://h/r"}}, "dependsOn": [{"name": "a/b"}]}, "spec.dependsOn[0].name"),
    ],
)
def test_every_name_the_spec_refers_to_is_an_rfc1123_name(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError, match=re.escape(field)):
        parse({"metadata": {"name": "evil", "namespace": "team-a"}, "spec": spec})


@pytest.mark.parametrize("path", [".", "./apps/prod", "apps/prod/", "a..b/c", "kustomization.yaml"])
def test_relative_paths_inside_the_source_are_fine(path: str) -> None:
    obj = gs()
    obj["spec"]["path"] = path
    assert parse(obj).path == path
