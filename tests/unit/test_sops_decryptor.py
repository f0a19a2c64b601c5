"""The decryption interface on the real sops: keys by environment, plaintext by pipe, a cache, safe errors."""

from __future__ import annotations

import re
import subprocess

import awsserver
import pytest
import sopstools

from reconciler.render import decryption, sops_tool
from reconciler.render.decryption import AwsKmsCredentials, DecryptionError, DecryptionKeys, Decryptor
from reconciler.render.options import RenderOptions

SECRET = b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: hunter2-plain\n"


@pytest.fixture(scope="module")
def ident() -> sopstools.AgeIdentity:
    return sopstools.age_identity()


@pytest.fixture(scope="module")
def ciphertext(ident: sopstools.AgeIdentity) -> bytes:
    return sopstools.encrypt(SECRET, fmt="yaml", age=[ident.recipient])


def test_the_sops_pin_matches_build_tool() -> None:
    script = (sopstools.ROOT / "scripts" / "build-tool").read_text()
    assert f"VERSION=${{SOPS_VERSION:-{sops_tool.SOPS_VERSION}}}" in script
    assert f"PKG={sops_tool.SOPS_MODULE}\n" in script
    assert f"VERSION=${{AGE_VERSION:-{sopstools.AGE_VERSION}}}" in script
    version = subprocess.run([sopstools.sops_binary(), "--version", "--disable-version-check"], capture_output=True)
    assert sops_tool.SOPS_VERSION.removeprefix("v") in version.stdout.decode()


def test_keys_never_show_in_repr(ident: sopstools.AgeIdentity) -> None:
    keys = DecryptionKeys(
        age_identities=(ident.secret,), aws_kms=AwsKmsCredentials(access_key_id="AKIAX", secret_access_key="s3cr3t")
    )
    shown = repr(keys) + repr(keys.aws_kms) + str(keys) + repr(RenderOptions(decryption=None))
    assert ident.secret not in shown
    assert "s3cr3t" not in shown
    assert "AKIAX" not in shown
    assert "1 redacted" in repr(keys)


def test_decrypts_as_sops_does_then_answers_from_the_cache(ident: sopstools.AgeIdentity, ciphertext: bytes) -> None:
    d = Decryptor(binary=sopstools.sops_binary())
    keys = DecryptionKeys(age_identities=(ident.secret,))
    plain = d.decrypt(data=ciphertext, file="apps/db.yaml", keys=keys)
    expected = sopstools.reference_decrypt(ciphertext, fmt="yaml", env={"SOPS_AGE_KEY": ident.secret})
    assert plain == expected
    assert b"hunter2-plain" in plain
    assert (d.decryptions, d.cache_hits) == (1, 0)
    assert d.decrypt(data=ciphertext, file="apps/db.yaml", keys=keys) == plain
    assert (d.decryptions, d.cache_hits) == (1, 1)


def test_the_cache_never_serves_plaintext_to_other_keys(ident: sopstools.AgeIdentity, ciphertext: bytes) -> None:
    d = Decryptor(binary=sopstools.sops_binary())
    d.decrypt(data=ciphertext, file="db.yaml", keys=DecryptionKeys(age_identities=(ident.secret,)))
    other = sopstools.age_identity()
    with pytest.raises(DecryptionError) as e:
        d.decrypt(data=ciphertext, file="db.yaml", keys=DecryptionKeys(age_identities=(other.secret,)))
    msg = str(e.value)
    assert msg.startswith("db.yaml: cannot decrypt (SOPS): no key we hold decrypts the file's data key")
    assert ident.recipient in msg  # which recipient it was for: public, and what the user needs to know
    assert other.secret not in msg
    assert ident.secret not in msg
    assert "hunter2" not in msg
    assert d.cache_hits == 0


