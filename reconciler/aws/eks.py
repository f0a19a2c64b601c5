"""EKS drift: read the live cluster, compare it with the ClusterConfig, correct what may be.

``check`` only reads (DescribeCluster, DescribeNodegroup, ListAddons, DescribeAddon and,
for ``version: latest`` addons, DescribeAddonVersions).  ``sync`` sends the calls that
``eksdiff`` planned, one at a time (EKS refuses concurrent updates of one cluster), follows
each to completion, then describes everything again: the second look, not the update's
status, decides whether the cluster now matches.

The endpoint comes from botocore's own configuration (``AWS_ENDPOINT_URL_EKS`` or
``AWS_ENDPOINT_URL``), so tests and private endpoints need no flag of ours.  Throttling is
retried by botocore's ``standard`` retry mode before it becomes an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import botocore
from botocore import exceptions as bce
from botocore.config import Config

from reconciler.aws import eksupdate
from reconciler.aws.clusterconfig import ClusterConfig
from reconciler.aws.eksdiff import CORRECTABLE, Change, EksDrift, EksLive, addon_version_key, compare
from reconciler.aws.errors import AwsError, describe_aws_error

if TYPE_CHECKING:
    from mypy_boto3_eks import EKSClient

log = logging.getLogger("reconciler.aws.eks")
RETRIES = Config(retries={"mode": "standard", "max_attempts": 6}, user_agent_extra="gitops-reconciler")


def client(region: str) -> EKSClient:
    """An EKS client for ``region`` from the default credential chain (env, IRSA, profile, IMDS)."""
    return boto3.client("eks", region_name=region, config=RETRIES)


def _name(cluster: str, resource: str) -> str:
    """``nodegroup/ng-1`` of ``prod`` -> ``prod/ng-1`` (the cluster itself -> ``prod``)."""
    kind, _, name = resource.partition("/")
    return cluster if kind == "cluster" else f"{cluster}/{name}"


class _Api:
    """Calls that turn every botocore failure into one AwsError line naming call and resource."""

    def __init__(self, eks: EKSClient, region: str) -> None:
        self.eks, self.region = eks, region

    def call(self, operation: str, resource: str, **params: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = getattr(self.eks, botocore.xform_name(operation))(**params)
        except (bce.ClientError, bce.BotoCoreError) as e:
            raise AwsError(describe_aws_error(f"eks:{operation}", resource, exc=e, region=self.region)) from e
        return response

    def pages(self, operation: str, resource: str, key: str, **params: Any) -> list[Any]:
        out: list[Any] = []
        try:
            for page in self.eks.get_paginator(botocore.xform_name(operation)).paginate(**params):  # type: ignore[call-overload]
                out.extend(page.get(key) or [])
        except (bce.ClientError, bce.BotoCoreError) as e:
            raise AwsError(describe_aws_error(f"eks:{operation}", resource, exc=e, region=self.region)) from e
        return out

    def optional(self, operation: str, resource: str, key: str, **params: Any) -> dict[str, Any] | None:
        """The described object, or None when AWS says it does not exist."""
        try:
            found: dict[str, Any] = self.call(operation, resource, **params)[key]
        except AwsError as e:
            cause = e.__cause__
            if (
                isinstance(cause, bce.ClientError)
                and cause.response["Error"].get("Code") == "ResourceNotFoundException"
            ):
                return None
            raise
        return found


def read(eks: EKSClient, cfg: ClusterConfig) -> EksLive:
    api = _Api(eks, cfg.region)
    cluster = api.call("DescribeCluster", cfg.name, name=cfg.name)["cluster"]
    nodegroups = {
        ng.name: api.optional(
            "DescribeNodegroup", f"{cfg.name}/{ng.name}", "nodegroup", clusterName=cfg.name, nodegroupName=ng.name
        )
        for ng in cfg.nodegroups
    }
    addons: dict[str, dict[str, Any] | None] = {}
    latest: dict[str, str] = {}
    if cfg.addons:
        present = set(api.pages("ListAddons", cfg.name, "addons", clusterName=cfg.name))
        for a in cfg.addons:
            res = f"{cfg.name}/{a.name}"
            addons[a.name] = (
                api.optional("DescribeAddon", res, "addon", clusterName=cfg.name, addonName=a.name)
                if a.name in present
                else None
            )
            if a.version == "latest":
                latest[a.name] = _latest(api, res, addon=a.name, k8s_version=str(cluster.get("version") or ""))
    return EksLive(cluster=cluster, nodegroups=nodegroups, addons=addons, latest_addon_versions=latest)


def _latest(api: _Api, resource: str, *, addon: str, k8s_version: str) -> str:
    found = api.pages("DescribeAddonVersions", resource, "addons", addonName=addon, kubernetesVersion=k8s_version)
    versions = [str(v["addonVersion"]) for a in found for v in a.get("addonVersions") or []]
    if not versions:
        raise AwsError(f"eks:DescribeAddonVersions {resource} ({api.region}): no version for Kubernetes {k8s_version}")
    return max(versions, key=addon_version_key)


def check(eks: EKSClient, cfg: ClusterConfig) -> EksDrift:
    return compare(cfg, read(eks, cfg))


@dataclass
class Applied:
    change: Change
    status: str


@dataclass
class EksSyncResult:
    before: EksDrift
    after: EksDrift
    applied: list[Applied] = field(default_factory=list)


class SyncError(AwsError):
    """A correction failed, or left a difference; carries what was found and done so far.

    The drift the check before the corrections found is real whether or not they then
    succeed: the controller's checker still reports it (gauge, DriftDetected), or an alert
    on the gauge would stay silent exactly when the cluster cannot be corrected.
    """

    def __init__(self, message: str, result: EksSyncResult) -> None:
        super().__init__(message)
        self.result = result


def apply(eks: EKSClient, cfg: ClusterConfig, *, change: Change, wait: eksupdate.Wait) -> str:
    """Send one planned call and follow it to completion; the final status, or AwsError."""
    api = _Api(eks, cfg.region)
    resource = _name(cfg.name, change.resource)
    response = api.call(change.call, resource, **change.params)
    if change.call == "CreateAddon":
        try:
            eks.get_waiter("addon_active").wait(
                clusterName=cfg.name, addonName=change.params["addonName"], WaiterConfig=wait.config()
            )
        except bce.WaiterError as e:
            raise AwsError(f"eks:DescribeAddon {resource} ({cfg.region}): not ACTIVE after creation: {e}") from e
        return "ACTIVE"
    describe = {"name": cfg.name}
    kind, _, name = change.resource.partition("/")
    if kind == "nodegroup":
        describe["nodegroupName"] = name
    elif kind == "addon":
        describe["addonName"] = name
    return eksupdate.follow(
        eks, response.get("update"), describe=describe, resource=resource, region=cfg.region, wait=wait
    )


def sync(
    eks: EKSClient,
    cfg: ClusterConfig,
    *,
    wait: eksupdate.Wait,
    on_applied: Callable[[Applied], None] | None = None,
) -> EksSyncResult:
    """Correct what can be corrected, one call at a time.

    A failed check raises AwsError; a failed or incomplete correction raises SyncError,
    whose message says how far it got and whose ``result`` holds the drift found before.
    """
    before = check(eks, cfg)
    result = EksSyncResult(before=before, after=before)
    for i, change in enumerate(before.changes):
        try:
            status = apply(eks, cfg, change=change, wait=wait)
        except AwsError as e:
            raise SyncError(f"{e} ({i} of {len(before.changes)} corrections done before this one)", result) from e
        result.applied.append(Applied(change, status))
        if on_applied:
            on_applied(result.applied[-1])
    if result.applied:
        result.after = check(eks, cfg)
        left = [f for f in result.after.findings if f.action in CORRECTABLE]
        if left:
            what = ", ".join(f"{f.resource} {f.field}" for f in left)
            raise SyncError(
                f"EKS {cfg.name} ({cfg.region}): still differs after every update succeeded: {what}", result
            )
    return result
