"""manifests/addons and examples/fleet, offline: what the addons spec promises, checked on the
rendered objects (the same render the reconciler applies).

promtool and amtool are required: a missing tool FAILS these tests (``scripts/install-deps``
installs Debian's prometheus and prometheus-alertmanager), it never skips them.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_render_support import ROOT, kustomize_bin  # noqa: F401 (a fixture)

from reconciler.render import RenderOptions, render

ADDONS = ROOT / "manifests" / "addons"
FLEET = ROOT / "examples" / "fleet"
CLUSTER_VARS = ("CLUSTER_NAME", "AWS_ACCOUNT_ID", "AWS_REGION", "DOMAIN", "KUBE_DNS_IP")
SAMPLE_VARS = {
    "CLUSTER_NAME": "test-cluster",
    "AWS_ACCOUNT_ID": "123456789012",
    "AWS_REGION": "eu-west-1",
    "DOMAIN": "test.example.com",
    "KUBE_DNS_IP": "172.20.0.10",
}
ADDON_NAMES = (
    "cluster-autoscaler",
    "external-dns",
    "kube-prometheus",
    "node-problem-detector",
    "draino",
    "node-local-dns",
    "kubernetes-dashboard",
    "metrics-server",
    "gitops-reconciler",  # our own deploy/, owned by the controller issue: rendered, not re-specified here
)
WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet")
# The only pods allowed to touch the node: privileged, hostNetwork, hostPID or a hostPath.
NODE_AGENTS = {"node-exporter", "node-problem-detector", "node-local-dns"}
IMAGES = {  # pinned by tag, at the releases chosen for issue 5
    "registry.k8s.io/autoscaling/cluster-autoscaler:v1.34.4",
    "registry.k8s.io/external-dns/external-dns:v0.22.0",
    "registry.k8s.io/node-problem-detector/node-problem-detector:v1.34.0",
    "planetlabs/draino:e0d5277",
    "registry.k8s.io/dns/k8s-dns-node-cache:1.26.8",
    "registry.k8s.io/metrics-server/metrics-server:v0.8.1",
    "kubernetesui/dashboard:v2.7.0",
    "kubernetesui/metrics-scraper:v1.0.8",
    "quay.io/prometheus-operator/prometheus-operator:v0.92.0",
    "quay.io/brancz/kube-rbac-proxy:v0.22.0",
    "quay.io/prometheus/node-exporter:v1.11.1",
    "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.19.0",
    "grafana/grafana:13.0.2",
}


def cluster_vars(env: str) -> dict[str, str]:
    """The ${VAR} values of a fleet cluster: its cluster-vars ConfigMap (what its GitSyncs read)."""
    cm = yaml.safe_load((FLEET / "gitsyncs" / env / "cluster-vars.yaml").read_text())
    return {k: str(v) for k, v in cm["data"].items()}


def render_objects(path: str, variables: dict[str, str]) -> list[dict[str, Any]]:
    return [m.obj for m in render(ROOT, path, RenderOptions(substitute=variables))]


def render_cluster(env: str) -> list[dict[str, Any]]:
    return render_objects(f"examples/fleet/clusters/{env}", cluster_vars(env))


def key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']}/{meta.get('namespace', '-')}/{meta['name']}"


def pod_specs(objs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for o in objs:
        if o["kind"] in WORKLOADS:
            yield o, o["spec"]["template"]


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:  # a failure, never a skip: run scripts/install-deps
        pytest.fail(f"{tool} is not installed (scripts/install-deps installs it from Debian)")
    return path


@pytest.fixture(scope="module")
def dev(kustomize_bin: str) -> list[dict[str, Any]]:  # noqa: F811
    return render_cluster("dev")


@pytest.fixture(scope="module")
def prod(kustomize_bin: str) -> list[dict[str, Any]]:  # noqa: F811
    return render_cluster("prod")


@pytest.fixture(scope="module")
def addons(kustomize_bin: str) -> dict[str, list[dict[str, Any]]]:  # noqa: F811
    return {name: render_objects(f"manifests/addons/{name}", SAMPLE_VARS) for name in ADDON_NAMES}


# ------------------------------------------------------------------------------ layout


def test_every_addon_has_a_readme_with_its_iam_needs() -> None:
    for name in ADDON_NAMES:
        text = (ADDONS / name / "README.md").read_text()
        assert "## IAM" in text, f"{name}/README.md says nothing about IAM"
    assert "Headlamp" in (ADDONS / "kubernetes-dashboard" / "README.md").read_text()
    draino = (ADDONS / "draino" / "README.md").read_text()
    assert "Node Health Check" in draino
    assert "nodeRepairConfig" in draino
    assert "descheduler" in draino


def test_addons_use_only_the_cluster_variables(addons: dict[str, list[dict[str, Any]]]) -> None:
    """Each base renders with exactly the five cluster variables (substitution is strict: any
    other ${VAR} fails the render), and none is left over."""
    for name, objs in addons.items():
        substituted = [
            o
            for o in objs
            if (o["metadata"].get("annotations") or {}).get("gitops.reconciler.dev/substitute") != "disabled"
        ]
        assert "${" not in json.dumps(substituted), name
        assert objs, name
    with pytest.raises(Exception, match="CLUSTER_NAME"):
        render_objects("manifests/addons/external-dns", {k: v for k, v in SAMPLE_VARS.items() if k != "CLUSTER_NAME"})


def test_cluster_config_is_eksctl_and_never_synced(dev: list[dict[str, Any]], prod: list[dict[str, Any]]) -> None:
    text = (ROOT / "manifests" / "cluster" / "cluster.yaml").read_text()
    assert set(re.findall(r"\$\{(\w+)\}", text)) <= set(CLUSTER_VARS)
    cfg = yaml.safe_load(text)
    assert (cfg["apiVersion"], cfg["kind"]) == ("eksctl.io/v1alpha5", "ClusterConfig")
    assert cfg["iam"]["withOIDC"] is True
    roles = {sa["metadata"]["name"]: sa for sa in cfg["iam"]["serviceAccounts"]}
    assert set(roles) == {"cluster-autoscaler", "external-dns"}
    assert all(sa["roleOnly"] and sa["metadata"]["namespace"] == "kube-system" for sa in roles.values())
    assert roles["cluster-autoscaler"]["wellKnownPolicies"] == {"autoScaler": True}
    assert roles["external-dns"]["wellKnownPolicies"] == {"externalDNS": True}
    (ng,) = cfg["managedNodeGroups"]
    assert ng["tags"] == {
        "k8s.io/cluster-autoscaler/enabled": "true",
        "k8s.io/cluster-autoscaler/${CLUSTER_NAME}": "owned",
    }
    assert ng["propagateASGTags"]
    assert ng["nodeRepairConfig"] == {"enabled": True}
    assert ng["minSize"] <= ng["desiredCapacity"] <= ng["maxSize"]
    assert [a["name"] for a in cfg["addons"]] == ["vpc-cni", "coredns", "kube-proxy"]
    assert set(cfg["cloudWatch"]["clusterLogging"]["enableTypes"]) == {
        "api",
        "audit",
        "authenticator",
        "controllerManager",
        "scheduler",
    }
    # The role names the ServiceAccounts' IRSA annotations point at.
    for objs in (dev, prod):
        sas = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ServiceAccount"}
        for name, sa in roles.items():
            arn = sas[name]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            cluster = next(o for o in objs if o["kind"] == "Prometheus")["spec"]["externalLabels"]["cluster"]
            assert arn.endswith(":role/" + sa["roleName"].replace("${CLUSTER_NAME}", cluster))
        assert not [o for o in objs if o["kind"] == "ClusterConfig" or o["apiVersion"].startswith("eksctl.io")]
    # cluster-autoscaler's minor must equal the cluster's.
    ca = next(o for o in dev if o["kind"] == "Deployment" and o["metadata"]["name"] == "cluster-autoscaler")
    tag = ca["spec"]["template"]["spec"]["containers"][0]["image"].rpartition(":")[2]
    assert tag.startswith(f"v{cfg['metadata']['version']}.")


# ------------------------------------------------------------------------------ policy-friendly


def test_images_are_pinned_to_the_chosen_releases(dev: list[dict[str, Any]]) -> None:
    images = {c["image"] for _, t in pod_specs(dev) for c in containers(t)}
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name, image
        assert tag not in ("", "latest"), image
        assert "/" not in tag, image
    app = {"registry.k8s.io/e2e-test-images/agnhost:2.53"}
    assert images == IMAGES | app
    crs = {o["spec"]["image"] for o in dev if o["kind"] in ("Prometheus", "Alertmanager")}
    assert crs == {"quay.io/prometheus/prometheus:v3.12.0", "quay.io/prometheus/alertmanager:v0.33.0"}


def test_every_container_has_requests_and_limits(dev: list[dict[str, Any]], prod: list[dict[str, Any]]) -> None:
    for objs in (dev, prod):
        for o, t in pod_specs(objs):
            for c in containers(t):
                res = c.get("resources", {})
                for kind in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{key(o)} container {c['name']}: {kind}"
        for o in objs:
            if o["kind"] in ("Prometheus", "Alertmanager"):
                assert {"cpu", "memory"} <= set(o["spec"]["resources"]["limits"]), key(o)


def test_workloads_are_labelled_and_only_node_agents_touch_the_node(dev: list[dict[str, Any]]) -> None:
    agents = set()
    for o, t in pod_specs(dev):
        name = o["metadata"]["labels"].get("app.kubernetes.io/name")
        assert name, f"{key(o)} has no app.kubernetes.io/name"
        assert t["metadata"]["labels"].get("app.kubernetes.io/name") == name, key(o)
        spec = t["spec"]
        host = [f for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f)]
        host += [f"hostPath {v['hostPath']['path']}" for v in spec.get("volumes", []) if "hostPath" in v]
        host += [f"privileged {c['name']}" for c in containers(t) if (c.get("securityContext") or {}).get("privileged")]
        if host:
            agents.add(name)
            assert name in NODE_AGENTS, f"{key(o)}: {host}"
    assert agents == NODE_AGENTS


def test_kube_system_namespace_is_never_a_managed_object(dev: list[dict[str, Any]]) -> None:
    namespaces = {o["metadata"]["name"] for o in dev if o["kind"] == "Namespace"}
    assert namespaces == {"monitoring", "kubernetes-dashboard", "echo"}


# ------------------------------------------------------------------------------ addon specifics


def test_metrics_server_is_the_single_owner_of_the_metrics_api(dev: list[dict[str, Any]]) -> None:
    owners = [
        o
        for o in dev
        if (o["kind"], o["metadata"]["name"])
        in {("APIService", "v1beta1.metrics.k8s.io"), ("ClusterRole", "system:aggregated-metrics-reader")}
    ]
    assert len(owners) == 2
    assert {o["metadata"]["labels"]["app.kubernetes.io/part-of"] for o in owners} == {"metrics-server"}
    assert not [o for o in dev if "prometheus-adapter" in json.dumps(o["metadata"])]
    (api,) = [o for o in owners if o["kind"] == "APIService"]
    assert api["spec"]["service"] == {"name": "metrics-server", "namespace": "kube-system", "port": 443}


def test_draino_drains_on_exactly_the_permanent_conditions_of_node_problem_detector(
    dev: list[dict[str, Any]],
) -> None:
    (cm,) = [o for o in dev if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "node-problem-detector-config"]
    permanent: set[str] = set()
    for name, text in cm["data"].items():
        if name.endswith(".json"):
            monitor = json.loads(text)
            declared = {c["type"] for c in monitor["conditions"]}
            used = {r["condition"] for r in monitor["rules"] if r["type"] == "permanent"}
            assert used <= declared, name  # a permanent rule must name a declared condition
            permanent |= used
    assert permanent == {"KernelDeadlock", "ReadonlyFilesystem"}
    (draino,) = [o for o in dev if o["kind"] == "Deployment" and o["metadata"]["name"] == "draino"]
    command = draino["spec"]["template"]["spec"]["containers"][0]["command"]
    positional = [a for a in command[1:] if not a.startswith("-")]
    assert set(positional) == permanent
    assert len(positional) == len(permanent)
    # The custom plugin is mounted executable and its monitor points at it.
    (ds,) = [o for o in dev if o["kind"] == "DaemonSet" and o["metadata"]["name"] == "node-problem-detector"]
    (vol,) = [v for v in ds["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
    assert vol["configMap"]["defaultMode"] == 0o755
    plugin = json.loads(cm["data"]["network-problem-monitor.json"])
    assert plugin["plugin"] == "custom"
    assert plugin["pluginConfig"]["invoke_interval"] == "30s"
    assert plugin["pluginConfig"]["timeout"] == "5s"
    assert plugin["rules"][0]["path"].removeprefix("/config/") in cm["data"]


def test_node_problem_detector_plugin_script_exit_codes(tmp_path: Path) -> None:
    """The custom plugin's contract: 0 OK, 1 NONOK, 2 UNKNOWN (run for real, on this machine)."""
    script = (ADDONS / "node-problem-detector" / "config" / "network_problem.sh").read_text()
    cases = {"0 100": 0, "95 100": 1}
    for counts, want in cases.items():
        count, mx = counts.split()
        d = tmp_path / counts.replace(" ", "-")
        d.mkdir()
        (d / "count").write_text(count)
        (d / "max").write_text(mx)
        s = d / "plugin.sh"
        s.write_text(
            script.replace("/proc/sys/net/netfilter/nf_conntrack_max", str(d / "max")).replace(
                "/proc/sys/net/netfilter/nf_conntrack_count", str(d / "count")
            )
        )
        r = subprocess.run(["sh", str(s)], capture_output=True, text=True, check=False)
        assert r.returncode == want, (counts, r.stdout)
    missing = tmp_path / "missing.sh"
    missing.write_text(script.replace("/proc/sys/net/netfilter/nf_conntrack_max", str(tmp_path / "nope")))
    assert subprocess.run(["sh", str(missing)], capture_output=True, check=False).returncode == 2


