"""Rendering with SOPS files: where plaintext may go, what is marked decrypted, what is refused."""

from __future__ import annotations

import base64
from pathlib import Path

import click
import pytest
import sopstools
import yaml
from click.testing import CliRunner

from reconciler import cli
from reconciler.cli import decrypting
from reconciler.render import build, decrypt_tree
from reconciler.render.decryption import Decryption, DecryptionKeys, Decryptor
from reconciler.render.errors import RenderError
from reconciler.render.options import Patch

SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "db", "namespace": "default"},
    "stringData": {"password": "unit-sops-plain"},
}
PLAIN_SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "plain", "namespace": "default"},
    "stringData": {"password": "in-clear-in-git"},
}


@pytest.fixture(scope="module")
def ident() -> sopstools.AgeIdentity:
    return sopstools.age_identity()


@pytest.fixture
def decryption(ident: sopstools.AgeIdentity) -> Decryption:
    return Decryption(
        keys=DecryptionKeys(age_identities=(ident.secret,)), decryptor=Decryptor(binary=sopstools.sops_binary())
    )


def _kustomization(root: Path, ident: sopstools.AgeIdentity, *, with_plain: bool = False) -> None:
    app = root / "app"
    app.mkdir(parents=True)
    (app / "db.yaml").write_bytes(sopstools.encrypt(yaml.safe_dump(SECRET).encode(), fmt="yaml", age=[ident.recipient]))
    (app / "plain.yaml").write_text(yaml.safe_dump(PLAIN_SECRET))
    resources = ["db.yaml", "plain.yaml"] if with_plain else ["db.yaml"]
    (app / "kustomization.yaml").write_text(yaml.safe_dump({"resources": resources, "namePrefix": "x-"}))


def _leftovers() -> list[Path]:
    return sorted(Path(decrypt_tree.DEFAULT_DIR).glob("reconciler-*"))


def test_only_secrets_made_of_decrypted_values_are_marked(
    ident: sopstools.AgeIdentity, decryption: Decryption, tmp_path: Path
) -> None:
    _kustomization(tmp_path, ident, with_plain=True)
    out = {
        m.obj["metadata"]["name"]: m.decrypted
        for m in build.render(tmp_path, "app", build.RenderOptions(decryption=decryption))
    }
    assert out == {"x-db": True, "x-plain": False}
    assert _leftovers() == []


def test_encrypted_files_without_decryption_are_an_error_naming_them(
    ident: sopstools.AgeIdentity, tmp_path: Path
) -> None:
    _kustomization(tmp_path, ident)
    with pytest.raises(
        RenderError, match=r"^app/db\.yaml: the file is SOPS-encrypted but decryption is not configured"
    ):
        build.render(tmp_path, "app")
    with pytest.raises(RenderError, match=r"^app/db\.yaml: the file is SOPS-encrypted"):
        build.render(tmp_path, "app/db.yaml")


