"""deploy/ and the Dockerfile, offline: every RBAC rule says why it exists, the broad apply
role stays isolated, the Deployment is hardened, and the pins agree with the code.

What only the API server can judge (schema, CEL, RBAC decisions, Pod Security admission)
is in tests/integration/test_deploy.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from reconciler import cli
from reconciler.render import kustomize, sops_tool, tools

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def _one(name: str, kind: str, obj_name: str | None = None) -> dict[str, Any]:
    found = [d for d in _docs(name) if d["kind"] == kind and obj_name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"{name}: expected one {kind} {obj_name or ''}, found {len(found)}"
    return found[0]


def _deployment() -> dict[str, Any]:
    return _one("deployment.yaml", "Deployment", "reconciler")


def _container() -> dict[str, Any]:
    (c,) = _deployment()["spec"]["template"]["spec"]["containers"]
    return c


# --- RBAC ---------------------------------------------------------------------------------


def test_every_rbac_rule_has_a_comment_saying_why() -> None:
    lines = (DEPLOY / "rbac.yaml").read_text().splitlines()
    in_rules, rules = False, 0
    for i, line in enumerate(lines):
        if re.match(r"^rules:\s*$", line):
            in_rules = True
        elif re.match(r"^\S", line):
            in_rules = False
        elif in_rules and line.lstrip().startswith("- "):
            rules += 1
            before = lines[i - 1].strip()
            assert before.startswith("#"), f"rbac.yaml line {i + 1}: rule without a comment saying why"
            assert len(before) > 20, f"rbac.yaml line {i + 1}: say why, not just that"
    roles = [d for d in _docs("rbac.yaml") if d["kind"] in ("Role", "ClusterRole")]
    assert rules == sum(len(r["rules"]) for r in roles) > 0


def test_the_controller_role_is_narrow_and_the_broad_one_isolated() -> None:
    controller = _one("rbac.yaml", "ClusterRole", "gitops-reconciler-controller")
    for rule in controller["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], f"wildcard in the controller's own role: {rule}"
        assert "secrets" not in rule["resources"], "the controller reads Secrets only as a GitSync's identity"
        assert "configmaps" not in rule["resources"], "inventories and substituteFrom go through the GitSync's identity"
    wildcard = [
        d["metadata"]["name"]
        for d in _docs("rbac.yaml")
        if d["kind"] in ("Role", "ClusterRole") and any("*" in r["verbs"] for r in d["rules"])
    ]
    assert wildcard == ["gitops-reconciler-apply"]
    text = (DEPLOY / "rbac.yaml").read_text()
    comment = text[: text.index("name: gitops-reconciler-apply")]
    assert "serviceAccountName" in comment.rsplit("---", 1)[1], "the broad role must explain impersonation"
    lease = _one("rbac.yaml", "Role", "gitops-reconciler-leader-election")
    assert lease["metadata"]["namespace"] == "reconciler-system"
    assert lease["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "create", "update", "delete"],
        }
    ]
    bound = {
        (b["kind"], b["roleRef"]["name"], s["name"])
        for b in _docs("rbac.yaml")
        if b["kind"].endswith("Binding")
        for s in b["subjects"]
    }
    assert bound == {
        ("ClusterRoleBinding", "gitops-reconciler-controller", "reconciler"),
        ("ClusterRoleBinding", "gitops-reconciler-apply", "reconciler-apply"),
        ("RoleBinding", "gitops-reconciler-leader-election", "reconciler"),
    }
    assert {s["namespace"] for b in _docs("rbac.yaml") if b["kind"].endswith("Binding") for s in b["subjects"]} == {
        "reconciler-system"
    }
    apply_sa = _one("serviceaccount.yaml", "ServiceAccount", "reconciler-apply")
    assert apply_sa["automountServiceAccountToken"] is False, "no Pod runs as the broad identity"


# --- Deployment and Service ---------------------------------------------------------------


def test_deployment_is_hardened() -> None:
    dep = _deployment()
    assert dep["metadata"]["namespace"] == "reconciler-system"
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "reconciler"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = _container()
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert set(c["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    assert "memory" in c["resources"]["limits"]
    assert c["image"] == "ghcr.io/gitops-reconciler/reconciler:0.1.0"
    terms = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert terms[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert dep["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "gitops-reconciler"


def test_deployment_writes_only_to_its_empty_dirs() -> None:
    c = _container()
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in _deployment()["spec"]["template"]["spec"]["volumes"]}
    assert set(mounts) == {"/tmp", "/cache", "/decrypt", "/etc/reconciler/webhook"}
    for path, name in mounts.items():
        if path == "/etc/reconciler/webhook":  # the webhook secret: read-only, optional
            assert volumes[name]["secret"] == {"secretName": "reconciler-webhook", "optional": True}
            assert next(m for m in c["volumeMounts"] if m["name"] == name)["readOnly"] is True
        else:
            assert "emptyDir" in volumes[name], name
    env = {e["name"]: e for e in c["env"]}
    assert env["XDG_CACHE_HOME"]["value"] == "/cache"
    # SOPS plaintext for kustomize: memory-backed, never the disk-backed /tmp or /cache
    assert env["RECONCILER_DECRYPT_DIR"]["value"] == "/decrypt"
    assert volumes[mounts["/decrypt"]]["emptyDir"]["medium"] == "Memory"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_probes_and_ports_match_the_flags() -> None:
    c = _container()
    assert c["args"] == [
        "run",
        "--leader-elect",
        "--metrics-addr=:8080",
        "--webhook-addr=:9292",
        "--webhook-secret-file=/etc/reconciler/webhook/secret",
        "--health-addr=:8081",
        "--default-service-account=gitsync",
        "--platform-namespace=reconciler-system",
        "--platform-service-account=reconciler-system/reconciler-apply",
        "--no-cross-namespace-refs",
        "--min-policy-mode=enforce",
    ]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http-metrics": 8080, "webhook": 9292, "health": 8081}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    svc = _one("service.yaml", "Service", "reconciler")
    assert {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == {
        "http-metrics": (8080, "http-metrics"),
        "webhook": (9292, "webhook"),
    }
    labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()


def test_network_policy_admits_exactly_the_container_ports_by_name() -> None:
    """Ingress to the controller's pods only on its listeners, named as the Deployment names them
    (a renamed or added containerPort must show up here, not as a silently blocked port)."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert "networkpolicy.yaml" in kustomization["resources"]
    pol = _one("networkpolicy.yaml", "NetworkPolicy", "reconciler")
    dep = _deployment()
    assert pol["metadata"]["namespace"] == dep["metadata"]["namespace"]
    spec = pol["spec"]
    assert spec["podSelector"] == {"matchLabels": dep["spec"]["selector"]["matchLabels"]}
    assert spec["podSelector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    # Ingress only: egress goes to git hosts, the API server and AWS, which differ per install
    assert spec["policyTypes"] == ["Ingress"]
    assert "egress" not in spec
    admitted = [(p["port"], p["protocol"]) for rule in spec["ingress"] for p in rule["ports"]]
    container = [(p["name"], p["protocol"]) for p in _container()["ports"]]
    assert sorted(admitted) == sorted(container), "the NetworkPolicy and the Deployment disagree on ports"
    assert all(isinstance(port, str) for port, _ in admitted), "refer to container ports by name, not number"
    for rule in spec["ingress"]:
        assert set(rule) <= {"ports", "from"}
    probes = {_container()[p]["httpGet"]["port"] for p in ("livenessProbe", "readinessProbe")}
    health_rules = [r for r in spec["ingress"] if any(p["port"] in probes for p in r["ports"])]
    assert health_rules, "the kubelet's probes must be admitted"
    assert all("from" not in r for r in health_rules), "probes come from the node: no source selector"
    svc = _one("service.yaml", "Service", "reconciler")
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= {port for port, _ in admitted}


def test_deployment_flags_exist_in_reconciler_run() -> None:
    res = CliRunner().invoke(cli.cli, ["run", "--help"])
    assert res.exit_code == 0, res.output
    flags = [a.split("=")[0] for a in _container()["args"][1:]]
    missing = [f for f in flags if f not in res.output]
    assert not missing, f"the Deployment passes flags `reconciler run` does not have: {missing}"


# --- Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_pins_agree_with_the_code() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert f"ARG KUSTOMIZE_VERSION={kustomize.KUSTOMIZE_VERSION}\n" in text
    assert "go install" in text
    assert "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}" in text
    # helm (spec.helm) and sops (spec.decryption) ship in the image at the versions the code pins
    assert f"ARG HELM_VERSION={tools.HELM.version}\n" in text
    assert f"ARG SOPS_VERSION={sops_tool.SOPS_VERSION}\n" in text
    for tool in ("kustomize", "helm", "sops"):
        assert f"COPY --from={tool} /go/bin/{tool} /usr/local/bin/{tool}" in text
        assert f"RECONCILER_{tool.upper()}=/usr/local/bin/{tool}" in text
    froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(froms) >= 3, "multi-stage: kustomize, build, runtime"
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert froms[-1] == "${PYTHON_IMAGE}"
    runtime = text[text.rindex("\nFROM ") :]
    for pkg in ("git", "openssh-client", "ca-certificates"):
        assert re.search(rf"\s{pkg}\s", runtime), f"runtime image lacks {pkg}"
    assert re.search(r"^USER 65532(:65532)?$", runtime, re.MULTILINE)
    assert "XDG_CACHE_HOME=/cache" in runtime
    # the image's ENTRYPOINT runs reconciler; the Deployment only passes args
    assert '"reconciler"]' in runtime
    assert "command" not in _container()


def test_disruption_budget_covers_the_controller_pods() -> None:
    pdb = _one("scale/pdb.yaml", "PodDisruptionBudget", "reconciler")
    assert pdb["metadata"]["namespace"] == _deployment()["metadata"]["namespace"]
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": _deployment()["spec"]["selector"]}
    overlay = yaml.safe_load((DEPLOY / "scale" / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["pdb.yaml"]


def test_the_shards_patch_turns_the_leader_election_into_three_sharded_replicas() -> None:
    """deploy/scale/shards-patch.yaml, applied as kubectl applies a JSON patch (test, replace)."""
    deployment = _deployment()
    ops = yaml.safe_load((DEPLOY / "scale" / "shards-patch.yaml").read_text())
    for op in ops:
        *parents, last = [int(p) if p.isdigit() else p for p in op["path"].strip("/").split("/")]
        node = deployment
        for p in parents:
            node = node[p]
        if op["op"] == "test":
            assert node[last] == op["value"], f"{op['path']} is no longer {op['value']}"
        else:
            assert op["op"] == "replace"
            node[last] = op["value"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}, "never an old and a new Pod writing at once"
    assert "--shards=12" in args
    assert "--leader-elect" not in args
