"""SOPS through a GitSync, on the real control plane with the real controller (issue 16, acceptance 2-5).

Files are encrypted by the real ``sops`` for age identities from the real ``age-keygen`` and for a
KMS key in moto, reached through a counting proxy that can refuse ``Decrypt`` (tests/sopstools.py).
Every plaintext is a fresh random value, so finding one anywhere (a log line, an Event, a file
written during the test) can only mean we leaked it; every search also looks for its base64 form
(a Secret's ``data``) and for the key material.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sopstools
from controllers import GS, Env

from reconciler.kube import client

REQUESTED_AT = "gitops.reconciler.dev/requested-at"


def _value(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex}"


def _secret(name: str, ns: str, data: dict[str, str]) -> bytes:
    """A Secret manifest (JSON is YAML too; sops encrypts it as YAML)."""
    return json.dumps(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "stringData": data}
    ).encode()


def _cm(name: str, ns: str) -> str:
    return json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"k": "v"}}
    )


def _needles(values: Iterable[str]) -> set[str]:
    """Each value as written and as a Secret's ``data`` holds it."""
    out = set()
    for v in values:
        out |= {v, base64.b64encode(v.encode()).decode()}
    return out


def _leaks(text: str, needles: Iterable[str]) -> list[str]:
    return sorted(n[:12] + "..." for n in needles if n in text)  # never print a whole needle


def _live(kube: client.Kube, ns: str, name: str) -> dict[str, str]:
    sec = kube.get(f"/api/v1/namespaces/{ns}/secrets/{name}")
    return {k: base64.b64decode(v).decode() for k, v in (sec.get("data") or {}).items()}


def _request(kube: client.Kube, ns: str, name: str) -> None:
    kube.request(
        "PATCH",
        f"{GS}/namespaces/{ns}/gitsyncs/{name}",
        body={"metadata": {"annotations": {REQUESTED_AT: uuid.uuid4().hex}}},
        content_type="application/merge-patch+json",
    )


def _ready(env: Env, ns: str, name: str) -> dict[str, Any]:
    obj = env.get(ns, name) or {}
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), {})


def _applied(env: Env, ns: str, name: str, sha: str) -> dict[str, Any] | None:
    obj = env.ready(ns, name)
    return obj if obj and obj["status"].get("lastAppliedRevision", "").endswith(sha) else None


def _keys_secret(kube: client.Kube, ns: str, name: str, entries: dict[str, str]) -> None:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in entries.items()}
    kube.request("POST", f"/api/v1/namespaces/{ns}/secrets", body={"metadata": {"name": name}, "data": data})


@pytest.fixture
def kms(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[sopstools.KmsProxy, str]]:
    """A KMS key in moto behind the counting proxy; the controllers started by the test reach KMS
    through the proxy (their environment is this process's)."""
    with sopstools.kms_proxy(aws) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", proxy.endpoint)
        yield proxy, sopstools.kms_key(aws)


def _kustomization(ns: str) -> dict[str, str]:
    """A kustomization: two encrypted Secrets, a ConfigMap, and a secretGenerator reading an
    encrypted .env (kustomize reads that one from the memory-backed overlay)."""
    kust = {
        "resources": ["db.yaml", "api.yaml", "cm.yaml"],
        "secretGenerator": [{"name": "app-env", "namespace": ns, "envs": ["app.env"]}],
        "generatorOptions": {"disableNameSuffixHash": True},
    }
    return {"app/kustomization.yaml": json.dumps(kust), "app/cm.yaml": _cm("plain", ns)}


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert m, f"{name} not exported"
    return float(m.group(1))


def _rotate(data: bytes, *, tmp: Path, env: dict[str, str]) -> bytes:
    """``sops rotate -i``: a new data key, the same plaintext (the file holds ciphertext only)."""
    path = tmp / f"rotate-{uuid.uuid4().hex[:6]}.yaml"
    path.write_bytes(data)
    sopstools.sops_run(["rotate", "-i", str(path)], data=b"", env=env)
    out = path.read_bytes()
    path.unlink()
    return out


