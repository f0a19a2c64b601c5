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
