"""A Kube handle for an EKS cluster, from its name and region alone.

What a kubeconfig written by ``aws eks update-kubeconfig`` holds — the endpoint, the CA and
an ``aws eks get-token`` exec plugin — is fetched and built here instead, so the reconciler
needs no kubeconfig, no AWS CLI and no file on disk to manage a remote cluster: IAM
(``eks:DescribeCluster``, and an access entry for the role in the cluster) is the only setup.

The EKS API endpoint follows botocore's configuration, so ``AWS_ENDPOINT_URL_EKS`` (or
``AWS_ENDPOINT_URL``) points it at a private endpoint, or at a local fake in the tests.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3

from reconciler.aws import auth
from reconciler.aws.errors import AwsError, aws_call
from reconciler.kube import client as kube_client

if TYPE_CHECKING:
    from mypy_boto3_eks import EKSClient

DESCRIBE = "eks:DescribeCluster"


@dataclass(frozen=True)
class ClusterAccess:
    """What connecting needs from DescribeCluster (the CA is public data, not a secret)."""

    name: str
    region: str
    endpoint: str
    ca_pem: str


def resolve_region(region: str | None, session: boto3.Session | None = None) -> str:
    """The explicit region, else the default chain's (``AWS_REGION``, the profile)."""
    found = region or (session or boto3.Session()).region_name
    if not found:
        raise AwsError(f"{DESCRIBE}: no region given and none configured (set --region, or AWS_REGION)")
    return found


def describe(eks: EKSClient, cluster: str, region: str) -> ClusterAccess:
    """DescribeCluster, reduced to endpoint and CA; a cluster not ready to serve is an error."""
    with aws_call(DESCRIBE, cluster, region):
        info = eks.describe_cluster(name=cluster)["cluster"]
    endpoint = info.get("endpoint")
    ca_b64 = (info.get("certificateAuthority") or {}).get("data")
    if not endpoint or not ca_b64:
        status = info.get("status", "unknown")
        raise AwsError(f"{DESCRIBE} {cluster} ({region}): the cluster has no API endpoint yet (status {status})")
    try:
        ca_pem = base64.b64decode(ca_b64, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError) as e:
        raise AwsError(
            f"{DESCRIBE} {cluster} ({region}): certificateAuthority.data is not a base64-encoded PEM certificate"
        ) from e
    if "-----BEGIN CERTIFICATE-----" not in ca_pem:
        raise AwsError(f"{DESCRIBE} {cluster} ({region}): certificateAuthority.data holds no PEM certificate")
    return ClusterAccess(cluster, region, endpoint, ca_pem)


def connect(
    cluster: str,
    region: str | None = None,
    *,
    session: boto3.Session | None = None,
    pool_size: int = 8,
    headers: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> kube_client.Kube:
    """Describe the cluster and return a handle whose token renews itself before it expires.

    The first token is minted here, so missing credentials fail now, with a message naming
    the cluster, rather than on the first request in the middle of a sync.
    """
    session = session or boto3.Session()
    region = resolve_region(region, session)
    with aws_call(DESCRIBE, cluster, region):  # e.g. a malformed endpoint URL in the environment
        eks: EKSClient = session.client("eks", region_name=region)
    access = describe(eks, cluster, region)
    tokens = auth.eks_token_provider(cluster, region, session=session, clock=clock)
    tokens()
    return kube_client.connect_token(
        access.endpoint, tokens, ca_data=access.ca_pem, pool_size=pool_size, headers=headers
    )