def test_encrypted_secrets_sync_rotate_without_writes_and_leak_nowhere(
    env: Env, namespace: str, kms: tuple[sopstools.KmsProxy, str], git_repo: Any, tmp_path: Path
) -> None:
    """Acceptance 2, 3 and 5: an age file and a KMS file sync to their plaintext; no log line, Event,
    status field, diff or metric carries a plaintext or a key; a rotated data key with the same
    plaintext makes the next reconcile write nothing; no file written during the test holds a
    plaintext."""
    t0 = time.time()
    proxy, key_arn = kms
    ns, kube = namespace, env.kube
    ident = sopstools.age_identity()
    aws_secret = "moto-secret-" + uuid.uuid4().hex  # moto accepts any credentials; this one must never leak
    db_pw, api_token, env_key = _value("db-password"), _value("api-token"), _value("env-key")
    age_file = sopstools.encrypt(_secret("db", ns, {"password": db_pw}), fmt="yaml", age=[ident.recipient])
    kms_env = sopstools.kms_env(proxy.endpoint)
    kms_file = sopstools.encrypt(_secret("api", ns, {"token": api_token}), fmt="yaml", kms=[key_arn], env=kms_env)
    dotenv = sopstools.encrypt(f"API_KEY={env_key}\n".encode(), fmt="dotenv", age=[ident.recipient])
    files = {"app/db.yaml": age_file, "app/api.yaml": kms_file, "app/app.env": dotenv}
    git_repo.commit({**{k: v.decode() for k, v in files.items()}, **_kustomization(ns)}, "encrypted")
    kms_yaml = f"aws_access_key_id: AKIATEST0001\naws_secret_access_key: {aws_secret}\n"
    _keys_secret(kube, ns, "sops-keys", {"age.agekey": f"# test key\n{ident.secret}\n", "sops.aws-kms": kms_yaml})
    ctl = env.start()
    env.gitsync(
        ns, "app", git_repo.url, path="app", decryption={"provider": "sops", "secretRef": {"name": "sops-keys"}}
    )
    _wait(lambda: _applied(env, ns, "app", git_repo.head()), 60, "the encrypted revision applied", ctl)
    assert _live(kube, ns, "db") == {"password": db_pw}
    assert _live(kube, ns, "api") == {"token": api_token}
    assert _live(kube, ns, "app-env") == {"API_KEY": env_key}  # kustomize's secretGenerator read the .env
    assert _metric(ctl.metrics(), "reconciler_decryptions_total") == 3
    assert proxy.count("Decrypt") == 1, "one KMS call for the one KMS data key"

    # Acceptance 3: a rotated data key (both files), the same plaintext: nothing is written.
    versions = {
        n: kube.get(f"/api/v1/namespaces/{ns}/secrets/{n}")["metadata"]["resourceVersion"] for n in ("db", "api")
    }
    age_env = {"SOPS_AGE_KEY": ident.secret}
    rotated = {
        "app/db.yaml": _rotate(age_file, tmp=tmp_path, env=age_env).decode(),
        "app/api.yaml": _rotate(kms_file, tmp=tmp_path, env=kms_env).decode(),
    }
    assert rotated["app/db.yaml"] != age_file.decode()
    git_repo.commit(rotated, "rotate data keys")
    _request(kube, ns, "app")
    after = _wait(lambda: _applied(env, ns, "app", git_repo.head()), 60, "the rotated revision applied", ctl)
    assert after["status"]["lastPlan"]["create"] == 0
    assert after["status"]["lastPlan"]["configure"] == 0, after["status"]["lastPlan"]
    now = {n: kube.get(f"/api/v1/namespaces/{ns}/secrets/{n}")["metadata"]["resourceVersion"] for n in ("db", "api")}
    assert now == versions, "a rotated data key with the same plaintext must not write the Secrets"
    assert _metric(ctl.metrics(), "reconciler_decryptions_total") == 5, "the new ciphertexts were decrypted"

    # A no-op reconcile of the same revision: answered from the cache, no KMS call.
    kms_calls = proxy.count("Decrypt")
    hits = _metric(ctl.metrics(), "reconciler_decryption_cache_hits_total")
    _request(kube, ns, "app")
    _wait(
        lambda: _metric(ctl.metrics(), "reconciler_decryption_cache_hits_total") >= hits + 3,
        30,
        "a cached reconcile",
        ctl,
    )
    assert _metric(ctl.metrics(), "reconciler_decryptions_total") == 5
    assert proxy.count("Decrypt") == kms_calls

    # Acceptance 2: nowhere to be found.
    needles = _needles([db_pw, api_token, env_key, ident.secret, aws_secret])
    places = {
        "controller log": ctl.log.read_text(),
        "Events": json.dumps(kube.get(f"/apis/events.k8s.io/v1/namespaces/{ns}/events")),
        "GitSync": json.dumps(env.get(ns, "app")),
        "/metrics": ctl.metrics(),
    }
    for where, text in places.items():
        assert not _leaks(text, needles), f"{where} holds {_leaks(text, needles)}"

    # Acceptance 5: no file written since the test began holds a plaintext (the API server's etcd
    # is the Secret's destination and is left out).
    roots = [Path("/tmp"), Path("/dev/shm"), env.tmp / "cache", Path(__file__).resolve().parents[2]]
    sentinel = _value("sentinel")  # the search can fail: it finds a value written where it looks
    (env.tmp / "cache" / "sentinel").write_text(sentinel)
    found = _files_holding(needles | {sentinel}, roots=roots, since=t0, skip=[Path(env.cluster.root), Path(sys.prefix)])
    assert found == [str(env.tmp / "cache" / "sentinel")], f"plaintext on disk: {found}"

    # `reconciler diff --decrypt` of a working copy whose Secret has a new value: both values masked.
    new_pw = _value("db-password-new")
    diff = _diff(env, git_repo, ns, ident, password=new_pw)
    assert "Secret/" in diff, diff  # it did see the changed Secret
    leaked = _leaks(diff, needles | _needles([new_pw]))
    assert not leaked, f"reconciler diff holds {leaked}"


