"""EKS bearer tokens (issue 6, acceptance 2): what the token decodes to, and when it is renewed.

Presigning is local computation, so these tests need no AWS and no network: the credentials
are explicit test values, and nothing here ever sends the URL anywhere.
"""

from __future__ import annotations

import base64
import urllib.parse

import boto3
import pytest

from reconciler.aws import auth
from reconciler.aws.errors import AwsError

ACCESS_KEY = "AKIAUNITTESTKEY00000"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _session(**kw: str) -> boto3.Session:
    return boto3.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key="unit-test-secret", **kw)


def _decode(token: str) -> urllib.parse.SplitResult:
    assert token.startswith("k8s-aws-v1.")
    body = token.removeprefix("k8s-aws-v1.")
    assert "=" not in body, "padding must be stripped"
    return urllib.parse.urlsplit(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode())


@pytest.mark.parametrize("region", ["eu-west-1", "us-east-1", "ap-southeast-2"])
def test_token_is_a_presigned_get_caller_identity_url_for_the_clusters_region(region: str) -> None:
    # The session's own region differs on purpose: the cluster's region must win.
    provider = auth.eks_token_provider("prod", region, session=_session(region_name="sa-east-1"))
    url = _decode(provider())
    query = dict(urllib.parse.parse_qsl(url.query))
    assert url.scheme == "https"
    assert url.netloc == f"sts.{region}.amazonaws.com"
    assert query["Action"] == "GetCallerIdentity"
    assert query["Version"] == "2011-06-15"
    assert query["X-Amz-Expires"] == "60"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"].split(";")
    access_key, _date, scope_region, service, _ = query["X-Amz-Credential"].split("/")
    assert (access_key, scope_region, service) == (ACCESS_KEY, region, "sts")


def test_token_ignores_a_configured_sts_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """EKS only accepts URLs on the real STS host; a VPC or test endpoint in the env must not leak in."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    url = _decode(auth.eks_token_provider("prod", "eu-west-1", session=_session())())
    assert url.netloc == "sts.eu-west-1.amazonaws.com"


def test_other_sts_calls_of_the_session_do_not_sign_the_cluster_header() -> None:
    """The header hook lives on the token's own client only."""
    session = _session(region_name="eu-west-1")
    auth.eks_token_provider("prod", "eu-west-1", session=session)()
    other = session.client("sts").generate_presigned_url("get_caller_identity", Params={}, HttpMethod="GET")
    signed = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(other).query))["X-Amz-SignedHeaders"]
    assert "x-k8s-aws-id" not in signed


def test_token_includes_the_session_token_of_temporary_credentials() -> None:
    """IRSA and assumed roles sign with temporary credentials: STS needs their session token too."""
    session = boto3.Session(aws_access_key_id="ASIATEMP", aws_secret_access_key="s", aws_session_token="sess-tok")
    query = dict(urllib.parse.parse_qsl(_decode(auth.eks_token_provider("prod", "eu-west-1", session=session)()).query))
    assert query["X-Amz-Security-Token"] == "sess-tok"


def test_missing_credentials_name_the_call_and_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask 169.254.169.254
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    provider = auth.eks_token_provider("prod", "eu-west-1", session=boto3.Session())
    with pytest.raises(AwsError) as e:
        provider()
    assert str(e.value).startswith("sts:GetCallerIdentity (presign) token for prod (eu-west-1): NoCredentialsError:")


# --------------------------------------------------------------------------- renewal


class CountingMint:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return f"token-{self.calls}"


def test_token_is_cached_until_shortly_before_expiry_then_renewed() -> None:
    clock, mint = FakeClock(), CountingMint()
    provider = auth.TokenProvider(mint, clock=clock)
    assert provider() == "token-1"
    clock.now += auth.TOKEN_TTL - auth.REFRESH_BEFORE - 1  # last second of the quiet period
    assert provider() == "token-1"
    assert mint.calls == 1
    clock.now += 1  # now inside the refresh margin
    assert provider() == "token-2"
    clock.now += 10
    assert provider() == "token-2"
    assert mint.calls == 2


def test_real_eks_tokens_are_renewed_after_expiry_with_the_current_credentials() -> None:
    """Through the real presigner: IRSA credentials rotate under a long-running controller, and a
    renewed token must be signed with the new ones (while a cached one keeps the old key)."""
    clock = FakeClock()
    session = _session()
    provider = auth.eks_token_provider("prod", "eu-west-1", session=session, clock=clock)

    def key_of(token: str) -> str:
        return dict(urllib.parse.parse_qsl(_decode(token).query))["X-Amz-Credential"].split("/")[0]

    first = provider()
    creds = session.get_credentials()
    assert creds is not None
    creds.access_key = "AKIAROTATEDKEY000000"  # what a credential refresh does to the shared object
    clock.now += auth.TOKEN_TTL - auth.REFRESH_BEFORE - 1
    assert provider() == first
    clock.now += auth.REFRESH_BEFORE + 1  # expired
    renewed = provider()
    assert (key_of(first), key_of(renewed)) == (ACCESS_KEY, "AKIAROTATEDKEY000000")
    assert _decode(renewed).netloc == "sts.eu-west-1.amazonaws.com"


def test_a_failed_mint_is_retried_on_the_next_call() -> None:
    clock, calls = FakeClock(), []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise AwsError("sts:GetCallerIdentity (presign) token for prod (eu-west-1): ExpiredToken: x")
        return "fresh"

    provider = auth.TokenProvider(flaky, clock=clock)
    with pytest.raises(AwsError):
        provider()
    assert provider() == "fresh"


def test_repr_never_shows_the_token() -> None:
    provider = auth.TokenProvider(lambda: "k8s-aws-v1.secret-looking", clock=FakeClock())
    provider()
    assert "secret" not in repr(provider)


def test_debug_logging_never_shows_what_rebuilds_a_token(capsys: pytest.CaptureFixture[str]) -> None:
    """At --log-level DEBUG botocore would log the canonical request and the signature (enough
    to rebuild a working token) and the session token: logs.setup keeps it at WARNING."""
    import logging

    from reconciler.report import logs

    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in logs.QUIET})
    try:
        logs.setup("DEBUG")
        session = boto3.Session(aws_access_key_id="ASIATEMP", aws_secret_access_key="s", aws_session_token="sess-tok")
        token = auth.eks_token_provider("prod", "eu-west-1", session=session)()
        query = dict(urllib.parse.parse_qsl(_decode(token).query))
        logged = capsys.readouterr().out
    finally:
        root.handlers[:], level, quiet = saved
        root.setLevel(level)
        for name, lvl in quiet.items():
            logging.getLogger(name).setLevel(lvl)
    assert query["X-Amz-Signature"] not in logged
    assert "sess-tok" not in logged
    assert "CanonicalRequest" not in logged
