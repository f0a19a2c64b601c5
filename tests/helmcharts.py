"""Charts written for the tests, and the real Helm binary to package and push them.

The demo chart is small but has what the renderer must get right: a CRD in ``crds/``, hooks
(pre-install with weights, post-install, a test hook), a ``.Capabilities.APIVersions.Has``
check, a value that goes into a Secret, and a subchart dependency (vendored in ``charts/``).
Version 0.2.0 drops the ConfigMap ``extra`` so a bump has something to prune.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_tool(tool: str) -> str:
    """Build (or reuse) a pinned tool with scripts/build-tool; a failure is an error, never a skip."""
    proc = subprocess.run(
        [str(ROOT / "scripts" / "build-tool"), tool], capture_output=True, text=True, timeout=1800, check=False
    )
    assert proc.returncode == 0, f"scripts/build-tool {tool} failed:\n{proc.stderr}"
    return proc.stdout.strip().splitlines()[-1]


def helm(binary: str, *args: str, home: Path, stdin: bytes | None = None) -> str:
    """Run helm for test setup with its own config dirs; failures raise with helm's stderr."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    proc = subprocess.run([binary, *args], env=env, input=stdin, capture_output=True, check=False, timeout=120)
    assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stderr.decode(errors='replace')}"
    return proc.stdout.decode()


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def write_demo_chart(parent: Path, *, name: str = "demo", version: str = "0.1.0") -> Path:
    """The demo chart at ``parent/name``; returns its directory."""
    chart = parent / name
    files = {
        "Chart.yaml": f"""
            apiVersion: v2
            name: {name}
            version: {version}
            appVersion: "1.0"
            dependencies:
              - name: sub
                version: 0.1.0
            """,
        "values.yaml": """
            replicas: 1
            password: ""
            monitoring: true
            greeting: hello
            """,
        "crds/widgets.yaml": """
            apiVersion: apiextensions.k8s.io/v1
            kind: CustomResourceDefinition
            metadata:
              name: widgets.demo.example.com
            spec:
              group: demo.example.com
              names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
              scope: Namespaced
              versions:
                - name: v1
                  served: true
                  storage: true
                  schema:
                    openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
            """,
        "templates/configmap.yaml": """
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: {{ .Release.Name }}-config
            data:
              greeting: {{ .Values.greeting | quote }}
              replicas: {{ .Values.replicas | quote }}
              kube: {{ .Capabilities.KubeVersion.Version | quote }}
            """,
        "templates/secret.yaml": """
            apiVersion: v1
            kind: Secret
            metadata:
              name: {{ .Release.Name }}-auth
            stringData:
              password: {{ required "password is required" .Values.password | quote }}
            """,
        "templates/servicemonitor.yaml": """
            {{- if and .Values.monitoring (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") }}
            apiVersion: monitoring.coreos.com/v1
            kind: ServiceMonitor
            metadata:
              name: {{ .Release.Name }}
            spec:
              selector: {matchLabels: {app: {{ .Release.Name }}}}
              endpoints: [{port: metrics}]
            {{- end }}
            """,
        "templates/hooks.yaml": """
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: {{ .Release.Name }}-migrate
              annotations:
                helm.sh/hook: pre-install,pre-upgrade
                helm.sh/hook-weight: "5"
                helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
            data: {step: migrate}
            ---
            apiVersion: v1
            kind: ServiceAccount
            metadata:
              name: {{ .Release.Name }}-prepare
              annotations:
                helm.sh/hook: pre-install
                helm.sh/hook-weight: "-5"
            ---
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: {{ .Release.Name }}-announce
              annotations:
                helm.sh/hook: post-install,post-upgrade
            data: {step: announce}
            ---
            apiVersion: v1
            kind: Pod
            metadata:
              name: {{ .Release.Name }}-test
              annotations:
                helm.sh/hook: test
            spec:
              containers: [{name: t, image: busybox, command: ["true"]}]
            """,
        "charts/sub/Chart.yaml": """
            apiVersion: v2
            name: sub
            version: 0.1.0
            """,
        "charts/sub/templates/service.yaml": """
            apiVersion: v1
            kind: Service
            metadata:
              name: {{ .Release.Name }}-sub
            spec:
              ports: [{port: 80, name: http}]
            """,
    }
    if version == "0.1.0":
        files["templates/extra.yaml"] = """
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: {{ .Release.Name }}-extra
            data: {only: in-0.1.0}
            """
    _write(chart, files)
    return chart