def _wait(predicate: Any, timeout: float, what: str, ctl: Any) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.25)
    tail = "\n".join(ctl.log.read_text().splitlines()[-20:])
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{tail}")


def _diff(env: Env, git_repo: Any, ns: str, ident: sopstools.AgeIdentity, *, password: str) -> str:
    """``reconciler diff --decrypt`` of a working copy of ``git_repo`` whose db Secret has ``password``."""
    work = env.tmp / "diff-work"
    subprocess.run(["git", "clone", "-q", git_repo.url, str(work)], check=True)
    secret = _secret("db", ns, {"password": password})
    (work / "app" / "db.yaml").write_bytes(sopstools.encrypt(secret, fmt="yaml", age=[ident.recipient]))
    argv = ["diff", "--dir", str(work), "--path", "app", "--namespace", ns, "--name", "app", "--decrypt"]
    out = subprocess.run(
        [sys.executable, "-m", "reconciler", *argv, "--kubeconfig", str(env.cluster.kubeconfig)],
        capture_output=True,
        text=True,
        env={**os.environ, "SOPS_AGE_KEY": ident.secret},
        timeout=120,
        check=False,
    )
    return out.stdout + out.stderr


def _files_holding(needles: set[str], *, roots: list[Path], since: float, skip: list[Path]) -> list[str]:
    """Regular files under ``roots`` modified after ``since`` that contain a needle (a value created
    during the test can only be in a file written during it). ``find`` lists them: walking the
    shared /tmp of a busy machine in Python costs twice the CPU."""
    ref = Path(os.environ.get("TMPDIR", "/tmp")) / f"sops-scan-{uuid.uuid4().hex}"
    ref.touch()
    os.utime(ref, (since - 1, since - 1))
    pruned: list[str] = []
    for p in skip:
        pruned += ["-path", str(p), "-o"]
    argv = ["find", *map(str, roots), "(", *pruned, "-name", ".git", "-o", "-name", ".venv", ")", "-prune", "-o"]
    argv += ["-type", "f", "-newer", str(ref), "-size", "-64M", "-print0"]
    listed = subprocess.run(argv, capture_output=True, timeout=300, check=False).stdout.split(b"\0")
    ref.unlink()
    raw = [n.encode() for n in needles]
    return sorted({f.decode() for f in listed if f and _holds(Path(f.decode()), raw)})


