"""Issue 16, acceptance 1: what the renderer decrypts is exactly what ``sops --decrypt`` prints.

Every file here is encrypted by the real sops (age identities from the real age-keygen; KMS keys
in the moto server on loopback, reached through a counting proxy), in every store a repository
uses: YAML and JSON manifests with nested maps and lists, with ``encrypted_regex`` and
``unencrypted_suffix``, and the dotenv, binary, JSON and YAML files a kustomize
``secretGenerator`` reads.  The oracle is ``sops --decrypt`` run by hand on the same bytes.
Then the tampered cases (one ciphertext byte, the MAC, a key we do not hold, KMS refusing
``kms:Decrypt``) fail the render as a whole, naming the file and the cause, never a value; and a
CLI sync puts the plaintext into the live Secret while its diff shows none of it.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import awsserver
import pytest
import sopstools
import yaml
from click.testing import CliRunner

from reconciler import cli
from reconciler.kube import client
from reconciler.render import build, decrypt_tree
from reconciler.render.decryption import Decryption, DecryptionError, DecryptionKeys, Decryptor
from reconciler.render.manifests import load_text

NESTED = {
    "apiVersion": "example.dev/v1",
    "kind": "Widget",
    "metadata": {"name": "nested", "namespace": "default"},
    "spec": {
        "password": "nested-plain-1",
        "servers": [{"host": "db-1", "port": 5432, "tls": True}, {"host": "db-2", "ratio": 0.5, "tags": ["a", "b"]}],
        "deep": {"a": {"b": {"c": ["x", {"y": "nested-plain-2"}]}}, "empty": None},
        "token_unencrypted": "in-clear-by-suffix",
    },
}
SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "db", "namespace": "default", "labels": {"app": "db"}},
    "type": "Opaque",
    "stringData": {"password": "hunter2-sops-plain", "url": "postgres://u:pw-sops-plain@db/app"},
}


@pytest.fixture(scope="module")
def ident() -> sopstools.AgeIdentity:
    return sopstools.age_identity()


@pytest.fixture
def kms(aws: awsserver.MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, sopstools.KmsProxy]]:
    """A moto KMS key behind a counting proxy, and this process's AWS chain pointed at the proxy."""
    with sopstools.kms_proxy(aws) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", proxy.endpoint)
        yield sopstools.kms_key(aws), proxy


def _decryption(ident: sopstools.AgeIdentity | None = None) -> Decryption:
    keys = DecryptionKeys(age_identities=(ident.secret,) if ident else ())
    return Decryption(keys=keys, decryptor=Decryptor(binary=sopstools.sops_binary()))


def _render(root: Path, path: str, decryption: Decryption) -> list[Any]:
    return build.render(root, path, build.RenderOptions(decryption=decryption))


def _shm_leftovers() -> list[str]:
    return sorted(p.name for p in Path(decrypt_tree.DEFAULT_DIR).glob("reconciler-sops-*"))


