"""EKS drift against a moto server on loopback, through the real CLI and the real cluster.yaml.

moto serves clusters, node groups, UpdateNodegroupConfig and UpdateClusterConfig; it has no
addon API, so ListAddons/DescribeAddon are answered by a botocore ``before-call`` hook
(the mechanism botocore's Stubber uses) with the three addons cluster.yaml lists, as
present.  The same hook records every EKS operation the CLI sends, which is how "no call
is made for a replace-required field" is proven.  Addon updates, DescribeUpdate polling and
UpdateClusterVersion are covered with Stubber in tests/unit/test_eks_stubbed.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import awsserver
import boto3
import pytest
from botocore.awsrequest import AWSResponse
from click.testing import CliRunner

from reconciler import cli

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "manifests" / "cluster" / "cluster.yaml")
CLUSTER = "prod"
VARS = ["--config", CONFIG, "--substitute", f"CLUSTER_NAME={CLUSTER}", "--substitute", f"AWS_REGION={awsserver.REGION}"]
ADDON_CALLS = {"ListAddons", "DescribeAddon"}
MUTATING = ("Update", "Create", "Delete", "Tag", "Untag")
ALL_LOGS = ["api", "audit", "authenticator", "controllerManager", "scheduler"]


class EksCalls:
    """Every EKS operation sent through boto3's default session, by name."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, model: Any, params: dict[str, Any], **kw: Any) -> Any:
        self.names.append(model.name)
        if model.name not in ADDON_CALLS:
            return None  # on to moto
        ok = AWSResponse(url="", status_code=200, headers={}, raw=None)
        if model.name == "ListAddons":
            return ok, {"addons": ["vpc-cni", "coredns", "kube-proxy"]}
        name = params["url_path"].rstrip("/").split("/")[-1]
        return ok, {"addon": {"addonName": name, "clusterName": CLUSTER, "status": "ACTIVE", "addonVersion": "v1.0.0"}}

    def mutating(self) -> list[str]:
        return [n for n in self.names if n.startswith(MUTATING)]


@pytest.fixture
def calls(aws: awsserver.MotoServer, monkeypatch: pytest.MonkeyPatch) -> EksCalls:
    monkeypatch.setenv("AWS_ENDPOINT_URL_EKS", aws.endpoint)  # botocore's own setting, no flag of ours
    session = boto3.session.Session()
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    recorder = EksCalls()
    session.events.register("before-call.eks", recorder)
    return recorder


def make_cluster(aws: awsserver.MotoServer, *, logs: list[str], **nodegroup: Any) -> Any:
    # a session of its own: the setup is not the CLI's traffic the recorder counts
    eks = boto3.session.Session().client("eks", endpoint_url=aws.endpoint, region_name=awsserver.REGION)
    eks.create_cluster(
        name=CLUSTER,
        version="1.34",
        roleArn="arn:aws:iam::123456789012:role/eks-cluster",
        resourcesVpcConfig={"subnetIds": ["subnet-0a", "subnet-0b"]},
        logging={"clusterLogging": [{"types": logs, "enabled": True}]},
    )
    eks.create_nodegroup(
        clusterName=CLUSTER,
        nodegroupName="ng-1",
        nodeRole="arn:aws:iam::123456789012:role/eks-node",
        subnets=["subnet-0a", "subnet-0b"],
        diskSize=50,
        **nodegroup,
    )
    return eks


def run(*args: str) -> Any:
    return CliRunner().invoke(cli.cli, ["eks", *args, *VARS])


def found(output: str) -> set[tuple[str, str, str]]:
    return {(f["resource"], f["field"], f["action"]) for f in json.loads(output)["findings"]}