def _holds(path: Path, needles: list[bytes]) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return any(n in data for n in needles)


def _flip(text: str, marker: str) -> str:
    """``text`` with one base64 character changed just after the first ``marker`` (a ciphertext byte)."""
    i = text.index(marker) + len(marker) + 4
    return text[:i] + ("B" if text[i] != "B" else "C") + text[i + 1 :]


def _mac_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.strip().startswith("mac: ENC["))


def test_undecryptable_revisions_apply_and_prune_nothing(
    env: Env,
    namespace: str,
    kms: tuple[sopstools.KmsProxy, str],
    git_repo: Any,
    monkeypatch: pytest.MonkeyPatch,
    reliability: Any,
) -> None:
    """Acceptance 4 with the controller's own keys (SOPS_AGE_KEY and its AWS chain): a changed
    ciphertext byte, an edited MAC, a file for a key we do not hold, KMS refusing Decrypt. Each
    bad revision also drops a ConfigMap and adds one: Ready=False names the file and the cause,
    and the previous revision stays live, nothing applied and nothing pruned."""
    proxy, key_arn = kms
    ns, kube = namespace, env.kube
    ident, stranger = sopstools.age_identity(), sopstools.age_identity()
    password = _value("db-password")
    good = sopstools.encrypt(_secret("db", ns, {"password": password}), fmt="yaml", age=[ident.recipient]).decode()
    git_repo.commit({"app/db.yaml": good, "app/keep.yaml": _cm("keep", ns)}, "good")
    live_revision = git_repo.head()
    monkeypatch.setenv("SOPS_AGE_KEY", ident.secret)
    ctl = env.start()
    env.gitsync(ns, "app", git_repo.url, path="app", decryption={"provider": "sops"})
    _wait(lambda: _applied(env, ns, "app", live_revision), 60, "the good revision applied", ctl)

    mac = _mac_line(good)
    kms_file = sopstools.encrypt(
        _secret("api", ns, {"token": _value("t")}), fmt="yaml", kms=[key_arn], env=sopstools.kms_env(proxy.endpoint)
    ).decode()
    trials = [
        (
            "one ciphertext byte changed",
            {"app/db.yaml": _flip(good, "password: ENC[AES256_GCM,data:")},
            "app/db.yaml",
            "a value does not decrypt",
        ),
        ("MAC edited", {"app/db.yaml": good.replace(mac, _flip(mac, "data:"))}, "app/db.yaml", "MAC"),
        (
            "a file for a key we do not hold",
            {
                "app/other.yaml": sopstools.encrypt(
                    _secret("other", ns, {"k": _value("o")}), fmt="yaml", age=[stranger.recipient]
                ).decode()
            },
            "app/other.yaml",
            "no key we hold decrypts",
        ),
        (
            "KMS access denied (kms:Decrypt)",
            {"app/other.yaml": None, "app/api.yaml": kms_file},
            "app/api.yaml",
            "AccessDenied",
        ),
    ]
    for i, (fault, files, file, cause) in enumerate(trials):
        proxy.deny = "KMS" in fault
        git_repo.commit(
            {"app/db.yaml": good, **files, "app/keep.yaml": None, f"app/new-{i}.yaml": _cm(f"new-{i}", ns)}, fault
        )
        bad = git_repo.head()
        _request(kube, ns, "app")
        ready = _wait(lambda b=bad: _failed_at(env, ns, "app", b), 60, f"Ready=False for {fault}", ctl)
        kept = kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/keep") is not None
        applied = kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/new-{i}") is not None
        status = (env.get(ns, "app") or {}).get("status") or {}
        observed = (
            f"Ready={ready['status']} ({ready['reason']}); names file: {file in ready['message']}; names cause: "
            f"{cause in ready['message']}; keep kept: {kept}; new-{i} applied: {applied}; live revision "
            f"unchanged: {status.get('lastAppliedRevision', '').endswith(live_revision)}"
        )
        passed = (
            file in ready["message"]
            and cause in ready["message"]
            and kept
            and not applied
            and status.get("lastAppliedRevision", "").endswith(live_revision)
            and _live(kube, ns, "db") == {"password": password}
        )
        reliability.record(
            area="sops",
            fault=fault,
            expected="Ready=False naming file and cause; nothing applied, nothing pruned; previous revision live",
            observed=observed,
            passed=passed,
            lost=0 if kept else 1,
        )
        assert passed, f"{fault}: {observed}\n{ready['message']}"
        assert password not in ready["message"]
    proxy.deny = False


