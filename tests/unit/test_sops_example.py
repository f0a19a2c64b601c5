"""examples/sops: its files are really encrypted (no value in clear in git), and render with the
demo key to the values the README promises; its GitSync names the decryption the CRD accepts."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from reconciler import cli
from reconciler.gitsync.spec import parse

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sops"


def test_no_value_is_in_clear_in_git() -> None:
    for name in ("app/db-secret.yaml", "app/api.env"):
        text = (EXAMPLE / name).read_text()
        assert "not-secret" not in text, name
        assert "ENC[AES256_GCM," in text, name


def test_renders_with_the_demo_key() -> None:
    argv = ["render", str(EXAMPLE / "app"), "--decrypt", "--age-key-file", str(EXAMPLE / "demo.agekey")]
    runner = CliRunner(env={"SOPS_AGE_KEY": None, "SOPS_AGE_KEY_FILE": None})
    r = runner.invoke(cli.cli, [*argv, "--show-secrets"])
    assert r.exit_code == 0, r.output
    objs = {o["metadata"]["name"]: o for o in yaml.safe_load_all(r.output) if o}
    assert objs["db"]["stringData"] == {"password": "demo-password-not-secret"}
    assert objs["api-env"]["data"] == {"API_TOKEN": "ZGVtby10b2tlbi1ub3Qtc2VjcmV0"}  # base64 of demo-token-not-secret
    masked = runner.invoke(cli.cli, argv)
    assert masked.exit_code == 0, masked.output
    assert "not-secret" not in masked.output


def test_the_gitsync_parses() -> None:
    spec = parse(yaml.safe_load((EXAMPLE / "gitsync.yaml").read_text()))
    assert spec.decryption is not None
    assert spec.decryption.secret_ref is not None
    assert spec.decryption.secret_ref.name == "sops-demo-keys"