def test_diff_lists_exactly_the_differing_fields_and_sync_corrects_them(
    aws: awsserver.MotoServer, calls: EksCalls
) -> None:
    eks = make_cluster(
        aws,
        logs=["api"],
        instanceTypes=["m5.large"],
        scalingConfig={"minSize": 1, "maxSize": 3, "desiredSize": 1},
        labels={"role": "old", "team": "x", "alpha.eksctl.io/cluster-name": CLUSTER},
    )

    diff = run("diff", "-o", "json")
    assert diff.exit_code == 1, diff.output
    assert found(diff.stdout) == {
        ("cluster/prod", "logging.clusterLogging.enabledTypes", "update"),
        ("nodegroup/ng-1", "scalingConfig.minSize", "update"),
        ("nodegroup/ng-1", "scalingConfig.maxSize", "update"),
        ("nodegroup/ng-1", "labels.role", "update"),
        ("nodegroup/ng-1", "labels.team", "update"),
        ("nodegroup/ng-1", "updateConfig.maxUnavailable", "update"),
        ("nodegroup/ng-1", "nodeRepairConfig.enabled", "update"),
    }
    assert calls.mutating() == []

    sync = run("sync", "--poll-interval", "1")
    assert sync.exit_code == 0, sync.output
    assert calls.mutating() == ["UpdateClusterConfig", "UpdateNodegroupConfig"]

    cluster = eks.describe_cluster(name=CLUSTER)["cluster"]
    enabled = {t for e in cluster["logging"]["clusterLogging"] if e["enabled"] for t in e["types"]}
    assert enabled == set(ALL_LOGS)
    ng = eks.describe_nodegroup(clusterName=CLUSTER, nodegroupName="ng-1")["nodegroup"]
    # desiredCapacity belongs to cluster-autoscaler (cluster.yaml tags ng-1 for it): raised only
    # as far as the new minSize requires, never to the config's desiredCapacity of 3
    assert ng["scalingConfig"] == {"minSize": 2, "maxSize": 6, "desiredSize": 2}
    assert ng["labels"] == {"role": "worker", "alpha.eksctl.io/cluster-name": CLUSTER}
    assert ng["updateConfig"] == {"maxUnavailable": 1}
    assert ng["nodeRepairConfig"] == {"enabled": True}

    again = run("diff")
    assert again.exit_code == 0, again.output
    assert again.stdout == ""


def test_instance_type_needs_replacement_and_is_never_attempted(aws: awsserver.MotoServer, calls: EksCalls) -> None:
    eks = make_cluster(
        aws,
        logs=ALL_LOGS,
        instanceTypes=["t3.small"],
        scalingConfig={"minSize": 2, "maxSize": 6, "desiredSize": 4},
        labels={"role": "worker"},
    )
    eks.update_nodegroup_config(  # moto's CreateNodegroup ignores these two
        clusterName=CLUSTER,
        nodegroupName="ng-1",
        updateConfig={"maxUnavailable": 1},
        nodeRepairConfig={"enabled": True},
    )

    diff = run("diff")
    assert diff.exit_code == 1, diff.output
    lines = diff.stdout.splitlines()
    assert lines[0].split() == ["RESOURCE", "FIELD", "DESIRED", "LIVE", "ACTION", "NOTE"]
    assert len(lines) == 2
    assert lines[1].split()[:5] == ["nodegroup/ng-1", "instanceTypes", "m5.large", "t3.small", "replace-required"]

    sync = run("sync", "--poll-interval", "1", "-o", "json")
    assert sync.exit_code == 1, sync.output  # something is left that only eksctl can do
    report = json.loads(sync.stdout)
    assert report["applied"] == []
    assert found(json.dumps(report["remaining"])) == {("nodegroup/ng-1", "instanceTypes", "replace-required")}
    assert calls.mutating() == []
    assert set(calls.names) == {"DescribeCluster", "DescribeNodegroup", *ADDON_CALLS}
    ng = eks.describe_nodegroup(clusterName=CLUSTER, nodegroupName="ng-1")["nodegroup"]
    assert ng["instanceTypes"] == ["t3.small"]
    assert ng["scalingConfig"]["desiredSize"] == 4


