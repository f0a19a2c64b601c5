"""A SOPS dotenv file whose values sops left in clear (a manifest rule's encrypted_regex applied to
it) is refused, naming the file and the key: its generated Secret would otherwise pass for
encrypted, and the plain-secrets policy would accept it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sopstools

from reconciler.render import build
from reconciler.render.decryption import Decryption, DecryptionKeys, Decryptor
from reconciler.render.errors import RenderError


def _app(tmp_path: Path, dotenv: bytes) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    kust = {"secretGenerator": [{"name": "env", "namespace": "x", "envs": ["app.env"]}]}
    (app / "kustomization.yaml").write_text(json.dumps(kust))
    (app / "app.env").write_bytes(dotenv)
    return app


def test_dotenv_values_in_clear_are_refused(tmp_path: Path) -> None:
    ident = sopstools.age_identity()
    text = b"API_TOKEN=clear-token-value\nEMPTY=\n"
    half = sopstools.encrypt(text, fmt="dotenv", age=[ident.recipient], encrypted_regex="^(data|stringData)$")
    assert b"API_TOKEN=clear-token-value" in half, "sops left it in clear (the case under test)"
    keys = DecryptionKeys(age_identities=(ident.secret,))
    options = build.RenderOptions(decryption=Decryption(keys=keys, decryptor=Decryptor()))
    with pytest.raises(
        RenderError, match=r"^app\.env: cannot decrypt \(SOPS\) at API_TOKEN: the value is not encrypted"
    ) as e:
        build.render(_app(tmp_path, half), ".", options)
    assert "clear-token-value" not in str(e.value)


def test_a_fully_encrypted_dotenv_renders(tmp_path: Path) -> None:
    ident = sopstools.age_identity()
    full = sopstools.encrypt(b"API_TOKEN=a-token-value\nEMPTY=\n", fmt="dotenv", age=[ident.recipient])
    keys = DecryptionKeys(age_identities=(ident.secret,))
    options = build.RenderOptions(decryption=Decryption(keys=keys, decryptor=Decryptor()))
    (secret,) = build.render(_app(tmp_path, full), ".", options)
    assert secret.obj["kind"] == "Secret"
    assert secret.decrypted