def package(binary: str, chart_dir: Path, dest: Path, *, home: Path) -> Path:
    """``helm package`` the chart into ``dest``; returns the .tgz."""
    dest.mkdir(parents=True, exist_ok=True)
    out = helm(binary, "package", str(chart_dir), "--destination", str(dest), home=home)
    return Path(out.strip().rsplit(": ", 1)[-1])


def write_stack_chart(parent: Path, *, name: str = "stack", version: str = "1.0.0", vendor_all: bool = True) -> Path:
    """A chart in the shape of the addons' upstream charts, written for the tests.

    What real charts do that the demo chart does not: a library chart for shared helpers
    (``include``), a CRD subchart whose ``crds/`` files start with ``---`` (one CRD per file,
    behind ``condition: crds.enabled``), a vendored dependency switched off by a condition,
    ``values.schema.json`` with a required property, ``tpl`` of a value, a ``semverCompare``
    on ``.Capabilities.KubeVersion``, ``lookup`` (renders against nothing), and hooks with
    weights and delete policies.  ``vendor_all=False`` leaves one declared dependency out of
    ``charts/`` (what a chart in git looks like before ``helm dependency build``).
    """
    chart = parent / name
    files = {
        "Chart.yaml": f"""
            apiVersion: v2
            name: {name}
            version: {version}
            dependencies:
              - {{name: common, version: 0.1.0}}
              - {{name: crds, version: 0.1.0, condition: crds.enabled}}
              - {{name: exporter, version: 0.1.0, condition: exporter.enabled}}
              - {{name: ui, version: 0.1.0, condition: ui.enabled}}
            """,
        "values.schema.json": """
            {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "required": ["policy"],
             "properties": {"policy": {"type": "string", "enum": ["sync", "upsert-only"]}}}
            """,
        "values.yaml": """
            policy: sync
            replicas: 2
            podAnnotations: '{"owner": "{{ .Release.Name }}"}'
            token: ""
            explode: false
            crds: {enabled: true}
            exporter: {enabled: false}
            ui: {enabled: false}
            """,
        "templates/_helpers.tpl": """
            {{- define "stack.name" -}}{{ .Release.Name }}-{{ .Chart.Name }}{{- end }}
            """,
        "templates/deployment.yaml": """
            {{- if .Values.explode }}{{ fail (printf "explode is set (token %s)" .Values.token) }}{{ end }}
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: {{ include "stack.name" . }}
              labels: {{- include "common.labels" . | nindent 4 }}
              annotations: {{- tpl .Values.podAnnotations . | fromJson | toYaml | nindent 4 }}
            spec:
              replicas: {{ .Values.replicas }}
              selector: {matchLabels: {app: {{ include "stack.name" . }}}}
              template:
                metadata: {labels: {app: {{ include "stack.name" . }}}}
                spec:
                  containers: [{name: main, image: "registry.example/stack:1", args: ["--policy={{ .Values.policy }}"]}]
            """,
        "templates/pdb.yaml": """
            {{- if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version }}
            apiVersion: policy/v1
            {{- else }}
            apiVersion: policy/v1beta1
            {{- end }}
            kind: PodDisruptionBudget
            metadata:
              name: {{ include "stack.name" . }}
            spec:
              maxUnavailable: 1
              selector: {matchLabels: {app: {{ include "stack.name" . }}}}
            """,
        "templates/secret.yaml": """
            {{- $existing := lookup "v1" "Secret" .Release.Namespace (include "stack.name" .) }}
            apiVersion: v1
            kind: Secret
            metadata:
              name: {{ include "stack.name" . }}
            stringData:
              token: {{ .Values.token | quote }}
              origin: {{ if $existing }}cluster{{ else }}rendered{{ end }}
            """,
        "templates/hooks.yaml": """
            apiVersion: batch/v1
            kind: Job
            metadata:
              name: {{ include "stack.name" . }}-migrate
              annotations:
                helm.sh/hook: pre-upgrade
                helm.sh/hook-weight: "-1"
                helm.sh/hook-delete-policy: hook-succeeded
            spec:
              template:
                spec:
                  restartPolicy: Never
                  containers: [{name: m, image: "registry.example/stack:1", args: [migrate]}]
            ---
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: {{ include "stack.name" . }}-ready
              annotations:
                helm.sh/hook: post-install
            data: {ready: "yes"}
            ---
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: {{ include "stack.name" . }}-cleanup
              annotations:
                helm.sh/hook: pre-delete
            data: {step: cleanup}
            """,
        "charts/common/Chart.yaml": """
            apiVersion: v2
            name: common
            version: 0.1.0
            type: library
            """,
        "charts/common/templates/_labels.tpl": """
            {{- define "common.labels" -}}
            app.kubernetes.io/name: {{ .Chart.Name }}
            app.kubernetes.io/instance: {{ .Release.Name }}
            {{- end }}
            """,
        "charts/crds/Chart.yaml": """
            apiVersion: v2
            name: crds
            version: 0.1.0
            """,
        "charts/exporter/Chart.yaml": """
            apiVersion: v2
            name: exporter
            version: 0.1.0
            """,
        "charts/exporter/templates/daemonset.yaml": """
            apiVersion: apps/v1
            kind: DaemonSet
            metadata: {name: "{{ .Release.Name }}-exporter"}
            spec:
              selector: {matchLabels: {app: exporter}}
              template:
                metadata: {labels: {app: exporter}}
                spec: {containers: [{name: e, image: "registry.example/exporter:1"}]}
            """,
    }
    if vendor_all:
        files["charts/ui/Chart.yaml"] = "apiVersion: v2\nname: ui\nversion: 0.1.0\n"
    _write(chart, files)
    for plural in ("gadgets", "gizmos"):
        crd = (
            "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
            f"metadata: {{name: {plural}.stack.example.com}}\n"
            f"spec:\n  group: stack.example.com\n  scope: Namespaced\n"
            f"  names: {{kind: {plural.title()[:-1]}, plural: {plural}, singular: {plural[:-1]}}}\n"
            "  versions:\n    - name: v1\n      served: true\n      storage: true\n"
            "      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}\n"
        )
        (chart / "charts/crds/crds").mkdir(parents=True, exist_ok=True)
        (chart / f"charts/crds/crds/crd-{plural}.yaml").write_text(crd, encoding="utf-8")
    return chart


