"""The ``plain-secrets`` policy and SOPS: a Secret that was encrypted in git passes, one in clear
gets the warning that says how to encrypt it, and the mark that tells them apart cannot be forged
by writing its annotation in git."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.policy.evaluation import DECRYPTED, evaluate, marked
from reconciler.policy.loading import load_policies
from reconciler.policy.model import PolicySet
from reconciler.render.manifests import Manifest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def defaults() -> PolicySet:
    return load_policies(ROOT / "policies")


def _secret(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": "db", "namespace": "shop"}
    if annotations is not None:
        md["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Secret", "metadata": md, "stringData": {"password": "hunter2"}}


def _manifest(obj: dict[str, Any], *, decrypted: bool) -> Manifest:
    return Manifest(obj=obj, file="db.yaml", doc=1, decrypted=decrypted)


def test_a_secret_in_clear_is_told_how_to_encrypt(defaults: PolicySet) -> None:
    (v,) = evaluate([_manifest(_secret(), decrypted=False)], defaults)
    assert (v.policy, v.action, v.object) == ("plain-secrets", "Warn", "Secret/shop/db")
    assert "in clear (keys: password)" in v.message
    assert "sops --encrypt" in v.message
    assert "docs/sops.md" in v.message
    assert "hunter2" not in v.message


def test_a_forged_mark_in_git_does_not_pass(defaults: PolicySet) -> None:
    forged = _secret({DECRYPTED: "sops", "team": "a"})
    assert [v.policy for v in evaluate([_manifest(forged, decrypted=False)], defaults)] == ["plain-secrets"]


def test_a_secret_that_was_encrypted_in_git_passes(defaults: PolicySet) -> None:
    assert evaluate([_manifest(_secret(), decrypted=True)], defaults) == []


def test_the_mark_is_on_a_copy() -> None:
    obj = _secret({DECRYPTED: "sops"})
    assert marked(obj, decrypted=False)["metadata"] == {"name": "db", "namespace": "shop"}
    assert obj["metadata"]["annotations"] == {DECRYPTED: "sops"}, "the object to apply is not changed"
    plain = _secret()
    assert marked(plain, decrypted=True)["metadata"]["annotations"] == {DECRYPTED: "sops"}
    assert "annotations" not in plain["metadata"]
    assert marked(plain, decrypted=False) is plain


def test_check_decrypt_judges_an_encrypted_secret_as_encrypted(tmp_path: Path) -> None:
    """``reconciler check --decrypt`` on real sops output: the encrypted Secret passes, the one in
    clear is warned about; without --decrypt the encrypted file is an error (exit 2)."""
    import sopstools
    from click.testing import CliRunner

    from reconciler import cli

    ident = sopstools.age_identity()
    app = tmp_path / "app"
    app.mkdir()
    secret = _secret()
    (app / "db.yaml").write_bytes(sopstools.encrypt(json.dumps(secret).encode(), fmt="yaml", age=[ident.recipient]))
    (app / "legacy.yaml").write_text(json.dumps({**secret, "metadata": {"name": "legacy", "namespace": "shop"}}))
    policies = str(ROOT / "policies")
    runner = CliRunner(env={"SOPS_AGE_KEY": ident.secret, "SOPS_AGE_KEY_FILE": None})
    r = runner.invoke(cli.cli, ["check", str(app), "--policies", policies, "--decrypt", "-o", "json"])
    assert r.exit_code == 0, r.output
    found = {(v["policy"], v["object"]) for v in json.loads(r.output)["violations"]}
    assert found == {("plain-secrets", "Secret/shop/legacy")}
    assert "hunter2" not in r.output
    r = runner.invoke(cli.cli, ["check", str(app), "--policies", policies])
    assert r.exit_code == 2
    assert "SOPS-encrypted but decryption is not configured" in r.output