def _failed_at(env: Env, ns: str, name: str, sha: str) -> dict[str, Any] | None:
    obj = env.get(ns, name) or {}
    st = obj.get("status") or {}
    ready = _ready(env, ns, name)
    ok = ready.get("status") == "False" and st.get("lastAttemptedRevision", "").endswith(sha)
    return ready if ok and "cannot decrypt" in ready.get("message", "") else None


def test_a_tenant_cannot_decrypt_with_another_namespaces_or_the_controllers_keys(
    env: Env, namespace: str, git_repo: Any, monkeypatch: pytest.MonkeyPatch, kms: tuple[sopstools.KmsProxy, str]
) -> None:
    """The platform's age key is in the controller's SOPS_AGE_KEY and in a Secret of another
    namespace, its KMS key is reachable with the controller's AWS identity. A tenant's GitSync that
    names that Secret with a namespace reads its own namespace (the CRD drops the field); one
    without a secretRef is refused the controller's keys; one whose own Secret has no AWS
    credentials gets no AWS identity. A file copied from the platform's repository never decrypts."""
    kube, tenant = env.kube, namespace
    proxy, key_arn = kms
    platform = sopstools.age_identity()
    victim = f"victim-{uuid.uuid4().hex[:6]}"
    kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": victim}})
    try:
        _keys_secret(kube, victim, "sops-keys", {"age.agekey": platform.secret})
        secret = _secret("stolen", tenant, {"password": _value("platform-password")})
        copied = sopstools.encrypt(secret, fmt="yaml", age=[platform.recipient]).decode()
        kms_copied = sopstools.encrypt(secret, fmt="yaml", kms=[key_arn], env=sopstools.kms_env(proxy.endpoint))
        files = {"a/stolen.yaml": copied, "b/stolen.yaml": copied, "c/stolen.yaml": kms_copied.decode()}
        git_repo.commit(files, "copied from the platform repository")
        _keys_secret(kube, tenant, "tenant-keys", {"tenant.agekey": sopstools.age_identity().secret})
        monkeypatch.setenv("SOPS_AGE_KEY", platform.secret)
        ctl = env.start("--platform-namespace", "reconciler-system")
        other = {"provider": "sops", "secretRef": {"name": "sops-keys", "namespace": victim}}
        env.gitsync(tenant, "other-ns", git_repo.url, path="a", decryption=other)
        env.gitsync(tenant, "own-keys", git_repo.url, path="b", decryption={"provider": "sops"})
        tenant_keys = {"provider": "sops", "secretRef": {"name": "tenant-keys"}}
        env.gitsync(tenant, "kms-borrow", git_repo.url, path="c", decryption=tenant_keys)
        stored = (env.get(tenant, "other-ns") or {})["spec"]["decryption"]["secretRef"]
        assert stored == {"name": "sops-keys"}, "the CRD's schema drops secretRef.namespace"
        msg = f"spec.decryption.secretRef: Secret {tenant}/sops-keys not found"
        _wait(lambda: msg in _ready(env, tenant, "other-ns").get("message", ""), 60, "the own-namespace read", ctl)
        refused = _wait(lambda: _ready(env, tenant, "own-keys").get("reason") == "AccessDenied", 60, "refusal", ctl)
        assert refused
        assert "spec.decryption.secretRef: required in namespace" in _ready(env, tenant, "own-keys")["message"]
        no_kms = "c/stolen.yaml: cannot decrypt (SOPS): no key we hold decrypts"
        _wait(lambda: no_kms in _ready(env, tenant, "kms-borrow").get("message", ""), 60, "no AWS identity", ctl)
        assert proxy.count("Decrypt") == 0, "the tenant's sops never reached KMS with credentials"
        assert kube.get_or_none(f"/api/v1/namespaces/{tenant}/secrets/stolen") is None
    finally:
        kube.request("DELETE", f"/api/v1/namespaces/{victim}")
