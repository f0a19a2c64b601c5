"""Compare an eksctl ClusterConfig with what the EKS API describes: field-level findings.

Pure functions over the describe responses, so every rule (autoscaler, one minor up,
replacement-only fields) is decided in one place and tested without AWS.  Each finding
says what sync would do with it; each correctable group of findings carries the one API
call that fixes it, so "what diff shows" and "what sync sends" cannot disagree.

Rules that are deliberate:

* A field absent from the ClusterConfig is not compared (eksctl, too, leaves it alone).
* ``desiredCapacity`` is compared only when cluster-autoscaler does not own the node
  group, i.e. neither its tags in the ClusterConfig nor the live node group's tags carry
  ``k8s.io/cluster-autoscaler/enabled: "true"`` (the tag the autoscaler's auto-discovery
  uses, so config and autoscaler agree by construction; the live tag counts too, since an
  autoscaler may have been set up by hand on a group the file does not tag).
  When min/max change under an autoscaler, ``desiredSize`` is sent only if the live value
  falls outside the new bounds (EKS rejects that), and then clamped to them.
* instanceType(s), amiFamily, volumeSize and subnets cannot change in place: they are
  ``replace-required`` and never sent.  When they live in a launch template (the node
  group describes them as empty), they are not compared.
* Labels eksctl adds itself (``alpha.eksctl.io/*``) are not drift.
* Kubernetes version: one minor up is an update; a downgrade or a bigger jump is reported.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import yaml

from reconciler.aws.clusterconfig import AUTOSCALER_TAG, LOG_TYPES, Addon, ClusterConfig, NodeGroup, minor_version


class FindingAction(StrEnum):
    """What ``reconciler eks sync`` does with a finding (the words ``eks diff`` prints)."""

    UPDATE = "update"  # one Update* call corrects it
    REPLACE = "replace-required"  # cannot change in place: never sent
    CREATE = "create"  # CreateAddon
    UNSUPPORTED = "unsupported"  # reported only (a downgrade, a missing node group ...)


UPDATE, REPLACE, CREATE, UNSUPPORTED = tuple(FindingAction)
CORRECTABLE = frozenset({UPDATE, CREATE})
EKSCTL_LABEL_PREFIX = "alpha.eksctl.io/"
AMI_PREFIX = {"AmazonLinux2": "AL2_", "AmazonLinux2023": "AL2023_", "Bottlerocket": "BOTTLEROCKET_"}
# PRESERVE keeps in-cluster edits of the addon's objects (which a GitSync may own) when
# EKS updates it; CreateAddon accepts only NONE or OVERWRITE, and NONE fails loudly on a
# conflict rather than overwriting a self-managed install.
DEFAULT_UPDATE_CONFLICTS = "PRESERVE"
DEFAULT_CREATE_CONFLICTS = "NONE"


@dataclass(frozen=True)
class Finding:
    resource: str  # cluster/prod, nodegroup/ng-1, addon/vpc-cni
    field: str  # the EKS API's field path, e.g. scalingConfig.maxSize
    desired: Any
    live: Any
    action: FindingAction
    note: str = ""

    @property
    def kind(self) -> str:
        return self.resource.partition("/")[0]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Change:
    """One API call that corrects ``findings`` (``params`` are its keyword arguments)."""

    call: str
    resource: str
    params: dict[str, Any]
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class EksLive:
    """The describe responses (the inner ``cluster``/``nodegroup``/``addon`` objects); None: absent."""

    cluster: dict[str, Any]
    nodegroups: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    addons: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    latest_addon_versions: dict[str, str] = field(default_factory=dict)  # for addons configured as "latest"


@dataclass
class EksDrift:
    cluster: str
    region: str
    findings: list[Finding] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    @property
    def uncorrectable(self) -> list[Finding]:
        return [f for f in self.findings if f.action not in CORRECTABLE]

    def counts_by_kind(self) -> dict[str, int]:
        out = dict.fromkeys(("cluster", "nodegroup", "addon"), 0)
        for f in self.findings:
            out[f.kind] = out.get(f.kind, 0) + 1
        return out


def compare(cfg: ClusterConfig, live: EksLive) -> EksDrift:
    drift = EksDrift(cfg.name, cfg.region)
    for found, change in (
        _logging(cfg, live.cluster),
        _version(cfg, live.cluster),
        *(_nodegroup(cfg.name, ng, live.nodegroups.get(ng.name)) for ng in cfg.nodegroups),
        *(
            _addon(cfg.name, a, live=live.addons.get(a.name), latest=live.latest_addon_versions.get(a.name))
            for a in cfg.addons
        ),
    ):
        drift.findings.extend(found)
        if change is not None:
            drift.changes.append(change)
    return drift


_Result = tuple[list[Finding], Change | None]


def _change(call: str, resource: str, *, params: dict[str, Any], found: list[Finding]) -> Change | None:
    fixes = tuple(f for f in found if f.action in CORRECTABLE)
    return Change(call, resource, params, fixes) if fixes else None


def enabled_log_types(cluster: dict[str, Any]) -> frozenset[str]:
    out: set[str] = set()
    for entry in (cluster.get("logging") or {}).get("clusterLogging") or []:
        if entry.get("enabled"):
            out.update(entry.get("types") or [])
    return frozenset(out)


def _logging(cfg: ClusterConfig, cluster: dict[str, Any]) -> _Result:
    if cfg.logging is None:
        return [], None
    live = enabled_log_types(cluster)
    if live == cfg.logging:
        return [], None
    res = f"cluster/{cfg.name}"
    found = [Finding(res, "logging.clusterLogging.enabledTypes", sorted(cfg.logging), sorted(live), UPDATE)]
    # The whole state, not a delta: every type is listed as enabled or disabled.
    entries = [
        {"types": sorted(cfg.logging), "enabled": True},
        {"types": [t for t in LOG_TYPES if t not in cfg.logging], "enabled": False},
    ]
    params = {"name": cfg.name, "logging": {"clusterLogging": [e for e in entries if e["types"]]}}
    return found, _change("UpdateClusterConfig", res, params=params, found=found)


def _version(cfg: ClusterConfig, cluster: dict[str, Any]) -> _Result:
    want, have = minor_version(cfg.version or ""), minor_version(str(cluster.get("version") or ""))
    if want is None or have is None or want == have:
        return [], None
    res = f"cluster/{cfg.name}"
    if want[0] == have[0] and want[1] == have[1] + 1:
        found = [Finding(res, "version", cfg.version, cluster.get("version"), UPDATE, "one minor up")]
        params = {"name": cfg.name, "version": cfg.version}
        return found, _change("UpdateClusterVersion", res, params=params, found=found)
    why = (
        "EKS cannot downgrade a cluster"
        if want < have
        else "more than one minor up: upgrade one minor at a time (eksctl upgrade cluster)"
    )
    return [Finding(res, "version", cfg.version, cluster.get("version"), UNSUPPORTED, why)], None


def _nodegroup(cluster: str, ng: NodeGroup, live: dict[str, Any] | None) -> _Result:
    res = f"nodegroup/{ng.name}"
    if live is None:
        note = "create it with eksctl create nodegroup --config-file (never created by the reconciler)"
        return [Finding(res, "nodegroup", "present", "absent", UNSUPPORTED, note)], None
    found: list[Finding] = []
    params: dict[str, Any] = {"clusterName": cluster, "nodegroupName": ng.name}
    for part in (_scaling, _labels, _taints):
        part_found, part_params = part(res, ng, live)
        found.extend(part_found)
        params.update(part_params)
    for name, want in (("updateConfig", ng.update_config), ("nodeRepairConfig", ng.node_repair_config)):
        have = live.get(name) or {}
        diffs = [k for k in sorted(want or {}) if (want or {})[k] != have.get(k)]
        found.extend(Finding(res, f"{name}.{k}", (want or {})[k], have.get(k), UPDATE) for k in diffs)
        if diffs:
            params[name] = want
    found.extend(_replacements(res, ng, live))
    return found, _change("UpdateNodegroupConfig", res, params=params, found=found)


# A part of a node group's comparison: its findings and the UpdateNodegroupConfig arguments that fix them.
_Part = tuple[list[Finding], dict[str, Any]]


def _scaling(res: str, ng: NodeGroup, live: dict[str, Any]) -> _Part:
    found: list[Finding] = []
    params: dict[str, Any] = {}
    have = live.get("scalingConfig") or {}
    lo = ng.min_size if ng.min_size is not None else have.get("minSize")
    hi = ng.max_size if ng.max_size is not None else have.get("maxSize")
    for key, want in (("minSize", ng.min_size), ("maxSize", ng.max_size)):
        if want is not None and want != have.get(key):
            found.append(Finding(res, f"scalingConfig.{key}", want, have.get(key), UPDATE))
    desired = have.get("desiredSize")
    new_desired = None
    if ng.desired_capacity is not None and not _autoscaled(ng, live) and ng.desired_capacity != desired:
        found.append(Finding(res, "scalingConfig.desiredSize", ng.desired_capacity, desired, UPDATE))
        new_desired = ng.desired_capacity
    elif isinstance(desired, int) and isinstance(lo, int) and isinstance(hi, int) and not lo <= desired <= hi:
        new_desired = min(max(desired, lo), hi)  # only what EKS requires to accept the new bounds
    if any(f.field.startswith("scalingConfig.") for f in found):
        params["scalingConfig"] = {"minSize": lo, "maxSize": hi}
        if new_desired is not None:
            params["scalingConfig"]["desiredSize"] = new_desired
    return found, params


def _autoscaled(ng: NodeGroup, live: dict[str, Any]) -> bool:
    """cluster-autoscaler owns desiredSize when the file OR the running node group says so.

    The live tag is what the autoscaler really discovers groups by: resetting desiredSize
    under it would fight a running autoscaler whatever the file says.
    """
    return ng.autoscaled or str((live.get("tags") or {}).get(AUTOSCALER_TAG, "")).lower() == "true"


def _labels(res: str, ng: NodeGroup, live: dict[str, Any]) -> _Part:
    if ng.labels is None:
        return [], {}
    have = {k: v for k, v in (live.get("labels") or {}).items() if not k.startswith(EKSCTL_LABEL_PREFIX)}
    add = {k: v for k, v in ng.labels.items() if have.get(k) != v}
    remove = sorted(k for k in have if k not in ng.labels)
    found = [Finding(res, f"labels.{k}", v, have.get(k), UPDATE) for k, v in sorted(add.items())]
    found.extend(Finding(res, f"labels.{k}", None, have[k], UPDATE, "remove") for k in remove)
    if not (add or remove):
        return found, {}
    return found, {"labels": {k: v for k, v in (("addOrUpdateLabels", add), ("removeLabels", remove)) if v}}


def _taints(res: str, ng: NodeGroup, live: dict[str, Any]) -> _Part:
    if ng.taints is None:
        return [], {}
    want = {(t.key, t.effect): {"key": t.key, "value": t.value, "effect": t.effect} for t in ng.taints}
    have = {(t["key"], t.get("effect")): {**t, "value": t.get("value") or ""} for t in live.get("taints") or []}
    if want == have:
        return [], {}
    found = [Finding(res, "taints", _sorted(want.values()), _sorted(have.values()), UPDATE)]
    add = [t for k, t in want.items() if have.get(k) != t]
    remove = [t for k, t in have.items() if k not in want]
    return found, {"taints": {k: v for k, v in (("addOrUpdateTaints", add), ("removeTaints", remove)) if v}}


def _sorted(taints: Any) -> list[dict[str, str]]:
    return sorted(taints, key=lambda t: (t["key"], t["effect"]))


def _replacements(res: str, ng: NodeGroup, live: dict[str, Any]) -> list[Finding]:
    note = "cannot change in place: create a new node group with eksctl and drain the old one"
    out = []
    have_types = live.get("instanceTypes")
    if ng.instance_types and have_types and sorted(ng.instance_types) != sorted(have_types):
        out.append(Finding(res, "instanceTypes", ng.instance_types, have_types, REPLACE, note))
    ami, prefix = live.get("amiType"), AMI_PREFIX.get(ng.ami_family or "")
    if prefix and ami and ami != "CUSTOM" and not str(ami).startswith(prefix):
        out.append(Finding(res, "amiType", f"{prefix}* ({ng.ami_family})", ami, REPLACE, note))
    if ng.volume_size is not None and live.get("diskSize") is not None and ng.volume_size != live["diskSize"]:
        out.append(Finding(res, "diskSize", ng.volume_size, live["diskSize"], REPLACE, note))
    if ng.subnets and all(s.startswith("subnet-") for s in ng.subnets):
        have_subnets = sorted(live.get("subnets") or [])
        if sorted(ng.subnets) != have_subnets:
            out.append(Finding(res, "subnets", sorted(ng.subnets), have_subnets, REPLACE, note))
    return out


def addon_version_key(version: str) -> tuple[int, ...]:
    """``v1.19.0-eksbuild.2`` -> (1, 19, 0, 2): orders EKS addon versions."""
    return tuple(int(n) for n in re.findall(r"\d+", version))


def _config_value(text: str | None) -> Any:
    """configurationValues are JSON or YAML text: compare what they mean, not how they are spelled."""
    if not text:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _addon(cluster: str, a: Addon, *, live: dict[str, Any] | None, latest: str | None) -> _Result:
    res = f"addon/{a.name}"
    want_version = latest if a.version == "latest" else a.version
    if live is None:
        params: dict[str, Any] = {"clusterName": cluster, "addonName": a.name}
        conflicts = a.resolve_conflicts if a.resolve_conflicts in ("NONE", "OVERWRITE") else None
        params["resolveConflicts"] = conflicts or DEFAULT_CREATE_CONFLICTS
        for key, value in (
            ("addonVersion", want_version),
            ("configurationValues", a.configuration_values),
            ("serviceAccountRoleArn", a.service_account_role_arn),
        ):
            if value:
                params[key] = value
        found = [Finding(res, "addon", want_version or "default version", "absent", CREATE)]
        return found, _change("CreateAddon", res, params=params, found=found)
    found = []
    params = {
        "clusterName": cluster,
        "addonName": a.name,
        "resolveConflicts": a.resolve_conflicts or DEFAULT_UPDATE_CONFLICTS,
    }
    have_version = str(live.get("addonVersion") or "")
    if want_version and want_version != have_version:
        if addon_version_key(want_version) < addon_version_key(have_version):
            found.append(
                Finding(res, "addonVersion", want_version, have_version, UNSUPPORTED, "EKS cannot downgrade an add-on")
            )
        else:
            found.append(Finding(res, "addonVersion", want_version, have_version, UPDATE))
            params["addonVersion"] = want_version
    if a.configuration_values is not None:
        have_cfg = live.get("configurationValues") or None
        if _config_value(a.configuration_values) != _config_value(have_cfg):
            shown = json.dumps(_config_value(a.configuration_values), sort_keys=True)
            found.append(
                Finding(
                    res,
                    "configurationValues",
                    shown,
                    have_cfg and json.dumps(_config_value(have_cfg), sort_keys=True),
                    UPDATE,
                )
            )
            params["configurationValues"] = a.configuration_values
    if a.service_account_role_arn and a.service_account_role_arn != live.get("serviceAccountRoleArn"):
        found.append(
            Finding(res, "serviceAccountRoleArn", a.service_account_role_arn, live.get("serviceAccountRoleArn"), UPDATE)
        )
        params["serviceAccountRoleArn"] = a.service_account_role_arn
    return found, _change("UpdateAddon", res, params=params, found=found)