def test_unknown_cluster_is_one_clear_line_and_exit_2(aws: awsserver.MotoServer) -> None:
    env = {**os.environ, **awsserver.AWS_ENV, "AWS_ENDPOINT_URL_EKS": aws.endpoint}
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", "eks", "diff", *VARS],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "reconciler eks diff: error: eks:DescribeCluster prod (eu-west-1): "
        "ResourceNotFoundException: No cluster found for name: prod."
    )
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        (
            "AccessDeniedException",
            403,
            "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: eks:DescribeNodegroup",
        ),
        ("ThrottlingException", 400, "Rate exceeded"),
    ],
)
def test_aws_errors_through_the_cli_are_one_line_and_exit_2(
    aws: awsserver.MotoServer, calls: EksCalls, code: str, status: int, message: str
) -> None:
    """The error is injected at botocore's before-call hook (as Stubber does) for the node group only:
    the cluster itself is read from moto."""
    make_cluster(
        aws, logs=ALL_LOGS, instanceTypes=["m5.large"], scalingConfig={"minSize": 2, "maxSize": 6, "desiredSize": 2}
    )

    def refuse(model: Any, **kw: Any) -> Any:
        error = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return AWSResponse(url="", status_code=status, headers={}, raw=None), error

    boto3.DEFAULT_SESSION.events.register("before-call.eks.DescribeNodegroup", refuse)  # type: ignore[union-attr]
    r = run("diff")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr == f"reconciler eks diff: error: eks:DescribeNodegroup prod/ng-1 (eu-west-1): {code}: {message}\n"
    assert "Traceback" not in r.output


