"""EKS bearer tokens, built the way ``aws eks get-token`` builds them.

An EKS API server authenticates a bearer token ``k8s-aws-v1.<base64url(URL)>`` by calling
the presigned STS GetCallerIdentity URL inside it: whoever signed the URL is the caller.
The ``x-k8s-aws-id: <cluster>`` header is part of the signature so a token minted for one
cluster cannot be replayed against another.  Nothing here talks to AWS: presigning is a
local computation over the credentials the default chain finds (environment, IRSA web
identity, profiles, instance role), so the first network call is the API server's.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from reconciler.aws.errors import aws_call

if TYPE_CHECKING:
    from mypy_boto3_sts import STSClient

TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 - a format prefix, not a secret
CLUSTER_ID_HEADER = "x-k8s-aws-id"
PRESIGN_EXPIRES = 60  # what the AWS CLI asks for; EKS itself accepts a token for 15 min after X-Amz-Date
TOKEN_TTL = 14 * 60.0  # the AWS CLI's expirationTimestamp: a minute short of EKS's 15
REFRESH_BEFORE = 60.0  # never send a token in its last minute (clock skew, a slow request)


def sts_client(session: boto3.Session, region: str, cluster: str) -> STSClient:
    """A client of its own for signing one cluster's tokens.

    The header is added in ``before-sign`` so it lands in ``X-Amz-SignedHeaders``; registering
    that hook on a shared client would sign it into every STS call.  Configured endpoint URLs
    (``AWS_ENDPOINT_URL_STS``) are ignored: the API server only accepts URLs on the real
    regional STS host, whatever the caller uses for its own STS traffic.
    """
    # botocore >= 1.31 has the option; botocore-stubs does not know it yet.
    config = Config(ignore_configured_endpoint_urls=True)  # type: ignore[call-arg]
    client: STSClient = session.client("sts", region_name=region, config=config)

    def add_cluster_header(request: Any, **_: Any) -> None:
        request.headers[CLUSTER_ID_HEADER] = cluster

    client.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    return client


def presigned_token(client: STSClient) -> str:
    """One token: the presigned GET URL, base64url without padding (as aws-iam-authenticator expects)."""
    url = client.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=PRESIGN_EXPIRES, HttpMethod="GET")
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


class TokenProvider:
    """A bearer token that is minted once and again only shortly before it expires.

    Called before every API request (``Configuration.refresh_api_key_hook``), so the common
    path is a clock read under a lock.  ``clock`` is injectable (monotonic seconds) so expiry
    is testable without sleeping.
    """

    def __init__(
        self,
        mint: Callable[[], str],
        *,
        clock: Callable[[], float] = time.monotonic,
        ttl: float = TOKEN_TTL,
        refresh_before: float = REFRESH_BEFORE,
    ) -> None:
        self._mint, self._clock = mint, clock
        self._ttl, self._refresh_before = ttl, refresh_before
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = float("-inf")

    def __call__(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._expires - self._refresh_before:
                self._token = self._mint()
                self._expires = now + self._ttl
            return self._token

    def __repr__(self) -> str:  # never the token itself
        return f"TokenProvider(expires_in={self._expires - self._clock():.0f}s)"


def eks_token_provider(
    cluster: str, region: str, *, session: boto3.Session | None = None, clock: Callable[[], float] = time.monotonic
) -> TokenProvider:
    """Tokens for one EKS cluster from the default credential chain (or ``session``'s)."""
    client = sts_client(session or boto3.Session(), region, cluster)

    def mint() -> str:
        with aws_call("sts:GetCallerIdentity (presign)", f"token for {cluster}", region):
            return presigned_token(client)

    return TokenProvider(mint, clock=clock)
