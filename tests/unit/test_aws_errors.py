"""AWS failures become one line naming the call, the resource and the region (issue 6, acceptance 4).

Access denied and throttling cannot be provoked from moto, so botocore's own Stubber answers
DescribeCluster here; unknown clusters, missing credentials and unreachable endpoints are
exercised for real in tests/integration/test_eks_target.py.
"""

from __future__ import annotations

import base64

import boto3
import pytest
from botocore import exceptions as bce
from botocore.stub import Stubber

from reconciler.aws import target
from reconciler.aws.errors import AwsError, aws_call, describe_aws_error

PEM = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"


def _eks() -> tuple[object, Stubber]:
    client = boto3.client("eks", region_name="eu-west-1", aws_access_key_id="AKIAX", aws_secret_access_key="s")
    return client, Stubber(client)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("AccessDeniedException", "User: arn:aws:iam::1:role/ci is not authorized to perform: eks:DescribeCluster"),
        ("ThrottlingException", "Rate exceeded"),
        ("ResourceNotFoundException", "No cluster found for name: prod."),
    ],
)
def test_describe_cluster_errors_are_one_line_naming_call_cluster_and_region(code: str, message: str) -> None:
    eks, stub = _eks()
    stub.add_client_error("describe_cluster", service_error_code=code, service_message=message, http_status_code=400)
    with stub, pytest.raises(AwsError) as e:
        target.describe(eks, "prod", "eu-west-1")  # type: ignore[arg-type]
    assert str(e.value) == f"eks:DescribeCluster prod (eu-west-1): {code}: {message}"


def test_a_cluster_without_endpoint_yet_is_a_clear_error() -> None:
    eks, stub = _eks()
    stub.add_response("describe_cluster", {"cluster": {"name": "prod", "status": "CREATING"}}, {"name": "prod"})
    with stub, pytest.raises(AwsError, match=r"^eks:DescribeCluster prod \(eu-west-1\): .*status CREATING"):
        target.describe(eks, "prod", "eu-west-1")  # type: ignore[arg-type]


def test_describe_returns_endpoint_and_pem() -> None:
    eks, stub = _eks()
    body = {
        "cluster": {
            "name": "prod",
            "endpoint": "https://ABC.gr7.eu-west-1.eks.amazonaws.com",
            "certificateAuthority": {"data": base64.b64encode(PEM.encode()).decode()},
        }
    }
    stub.add_response("describe_cluster", body, {"name": "prod"})
    with stub:
        access = target.describe(eks, "prod", "eu-west-1")  # type: ignore[arg-type]
    assert (access.endpoint, access.ca_pem) == ("https://ABC.gr7.eu-west-1.eks.amazonaws.com", PEM)


def test_messages_stay_on_one_line_and_name_exception_classes() -> None:
    multi = bce.ClientError({"Error": {"Code": "Boom", "Message": "first\nsecond"}}, "DescribeCluster")
    assert describe_aws_error("eks:DescribeCluster", "prod", exc=multi, region="eu-west-1") == (
        "eks:DescribeCluster prod (eu-west-1): Boom: first second"
    )
    no_creds = describe_aws_error("eks:DescribeCluster", "prod", exc=bce.NoCredentialsError())
    assert no_creds.startswith("eks:DescribeCluster prod: NoCredentialsError: no AWS credentials found")
    unreachable = bce.EndpointConnectionError(endpoint_url="https://eks.eu-west-1.amazonaws.com/clusters/prod")
    assert describe_aws_error("eks:DescribeCluster", "prod", exc=unreachable, region="eu-west-1") == (
        "eks:DescribeCluster prod (eu-west-1): EndpointUnreachable: "
        'Could not connect to the endpoint URL: "https://eks.eu-west-1.amazonaws.com/clusters/prod"'
    )


def test_aws_call_leaves_other_exceptions_alone() -> None:
    with pytest.raises(KeyError), aws_call("eks:DescribeCluster", "prod"):
        raise KeyError("a bug is a bug, not an AWS error")
