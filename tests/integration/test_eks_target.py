"""Reaching an EKS cluster: DescribeCluster against moto, token renewal against the real API server.

moto's DescribeCluster hands out a made-up endpoint: these tests never connect to it.  What a
request really carries is checked on the local kube-apiserver instead, with ServiceAccount
tokens standing in for EKS tokens (the local API server has no IAM authenticator), so the
renewal path — refresh_api_key_hook on our raw request path — is the real one.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.eks.models import eks_backends

from reconciler import cli
from reconciler.aws import auth, target
from reconciler.aws.errors import AwsError
from reconciler.kube import client

REGION = "eu-west-1"
HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _ca(cluster: Any) -> Path:
    return Path(cluster.root) / "pki" / "ca.crt"


def _sa_token(kube: client.Kube, namespace: str, name: str) -> str:
    kube.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", body={"metadata": {"name": name}})
    tr = kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}},
    )
    return str(tr["status"]["token"])


def _whoami(kube: client.Kube) -> str:
    review = kube.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    return str(review["status"]["userInfo"]["username"])


def test_a_renewed_token_is_what_the_next_request_carries(kube: client.Kube, cluster: Any, namespace: str) -> None:
    tokens = iter([_sa_token(kube, namespace, "first"), _sa_token(kube, namespace, "second")])
    minted: list[str] = []

    def mint() -> str:
        minted.append(next(tokens))
        return minted[-1]

    clock = FakeClock()
    handle = client.connect_token(cluster.server, auth.TokenProvider(mint, clock=clock), ca_file=str(_ca(cluster)))
    try:
        assert _whoami(handle) == f"system:serviceaccount:{namespace}:first"
        clock.now += auth.TOKEN_TTL - auth.REFRESH_BEFORE - 1
        assert _whoami(handle) == f"system:serviceaccount:{namespace}:first"
        assert len(minted) == 1, "a valid token must not be minted again"
        clock.now += 1
        assert _whoami(handle) == f"system:serviceaccount:{namespace}:second"
        assert len(minted) == 2
    finally:
        handle.close()


def test_a_token_source_that_fails_is_a_clear_unreachable_error(cluster: Any) -> None:
    def broken() -> str:
        raise AwsError("sts:GetCallerIdentity (presign) token for prod (eu-west-1): ExpiredToken: expired")

    handle = client.connect_token(cluster.server, broken, ca_file=str(_ca(cluster)))
    with pytest.raises(client.UnreachableError) as e:
        handle.get("/version")
    assert isinstance(e.value, client.CredentialsError)
    assert str(e.value) == (
        f"{cluster.server}: cannot get a bearer token: "
        "sts:GetCallerIdentity (presign) token for prod (eu-west-1): ExpiredToken: expired"
    )


# --------------------------------------------------------------------------- DescribeCluster on moto


@pytest.fixture
def eks(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto's EKS API; AWS_ENDPOINT_URL_EKS sends our (botocore-built) EKS client there."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_EKS", aws.endpoint)
    return aws.client("eks")


def _create(eks: Any, name: str, ca_pem: str | None) -> dict[str, Any]:
    eks.create_cluster(
        name=name, roleArn=f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/eks", resourcesVpcConfig={"subnetIds": []}
    )
    if ca_pem is not None:  # moto invents random CA bytes; give it a real PEM, as EKS has
        backend = eks_backends[DEFAULT_ACCOUNT_ID][REGION]
        backend.clusters[name].certificate_authority = {"data": base64.b64encode(ca_pem.encode()).decode()}
    info: dict[str, Any] = eks.describe_cluster(name=name)["cluster"]
    return info


def test_eks_cluster_resolves_to_its_endpoint_ca_and_a_signed_token(eks: Any, cluster: Any) -> None:
    pem = _ca(cluster).read_text()
    info = _create(eks, "prod", pem)
    handle = target.connect("prod", REGION)  # no request is sent to the (fake) endpoint
    try:
        cfg = handle.configuration
        assert handle.host == info["endpoint"]
        assert cfg.ca_cert_data == pem
        header = cfg.get_api_key_with_prefix("BearerToken")  # what _send puts in Authorization
        assert header is not None
        assert header.startswith("Bearer k8s-aws-v1.")
        body = header.removeprefix("Bearer k8s-aws-v1.")
        url = urllib.parse.urlsplit(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode())
        query = dict(urllib.parse.parse_qsl(url.query))
        assert url.netloc == f"sts.{REGION}.amazonaws.com"
        assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"].split(";")
        assert query["X-Amz-Credential"].split("/")[0] == os.environ["AWS_ACCESS_KEY_ID"]
    finally:
        handle.close()


def test_a_ca_that_is_not_pem_is_refused_naming_the_field(eks: Any) -> None:
    _create(eks, "odd", None)  # moto's own random bytes
    with pytest.raises(AwsError, match=r"^eks:DescribeCluster odd \(eu-west-1\): certificateAuthority\.data"):
        target.connect("odd", REGION)


def test_the_region_defaults_to_the_aws_environment(eks: Any, cluster: Any) -> None:
    _create(eks, "prod", _ca(cluster).read_text())
    handle = target.connect("prod")  # AWS_REGION=eu-west-1 from the aws fixture
    handle.close()


# --------------------------------------------------------------------------- the CLI (acceptance 4)


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli.cli, list(args))


@pytest.mark.parametrize(
    "argv",
    [
        ["diff", "--dir", str(HELLO), "--eks-cluster", "ghost", "--region", REGION],
        ["sync", "--dir", str(HELLO), "--eks-cluster", "ghost", "--region", REGION],
        ["version", "--server", "--eks-cluster", "ghost", "--region", REGION],
    ],
)
def test_unknown_cluster_is_one_line_exit_2_without_traceback(eks: Any, argv: list[str]) -> None:
    r = _run(*argv)
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit)
    assert f"eks:DescribeCluster ghost ({REGION}): ResourceNotFoundException: " in r.output
    assert "Traceback" not in r.output


def test_run_against_an_unknown_cluster_exits_2_with_one_line(eks: Any) -> None:
    """The controller process itself (main(), not the click runner), managing a remote EKS cluster."""
    argv = ["run", "--eks-cluster", "ghost", "--region", REGION, "--metrics-addr", "", "--health-addr", ""]
    r = subprocess.run([sys.executable, "-m", "reconciler", *argv], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"reconciler run: error: eks:DescribeCluster ghost ({REGION}): ResourceNotFoundException: "
        f"No cluster found for name: ghost."
    ]


def test_no_aws_credentials_is_a_clear_error(eks: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    r = _run("version", "--server", "--eks-cluster", "prod", "--region", REGION)
    assert r.exit_code == 2, r.output
    assert f"eks:DescribeCluster prod ({REGION}): NoCredentialsError: no AWS credentials found" in r.output
    assert "Traceback" not in r.output


def test_unreachable_eks_api_is_a_clear_error(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_EKS", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    r = _run("version", "--server", "--eks-cluster", "prod", "--region", REGION)
    assert r.exit_code == 2, r.output
    assert f"eks:DescribeCluster prod ({REGION}): EndpointUnreachable: " in r.output
    assert "127.0.0.1:9" in r.output
    assert "Traceback" not in r.output


# --------------------------------------------------------------------------- the controller


def _ready(env: Any, ns: str, name: str) -> dict[str, Any] | None:
    obj = env.get(ns, name) or {}
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None)


def test_controller_syncs_a_gitsync_into_its_eks_target_and_reports_failures_here(
    env: Any, git_repo: Any, namespace: str, eventually: Any, eks: Any, cluster: Any
) -> None:
    """Two GitSyncs with EKS targets: one names no cluster moto knows; the other's DescribeCluster
    answer points at the local API server, which (having no IAM authenticator) refuses the EKS
    token: proof that the controller connected where DescribeCluster said, with an EKS token.
    Both failures land on the GitSync in the management cluster; nothing is applied locally."""
    from controllers import _events, cm

    ns = namespace
    _create(eks, "here", _ca(cluster).read_text())
    eks_backends[DEFAULT_ACCOUNT_ID][REGION].clusters["here"].endpoint = cluster.server
    git_repo.commit({"app/a.yaml": cm("a", ns, {"v": "1"})}, "first")
    ctl = env.start("--watch-namespace", ns, "--allow-eks-target", f"*/{REGION}")  # a glob admits both
    env.gitsync(ns, "ghost", git_repo.url, path="app", target={"eks": {"cluster": "ghost", "region": REGION}})
    env.gitsync(ns, "here", git_repo.url, path="app", target={"eks": {"cluster": "here", "region": REGION}})

    ghost = eventually(
        lambda: (c := _ready(env, ns, "ghost")) and c["status"] == "False" and c["reason"] == "TargetFailed" and c,
        60,
        "GitSync ghost to fail on its target",
    )
    assert ghost["message"].startswith(
        f"GitSync {ns}/ghost: cannot connect to the target cluster: "
        f"eks:DescribeCluster ghost ({REGION}): ResourceNotFoundException: "
    )
    eventually(  # the Event follows the status write
        lambda: any(e["note"] == ghost["message"] for e in _events(env, ns, "ghost", "SyncFailed")),
        10,
        "a SyncFailed Event with the same message",
    )

    here = eventually(
        lambda: (c := _ready(env, ns, "here")) and c["status"] == "False" and c["reason"] != "Progressing" and c,
        60,
        "GitSync here to fail on the token the local API server cannot check",
    )
    assert "401 Unauthorized" in here["message"], here
    assert here["message"].endswith(
        "(EKS cluster here does not accept the controller's AWS identity:"
        " it needs an access entry, or an aws-auth mapping, for that IAM role)"
    )
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/a") is None
    log = ctl.log.read_text()
    assert "Traceback" not in log
    assert "k8s-aws-v1." not in log, "a token must never be logged"


def test_a_target_outside_the_allow_list_is_stalled_and_never_contacted(
    env: Any, git_repo: Any, namespace: str, eventually: Any, eks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenant's GitSync must not borrow the controller's AWS identity for a cluster the
    operator did not list: no DescribeCluster is sent for it (counted in moto itself, which
    serves this process's threads), while a target the glob admits goes ahead."""
    from controllers import _events, cm
    from moto.eks.models import EKSBackend

    ns = namespace
    described: list[str] = []
    real = EKSBackend.describe_cluster

    def counting(self: Any, name: str) -> Any:  # moto calls it with name=...
        described.append(name)
        return real(self, name)

    monkeypatch.setattr(EKSBackend, "describe_cluster", counting)
    _create(eks, "payments", None)  # exists and is reachable by the controller's identity
    described.clear()
    git_repo.commit({"app/a.yaml": cm("a", ns, {"v": "1"})}, "first")
    ctl = env.start("--watch-namespace", ns, "--allow-eks-target", "ghost*/*", "--allow-eks-target", "*/us-east-1")
    env.gitsync(ns, "steal", git_repo.url, path="app", target={"eks": {"cluster": "payments", "region": REGION}})
    env.gitsync(ns, "ghost", git_repo.url, path="app", target={"eks": {"cluster": "ghost", "region": REGION}})

    eventually(
        lambda: (c := _ready(env, ns, "ghost")) and c["reason"] == "TargetFailed", 60, "the admitted target to be tried"
    )
    assert "ghost" in described
    obj = eventually(
        lambda: (c := _ready(env, ns, "steal")) and c["reason"] not in ("Progressing", "") and env.get(ns, "steal"),
        60,
        "GitSync steal to be refused",
    )
    conds = {c["type"]: c for c in obj["status"]["conditions"]}
    expected = (
        f"GitSync {ns}/steal: spec.target.eks payments/{REGION} is not allowed for namespace {ns} by this "
        "controller (reconciler run --allow-eks-target NAMESPACE=CLUSTER/REGION; allowed: ghost*/*, */us-east-1)"
    )
    assert (conds["Ready"]["status"], conds["Ready"]["reason"], conds["Ready"]["message"]) == (
        "False",
        "TargetNotAllowed",
        expected,
    )
    assert (conds["Stalled"]["status"], conds["Stalled"]["reason"]) == ("True", "TargetNotAllowed")
    assert "payments" not in described
    eventually(lambda: _events(env, ns, "steal", "SyncFailed"), 10, "the SyncFailed Event")
    assert [e["note"] for e in _events(env, ns, "steal", "SyncFailed")] == [expected]
    assert [(ln["level"], ln["msg"]) for ln in ctl.lines() if "payments" in str(ln.get("msg"))] == [("ERROR", expected)]
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/a") is None

    # It applied nothing there, so deleting it (prune: true) must not wait for a target it may never reach.
    env.kube.request("DELETE", f"/apis/gitops.reconciler.dev/v1/namespaces/{ns}/gitsyncs/steal")
    eventually(lambda: env.get(ns, "steal") is None, 60, "the refused GitSync to be deleted")
    assert "payments" not in described


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"eks": {"cluster": "prod"}}, "spec.target.eks.region"),
        ({"eks": {"region": REGION}}, "spec.target.eks.cluster"),
        ({"eks": {"cluster": "prod", "region": "Europe"}}, "spec.target.eks.region"),
        ({"eks": {"cluster": "-prod", "region": REGION}}, "spec.target.eks.cluster"),
        ({}, "spec.target.eks"),
    ],
)
def test_the_crd_refuses_bad_targets_at_apply_time(
    crd: None, kube: client.Kube, namespace: str, target: dict[str, Any], field: str
) -> None:
    body = {
        "apiVersion": "gitops.reconciler.dev/v1",
        "kind": "GitSync",
        "metadata": {"name": "bad-target"},
        "spec": {"source": {"git": {"url": "https://example.invalid/r.git"}}, "target": target},
    }
    with pytest.raises(client.KubeError) as e:
        kube.request("POST", f"/apis/gitops.reconciler.dev/v1/namespaces/{namespace}/gitsyncs", body=body)
    assert e.value.status == 422
    assert field in e.value.message
