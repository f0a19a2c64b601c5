"""Faults between the controller and its sources (git, S3) and in its cache directory, with the
real controller process and control plane (issue 17, "Dependency faults").

Each fault has the same four promises: the last good revision stays live, nothing is pruned,
the failure is reported by the reason the runbook names, and the controller recovers on its
own once the fault ends (here: it then applies the revision that waited, prune included).
Each trial is recorded for docs/reliability.md (areas "git", "s3", "disk").
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import awsserver
import gitserver
import pytest
import s3fault
from controllers import Env
from reliability import Recorder
from sourcescene import NAME, Scene, files, trial


@pytest.fixture
def scene(env: Env, namespace: str, eventually: Any) -> Scene:
    return Scene(env, namespace, eventually)


_trial = trial  # the name the trials below use


def test_git_server_down_and_branch_deleted(
    scene: Scene, git_repo: gitserver.BareRepo, tmp_path: Path, reliability: Recorder
) -> None:
    ns, env = scene.ns, scene.env
    good = git_repo.commit(files(ns, a="1", b="1"))
    server = gitserver.HTTPGitServer().start()
    try:
        env.start("--watch-namespace", ns)
        env.gitsync(ns, NAME, server.url_for(git_repo.path), raw_url=True, path="app", interval="2s")
        scene.ready_at(good)
        live = scene.live()

        port = server.port
        server.stop()  # connection refused
        pending = git_repo.commit(files(ns, a="2", b=None), "while the server is down")
        cond = scene.eventually(scene.failed("ArtifactFailed", "repository unreachable"), 30, "ArtifactFailed")
        scene.held(good, live)
        server.start(port=port)
        scene.ready_at(pending)
        assert scene.live() == {"a": {"v": "2"}}
        _trial(reliability, "git", "git server down (connection refused)", f"Ready=False: {cond['message'][:160]}")

        gitserver.git("--git-dir", str(git_repo.path), "update-ref", "-d", "refs/heads/main")
        cond = scene.eventually(scene.failed("ArtifactFailed", "not found in the repository"), 30, "ArtifactFailed")
        scene.held(pending, {"a": {"v": "2"}})
        back = git_repo.commit(files(ns, a="3", b="3"), "the branch is pushed again")
        scene.ready_at(back)
        assert scene.live() == {"a": {"v": "3"}, "b": {"v": "3"}}
        _trial(reliability, "git", "followed branch deleted on the server", f"Ready=False: {cond['message'][:160]}")
    finally:
        server.stop()


def test_force_push_and_rewritten_history_are_followed(
    scene: Scene, git_repo: gitserver.BareRepo, reliability: Recorder
) -> None:
    """A force-push is the branch's new content (as Flux follows it): synced, pruning only what
    it dropped. A history rewritten to the same trees (new shas, old objects gone from the
    server) changes the revision and nothing in the cluster."""
    ns, env = scene.ns, scene.env
    first = git_repo.commit(files(ns, a="1", b="1"))
    env.start("--watch-namespace", ns)
    env.gitsync(ns, NAME, git_repo.url, path="app", interval="2s")
    scene.ready_at(first)

    def on_main(*, parent: str | None, message: str, data: dict[str, str | None]) -> str:
        """A commit with ``data`` under app/ on top of ``parent`` (None: a new root), forced onto main."""
        git_repo.commit(files(ns, **data), message, branch="scratch")
        tree = gitserver.git("--git-dir", str(git_repo.path), "rev-parse", "scratch^{tree}").strip()
        args = ["commit-tree", tree, *(["-p", parent] if parent else []), "-m", message]
        sha = gitserver.git("--git-dir", str(git_repo.path), *args).strip()
        gitserver.git("--git-dir", str(git_repo.path), "update-ref", "-d", "refs/heads/scratch")
        gitserver.git("--git-dir", str(git_repo.path), "update-ref", "refs/heads/main", sha)
        return sha

    forced = on_main(parent=None, message="force-pushed: unrelated history", data={"a": "9", "b": None})
    scene.ready_at(forced)
    assert scene.live() == {"a": {"v": "9"}}
    assert scene.listed() == {"a"}
    _trial(
        reliability,
        "git",
        "branch force-pushed to an unrelated history",
        "synced the new tip; b (dropped by it) pruned, nothing else",
        expected="the new tip is applied as pushed (as Flux does); only what it dropped is pruned",
    )

    before = env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/a")["metadata"]["resourceVersion"]
    rewritten = on_main(parent=None, message="rewritten (filter-repo)", data={"a": "9"})
    gitserver.git("--git-dir", str(git_repo.path), "reflog", "expire", "--expire=now", "--all")
    gitserver.git("--git-dir", str(git_repo.path), "gc", "--prune=now", "--quiet")
    missing = subprocess.run(
        ["git", "--git-dir", str(git_repo.path), "cat-file", "-e", forced], capture_output=True, check=False
    )
    assert missing.returncode != 0, "the old commit is gone from the server"
    scene.ready_at(rewritten)
    assert env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/a")["metadata"]["resourceVersion"] == before
    assert scene.listed() == {"a"}
    _trial(
        reliability,
        "git",
        "history rewritten (same tree, new shas, old objects gc'd on the server)",
        "revision moved to the new sha; no object written or pruned",
        expected="the new sha is the revision; the cluster is unchanged",
    )


def _cache(env: Env) -> Path:
    return env.tmp / "cache"


def _corrupt(cache: Path, *, head: bool) -> int:
    """Overwrite every object file of every cached git repository with zeros (and its HEAD with
    garbage when ``head``); how many files."""
    n = 0
    for repo in cache.rglob("repo.git"):
        for path in (repo / "objects").rglob("*"):
            if path.is_file():
                path.chmod(0o644)
                path.write_bytes(b"\0" * max(path.stat().st_size, 1))
                n += 1
        if head:
            (repo / "HEAD").write_text("garbage\n")
    return n


def _wipe(cache: Path) -> None:
    for child in cache.iterdir():
        for here, dirs, _ in os.walk(child):  # checkouts are read-only
            for d in dirs:
                (Path(here) / d).chmod(0o755)
        shutil.rmtree(child)


def test_cache_corrupted_or_deleted_under_a_running_controller(
    scene: Scene, git_repo: gitserver.BareRepo, reliability: Recorder
) -> None:
    """The branch does not move: the controller must repair its cache by itself, without a
    failed sync, a new commit or a restart to help it."""
    ns, env = scene.ns, scene.env
    good = git_repo.commit(files(ns, a="1", b="1"))
    ctl = env.start("--watch-namespace", ns)
    env.gitsync(ns, NAME, git_repo.url, path="app", interval="2s")
    scene.ready_at(good)
    live = scene.live()

    faults: list[tuple[str, Callable[[], object]]] = [
        ("git cache object files zeroed (HEAD intact)", lambda: _corrupt(_cache(env), head=False)),
        ("git cache object files zeroed and HEAD garbage", lambda: _corrupt(_cache(env), head=True)),
        ("cache directory deleted (repositories, snapshots, checkouts)", lambda: _wipe(_cache(env))),
    ]
    for fault, inflict in faults:
        mark = len(ctl.lines())
        inflict()

        def after() -> list[dict[str, Any]]:
            return ctl.lines()[mark:]  # noqa: B023 - read at once, inside this round

        scene.eventually(
            lambda: sum(ln.get("reason") == "ReconciliationSucceeded" for ln in after()) >= 2,
            30,
            f"two syncs after: {fault}",
        )
        errors = [ln["msg"] for ln in after() if ln.get("level") == "ERROR"]
        assert errors == [], f"{fault}: {errors}"
        scene.held(good, live)
        repaired = [ln["msg"] for ln in after() if "is damaged" in ln.get("msg", "")]
        _trial(
            reliability,
            "disk",
            fault,
            "repaired by the next fetch, no failed sync" + (f" ({repaired[0][:120]}…)" if repaired else ""),
            expected="repaired by the controller itself: no failed sync, nothing pruned, the revision stays",
        )
    pending = git_repo.commit(files(ns, a="2", b=None), "after the faults")
    scene.ready_at(pending)
    assert scene.live() == {"a": {"v": "2"}}


BUCKET = "fleet-faults"


def test_s3_errors_and_truncated_listings(
    scene: Scene, aws: awsserver.MotoServer, eventually: Any, reliability: Recorder
) -> None:
    ns, env = scene.ns, scene.env
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": awsserver.REGION})

    def put(**data: str | None) -> None:
        for key, body in files(ns, **data).items():
            if body is None:
                s3.delete_object(Bucket=BUCKET, Key=key)
            else:
                s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())

    put(a="1", b="1")
    with s3fault.proxy(aws.endpoint) as (endpoint, faults):
        env.start(
            "--watch-namespace",
            ns,
            "--allow-bucket-endpoint",
            f"{ns}=http://127.0.0.1",
            "--allow-bucket",
            f"{ns}={BUCKET}",
        )
        spec = {"bucket": BUCKET, "region": awsserver.REGION, "endpoint": endpoint}
        env.gitsync(ns, NAME, "", source={"bucket": spec}, path="app", interval="2s")
        good = scene.ready_after("")
        live = scene.live()
        rounds = (
            ("internal", "InternalError", {"a": "2", "b": None}, "500 InternalError on ListObjectsV2"),
            (
                "cut",
                "truncated",
                {"a": "3", "b": "3"},
                "ListObjectsV2 page marked truncated without a continuation token",
            ),
        )
        for fault, needle, pending, name in rounds:
            faults.rules[("GET", "list-type=2")] = fault
            put(**pending)
            cond = eventually(scene.failed("ArtifactFailed", needle), 30, f"ArtifactFailed naming {needle}")
            scene.held(good, live)
            del faults.rules[("GET", "list-type=2")]
            good = scene.ready_after(good)
            live = {k: {"v": v} for k, v in pending.items() if v is not None}
            assert scene.live() == live
            _trial(reliability, "s3", name, f"Ready=False: {cond['message'][:160]}")


def _fill(path: Path) -> Path:
    """Write zeros to ``path`` until its file system is full."""
    with path.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
    return path


def test_disk_full_in_the_cache(
    scene: Scene, git_repo: gitserver.BareRepo, tmp_path: Path, reliability: Recorder
) -> None:
    """The cache on a 4 MiB tmpfs (we are root here); a file fills it while a new revision waits."""
    ns, env = scene.ns, scene.env
    cache = _cache(env)
    cache.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(cache)], check=True)
    try:
        good = git_repo.commit(files(ns, a="1", b="1"))
        ctl = env.start("--watch-namespace", ns)
        env.gitsync(ns, NAME, git_repo.url, path="app", interval="2s")
        scene.ready_at(good)
        live = scene.live()

        filler = _fill(cache / "filler")
        pending = git_repo.commit(
            {**files(ns, a="2", b=None), "app/big.txt": os.urandom(512 * 1024).hex()}, "needs disk"
        )
        cond = scene.eventually(scene.failed("ArtifactFailed", "No space left on device"), 40, "ENOSPC reported")
        scene.held(good, live)
        filler.unlink()
        scene.ready_at(pending)
        assert scene.live() == {"a": {"v": "2"}}
        _trial(reliability, "disk", "cache volume full (tmpfs) during a fetch", f"Ready=False: {cond['message'][:160]}")
    finally:
        for c in env.started:
            c.stop()
        subprocess.run(["umount", "-l", str(cache)], check=False)
    assert ctl.proc.returncode is not None