def test_a_tampered_value_is_an_error_that_quotes_nothing(ident: sopstools.AgeIdentity, ciphertext: bytes) -> None:
    text = ciphertext.decode()
    # A plain value slipped into an encrypted file: sops itself would quote it in its message.
    plain_slipped = text.replace("stringData:\n", "stringData:\n    leaked: plain-leaked-value\n").encode()
    d = Decryptor(binary=sopstools.sops_binary())
    keys = DecryptionKeys(age_identities=(ident.secret,))
    with pytest.raises(DecryptionError) as e:
        d.decrypt(data=plain_slipped, file="db.yaml", keys=keys)
    assert "plain-leaked-value" not in str(e.value)
    assert sops_tool.Failure.VALUE.value in str(e.value)
    # one ciphertext byte of the MAC changed
    mac = re.search(r"mac: ENC\[AES256_GCM,data:(.)", text)
    assert mac is not None
    flipped = "A" if mac.group(1) != "A" else "B"
    tampered = text[: mac.start(1)] + flipped + text[mac.end(1) :]
    with pytest.raises(DecryptionError, match="the MAC does not verify"):
        d.decrypt(data=tampered.encode(), file="db.yaml", keys=keys)
    assert d.decryptions == 0


def test_a_missing_binary_is_a_decryption_error_saying_how_to_build_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_SOPS", "/nonexistent/sops")
    with pytest.raises(DecryptionError, match=r"not executable"):
        Decryptor().decrypt(data=b"a: 1\n", file="x.yaml", keys=DecryptionKeys())


def test_formats_follow_the_file_name() -> None:
    assert [decryption.file_format(f) for f in ("a.yaml", "b.yml", "c.json", "d.env", ".env", "e.ini", "f.bin")] == [
        "yaml",
        "yaml",
        "json",
        "dotenv",
        "dotenv",
        "ini",
        "binary",
    ]


def test_kms_through_the_process_chain_one_call_per_file_and_denied_names_the_cause(
    aws: awsserver.MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sopstools.kms_proxy(aws) as proxy:
        arn = sopstools.kms_key(aws)
        ciphertext = sopstools.encrypt(SECRET, fmt="yaml", kms=[arn], env=sopstools.kms_env(proxy.endpoint))
        monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", proxy.endpoint)  # the controller's own chain, pointed at moto
        d = Decryptor(binary=sopstools.sops_binary())
        keys = DecryptionKeys()
        before = proxy.count("Decrypt")
        assert b"hunter2-plain" in d.decrypt(data=ciphertext, file="db.yaml", keys=keys)
        assert proxy.count("Decrypt") == before + 1
        d.decrypt(data=ciphertext, file="db.yaml", keys=keys)
        assert proxy.count("Decrypt") == before + 1  # cached: no KMS call
        proxy.deny = True
        d.clear()
        with pytest.raises(DecryptionError) as e:
            d.decrypt(data=ciphertext, file="db.yaml", keys=keys)
    assert "AccessDeniedException" in str(e.value)
    assert "kms:Decrypt" in str(e.value)
    assert awsserver.SECRET_KEY not in str(e.value)


def test_decrypt_all_runs_in_parallel_and_keeps_each_files_outcome(
    ident: sopstools.AgeIdentity, ciphertext: bytes
) -> None:
    other = sopstools.encrypt(SECRET.replace(b"db", b"db2"), fmt="yaml", age=[ident.recipient])
    d = Decryptor(binary=sopstools.sops_binary())
    keys = DecryptionKeys(age_identities=(ident.secret,))
    broken = ciphertext.replace(b"mac: ENC[AES256_GCM,data:", b"mac: ENC[AES256_GCM,data:AAAA")
    out = d.decrypt_all([(ciphertext, "a.yaml"), (broken, "b.yaml"), (other, "c.yaml")], keys=keys)
    assert isinstance(out[0], bytes)
    assert b"hunter2-plain" in out[0]
    assert isinstance(out[1], DecryptionError)
    assert out[1].file == "b.yaml"
    assert isinstance(out[2], bytes)
    assert b"name: db2" in out[2]
    assert d.decryptions == 2
