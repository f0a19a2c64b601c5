"""Reconciler.reconcile up to the fetch, with a fake API handle: each early step failing maps to
its reason, condition and Event, and the message names the GitSync (no API server, no git server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline_fakes import Written

from reconciler.gitsync.reconcile import Reconciler, SyncState
from reconciler.gitsync.spec import parse
from reconciler.gitsync.tenancy import Tenancy
from reconciler.report import conditions as cond
from reconciler.report.metrics import Metrics


class FakeKube:
    """Records status patches; anything else it is asked for is not there."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        assert (method, path.rsplit("/", 1)[-1]) == ("PATCH", "status"), "only the status is written"
        self.patches.append(kw["body"]["status"])
        return {}


def gitsync(tmp_path: Path, **spec: Any) -> dict[str, Any]:
    source = {"git": {"url": (tmp_path / "missing.git").as_uri(), "ref": {"branch": "main"}}}
    return {
        "metadata": {"name": "apps", "namespace": "team", "generation": 2, "uid": "u"},
        "spec": {"source": source, **spec},
    }


def reconcile(
    tmp_path: Path, obj: dict[str, Any], *, tenancy: Tenancy | None = None, ready: bool = True
) -> tuple[Any, FakeKube, Written]:
    kube, written = FakeKube(), Written()
    r = Reconciler(
        kube,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        metrics=Metrics(),
        events=written,  # type: ignore[arg-type]
        cache_dir=tmp_path / "cache",
        tenancy=tenancy,
    )
    out = r.reconcile(obj, parse(obj), state=SyncState(), ready_of=lambda ns, name: ready, handled_request="now")
    return out, kube, written


def ready(obj: dict[str, Any]) -> dict[str, Any]:
    c = cond.get(obj["status"]["conditions"], cond.READY)
    assert c is not None
    return c


def test_a_tenant_refused_is_stalled_before_anything_is_read_or_marked(tmp_path: Path) -> None:
    obj = gitsync(tmp_path)
    out, kube, written = reconcile(tmp_path, obj, tenancy=Tenancy(local_git=False))
    assert (out.ok, out.stalled) == (False, True)
    assert (ready(obj)["status"], ready(obj)["reason"]) == ("False", "AccessDenied")
    assert cond.get(obj["status"]["conditions"], cond.STALLED)["status"] == "True"  # type: ignore[index]
    assert ready(obj)["message"].startswith("GitSync team/apps: spec.source.git.url: ")
    assert len(kube.patches) == 1, "no Reconciling mark first"
    assert "lastHandledRequestedAt" not in kube.patches[0]
    assert [(t, r) for t, r, _ in written.events] == [("Warning", "SyncFailed")]


def test_a_dependency_not_ready_waits_without_an_event(tmp_path: Path) -> None:
    obj = gitsync(tmp_path, dependsOn=[{"name": "crds"}])
    out, _, written = reconcile(tmp_path, obj, ready=False)
    assert (out.ok, out.waiting, out.stalled) == (False, True, False)
    assert ready(obj)["reason"] == "DependencyNotReady"
    assert ready(obj)["message"] == "GitSync team/apps: waiting for dependency GitSync team/crds to be Ready"
    assert written.events == []


def test_a_target_without_remote_support_fails_rather_than_sync_locally(tmp_path: Path) -> None:
    obj = gitsync(tmp_path, target={"eks": {"cluster": "prod", "region": "eu-west-1"}})
    out, kube, written = reconcile(tmp_path, obj)
    assert (out.ok, out.stalled) == (False, False)
    assert ready(obj)["reason"] == "TargetFailed"
    assert ready(obj)["message"] == (
        "GitSync team/apps: cannot connect to the target cluster: spec.target: this controller was "
        "started without support for remote clusters (EKS cluster prod (eu-west-1))"
    )
    assert kube.patches[-1]["lastHandledRequestedAt"] == "now", "after the Reconciling mark, the request is handled"
    assert [(t, r) for t, r, _ in written.events] == [("Warning", "SyncFailed")]


def test_a_fetch_that_fails_is_artifact_failed_with_no_revision(tmp_path: Path) -> None:
    obj = gitsync(tmp_path)
    out, kube, written = reconcile(tmp_path, obj)
    assert (out.ok, out.revision) == (False, "")
    assert len(kube.patches) == 1, "a verdict within seconds is the only write: no Reconciling mark before it"
    assert cond.get(kube.patches[0]["conditions"], cond.RECONCILING) is None
    assert ready(obj)["reason"] == "ArtifactFailed"
    assert ready(obj)["message"].startswith("GitSync team/apps: fetch failed: ")
    assert "lastAttemptedRevision" not in kube.patches[-1]
    assert [(t, r) for t, r, _ in written.events] == [("Warning", "SourceFailed")]
