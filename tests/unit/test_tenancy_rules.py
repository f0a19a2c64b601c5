"""The tenancy model as pure logic: who a GitSync acts as, and what its namespace may name."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.gitsync.spec import EksTarget, SpecError, TargetNotAllowedError, parse
from reconciler.gitsync.tenancy import Grant, NotAllowedError, Tenancy, parse_grant

LOCKED = Tenancy(
    default_service_account="gitsync",
    platform_namespaces=frozenset({"reconciler-system"}),
    platform_service_account=("reconciler-system", "reconciler-apply"),
    no_cross_namespace_refs=True,
    min_policy_mode="enforce",
    local_git=False,
)


def _spec(ns: str = "team-a", **spec: Any) -> Any:
    spec.setdefault("source", {"git": {"url": "https://git.example.com/x.git"}})
    return parse({"metadata": {"name": "x", "namespace": ns}, "spec": spec})


@pytest.mark.parametrize(
    ("tenancy", "ns", "spec", "user"),
    [
        (Tenancy(), "team-a", {}, ""),  # no flags: the controller's own identity, as before
        (Tenancy(), "team-a", {"serviceAccountName": "deployer"}, "system:serviceaccount:team-a:deployer"),
        (LOCKED, "team-a", {}, "system:serviceaccount:team-a:gitsync"),
        (LOCKED, "team-a", {"serviceAccountName": "deployer"}, "system:serviceaccount:team-a:deployer"),
        (LOCKED, "reconciler-system", {}, "system:serviceaccount:reconciler-system:reconciler-apply"),
        (LOCKED, "reconciler-system", {"serviceAccountName": "sa"}, "system:serviceaccount:reconciler-system:sa"),
        # a platform namespace without a platform ServiceAccount: the controller's own (dev installs)
        (Tenancy(platform_namespaces=frozenset({"p"}), default_service_account="gitsync"), "p", {}, ""),
    ],
)
def test_who_a_gitsync_acts_as(tenancy: Tenancy, ns: str, spec: dict[str, Any], user: str) -> None:
    assert tenancy.identity(ns, _spec(ns, **spec)) == user


@pytest.mark.parametrize(
    ("floor", "mode", "effective"),
    [
        ("off", "off", "off"),
        ("audit", "off", "audit"),
        ("enforce", "audit", "enforce"),
        ("audit", "enforce", "enforce"),
    ],
)
def test_the_policy_floor_raises_and_never_lowers(floor: str, mode: str, effective: str) -> None:
    assert Tenancy(min_policy_mode=floor).policy_mode(mode) == effective


def test_cross_namespace_dependencies_are_refused_only_when_asked() -> None:
    spec = _spec(dependsOn=[{"name": "base", "namespace": "team-b"}, {"name": "own"}])
    Tenancy().check("team-a", spec)
    with pytest.raises(NotAllowedError, match=r"spec.dependsOn\[0\]: GitSync team-b/base is in another namespace"):
        LOCKED.check("team-a", spec)
    LOCKED.check("team-a", _spec(dependsOn=[{"name": "own"}, {"name": "own2", "namespace": "team-a"}]))


@pytest.mark.parametrize("url", ["file:///var/cache/reconciler/team-b/app/repo", "file://localhost/etc"])
def test_file_urls_are_refused_by_the_controller_and_kept_for_the_cli(url: str) -> None:
    spec = _spec(source={"git": {"url": url}})
    Tenancy().check("team-a", spec)
    with pytest.raises(NotAllowedError, match="file:// URLs read the controller's own disk"):
        LOCKED.check("team-a", spec)


@pytest.mark.parametrize("url", ["https://h/x.git", "http://127.0.0.1:1/x.git", "ssh://git@h/x", "git@h:x.git"])
def test_remote_urls_pass(url: str) -> None:
    LOCKED.check("team-a", _spec(source={"git": {"url": url}}))


def _bucket(**b: Any) -> Any:
    return _spec(source={"bucket": {"bucket": "manifests", **b}})


def test_a_bucket_read_with_the_controllers_identity_needs_a_grant_for_its_namespace() -> None:
    t = Tenancy(buckets=(Grant("team-a", "manif*"), Grant("team-*", "shared")))
    t.check("team-a", _bucket())
    with pytest.raises(NotAllowedError, match=r"not allowed for namespace team-b .*allowed: shared"):
        t.check("team-b", _bucket())
    t.check("team-b", _bucket(secretRef={"name": "s3-keys"}))  # its own keys: its own business
    with pytest.raises(NotAllowedError, match="allowed: none"):
        Tenancy().check("team-a", _bucket())


@pytest.mark.parametrize(
    ("endpoint", "ok"),
    [
        ("http://127.0.0.1:9000", True),
        ("http://127.0.0.1:9000/", True),
        ("http://127.0.0.1:90001", False),
        ("http://127.0.0.1:9000@169.254.169.254", False),
        ("http://127.0.0.1:9000/?x=@169.254.169.254", True),  # not userinfo: the host is still 127.0.0.1
        ("http://169.254.169.254/latest/meta-data", False),
        ("https://kubernetes.default.svc", False),
    ],
)
def test_an_endpoint_needs_a_prefix_grant_for_its_namespace(endpoint: str, ok: bool) -> None:
    t = Tenancy(bucket_endpoints=(Grant("team-a", "http://127.0.0.1:9000"),))
    spec = _bucket(endpoint=endpoint, secretRef={"name": "keys"})
    if ok:
        t.check("team-a", spec)
    else:
        with pytest.raises(NotAllowedError, match=r"spec\.source\.bucket\.endpoint"):
            t.check("team-a", spec)
    with pytest.raises(NotAllowedError, match="not allowed for namespace team-b"):
        t.check("team-b", spec)


def test_a_host_prefix_admits_its_ports_and_nothing_else() -> None:
    t = Tenancy(bucket_endpoints=(Grant("*", "http://127.0.0.1"),))
    t.check("team-a", _bucket(endpoint="http://127.0.0.1:9000", secretRef={"name": "k"}))
    for bad in ("http://127.0.0.1.nip.io", "http://127.0.0.1:x@10.0.0.1", "http://127.0.0.10"):
        with pytest.raises(NotAllowedError):
            t.check("team-a", _bucket(endpoint=bad, secretRef={"name": "k"}))


def test_eks_grants_are_per_namespace_and_the_old_form_means_platform_namespaces() -> None:
    prod = EksTarget("prod", "eu-west-1")
    t = Tenancy(
        platform_namespaces=frozenset({"platform"}),
        eks_targets=(parse_grant("team-*=prod/*", "f"), parse_grant("staging/eu-west-1", "f", legacy=True)),
    )
    t.check_target("team-a", prod)
    with pytest.raises(TargetNotAllowedError, match=r"not allowed for namespace other .*allowed: none"):
        t.check_target("other", prod)
    t.check_target("platform", EksTarget("staging", "eu-west-1"))
    with pytest.raises(TargetNotAllowedError, match="allowed: prod/\\*"):
        t.check_target("team-a", EksTarget("staging", "eu-west-1"))
    # without platform namespaces the old form admits every namespace, as it always did
    Tenancy(eks_targets=(parse_grant("prod/eu-west-1", "f", legacy=True),)).check_target("anyone", prod)


@pytest.mark.parametrize("text", ["x", "=y", "x="])
def test_a_grant_needs_both_parts(text: str) -> None:
    with pytest.raises(SpecError):
        parse_grant(text, "--allow-bucket")


def test_messages_are_scrubbed_of_url_credentials_and_secret_values() -> None:
    """What the unexpected-exception path (and every failure message) writes to status,
    Events, alerts and the log."""
    from reconciler.gitsync.reconcile import Reconciler, SyncState

    state = SyncState(secrets=frozenset({"s3cr3t-value"}))
    text = "KeyError: 'https://user:tok3n@git.example.com/x.git' has s3cr3t-value"
    out = Reconciler.scrub(state, text)
    assert "tok3n" not in out
    assert "s3cr3t-value" not in out
    assert "git.example.com/x.git" in out