def test_node_local_dns_corefile_has_only_our_substitutions(dev: list[dict[str, Any]]) -> None:
    (cm,) = [o for o in dev if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "node-local-dns"]
    corefile = cm["data"]["Corefile"]
    assert set(re.findall(r"__PILLAR__(?:[A-Z]+__)+", corefile)) == {
        "__PILLAR__CLUSTER__DNS__",
        "__PILLAR__UPSTREAM__SERVERS__",
    }
    dns_ip = cluster_vars("dev")["KUBE_DNS_IP"]
    assert corefile.count(f"bind 169.254.20.10 {dns_ip}") == 4
    zones = re.findall(r"^(\S+:53) \{", corefile, re.M)
    assert zones == ["cluster.local:53", "in-addr.arpa:53", "ip6.arpa:53", ".:53"]
    assert "health 169.254.20.10:8080" in corefile
    (ds,) = [o for o in dev if o["kind"] == "DaemonSet" and o["metadata"]["name"] == "node-local-dns"]
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("-localip") + 1] == f"169.254.20.10,{dns_ip}"


def test_cluster_values_reach_the_addons(dev: list[dict[str, Any]]) -> None:
    v = cluster_vars("dev")

    def args(name: str) -> list[str]:
        (d,) = [o for o in dev if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
        c = d["spec"]["template"]["spec"]["containers"][0]
        return [*c.get("command", []), *c.get("args", [])]

    assert f"--domain-filter={v['DOMAIN']}" in args("external-dns")
    assert f"--txt-owner-id={v['CLUSTER_NAME']}" in args("external-dns")
    assert (
        "--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,"
        f"k8s.io/cluster-autoscaler/{v['CLUSTER_NAME']}" in args("cluster-autoscaler")
    )
    (ing,) = [o for o in dev if o["kind"] == "Ingress"]
    assert ing["spec"]["rules"][0]["host"] == f"echo.{v['DOMAIN']}"


def test_monitoring_stack_shape(dev: list[dict[str, Any]]) -> None:
    (prom,) = [o for o in dev if o["kind"] == "Prometheus"]
    assert prom["metadata"]["name"] == "k8s"
    assert prom["spec"]["serviceAccountName"] == "prometheus-k8s"
    for sel in ("serviceMonitorSelector", "podMonitorSelector", "ruleSelector", "probeSelector"):
        assert prom["spec"][sel] == {}
    assert prom["spec"]["alerting"]["alertmanagers"] == [
        {"namespace": "monitoring", "name": "alertmanager-main", "port": "web", "apiVersion": "v2"}
    ]
    (am,) = [o for o in dev if o["kind"] == "Alertmanager"]
    assert am["metadata"]["name"] == "main"
    monitors = {o["metadata"]["name"] for o in dev if o["kind"] == "ServiceMonitor"}
    assert {
        "alertmanager-main",
        "coredns",
        "grafana",
        "kube-apiserver",
        "kube-state-metrics",
        "kubelet",
        "node-exporter",
        "prometheus-k8s",
        "prometheus-operator",
        "aws-node",
    } <= monitors
    assert not {m for m in monitors if "controller-manager" in m or "scheduler" in m}
    crds = {o["metadata"]["name"].split(".")[0] for o in dev if o["kind"] == "CustomResourceDefinition"}
    assert crds == {
        "alertmanagerconfigs",
        "alertmanagers",
        "podmonitors",
        "probes",
        "prometheuses",
        "prometheusagents",
        "prometheusrules",
        "scrapeconfigs",
        "servicemonitors",
        "thanosrulers",
    }


# ------------------------------------------------------------------------------ promtool, amtool


def test_promtool_accepts_the_rules_of_every_prometheus_rule(
    dev: list[dict[str, Any]], addons: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    promtool = need("promtool")
    ours = addons["gitops-reconciler"]
    rules = [o for o in [*dev, *ours] if o["kind"] == "PrometheusRule"]
    assert {o["metadata"]["name"] for o in rules} >= {"reconciler", "general-rules", "node-problem-detector-rules"}
    files = []
    for o in rules:
        f = tmp_path / f"{o['metadata']['namespace']}-{o['metadata']['name']}.yaml"
        f.write_text(yaml.safe_dump({"groups": o["spec"]["groups"]}))
        files.append(str(f))
    r = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == len(files)


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The check above can fail: the same call on a bad expression exits non-zero."""
    promtool = need("promtool")
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "sum(up"}]}]}))
    r = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True, check=False)
    assert r.returncode != 0


def alertmanager_config(objs: list[dict[str, Any]]) -> str:
    (secret,) = [o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == "alertmanager-main"]
    return base64.b64decode(secret["data"]["alertmanager.yaml"]).decode()


def test_amtool_accepts_the_alertmanager_configuration(dev: list[dict[str, Any]], tmp_path: Path) -> None:
    amtool = need("amtool")
    text = alertmanager_config(dev)
    f = tmp_path / "alertmanager.yaml"
    f.write_text(text)
    r = subprocess.run([amtool, "check-config", str(f)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = yaml.safe_load(text)
    assert cfg["global"]["resolve_timeout"] == "5m"
    assert {r["name"] for r in cfg["receivers"]} == {"Default", "Watchdog", "Critical", "null"}
    route = cfg["route"]
    assert (route["group_by"], route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        ["namespace"],
        "30s",
        "5m",
        "12h",
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("receiver: Default", "receiver: Nobody"))
    assert subprocess.run([amtool, "check-config", str(bad)], capture_output=True, check=False).returncode != 0