def test_plaintext_is_never_written_to_disk(
    ident: sopstools.AgeIdentity, decryption: Decryption, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _kustomization(tmp_path, ident)
    disk = tmp_path / "on-disk"
    disk.mkdir()
    monkeypatch.setenv(decrypt_tree.ENV_DIR, str(disk))  # tmp_path is not a memory file system here
    assert decrypt_tree.file_system(disk) not in ("tmpfs", "ramfs")
    with pytest.raises(RenderError, match=r"decrypted files are never written to disk: .* is \w+, not tmpfs"):
        build.render(tmp_path, "app", build.RenderOptions(decryption=decryption))
    assert list(disk.iterdir()) == []


def test_a_failed_build_removes_the_overlay_and_quotes_no_value(
    ident: sopstools.AgeIdentity, decryption: Decryption, tmp_path: Path
) -> None:
    _kustomization(tmp_path, ident)
    k = tmp_path / "app" / "kustomization.yaml"
    k.write_text(yaml.safe_dump({"resources": ["db.yaml"], "patches": [{"path": "missing.yaml"}]}))
    with pytest.raises(RenderError) as e:
        build.render(tmp_path, "app", build.RenderOptions(decryption=decryption))
    assert "unit-sops-plain" not in str(e.value)
    assert _leftovers() == []


def test_patches_keep_the_mark_and_run_in_memory(
    ident: sopstools.AgeIdentity, decryption: Decryption, tmp_path: Path
) -> None:
    (tmp_path / "db.yaml").write_bytes(
        sopstools.encrypt(yaml.safe_dump(SECRET).encode(), fmt="yaml", age=[ident.recipient])
    )
    labelled = {"apiVersion": "v1", "kind": "Secret", "metadata": {**SECRET["metadata"], "labels": {"a": "b"}}}
    patch = Patch(patch=yaml.safe_dump(labelled))
    opts = build.RenderOptions(decryption=decryption, patches=[patch], target_namespace="apps", substitute={})
    [m] = build.render(tmp_path, ".", opts)
    assert m.decrypted
    assert m.obj["metadata"] == {"name": "db", "namespace": "apps", "labels": {"a": "b"}}
    assert m.obj["stringData"] == {"password": "unit-sops-plain"}
    assert _leftovers() == []


def test_key_files_are_checked_and_never_quoted(ident: sopstools.AgeIdentity, tmp_path: Path) -> None:
    good = tmp_path / "keys.txt"
    good.write_text(f"# created: now\n# public key: {ident.recipient}\n{ident.secret}\n")
    found = decrypting.decryption({"decrypt": True, "age_key_files": (good,)})
    assert found is not None
    assert found.keys.age_identities == (ident.secret,)
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{ident.secret}\nAGE-PLUGIN-YUBIKEY-123\n")
    with pytest.raises(click.BadParameter) as e:
        decrypting.decryption({"decrypt": True, "age_key_files": (bad,)})
    assert str(bad) in str(e.value.message)
    assert "line 2" in str(e.value.message)
    assert "YUBIKEY" not in str(e.value.message)
    with pytest.raises(click.BadParameter, match="cannot read it"):
        decrypting.decryption({"decrypt": True, "age_key_files": (tmp_path / "missing.txt",)})
    with pytest.raises(click.UsageError, match="--age-key-file needs --decrypt"):
        decrypting.decryption({"decrypt": False, "age_key_files": (good,)})


def test_render_output_masks_decrypted_values_unless_asked(
    ident: sopstools.AgeIdentity, decryption: Decryption, tmp_path: Path
) -> None:
    (tmp_path / "db.yaml").write_bytes(
        sopstools.encrypt(yaml.safe_dump(SECRET).encode(), fmt="yaml", age=[ident.recipient])
    )
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"dsn": "cm-sops-plain"}}
    (tmp_path / "cm.yaml").write_bytes(
        sopstools.encrypt(yaml.safe_dump(cm).encode(), fmt="yaml", age=[ident.recipient])
    )
    ms = build.render(tmp_path, ".", build.RenderOptions(decryption=decryption))
    shown = yaml.safe_dump_all(decrypting.for_display(ms, show_secrets=False))
    assert "unit-sops-plain" not in shown
    assert decrypting.decrypted_values(ms) == {"cm-sops-plain"}
    assert "unit-sops-plain" in yaml.safe_dump_all(decrypting.for_display(ms, show_secrets=True))
    assert base64.b64encode(b"unit-sops-plain").decode() not in shown


def test_check_decrypts_too_and_prints_no_value(ident: sopstools.AgeIdentity, tmp_path: Path) -> None:
    (tmp_path / "db.yaml").write_bytes(
        sopstools.encrypt(yaml.safe_dump(SECRET).encode(), fmt="yaml", age=[ident.recipient])
    )
    keys = tmp_path / "keys.txt"
    keys.write_text(ident.secret + "\n")
    policies = str(sopstools.ROOT / "policies")
    r = CliRunner().invoke(cli.cli, ["check", str(tmp_path), "--policies", policies])
    assert r.exit_code == 2, r.output
    assert "db.yaml: the file is SOPS-encrypted but decryption is not configured" in r.output
    r = CliRunner().invoke(
        cli.cli, ["check", str(tmp_path), "--policies", policies, "--decrypt", "--age-key-file", str(keys)]
    )
    assert r.exit_code in (0, 1), r.output
    assert "1 objects" in r.output
    assert "unit-sops-plain" not in r.output


def test_the_first_undecryptable_file_in_order_is_the_one_reported(
    ident: sopstools.AgeIdentity, decryption: Decryption, tmp_path: Path
) -> None:
    ciphertext = sopstools.encrypt(yaml.safe_dump(SECRET).encode(), fmt="yaml", age=[ident.recipient])
    broken = ciphertext.replace(b"mac: ENC[AES256_GCM,data:", b"mac: ENC[AES256_GCM,data:AAAA")
    for name in ("b.yaml", "c.yaml"):
        (tmp_path / name).write_bytes(broken)
    (tmp_path / "a.yaml").write_bytes(ciphertext)
    with pytest.raises(RenderError, match=r"^b\.yaml: cannot decrypt \(SOPS\): the MAC does not verify"):
        build.render(tmp_path, ".", build.RenderOptions(decryption=decryption))