# The addons of examples/fleet/charts, written for the tests in their upstream charts' shape: the same
# chart names and the same values keys (so the example's values mean the same thing), with
# just enough templates to show that those values land where the upstream charts put them.
ADDON_CHARTS: dict[str, dict[str, str]] = {
    "cluster-autoscaler": {
        "Chart.yaml": "apiVersion: v2\nname: cluster-autoscaler\nversion: 9.59.0\nappVersion: 1.35.0\n",
        "values.yaml": """
            cloudProvider: aws
            autoDiscovery: {clusterName: ""}
            awsRegion: ""
            image: {repository: registry.k8s.io/autoscaling/cluster-autoscaler, tag: v1.35.0}
            extraArgs: {logtostderr: true, stderrthreshold: info, v: 4}
            fullnameOverride: ""
            priorityClassName: system-cluster-critical
            rbac: {create: true, serviceAccount: {name: ""}}
            """,
        "templates/_helpers.tpl": """
            {{- define "ca.fullname" -}}
            {{- $default := printf "%s-%s-cluster-autoscaler" .Release.Name .Values.cloudProvider -}}
            {{- .Values.fullnameOverride | default $default -}}
            {{- end }}
            """,
        "templates/serviceaccount.yaml": """
            {{- if .Values.rbac.create }}
            apiVersion: v1
            kind: ServiceAccount
            metadata:
              name: {{ .Values.rbac.serviceAccount.name | default (include "ca.fullname" .) }}
              namespace: {{ .Release.Namespace }}
            {{- end }}
            """,
        "templates/deployment.yaml": """
            {{- $cluster := required "autoDiscovery.clusterName is required" .Values.autoDiscovery.clusterName }}
            {{- $tags := printf "k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/%s" $cluster }}
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: {{ include "ca.fullname" . }}
              namespace: {{ .Release.Namespace }}
            spec:
              selector: {matchLabels: {app: {{ include "ca.fullname" . }}}}
              template:
                metadata: {labels: {app: {{ include "ca.fullname" . }}}}
                spec:
                  priorityClassName: {{ .Values.priorityClassName }}
                  serviceAccountName: {{ .Values.rbac.serviceAccount.name | default (include "ca.fullname" .) }}
                  containers:
                    - name: aws-cluster-autoscaler
                      image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
                      command:
                        - ./cluster-autoscaler
                        - --cloud-provider={{ .Values.cloudProvider }}
                        - --node-group-auto-discovery=asg:tag={{ $tags }}
                        {{- range $key, $value := .Values.extraArgs }}
                        - --{{ $key }}={{ $value }}
                        {{- end }}
                      env: [{name: AWS_REGION, value: {{ .Values.awsRegion | quote }}}]
            """,
    },
    "external-dns": {
        "Chart.yaml": "apiVersion: v2\nname: external-dns\nversion: 1.21.1\nappVersion: 0.21.0\n",
        "values.schema.json": """
            {"type": "object", "required": ["policy"],
             "properties": {"policy": {"type": "string", "enum": ["create-only", "sync", "upsert-only"]}}}
            """,
        "values.yaml": """
            provider: {name: aws}
            policy:
            registry: txt
            sources: [service, ingress]
            domainFilters: []
            txtOwnerId: ""
            """,
        "crds/dnsendpoints.yaml": """
            ---
            apiVersion: apiextensions.k8s.io/v1
            kind: CustomResourceDefinition
            metadata: {name: dnsendpoints.externaldns.k8s.io}
            spec:
              group: externaldns.k8s.io
              scope: Namespaced
              names: {kind: DNSEndpoint, plural: dnsendpoints, singular: dnsendpoint}
              versions:
                - name: v1alpha1
                  served: true
                  storage: true
                  schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
            """,
        "templates/deployment.yaml": """
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: {{ .Release.Name }}, namespace: {{ .Release.Namespace }}}
            spec:
              selector: {matchLabels: {app: {{ .Release.Name }}}}
              template:
                metadata: {labels: {app: {{ .Release.Name }}}}
                spec:
                  containers:
                    - name: external-dns
                      image: registry.k8s.io/external-dns/external-dns:v{{ .Chart.AppVersion }}
                      args:
                        {{- range .Values.sources }}
                        - --source={{ . }}
                        {{- end }}
                        - --policy={{ .Values.policy }}
                        - --registry={{ .Values.registry }}
                        {{- with .Values.txtOwnerId }}
                        - --txt-owner-id={{ . }}
                        {{- end }}
                        {{- range .Values.domainFilters }}
                        - --domain-filter={{ . }}
                        {{- end }}
                        - --provider={{ .Values.provider.name }}
            """,
    },
    "metrics-server": {
        "Chart.yaml": "apiVersion: v2\nname: metrics-server\nversion: 3.13.1\nappVersion: 0.8.1\n",
        "values.yaml": """
            defaultArgs:
              - --cert-dir=/tmp
              - --kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname
              - --kubelet-use-node-status-port
              - --metric-resolution=15s
            args: []
            priorityClassName: ""
            """,
        "templates/deployment.yaml": """
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: {{ .Release.Name }}, namespace: {{ .Release.Namespace }}}
            spec:
              selector: {matchLabels: {app: {{ .Release.Name }}}}
              template:
                metadata: {labels: {app: {{ .Release.Name }}}}
                spec:
                  {{- with .Values.priorityClassName }}
                  priorityClassName: {{ . }}
                  {{- end }}
                  containers:
                    - name: metrics-server
                      image: registry.k8s.io/metrics-server/metrics-server:v{{ .Chart.AppVersion }}
                      args: {{- concat .Values.defaultArgs .Values.args | toYaml | nindent 12 }}
            """,
        "templates/apiservice.yaml": """
            apiVersion: apiregistration.k8s.io/v1
            kind: APIService
            metadata: {name: v1beta1.metrics.k8s.io}
            spec:
              service: {name: {{ .Release.Name }}, namespace: {{ .Release.Namespace }}}
              group: metrics.k8s.io
              version: v1beta1
              insecureSkipTLSVerify: true
              groupPriorityMinimum: 100
              versionPriority: 100
            """,
    },
}


def write_addon_chart(parent: Path, name: str) -> Path:
    """One of ADDON_CHARTS at ``parent/name``; returns its directory."""
    _write(parent / name, ADDON_CHARTS[name])
    return parent / name
