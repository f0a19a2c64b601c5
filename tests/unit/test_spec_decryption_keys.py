"""Keys from a ``spec.decryption.secretRef`` Secret in Flux's layout, and the controller's own;
errors name the Secret and the entry and never carry key material."""

from __future__ import annotations

import pytest

from reconciler.gitsync import decryptkeys
from reconciler.gitsync.spec import SpecError

AGE_1 = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"
AGE_2 = "AGE-SECRET-KEY-1ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ"
KEYGEN_FILE = f"# created: 2026-12-03T16:00:00Z\n# public key: age1xyz\n{AGE_1}\n"
KMS = b"aws_access_key_id: AKIAEXAMPLE123\naws_secret_access_key: wJalrXUtnFEMI-secret\naws_session_token: tok-123456\n"
WHERE = "spec.decryption.secretRef: Secret team-a/sops-keys"


def test_every_agekey_entry_and_the_aws_kms_entry() -> None:
    keys = decryptkeys.from_secret(
        {"b.agekey": AGE_2.encode(), "a.agekey": KEYGEN_FILE.encode(), "sops.aws-kms": KMS, "README": b"x"}, where=WHERE
    )
    assert keys.keys.age_identities == (AGE_1, AGE_2)  # entries in name order, comments dropped
    kms = keys.keys.aws_kms
    assert kms is not None
    assert (kms.access_key_id, kms.secret_access_key, kms.session_token) == (
        "AKIAEXAMPLE123",
        "wJalrXUtnFEMI-secret",
        "tok-123456",
    )
    assert keys.secrets == {AGE_1, AGE_2, "AKIAEXAMPLE123", "wJalrXUtnFEMI-secret", "tok-123456"}


def test_the_digest_follows_the_content() -> None:
    """A rotated key Secret must change the fingerprint the no-op reconcile compares."""
    one = decryptkeys.from_secret({"k.agekey": AGE_1.encode()}, where=WHERE)
    same = decryptkeys.from_secret({"k.agekey": AGE_1.encode()}, where=WHERE)
    other = decryptkeys.from_secret({"k.agekey": AGE_2.encode()}, where=WHERE)
    assert one.digest == same.digest != other.digest


def test_session_token_is_optional() -> None:
    keys = decryptkeys.from_secret({"sops.aws-kms": b"aws_access_key_id: A1\naws_secret_access_key: S1\n"}, where=WHERE)
    assert keys.keys.aws_kms is not None
    assert keys.keys.aws_kms.session_token is None
    assert keys.keys.age_identities == ()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "holds no decryption key"),
        ({"key.asc": b"-----BEGIN PGP PRIVATE KEY BLOCK-----"}, r"OpenPGP \*\.asc keys are not supported"),
        ({"k.agekey": b"# only a comment\n"}, "entry k.agekey: holds no age identity"),
        ({"k.agekey": b"hunter2-not-a-key\n"}, "entry k.agekey: a line is not an age identity"),
        ({"k.agekey": b"\xff\xfe"}, "entry k.agekey: not UTF-8 text"),
        ({"sops.aws-kms": b"aws_secret_access_key: hunter2-value\n"}, "sops.aws-kms: aws_access_key_id is required"),
        ({"sops.aws-kms": b"[hunter2-value"}, "entry sops.aws-kms: not YAML"),
        ({"sops.aws-kms": b"hunter2-value"}, "entry sops.aws-kms: expected a YAML mapping"),
        ({"sops.aws-kms": b"aws_access_key_id: 12\naws_secret_access_key: x"}, "aws_access_key_id must be"),
    ],
)
def test_bad_secrets_name_the_entry_not_the_value(data: dict[str, bytes], message: str) -> None:
    with pytest.raises(SpecError, match=message) as e:
        decryptkeys.from_secret(data, where=WHERE)
    assert str(e.value).startswith(WHERE)
    assert "hunter2" not in str(e.value)


def test_own_keys_from_the_environment() -> None:
    keys = decryptkeys.own_keys({"SOPS_AGE_KEY": f"{AGE_1}\n{AGE_2}"})
    assert keys.keys.age_identities == (AGE_1, AGE_2)
    assert keys.keys.aws_kms is None  # the controller's own AWS chain (IRSA)
    assert keys.digest == ""
    assert decryptkeys.own_keys({}).keys.age_identities == ()


def test_decryption_metrics_have_no_labels() -> None:
    """Process-wide counts read from the shared decryptor at scrape time."""
    from prometheus_client import generate_latest

    from reconciler.report.metrics import Metrics

    m = Metrics()
    counts = [3, 7]
    m.count_decryptions(lambda: (counts[0], counts[1]))
    text = generate_latest(m.registry).decode()
    assert "reconciler_decryptions_total 3.0" in text
    assert "reconciler_decryption_cache_hits_total 7.0" in text
    counts[1] = 8
    assert "reconciler_decryption_cache_hits_total 8.0" in generate_latest(m.registry).decode()


def test_a_locked_down_tenant_gets_no_aws_identity_of_the_controller() -> None:
    """A tenant's Secret without sops.aws-kms must not reach KMS as the controller's role, and its
    cache entries must never be shared with a GitSync that may."""
    tenant = decryptkeys.from_secret({"k.agekey": AGE_1.encode()}, where=WHERE, own_aws=False)
    platform = decryptkeys.from_secret({"k.agekey": AGE_1.encode()}, where=WHERE)
    assert tenant.keys.aws_ambient is False
    assert platform.keys.aws_ambient is True
    assert tenant.keys.fingerprint() != platform.keys.fingerprint()
