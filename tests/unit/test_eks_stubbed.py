"""What moto lacks, through botocore's Stubber: addons, DescribeUpdate, UpdateClusterVersion, errors.

Stubber checks the exact parameters of every call and fails on any call not expected,
so these tests also pin what sync sends (resolveConflicts, the DescribeUpdate resource).
The endpoint is a closed loopback port: a call that slipped past the Stubber could not
leave the machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from reconciler.aws import eks, eksupdate
from reconciler.aws.clusterconfig import Addon, ClusterConfig, NodeGroup
from reconciler.aws.errors import AwsError

REGION = "eu-west-1"
NOW = "2026-11-25T00:00:00Z"
NOW_WAIT = eksupdate.Wait(timeout=60, interval=0)


@pytest.fixture
def client() -> Any:
    return boto3.client(
        "eks",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@pytest.fixture
def stub(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as s:
        yield s
        s.assert_no_pending_responses()


def cluster(version: str = "1.34") -> dict[str, Any]:
    return {"cluster": {"name": "prod", "version": version, "status": "ACTIVE"}}


def addon(name: str, version: str, config: str | None = None) -> dict[str, Any]:
    a: dict[str, Any] = {"addonName": name, "clusterName": "prod", "status": "ACTIVE", "addonVersion": version}
    if config is not None:
        a["configurationValues"] = config
    return {"addon": a}


def update(uid: str, status: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"update": {"id": uid, "status": status, "type": "AddonUpdate", "errors": errors or []}}


def config(*addons: Addon, version: str | None = "1.34", nodegroups: list[NodeGroup] | None = None) -> ClusterConfig:
    return ClusterConfig(
        file="cluster.yaml",
        name="prod",
        region=REGION,
        version=version,
        addons=list(addons),
        nodegroups=nodegroups or [],
    )


VPC_CNI = Addon(
    "vpc-cni", version="v1.19.2-eksbuild.1", configuration_values='{"env": {"ENABLE_PREFIX_DELEGATION": "true"}}'
)


def expect_read(stub: Stubber, *addons: dict[str, Any], listed: list[str], version: str = "1.34") -> None:
    stub.add_response("describe_cluster", cluster(version), {"name": "prod"})
    stub.add_response("list_addons", {"addons": listed}, {"clusterName": "prod"})
    for a in addons:
        stub.add_response("describe_addon", a, {"clusterName": "prod", "addonName": a["addon"]["addonName"]})


def test_addon_version_config_absence_and_latest(client: Any, stub: Stubber) -> None:
    cfg = config(VPC_CNI, Addon("coredns"), Addon("kube-proxy", version="latest"))
    stub.add_response("describe_cluster", cluster(), {"name": "prod"})
    stub.add_response("list_addons", {"addons": ["vpc-cni", "kube-proxy"]}, {"clusterName": "prod"})
    stub.add_response(
        "describe_addon",
        addon("vpc-cni", "v1.18.0-eksbuild.1", "env: {}"),
        {"clusterName": "prod", "addonName": "vpc-cni"},
    )
    stub.add_response(
        "describe_addon", addon("kube-proxy", "v1.34.0-eksbuild.2"), {"clusterName": "prod", "addonName": "kube-proxy"}
    )
    stub.add_response(
        "describe_addon_versions",
        {
            "addons": [
                {
                    "addonName": "kube-proxy",
                    "addonVersions": [
                        {"addonVersion": v} for v in ("v1.34.0-eksbuild.2", "v1.34.1-eksbuild.10", "v1.34.1-eksbuild.9")
                    ],
                }
            ]
        },
        {"addonName": "kube-proxy", "kubernetesVersion": "1.34"},
    )
    drift = eks.check(client, cfg)
    assert {(f.resource, f.field, f.action, str(f.desired)) for f in drift.findings} == {
        ("addon/vpc-cni", "addonVersion", "update", "v1.19.2-eksbuild.1"),
        ("addon/vpc-cni", "configurationValues", "update", '{"env": {"ENABLE_PREFIX_DELEGATION": "true"}}'),
        ("addon/coredns", "addon", "create", "default version"),
        ("addon/kube-proxy", "addonVersion", "update", "v1.34.1-eksbuild.10"),  # numeric, not string order
    }
    calls = {(c.call, c.resource): c.params for c in drift.changes}
    assert calls[("UpdateAddon", "addon/vpc-cni")] == {
        "clusterName": "prod",
        "addonName": "vpc-cni",
        "resolveConflicts": "PRESERVE",
        "addonVersion": "v1.19.2-eksbuild.1",
        "configurationValues": VPC_CNI.configuration_values,
    }
    assert calls[("CreateAddon", "addon/coredns")] == {
        "clusterName": "prod",
        "addonName": "coredns",
        "resolveConflicts": "NONE",
    }


def test_configuration_values_compare_by_meaning(client: Any, stub: Stubber) -> None:
    expect_read(
        stub, addon("vpc-cni", "v1.19.2-eksbuild.1", 'env:\n  ENABLE_PREFIX_DELEGATION: "true"\n'), listed=["vpc-cni"]
    )
    assert eks.check(client, config(VPC_CNI)).findings == []


def test_addon_downgrade_is_reported_not_planned(client: Any, stub: Stubber) -> None:
    expect_read(
        stub,
        addon("vpc-cni", "v1.20.0-eksbuild.1", '{"env": {"ENABLE_PREFIX_DELEGATION": "true"}}'),
        listed=["vpc-cni"],
    )
    drift = eks.check(client, config(VPC_CNI))
    assert [(f.field, f.action) for f in drift.findings] == [("addonVersion", "unsupported")]
    assert drift.changes == []


def test_update_addon_is_followed_through_describe_update_to_successful(client: Any, stub: Stubber) -> None:
    cfg = config(Addon("vpc-cni", version="v1.19.2-eksbuild.1"))
    expect_read(stub, addon("vpc-cni", "v1.18.0-eksbuild.1"), listed=["vpc-cni"])
    stub.add_response(
        "update_addon",
        update("u-1", "InProgress"),
        {
            "clusterName": "prod",
            "addonName": "vpc-cni",
            "resolveConflicts": "PRESERVE",
            "addonVersion": "v1.19.2-eksbuild.1",
        },
    )
    for status in ("InProgress", "InProgress", "Successful"):
        stub.add_response(
            "describe_update", update("u-1", status), {"name": "prod", "updateId": "u-1", "addonName": "vpc-cni"}
        )
    expect_read(stub, addon("vpc-cni", "v1.19.2-eksbuild.1"), listed=["vpc-cni"])
    res = eks.sync(client, cfg, wait=NOW_WAIT)
    assert [(a.change.call, a.status) for a in res.applied] == [("UpdateAddon", "Successful")]
    assert res.after.findings == []


def test_a_failed_update_is_an_error_naming_call_resource_and_reason(client: Any, stub: Stubber) -> None:
    cfg = config(Addon("vpc-cni", version="v1.19.2-eksbuild.1"))
    expect_read(stub, addon("vpc-cni", "v1.18.0-eksbuild.1"), listed=["vpc-cni"])
    stub.add_response(
        "update_addon",
        update("u-2", "InProgress"),
        {"clusterName": "prod", "addonName": "vpc-cni", "resolveConflicts": "PRESERVE", "addonVersion": ANY},
    )
    stub.add_response(
        "describe_update", update("u-2", "InProgress"), {"name": "prod", "updateId": "u-2", "addonName": "vpc-cni"}
    )
    stub.add_response(
        "describe_update",
        update(
            "u-2",
            "Failed",
            [{"errorCode": "ConfigurationConflict", "errorMessage": "Conflicts found when trying to apply."}],
        ),
        {"name": "prod", "updateId": "u-2", "addonName": "vpc-cni"},
    )
    with pytest.raises(AwsError) as e:
        eks.sync(client, cfg, wait=NOW_WAIT)
    assert str(e.value) == (
        "eks:DescribeUpdate prod/vpc-cni (eu-west-1): update u-2 Failed: ConfigurationConflict: Conflicts found when "
        "trying to apply. (0 of 1 corrections done before this one)"
    )


def test_an_update_still_running_at_the_timeout_is_an_error(client: Any, stub: Stubber) -> None:
    cfg = config(Addon("vpc-cni", version="v1.19.2-eksbuild.1"))
    expect_read(stub, addon("vpc-cni", "v1.18.0-eksbuild.1"), listed=["vpc-cni"])
    stub.add_response(
        "update_addon",
        update("u-3", "InProgress"),
        {"clusterName": "prod", "addonName": "vpc-cni", "resolveConflicts": "PRESERVE", "addonVersion": ANY},
    )
    for _ in range(2):  # the attempt budget: 2 at an interval of 0 (one per second of timeout)
        stub.add_response(
            "describe_update", update("u-3", "InProgress"), {"name": "prod", "updateId": "u-3", "addonName": "vpc-cni"}
        )
    with pytest.raises(AwsError, match=r"update u-3 still InProgress after 2s; it goes on in AWS"):
        eks.sync(client, cfg, wait=eksupdate.Wait(timeout=2, interval=0))


def test_create_addon_waits_until_active(client: Any, stub: Stubber) -> None:
    cfg = config(Addon("coredns", version="v1.11.4-eksbuild.2"))
    expect_read(stub, listed=[])
    stub.add_response(
        "create_addon",
        {"addon": {"addonName": "coredns", "status": "CREATING"}},
        {
            "clusterName": "prod",
            "addonName": "coredns",
            "resolveConflicts": "NONE",
            "addonVersion": "v1.11.4-eksbuild.2",
        },
    )
    stub.add_response(
        "describe_addon",
        {"addon": {"addonName": "coredns", "status": "CREATING"}},
        {"clusterName": "prod", "addonName": "coredns"},
    )
    stub.add_response(
        "describe_addon", addon("coredns", "v1.11.4-eksbuild.2"), {"clusterName": "prod", "addonName": "coredns"}
    )
    expect_read(stub, addon("coredns", "v1.11.4-eksbuild.2"), listed=["coredns"])
    res = eks.sync(client, cfg, wait=NOW_WAIT)
    assert [(a.change.call, a.status) for a in res.applied] == [("CreateAddon", "ACTIVE")]


def test_cluster_version_one_minor_up_uses_update_cluster_version(client: Any, stub: Stubber) -> None:
    cfg = config(version="1.34")
    stub.add_response("describe_cluster", cluster("1.33"), {"name": "prod"})
    stub.add_response("update_cluster_version", update("v-1", "InProgress"), {"name": "prod", "version": "1.34"})
    stub.add_response("describe_update", update("v-1", "Successful"), {"name": "prod", "updateId": "v-1"})
    stub.add_response("describe_cluster", cluster("1.34"), {"name": "prod"})
    res = eks.sync(client, cfg, wait=NOW_WAIT)
    assert [(a.change.call, a.status) for a in res.applied] == [("UpdateClusterVersion", "Successful")]


@pytest.mark.parametrize(
    ("want", "live", "note"),
    [("1.33", "1.34", "EKS cannot downgrade a cluster"), ("1.34", "1.32", "more than one minor up")],
)
def test_cluster_version_downgrade_or_jump_is_reported_not_attempted(
    client: Any, stub: Stubber, want: str, live: str, note: str
) -> None:
    stub.add_response("describe_cluster", cluster(live), {"name": "prod"})
    stub.add_response("describe_cluster", cluster(live), {"name": "prod"})
    drift = eks.check(client, config(version=want))
    assert [(f.field, f.action) for f in drift.findings] == [("version", "unsupported")]
    assert note in drift.findings[0].note
    res = eks.sync(client, config(version=want), wait=NOW_WAIT)  # the Stubber fails on any Update call
    assert res.applied == []


@pytest.mark.parametrize(
    ("operation", "code", "message", "expected"),
    [
        (
            "describe_cluster",
            "ThrottlingException",
            "Rate exceeded",
            "eks:DescribeCluster prod (eu-west-1): ThrottlingException: Rate exceeded",
        ),
        (
            "describe_nodegroup",
            "AccessDeniedException",
            "User: arn:aws:iam::1:user/ci is not authorized to perform: eks:DescribeNodegroup",
            "eks:DescribeNodegroup prod/ng-1 (eu-west-1): AccessDeniedException: User: arn:aws:iam::1:user/ci "
            "is not authorized to perform: eks:DescribeNodegroup",
        ),
    ],
)
def test_aws_errors_name_the_call_and_resource(
    client: Any, stub: Stubber, operation: str, code: str, message: str, expected: str
) -> None:
    if operation != "describe_cluster":
        stub.add_response("describe_cluster", cluster(), {"name": "prod"})
    stub.add_client_error(operation, service_error_code=code, service_message=message, http_status_code=400)
    with pytest.raises(AwsError) as e:
        eks.check(client, config(version=None, nodegroups=[NodeGroup("ng-1")]))
    assert str(e.value) == expected
