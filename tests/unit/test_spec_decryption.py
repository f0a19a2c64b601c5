"""``spec.decryption`` (Flux's shape): parsed with errors naming the field, and the tenancy rules
around whose keys decrypt (the GitSync's own namespace's Secret, the controller's keys only for
platform namespaces)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.gitsync.spec import DecryptionProvider, SecretRef, SpecError, parse
from reconciler.gitsync.tenancy import NotAllowedError, Tenancy


def gs(ns: str = "team-a", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "apps", "namespace": ns}, "spec": {"source": {"git": {"url": "ssh://h/r"}}, **spec}}


def test_absent_means_no_decryption() -> None:
    assert parse(gs()).decryption is None


def test_provider_and_secret_ref() -> None:
    d = parse(gs(decryption={"provider": "sops", "secretRef": {"name": "sops-keys"}})).decryption
    assert d is not None
    assert (d.provider, d.secret_ref) == (DecryptionProvider.SOPS, SecretRef("sops-keys"))


def test_without_secret_ref_the_controller_keys() -> None:
    d = parse(gs(decryption={"provider": "sops"})).decryption
    assert d is not None
    assert d.secret_ref is None


@pytest.mark.parametrize(
    ("decryption", "message"),
    [
        ("sops", r"^spec\.decryption: expected an object with provider and secretRef$"),
        ({}, r"^spec\.decryption\.provider: required \(sops\)$"),
        ({"provider": "vault"}, r"^spec\.decryption\.provider: 'vault' is not supported \(only sops\)$"),
        ({"provider": "SOPS"}, r"^spec\.decryption\.provider: 'SOPS' is not supported"),
        ({"provider": "sops", "secretRef": {}}, r"^spec\.decryption\.secretRef\.name: required"),
        ({"provider": "sops", "secretRef": "keys"}, r"^spec\.decryption\.secretRef\.name: required"),
        (
            {"provider": "sops", "secretRef": {"name": "x/../../kube-system/secrets/admin"}},
            r"^spec\.decryption\.secretRef\.name: .* is not a valid object name",
        ),
        (
            {"provider": "sops", "secretRef": {"name": "keys", "namespace": "victim"}},
            r"^spec\.decryption\.secretRef\.namespace: not allowed; the Secret is read in the GitSync's own namespace",
        ),
        ({"provider": "sops", "keys": ["x"]}, r"^spec\.decryption\.keys: unknown field"),
    ],
)
def test_bad_decryption_names_the_field(decryption: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse(gs(decryption=decryption))


def test_not_with_a_chart() -> None:
    """A chart's values files are not decrypted: saying so beats syncing ciphertext as values."""
    chart = {"chart": {"spec": {"chart": "./charts/app"}}}
    with pytest.raises(SpecError, match=r"^spec\.decryption: not supported with spec\.helm"):
        parse(gs(decryption={"provider": "sops"}, helm=chart))


LOCKED = Tenancy(default_service_account="gitsync", platform_namespaces=frozenset({"reconciler-system"}))


def test_controller_keys_are_for_platform_namespaces_only() -> None:
    """A tenant must not have the controller's KMS role or age key decrypt a file it copied from
    a platform repository; with its own Secret it may decrypt."""
    own_keys = {"provider": "sops"}
    with pytest.raises(NotAllowedError, match=r"^spec\.decryption\.secretRef: required in namespace team-a"):
        LOCKED.check("team-a", parse(gs(decryption=own_keys)))
    LOCKED.check("team-a", parse(gs(decryption={**own_keys, "secretRef": {"name": "team-a-keys"}})))
    LOCKED.check("reconciler-system", parse(gs("reconciler-system", decryption=own_keys)))
    Tenancy().check("team-a", parse(gs(decryption=own_keys)))  # no platform namespaces: single-tenant install