CASES = {
    "yaml-nested-age": ("yaml", NESTED, {}),
    "json-nested-age": ("json", NESTED, {}),
    "yaml-encrypted-regex": ("yaml", SECRET, {"encrypted_regex": "^(data|stringData)$"}),
    "yaml-unencrypted-suffix": ("yaml", NESTED, {"unencrypted_suffix": "_unencrypted"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_manifests_decrypt_to_what_sops_prints(case: str, ident: sopstools.AgeIdentity, tmp_path: Path) -> None:
    fmt, obj, rules = CASES[case]
    plain = (json.dumps(obj, indent=2) if fmt == "json" else yaml.safe_dump(obj, sort_keys=False)).encode()
    ciphertext = sopstools.encrypt(plain, fmt=fmt, age=[ident.recipient], **rules)
    assert b"nested-plain-1" not in ciphertext
    assert b"hunter2-sops-plain" not in ciphertext
    if "unencrypted_suffix" in rules:
        assert b"in-clear-by-suffix" in ciphertext  # the rule really applied
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / f"obj.{fmt}").write_bytes(ciphertext)
    oracle = sopstools.reference_decrypt(ciphertext, fmt=fmt, env={"SOPS_AGE_KEY": ident.secret})
    decryption = _decryption(ident)
    assert decryption.decryptor.decrypt(data=ciphertext, file=f"obj.{fmt}", keys=decryption.keys) == oracle
    rendered = _render(tmp_path, "app", decryption)
    assert [m.obj for m in rendered] == [m.obj for m in load_text(oracle.decode(), f"obj.{fmt}")]
    assert [m.obj for m in rendered] == [obj]  # and sops gave back the very object we encrypted
    assert all(m.decrypted for m in rendered)
    assert decryption.decryptor.decryptions == 1  # the render reused the direct decryption above


def test_kms_manifest_decrypts_to_what_sops_prints_with_one_kms_call(
    kms: tuple[str, sopstools.KmsProxy], tmp_path: Path
) -> None:
    arn, proxy = kms
    env = sopstools.kms_env(proxy.endpoint)
    ciphertext = sopstools.encrypt(yaml.safe_dump(SECRET).encode(), fmt="yaml", kms=[arn], env=env)
    oracle = sopstools.reference_decrypt(ciphertext, fmt="yaml", env=env)
    (tmp_path / "secret.yaml").write_bytes(ciphertext)
    decryption = _decryption()  # no keys given: the process's own AWS chain, as with IRSA
    before = proxy.count("Decrypt")
    rendered = _render(tmp_path, ".", decryption)
    assert [m.obj for m in rendered] == [m.obj for m in load_text(oracle.decode(), "secret.yaml")] == [SECRET]
    assert proxy.count("Decrypt") == before + 1  # one data key, one KMS call
    _render(tmp_path, ".", decryption)
    assert proxy.count("Decrypt") == before + 1  # unchanged file: answered from the cache
    assert (decryption.decryptor.decryptions, decryption.decryptor.cache_hits) == (1, 1)


def _dotenv(text: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.decode().splitlines() if "=" in line)


def test_secret_generator_inputs_decrypt_to_what_sops_prints(
    ident: sopstools.AgeIdentity, kms: tuple[str, sopstools.KmsProxy], tmp_path: Path
) -> None:
    arn, proxy = kms
    env = {**sopstools.kms_env(proxy.endpoint), "SOPS_AGE_KEY": ident.secret}
    inputs = {
        "app.env": ("dotenv", b"DB_PASSWORD=env-sops-plain\nAPI_TOKEN=tok=with=equals\n"),
        "tls.key": ("binary", bytes(range(256)) + b"binary-sops-plain"),
        "config.json": ("json", json.dumps({"auth": {"users": [{"name": "a", "pw": "json-sops-plain"}]}}).encode()),
        "settings.yaml": ("yaml", b"level: 3\nitems:\n- yaml-sops-plain\n- {k: v}\n"),
    }
    app = tmp_path / "app"
    app.mkdir()
    oracle: dict[str, bytes] = {}
    for name, (fmt, data) in inputs.items():
        ciphertext = sopstools.encrypt(data, fmt=fmt, age=[ident.recipient], kms=[arn], env=env)
        assert b"sops-plain" not in ciphertext
        (app / name).write_bytes(ciphertext)
        oracle[name] = sopstools.reference_decrypt(ciphertext, fmt=fmt, env={"SOPS_AGE_KEY": ident.secret})
    (app / "db.yaml").write_bytes(sopstools.encrypt(yaml.safe_dump(SECRET).encode(), fmt="yaml", age=[ident.recipient]))
    kustomization = {
        "resources": ["db.yaml"],
        "generatorOptions": {"disableNameSuffixHash": True},
        "secretGenerator": [
            {"name": "from-env", "envs": ["app.env"]},
            {"name": "from-files", "files": ["tls.key", "config.json", "settings.yaml"]},
        ],
    }
    (app / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    rendered = {m.obj["metadata"]["name"]: m for m in _render(tmp_path, "app", _decryption(ident))}
    data = {name: {k: base64.b64decode(v) for k, v in m.obj.get("data", {}).items()} for name, m in rendered.items()}
    assert data["from-env"] == {k: v.encode() for k, v in _dotenv(oracle["app.env"]).items()}
    assert data["from-files"] == {name: oracle[name] for name in ("tls.key", "config.json", "settings.yaml")}
    assert data["from-files"]["tls.key"] == inputs["tls.key"][1]  # binary: byte for byte
    assert rendered["db"].obj == SECRET
    assert {name: m.decrypted for name, m in rendered.items()} == dict.fromkeys(rendered, True)
    # the checkout is untouched and the memory overlay is gone
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert _shm_leftovers() == []


def _flip_first(text: str, pattern: str) -> str:
    """``text`` with the first base64 character that ``pattern``'s group 1 points at changed."""
    m = re.search(pattern, text)
    assert m is not None, pattern
    new = "A" if m.group(1) != "A" else "B"
    return text[: m.start(1)] + new + text[m.end(1) :]


def _tampered(kind: str, ciphertext: bytes) -> bytes:
    text = ciphertext.decode()
    if kind == "ciphertext-byte":
        return _flip_first(text, r"password: ENC\[AES256_GCM,data:(.)").encode()
    if kind == "mac-edited":
        return _flip_first(text, r"mac: ENC\[AES256_GCM,data:(.)").encode()
    return ciphertext


TAMPER = {
    "ciphertext-byte": "a value does not decrypt",
    "mac-edited": "the MAC does not verify",
    "wrong-key": "no key we hold decrypts the file's data key",
    "kms-denied": "AccessDeniedException",
}


@pytest.mark.parametrize("kind", sorted(TAMPER))
def test_a_tampered_or_undecryptable_file_fails_the_render_naming_file_and_cause(
    kind: str, ident: sopstools.AgeIdentity, kms: tuple[str, sopstools.KmsProxy], tmp_path: Path, reliability: Any
) -> None:
    arn, proxy = kms
    secret = {**SECRET, "stringData": {"password": "hunter2-sops-plain"}}
    by_kms = kind == "kms-denied"
    recipients = {"age": [] if by_kms else [ident.recipient], "kms": [arn] if by_kms else []}
    ciphertext = sopstools.encrypt(
        yaml.safe_dump(secret).encode(), fmt="yaml", env=sopstools.kms_env(proxy.endpoint), **recipients
    )
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "ok.yaml").write_text(yaml.safe_dump({**SECRET, "kind": "ConfigMap", "stringData": None}))
    (tmp_path / "apps" / "secret.yaml").write_bytes(_tampered(kind, ciphertext))
    keys_of = sopstools.age_identity() if kind == "wrong-key" else ident
    proxy.deny = by_kms
    with pytest.raises(DecryptionError) as e:
        _render(tmp_path, "apps", _decryption(keys_of))
    msg = str(e.value)
    assert msg.startswith("apps/secret.yaml: cannot decrypt (SOPS)"), msg
    assert TAMPER[kind] in msg, msg
    assert "hunter2-sops-plain" not in msg
    assert ident.secret not in msg
    assert keys_of.secret not in msg
    reliability.record(
        area="sops",
        fault=kind,
        expected="render fails as a whole naming the file and the cause; no value in the message",
        observed=msg[:200],
    )


def test_a_half_encrypted_secret_is_refused_by_key_path(
    ident: sopstools.AgeIdentity, tmp_path: Path, reliability: Any
) -> None:
    secret = {**SECRET, "data": {"token_unencrypted": base64.b64encode(b"suffix-left-plain").decode()}}
    ciphertext = sopstools.encrypt(
        yaml.safe_dump(secret).encode(), fmt="yaml", age=[ident.recipient], unencrypted_suffix="_unencrypted"
    )
    (tmp_path / "secret.yaml").write_bytes(ciphertext)
    with pytest.raises(DecryptionError) as e:
        _render(tmp_path, ".", _decryption(ident))
    assert e.value.key_path == "data.token_unencrypted"
    assert "c3VmZml4" not in str(e.value)  # not even the base64 of the value
    reliability.record(
        area="sops",
        fault="Secret value left in clear by unencrypted_suffix",
        expected="refused naming data.token_unencrypted",
        observed=str(e.value)[:200],
    )


def test_cli_sync_puts_plaintext_live_and_diff_shows_none_of_it(
    ident: sopstools.AgeIdentity, cluster: Any, kube: client.Kube, namespace: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"# created by age-keygen\n{ident.secret}\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    secret = {**SECRET, "metadata": {"name": "db", "namespace": namespace}}

    def write(password: str) -> None:
        obj = {**secret, "stringData": {"password": password}}
        ciphertext = sopstools.encrypt(yaml.safe_dump(obj).encode(), fmt="yaml", age=[ident.recipient])
        (repo / "db.yaml").write_bytes(ciphertext)

    def run(command: str, *extra: str) -> Any:
        argv = [command, "--dir", str(repo), "--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace]
        argv += ["--name", "sops", *extra]
        return CliRunner().invoke(cli.cli, argv, catch_exceptions=False)

    write("first-sops-plain")
    r = run("sync")
    assert r.exit_code == 2, r.output
    assert "db.yaml: the file is SOPS-encrypted but decryption is not configured" in r.output
    r = run("sync", "--decrypt", "--age-key-file", str(key_file))
    assert r.exit_code == 0, r.output
    live = kube.request("GET", f"/api/v1/namespaces/{namespace}/secrets/db")
    assert base64.b64decode(live["data"]["password"]) == b"first-sops-plain"
    write("second-sops-plain")
    r = run("diff", "--decrypt", "--age-key-file", str(key_file))
    assert r.exit_code == 1, r.output
    assert "Secret" in r.output
    assert "password" in r.output
    assert "sops-plain" not in r.output
    assert base64.b64encode(b"first-sops-plain").decode() not in r.output
    assert ident.secret not in r.output
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{ident.secret}\nnot-a-key\n")
    r = run("diff", "--decrypt", "--age-key-file", str(bad))
    assert r.exit_code == 2
    assert f"{bad}: line 2 is not an age identity" in r.output
    assert ident.secret not in r.output
