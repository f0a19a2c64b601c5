"""The ClusterConfig reader and the comparison rules, as pure functions over describe output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.aws import clusterconfig, eksdiff
from reconciler.aws.clusterconfig import ClusterConfigError, NodeGroup, Taint
from reconciler.render import document
from reconciler.render.errors import ManifestError

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = ROOT / "manifests" / "cluster" / "cluster.yaml"


def test_the_real_cluster_yaml_parses_with_its_variables() -> None:
    cfg = clusterconfig.parse(
        document.load(CLUSTER_YAML, {"CLUSTER_NAME": "prod", "AWS_REGION": "eu-west-1"}), "c.yaml"
    )
    assert (cfg.name, cfg.region, cfg.version) == ("prod", "eu-west-1", "1.34")
    assert cfg.logging == frozenset(clusterconfig.LOG_TYPES)
    [ng] = cfg.nodegroups
    assert (ng.name, ng.min_size, ng.max_size, ng.desired_capacity, ng.autoscaled) == ("ng-1", 2, 6, 3, True)
    assert ng.instance_types == ["m5.large"]
    assert [a.name for a in cfg.addons] == ["vpc-cni", "coredns", "kube-proxy"]


def test_an_undefined_variable_names_file_and_field() -> None:
    with pytest.raises(ManifestError) as e:
        document.load(CLUSTER_YAML, {"CLUSTER_NAME": "prod"})
    assert str(e.value).startswith(f"{CLUSTER_YAML}: variable ${{AWS_REGION}} is not defined")
    assert "(field metadata.region)" in str(e.value)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"managedNodeGroups": [{"name": "ng", "minSize": "two"}]},
            "c.yaml: managedNodeGroups[0].minSize: must be a non-negative integer, got 'two'",
        ),
        (
            {"cloudWatch": {"clusterLogging": {"enableTypes": ["api", "kubelet"]}}},
            "c.yaml: cloudWatch.clusterLogging.enableTypes[1]: 'kubelet' is not one of",
        ),
        (
            {"managedNodeGroups": [{"name": "ng", "taints": [{"key": "k", "effect": "NO_SCHEDULE"}]}]},
            "c.yaml: managedNodeGroups[0].taints[0].effect: 'NO_SCHEDULE' is not one of NoSchedule",
        ),
        (
            {"addons": [{"name": "vpc-cni", "configurationValues": {"env": {}}}]},
            "c.yaml: addons[0].configurationValues: must be a string",
        ),
        (
            {"metadata": {"name": "prod", "region": "eu-west-1", "version": "1.34.2"}},
            "c.yaml: metadata.version: '1.34.2' is not a Kubernetes minor",
        ),
        ({"kind": "Cluster"}, "c.yaml: not an eksctl ClusterConfig"),
    ],
)
def test_invalid_fields_are_named(patch: dict[str, Any], message: str) -> None:
    doc = {
        "apiVersion": "eksctl.io/v1alpha5",
        "kind": "ClusterConfig",
        "metadata": {"name": "prod", "region": "eu-west-1"},
    }
    with pytest.raises(ClusterConfigError) as e:
        clusterconfig.parse({**doc, **patch}, "c.yaml")
    assert str(e.value).startswith(message)


def nodegroup_drift(ng: NodeGroup, live: dict[str, Any] | None) -> eksdiff.EksDrift:
    cfg = clusterconfig.ClusterConfig(file="c.yaml", name="prod", region="eu-west-1", nodegroups=[ng])
    return eksdiff.compare(cfg, eksdiff.EksLive(cluster={"version": "1.34"}, nodegroups={ng.name: live}))


def test_desired_size_is_left_to_cluster_autoscaler() -> None:
    ng = NodeGroup("ng-1", min_size=2, max_size=6, desired_capacity=3, autoscaled=True)
    drift = nodegroup_drift(ng, {"scalingConfig": {"minSize": 2, "maxSize": 6, "desiredSize": 5}})
    assert drift.findings == []


@pytest.mark.parametrize("value", ["true", "True"])
def test_a_live_autoscaler_tag_alone_also_leaves_desired_size_alone(value: str) -> None:
    """The file does not tag the group, but the running node group does: an autoscaler finds
    it by that tag, so resetting desiredSize would fight it."""
    ng = NodeGroup("ng-1", min_size=2, max_size=6, desired_capacity=3, autoscaled=False)
    live = {
        "scalingConfig": {"minSize": 2, "maxSize": 6, "desiredSize": 5},
        "tags": {"k8s.io/cluster-autoscaler/enabled": value, "team": "x"},
    }
    assert nodegroup_drift(ng, live).findings == []


def test_without_autoscaler_desired_size_is_compared() -> None:
    ng = NodeGroup("ng-1", min_size=2, max_size=6, desired_capacity=3, autoscaled=False)
    live = {
        "scalingConfig": {"minSize": 2, "maxSize": 6, "desiredSize": 5},
        "tags": {"k8s.io/cluster-autoscaler/enabled": "false"},
    }
    drift = nodegroup_drift(ng, live)
    assert [(f.field, f.desired, f.live) for f in drift.findings] == [("scalingConfig.desiredSize", 3, 5)]
    assert drift.changes[0].params["scalingConfig"] == {"minSize": 2, "maxSize": 6, "desiredSize": 3}


@pytest.mark.parametrize(("live_desired", "sent"), [(8, 6), (4, None)])
def test_new_bounds_move_an_autoscaled_desired_size_only_as_far_as_eks_requires(
    live_desired: int, sent: int | None
) -> None:
    ng = NodeGroup("ng-1", min_size=2, max_size=6, desired_capacity=3, autoscaled=True)
    drift = nodegroup_drift(ng, {"scalingConfig": {"minSize": 2, "maxSize": 10, "desiredSize": live_desired}})
    assert [f.field for f in drift.findings] == ["scalingConfig.maxSize"]
    assert drift.changes[0].params["scalingConfig"].get("desiredSize") == sent


def test_taints_are_added_and_removed_by_key_and_effect() -> None:
    ng = NodeGroup("ng-1", taints=[Taint("dedicated", "gpu", "NO_SCHEDULE")])
    live = {
        "taints": [
            {"key": "dedicated", "value": "cpu", "effect": "NO_SCHEDULE"},
            {"key": "old", "effect": "NO_EXECUTE"},
        ]
    }
    drift = nodegroup_drift(ng, live)
    assert [f.field for f in drift.findings] == ["taints"]
    assert drift.changes[0].params["taints"] == {
        "addOrUpdateTaints": [{"key": "dedicated", "value": "gpu", "effect": "NO_SCHEDULE"}],
        "removeTaints": [{"key": "old", "value": "", "effect": "NO_EXECUTE"}],
    }


def test_replacement_fields_are_never_part_of_a_call() -> None:
    ng = NodeGroup(
        "ng-1", instance_types=["m5.large"], ami_family="AmazonLinux2023", volume_size=50, subnets=["subnet-a"]
    )
    live = {"instanceTypes": ["t3.small"], "amiType": "AL2_x86_64", "diskSize": 20, "subnets": ["subnet-b"]}
    drift = nodegroup_drift(ng, live)
    assert {(f.field, f.action) for f in drift.findings} == {
        ("instanceTypes", "replace-required"),
        ("amiType", "replace-required"),
        ("diskSize", "replace-required"),
        ("subnets", "replace-required"),
    }
    assert drift.changes == []


def test_launch_template_fields_are_not_compared() -> None:
    """eksctl puts instance type and volume into a launch template: the node group then describes them as empty."""
    ng = NodeGroup("ng-1", instance_types=["m5.large"], volume_size=50)
    assert nodegroup_drift(ng, {"launchTemplate": {"id": "lt-1"}}).findings == []


def test_a_missing_node_group_is_reported_never_created() -> None:
    drift = nodegroup_drift(NodeGroup("ng-2"), None)
    assert [(f.resource, f.action) for f in drift.findings] == [("nodegroup/ng-2", "unsupported")]
    assert "eksctl create nodegroup" in drift.findings[0].note
    assert drift.changes == []
