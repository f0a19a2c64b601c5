"""The eksctl ClusterConfig, read for drift: only the fields the EKS API can be compared with.

The file is loaded (and ``${VAR}``-substituted) by the caller with the render package's
guarded YAML loader; this module validates the structure and says which file and field
is wrong, so a typo in ``cluster.yaml`` fails ``reconciler eks diff`` with a pointer rather
than silently comparing nothing.  Unknown fields are ignored on purpose: eksctl has many
(iam, vpc, ssh ...) that create-time tools use and that drift detection does not read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "eksctl.io/v1alpha5"
LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
TAINT_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE", "PreferNoSchedule": "PREFER_NO_SCHEDULE"}
AUTOSCALER_TAG = "k8s.io/cluster-autoscaler/enabled"
RESOLVE_CONFLICTS = {"none": "NONE", "overwrite": "OVERWRITE", "preserve": "PRESERVE"}


class ClusterConfigError(ValueError):
    """``<file>: <field>: <why>``."""

    def __init__(self, file: str, path: str, why: str) -> None:
        self.file, self.path, self.why = file, path, why
        super().__init__(f"{file}: {path}: {why}" if path else f"{file}: {why}")


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str  # the EKS API spelling: NO_SCHEDULE, NO_EXECUTE, PREFER_NO_SCHEDULE


@dataclass(frozen=True)
class NodeGroup:
    name: str
    min_size: int | None = None
    max_size: int | None = None
    desired_capacity: int | None = None
    # cluster-autoscaler owns desiredSize when the node group carries its discovery tag
    autoscaled: bool = False
    labels: dict[str, str] | None = None
    taints: list[Taint] | None = None
    update_config: dict[str, int] | None = None
    node_repair_config: dict[str, Any] | None = None
    instance_types: list[str] | None = None
    ami_family: str | None = None
    volume_size: int | None = None
    subnets: list[str] | None = None


@dataclass(frozen=True)
class Addon:
    name: str
    version: str | None = None  # None: not compared (eksctl installs EKS's default at creation)
    configuration_values: str | None = None
    service_account_role_arn: str | None = None
    resolve_conflicts: str | None = None  # API spelling (NONE/OVERWRITE/PRESERVE); None: our default


@dataclass(frozen=True)
class ClusterConfig:
    file: str
    name: str
    region: str
    version: str | None = None
    logging: frozenset[str] | None = None  # None: cloudWatch.clusterLogging not set, not compared
    nodegroups: list[NodeGroup] = field(default_factory=list)
    addons: list[Addon] = field(default_factory=list)


class _Reader:
    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, path: str, why: str) -> ClusterConfigError:
        return ClusterConfigError(self.file, path, why)

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping, got {type(value).__name__}")
        return value

    def seq(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list, got {type(value).__name__}")
        return value

    def text(self, value: Any, path: str, required: bool = False) -> str | None:
        if value is None or value == "":
            if required:
                raise self.fail(path, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(path, f"must be a string, got {type(value).__name__}")
        return str(value)

    def integer(self, value: Any, path: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(path, f"must be a non-negative integer, got {value!r}")
        return value

    def strmap(self, value: Any, path: str) -> dict[str, str] | None:
        if value is None:
            return None
        out = {}
        for k, v in self.mapping(value, path).items():
            out[str(k)] = self.text(v, f"{path}.{k}") or ""
        return out


def parse(data: Any, file: str) -> ClusterConfig:
    """Validate a loaded ClusterConfig document; ClusterConfigError names file and field."""
    r = _Reader(file)
    doc = r.mapping(data, "")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != "ClusterConfig":
        raise r.fail("", f"not an eksctl ClusterConfig (want apiVersion {API_VERSION}, kind ClusterConfig)")
    md = r.mapping(doc.get("metadata"), "metadata")
    version = r.text(md.get("version"), "metadata.version")
    if version is not None and not minor_version(version):
        raise r.fail("metadata.version", f"{version!r} is not a Kubernetes minor version like '1.34'")
    return ClusterConfig(
        file=file,
        name=r.text(md.get("name"), "metadata.name", required=True) or "",
        region=r.text(md.get("region"), "metadata.region", required=True) or "",
        version=version,
        logging=_logging(r, doc),
        nodegroups=[
            _nodegroup(r, ng, f"managedNodeGroups[{i}]")
            for i, ng in enumerate(r.seq(doc.get("managedNodeGroups"), "managedNodeGroups"))
        ],
        addons=[_addon(r, a, f"addons[{i}]") for i, a in enumerate(r.seq(doc.get("addons"), "addons"))],
    )


def minor_version(version: str) -> tuple[int, int] | None:
    """``"1.34"`` -> (1, 34); anything else (``"1.34.2"``, ``"latest"``) -> None."""
    major, dot, minor = version.partition(".")
    if dot and major.isdigit() and minor.isdigit():
        return int(major), int(minor)
    return None


def _logging(r: _Reader, doc: Mapping[str, Any]) -> frozenset[str] | None:
    cw = r.mapping(doc.get("cloudWatch"), "cloudWatch")
    if "clusterLogging" not in cw:
        return None
    path = "cloudWatch.clusterLogging.enableTypes"
    types = r.seq(r.mapping(cw.get("clusterLogging"), "cloudWatch.clusterLogging").get("enableTypes"), path)
    out: set[str] = set()
    for i, t in enumerate(types):
        if t in ("*", "all"):
            out.update(LOG_TYPES)
        elif t in LOG_TYPES:
            out.add(t)
        else:
            raise r.fail(f"{path}[{i}]", f"{t!r} is not one of {', '.join(LOG_TYPES)} (or '*')")
    return frozenset(out)


def _nodegroup(r: _Reader, value: Any, path: str) -> NodeGroup:
    ng = r.mapping(value, path)
    tags = r.strmap(ng.get("tags"), f"{path}.tags") or {}
    instance_types = [
        r.text(t, f"{path}.instanceTypes[{i}]", required=True) or ""
        for i, t in enumerate(r.seq(ng.get("instanceTypes"), f"{path}.instanceTypes"))
    ]
    if single := r.text(ng.get("instanceType"), f"{path}.instanceType"):
        if instance_types:
            raise r.fail(f"{path}.instanceType", "set instanceType or instanceTypes, not both")
        instance_types = [single]
    update_config = None
    if ng.get("updateConfig") is not None:
        uc = r.mapping(ng.get("updateConfig"), f"{path}.updateConfig")
        update_config = {}
        for key in ("maxUnavailable", "maxUnavailablePercentage"):
            n = r.integer(uc.get(key), f"{path}.updateConfig.{key}")
            if n is not None:
                update_config[key] = n
        if len(update_config) != 1:
            raise r.fail(f"{path}.updateConfig", "set exactly one of maxUnavailable, maxUnavailablePercentage")
    repair = None
    if ng.get("nodeRepairConfig") is not None:
        repair = dict(r.mapping(ng.get("nodeRepairConfig"), f"{path}.nodeRepairConfig"))
        if not isinstance(repair.get("enabled"), bool):
            raise r.fail(f"{path}.nodeRepairConfig.enabled", "must be true or false")
    subnets = ng.get("subnets")
    return NodeGroup(
        name=r.text(ng.get("name"), f"{path}.name", required=True) or "",
        min_size=r.integer(ng.get("minSize"), f"{path}.minSize"),
        max_size=r.integer(ng.get("maxSize"), f"{path}.maxSize"),
        desired_capacity=r.integer(ng.get("desiredCapacity"), f"{path}.desiredCapacity"),
        autoscaled=tags.get(AUTOSCALER_TAG, "").lower() == "true",
        labels=r.strmap(ng.get("labels"), f"{path}.labels"),
        taints=_taints(r, ng.get("taints"), f"{path}.taints"),
        update_config=update_config,
        node_repair_config=repair,
        instance_types=instance_types or None,
        ami_family=r.text(ng.get("amiFamily"), f"{path}.amiFamily"),
        volume_size=r.integer(ng.get("volumeSize"), f"{path}.volumeSize"),
        subnets=[
            r.text(s, f"{path}.subnets[{i}]", required=True) or ""
            for i, s in enumerate(r.seq(subnets, f"{path}.subnets"))
        ]
        if subnets is not None
        else None,
    )


def _taints(r: _Reader, value: Any, path: str) -> list[Taint] | None:
    if value is None:
        return None
    out = []
    for i, t in enumerate(r.seq(value, path)):
        m = r.mapping(t, f"{path}[{i}]")
        effect = r.text(m.get("effect"), f"{path}[{i}].effect", required=True) or ""
        if effect not in TAINT_EFFECTS:
            raise r.fail(f"{path}[{i}].effect", f"{effect!r} is not one of {', '.join(TAINT_EFFECTS)}")
        key = r.text(m.get("key"), f"{path}[{i}].key", required=True) or ""
        out.append(Taint(key, r.text(m.get("value"), f"{path}[{i}].value") or "", TAINT_EFFECTS[effect]))
    return out


def _addon(r: _Reader, value: Any, path: str) -> Addon:
    a = r.mapping(value, path)
    resolve = r.text(a.get("resolveConflicts"), f"{path}.resolveConflicts")
    if resolve is not None and resolve.lower() not in RESOLVE_CONFLICTS:
        raise r.fail(f"{path}.resolveConflicts", f"{resolve!r} is not one of none, overwrite, preserve")
    config = a.get("configurationValues")
    if config is not None and not isinstance(config, str):
        raise r.fail(f"{path}.configurationValues", "must be a string holding JSON or YAML (as eksctl wants it)")
    return Addon(
        name=r.text(a.get("name"), f"{path}.name", required=True) or "",
        version=r.text(a.get("version"), f"{path}.version"),
        configuration_values=config or None,
        service_account_role_arn=r.text(a.get("serviceAccountRoleARN"), f"{path}.serviceAccountRoleARN"),
        resolve_conflicts=RESOLVE_CONFLICTS[resolve.lower()] if resolve else None,
    )
