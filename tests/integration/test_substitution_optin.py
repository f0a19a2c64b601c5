"""``${...}`` substitution is opt-in, as Flux's ``spec.postBuild``: a repository that never asks
for it syncs verbatim (shell scripts, CRD descriptions, Grafana dashboards), through the CLI and
through a GitSync in a real controller; asked for, it is strict unless an object opts out with
our annotation or Flux's."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from controllers import GS, Env

from reconciler import cli
from reconciler.kube import client

SCRIPT = '#!/bin/sh\nexec nginx -g "daemon off;" -c /etc/${FRONTEND}/nginx.conf\n'
DESCRIPTION = "Refer to a variable as ${var:position}; this is documentation, not a reference."
DASHBOARD = '{"panels": [{"datasource": {"type": "prometheus", "uid": "${datasource}"}}]}'


def _files(ns: str, group: str, opt_out: dict[str, str] | None = None) -> dict[str, str]:
    """A ConfigMap with a shell script, a CRD whose description mentions ${var:position}, and a
    Grafana dashboard ConfigMap; ``opt_out`` annotations go on each of the three."""
    meta = {"annotations": opt_out} if opt_out else {}
    script = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "entrypoint", "namespace": ns, **meta},
        "data": {"entrypoint.sh": SCRIPT},
    }
    dashboard = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "dashboard", "namespace": ns, "labels": {"grafana_dashboard": "1"}, **meta},
        "data": {"dash.json": DASHBOARD},
    }
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}", **meta},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"template": {"type": "string", "description": DESCRIPTION}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    return {
        "app/entrypoint.yaml": yaml.safe_dump(script),
        "app/dashboard.yaml": yaml.safe_dump(dashboard),
        "app/crd.yaml": yaml.safe_dump(crd),
    }


def _crd_path(group: str) -> str:
    return f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{group}"


def _assert_verbatim(kube: client.Kube, ns: str, group: str) -> None:
    assert kube.get(f"/api/v1/namespaces/{ns}/configmaps/entrypoint")["data"] == {"entrypoint.sh": SCRIPT}
    assert kube.get(f"/api/v1/namespaces/{ns}/configmaps/dashboard")["data"] == {"dash.json": DASHBOARD}
    schema = kube.get(_crd_path(group))["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["properties"]["spec"]["properties"]["template"]["description"] == DESCRIPTION


@pytest.fixture
def group(kube: client.Kube) -> Any:
    g = f"s{uuid.uuid4().hex[:8]}.example.com"
    yield g
    if kube.get_or_none(_crd_path(g)) is not None:
        kube.request("DELETE", _crd_path(g))


def _sync(git_repo: Any, cluster: Any, ns: str, tmp_path: Path, *args: str) -> Result:
    argv = [
        "sync",
        "--repo",
        git_repo.url,
        "--ref",
        "main",
        "--path",
        "app",
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--namespace",
        ns,
        "--name",
        "subst",
        "--cache-dir",
        str(tmp_path / "cache"),
        *args,
    ]
    return CliRunner().invoke(cli.cli, argv, catch_exceptions=False)


def _assert_strict_refusal(r: Result) -> None:
    """Exit 2 naming the file, the object and a reference of ours, with nothing written."""
    assert r.exit_code == 2, r.output
    assert "nothing was applied or pruned" in r.output, r.output
    named = {
        "app/crd.yaml": "'${var:position}'",  # an unsupported form: refused, not guessed at
        "app/dashboard.yaml": "${datasource} is not defined",
        "app/entrypoint.yaml": "${FRONTEND} is not defined",
    }
    assert any(f in r.output and why in r.output for f, why in named.items()), r.output


def test_cli_sync_is_verbatim_unless_substitution_is_asked_for(
    git_repo: Any, cluster: Any, kube: client.Kube, namespace: str, group: str, tmp_path: Path
) -> None:
    ns = namespace
    git_repo.commit(_files(ns, group), "scripts, dashboards and a CRD with ${...} text")

    r = _sync(git_repo, cluster, ns, tmp_path)
    assert r.exit_code == 0, r.output
    _assert_verbatim(kube, ns, group)

    # asked for (even with a variable none of them uses): strict, naming the object and variable
    r = _sync(git_repo, cluster, ns, tmp_path, "--substitute", "CLUSTER=dev")
    assert r.exit_code == 2, r.output
    _assert_strict_refusal(r)
    vars_file = tmp_path / "vars.env"
    vars_file.write_text("# cluster values\nCLUSTER=dev\n")
    r = _sync(git_repo, cluster, ns, tmp_path, "--substitute-from", str(vars_file))
    _assert_strict_refusal(r)

    # each object opting out (Flux's annotation): strict substitution leaves them alone
    git_repo.commit(_files(ns, group, {"kustomize.toolkit.fluxcd.io/substitute": "disabled"}), "opt out")
    r = _sync(git_repo, cluster, ns, tmp_path, "--substitute", "CLUSTER=dev")
    assert r.exit_code == 0, r.output
    _assert_verbatim(kube, ns, group)


def _condition(obj: dict[str, Any] | None, sha: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == "Ready" and sha in ((obj or {}).get("status") or {}).get("lastAttemptedRevision", ""):
            return dict(c)
    return None


def test_gitsync_is_verbatim_unless_substitution_is_asked_for(
    env: Env, git_repo: Any, namespace: str, group: str, eventually: Any
) -> None:
    ns = namespace
    sha = git_repo.commit(_files(ns, group), "scripts, dashboards and a CRD with ${...} text")
    env.start("--watch-namespace", ns)

    # no substitute / substituteFrom: applied as written
    env.gitsync(ns, "plain", git_repo.url, path="app")
    eventually(lambda: env.ready(ns, "plain"), 60, "GitSync plain to become Ready")
    _assert_verbatim(env.kube, ns, group)

    # substitute set, even empty: strict; Ready=False naming the variable, nothing applied
    env.kube.request("DELETE", f"{GS}/namespaces/{ns}/gitsyncs/plain")
    eventually(lambda: env.get(ns, "plain") is None, 30, "GitSync plain to be deleted")
    env.gitsync(ns, "strict", git_repo.url, path="app", substitute={}, prune=False)

    def failed() -> dict[str, Any] | None:
        c = _condition(env.get(ns, "strict"), sha)
        return c if c and c["status"] == "False" else None

    ready = eventually(failed, 30, "Ready=False for undefined variables")
    assert ready["reason"] == "BuildFailed", ready
    assert "${var:position}" in ready["message"] or "is not defined and has no default" in ready["message"], ready

    # each object opting out with our annotation: the same GitSync syncs, verbatim
    sha2 = git_repo.commit(_files(ns, group, {"gitops.reconciler.dev/substitute": "disabled"}), "opt out")

    def synced() -> dict[str, Any] | None:
        o = env.ready(ns, "strict")
        return o if o and sha2 in o["status"].get("lastAppliedRevision", "") else None

    eventually(synced, 30, "the opted-out revision to sync with substitution on")
    _assert_verbatim(env.kube, ns, group)