def test_the_controller_reports_eks_drift_as_metric_and_events_on_its_pod(
    aws: awsserver.MotoServer, calls: EksCalls, kube: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reconciler run --eks-config`'s checker, with the real API server taking the Events."""
    from reconciler.aws import ekscheck, eksupdate
    from reconciler.kube.events import EventRecorder
    from reconciler.report.metrics import Metrics

    make_cluster(
        aws, logs=["api"], instanceTypes=["m5.large"], scalingConfig={"minSize": 2, "maxSize": 3, "desiredSize": 2}
    )
    monkeypatch.setenv("POD_NAME", "reconciler-0")
    monkeypatch.setenv("POD_NAMESPACE", namespace)
    metrics, events = Metrics(), EventRecorder(kube, "test")
    variables = {"CLUSTER_NAME": CLUSTER, "AWS_REGION": awsserver.REGION}

    def gauge(kind: str) -> float | None:
        return metrics.registry.get_sample_value("reconciler_eks_drift", {"cluster": CLUSTER, "kind": kind})

    def reasons() -> list[str]:
        items = kube.get(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")["items"]
        assert all(e["regarding"]["kind"] == "Pod" and e["regarding"]["name"] == "reconciler-0" for e in items)
        return sorted(e["reason"] for e in items)

    ekscheck.EksDriftChecker(ekscheck.EksOptions(Path(CONFIG), variables), metrics, events).check()
    assert (gauge("cluster"), gauge("nodegroup"), gauge("addon")) == (1, 4, 0)  # logging; max, labels.role, 2 configs
    assert calls.mutating() == []
    assert reasons() == ["DriftDetected"]

    opts = ekscheck.EksOptions(
        Path(CONFIG), variables, mode=ekscheck.EksDriftMode.CORRECT, wait=eksupdate.Wait(interval=0)
    )
    ekscheck.EksDriftChecker(opts, metrics, events).check()
    assert (gauge("cluster"), gauge("nodegroup"), gauge("addon")) == (0, 0, 0)
    assert calls.mutating() == ["UpdateClusterConfig", "UpdateNodegroupConfig"]
    assert "DriftCorrected" in reasons()


def test_a_failed_correction_still_reports_the_drift_it_found(
    aws: awsserver.MotoServer, calls: EksCalls, kube: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In correct mode the check finds drift, then UpdateNodegroupConfig is refused (injected at
    botocore's before-call hook, for that call only): the gauge must carry the drift found and
    DriftDetected must be emitted, or an alert on the gauge stays silent exactly when the
    cluster cannot be corrected.  No extra AWS call is spent to learn it."""
    from reconciler.aws import ekscheck, eksupdate
    from reconciler.kube.events import EventRecorder
    from reconciler.report.metrics import Metrics

    make_cluster(
        aws, logs=ALL_LOGS, instanceTypes=["m5.large"], scalingConfig={"minSize": 2, "maxSize": 3, "desiredSize": 2}
    )
    monkeypatch.setenv("POD_NAME", "reconciler-0")
    monkeypatch.setenv("POD_NAMESPACE", namespace)
    denied = "User: arn:aws:iam::123456789012:role/reconciler is not authorized to perform: eks:UpdateNodegroupConfig"

    def refuse(model: Any, **kw: Any) -> Any:
        error = {
            "Error": {"Code": "AccessDeniedException", "Message": denied},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        }
        return AWSResponse(url="", status_code=403, headers={}, raw=None), error

    boto3.DEFAULT_SESSION.events.register("before-call.eks.UpdateNodegroupConfig", refuse)  # type: ignore[union-attr]
    metrics, events = Metrics(), EventRecorder(kube, "test")
    variables = {"CLUSTER_NAME": CLUSTER, "AWS_REGION": awsserver.REGION}
    opts = ekscheck.EksOptions(
        Path(CONFIG), variables, mode=ekscheck.EksDriftMode.CORRECT, wait=eksupdate.Wait(interval=0)
    )
    ekscheck.EksDriftChecker(opts, metrics, events).check()

    def gauge(kind: str) -> float | None:
        return metrics.registry.get_sample_value("reconciler_eks_drift", {"cluster": CLUSTER, "kind": kind})

    assert (gauge("cluster"), gauge("nodegroup"), gauge("addon")) == (0, 4, 0)  # max, labels.role, 2 configs
    # (the refusing hook, more specific, answers UpdateNodegroupConfig before the recorder sees it)
    assert calls.names.count("DescribeNodegroup") == 1, "no second look was spent"
    items = kube.get(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")["items"]
    notes = {e["reason"]: e["note"] for e in items}
    assert sorted(notes) == ["DriftDetected", "SyncFailed"]
    assert notes["DriftDetected"].startswith(f"EKS {CLUSTER} ({awsserver.REGION}): 4 difference(s) from {CONFIG}: ")
    assert notes["SyncFailed"] == (
        f"EKS drift check (correct): eks:UpdateNodegroupConfig {CLUSTER}/ng-1 ({awsserver.REGION}): "
        f"AccessDeniedException: {denied} (0 of 1 corrections done before this one)"
    )


@pytest.mark.parametrize(
    ("live_tags", "findings"),
    [({"k8s.io/cluster-autoscaler/enabled": "true"}, []), ({}, ["scalingConfig.desiredSize"])],
)
def test_a_live_autoscaler_tag_protects_desired_size_even_when_the_file_lacks_it(
    aws: awsserver.MotoServer, calls: EksCalls, tmp_path: Path, live_tags: dict[str, str], findings: list[str]
) -> None:
    """cluster.yaml without its autoscaler tag, and a node group in moto whose own tags say an
    autoscaler owns it (the autoscaler has scaled it to 5): nothing to correct.  The untagged
    case proves the copy really lacks the tag."""
    text = Path(CONFIG).read_text()
    untagged = tmp_path / "cluster.yaml"
    untagged.write_text(text.replace('k8s.io/cluster-autoscaler/enabled: "true"\n', ""))
    assert untagged.read_text() != text
    eks = make_cluster(
        aws,
        logs=ALL_LOGS,
        instanceTypes=["m5.large"],
        scalingConfig={"minSize": 2, "maxSize": 6, "desiredSize": 5},
        labels={"role": "worker"},
        tags=live_tags,
    )
    eks.update_nodegroup_config(  # moto's CreateNodegroup ignores these two
        clusterName=CLUSTER,
        nodegroupName="ng-1",
        updateConfig={"maxUnavailable": 1},
        nodeRepairConfig={"enabled": True},
    )
    args = ["eks", "diff", "-o", "json", "--config", str(untagged), *VARS[2:]]
    diff = CliRunner().invoke(cli.cli, args)
    assert [f["field"] for f in json.loads(diff.stdout)["findings"]] == findings, diff.output
