"""Faults of the git server, one trial each, against the real controller (issue 17, acceptance 2).

One `reconciler run` follows one GitSync over https with basic auth (``git http-backend`` behind
tests/gitserver.py's server, its faults switched per trial). For each fault the next commit is
staged on a side branch, the fault armed, and only then the commit published on ``main``; the
trial then checks the promises: Ready=False with reason ArtifactFailed and a message naming the
cause, the last good revision still applied, live and listed (nothing pruned: the staged
commit drops or restores ConfigMap b each time), no secret in the message; and, once the fault
is disarmed, the waiting commit applied on its own (prune included). Figures go to the record:
seconds from publishing to the failure, from disarming to the recovery.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gitserver
import pytest
from controllers import GS, Env
from gitserver import GitFault
from reliability import Recorder
from sourcescene import NAME, Scene, files

TIMEOUT = 3  # seconds: spec.timeout, which bounds each fetch
SECRET = "git-creds"
HTML = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n"
    b"<body><form action=/login>Wi-Fi sign-in required</form></body></html>\n"
)


@pytest.fixture
def scene(env: Env, namespace: str, eventually: Any) -> Scene:
    return Scene(env, namespace, eventually)


@dataclass
class Trial:
    """One git server fault: ``arm`` (given the staged commit's sha) and ``disarm``, and the
    Ready message (a regular expression) it must produce."""

    fault: str
    arm: Callable[[str], None]
    disarm: Callable[[], None]
    says: str
    figures: list[str] = field(default_factory=list)
    publishes: bool = False  # ``arm`` moves main to the staged commit itself


class GitFaults:
    """The scene, its https git server and repository, and the commit each trial waits with."""

    def __init__(self, scene: Scene, repo: gitserver.BareRepo, server: gitserver.HTTPSGitServer) -> None:
        self.scene, self.repo, self.server = scene, repo, server
        self.good = repo.head()
        self.serial = 0
        self.saved: dict[Path, bytes] = {}

    def stage(self) -> tuple[str, dict[str, dict[str, str]]]:
        """A commit on top of main, on branch ``next`` (main does not move yet): ConfigMap a gets a
        new value, b goes (or comes back). Returns its sha and the live state it makes."""
        self.serial += 1
        n = str(self.serial)
        data: dict[str, str | None] = {"a": n, "b": None if self.serial % 2 else n}
        self.repo._git("update-ref", "refs/heads/next", self.repo.head())
        sha = self.repo.commit(files(self.scene.ns, **data), f"trial {n}", branch="next")
        return sha, {k: {"v": v} for k, v in data.items() if v is not None}

    def publish(self, sha: str) -> None:
        self.repo._git("update-ref", "refs/heads/main", sha)

    def run(self, t: Trial, rec: Recorder) -> None:
        scene = self.scene
        live = scene.live()
        sha, want = self.stage()
        t.arm(sha)
        try:
            t0 = time.monotonic()
            if not t.publishes:
                self.publish(sha)
            cond = scene.eventually(scene.failed("ArtifactFailed", t.says, regex=True), 30, f"{t.fault}: reported")
            failed_in = time.monotonic() - t0
            scene.held(self.good, live)
            message = str(cond["message"])
            assert self.server.password not in message, "the password is in the Ready message"
        finally:
            t.disarm()
        t0 = time.monotonic()
        scene.ready_at(sha)
        assert scene.live() == want
        assert scene.listed() == set(want)
        self.good = sha
        reported = _reported(cond)
        rec.record(
            area="git",
            fault=t.fault,
            expected="Ready=False ArtifactFailed naming the cause, no secret in it; last good revision applied, live "
            "and listed, nothing pruned; the waiting commit applied on its own once the fault ends",
            observed=f"Ready=False {failed_in:.1f}s after the push: {reported}; "
            f"recovered {time.monotonic() - t0:.1f}s after the fault ended, prune included"
            + "".join(f"; {f}" for f in t.figures),
        )


def _reported(cond: dict[str, Any]) -> str:
    """The Ready message after its `GitSync NS/NAME: revision R: fetch failed: URL (REF): ` lead, shortened."""
    text = str(cond["message"]).split(": fetch failed: ", 1)[-1]
    return re.sub(r"^\S+ \((branch|tag) [^)]*\): ", "", text)[:220]


def _fault(server: gitserver.HTTPSGitServer, fault: GitFault) -> tuple[Callable[[str], None], Callable[[], None]]:
    def arm(sha: str) -> None:
        server.fault = fault

    def disarm() -> None:
        server.fault = None

    return arm, disarm


def test_git_server_faults(scene: Scene, git_repo: gitserver.BareRepo, tmp_path: Path, reliability: Recorder) -> None:
    ns, env = scene.ns, scene.env
    server = gitserver.HTTPSGitServer(tmp_path / "https").start()
    try:
        env.kube.request(
            "POST",
            f"/api/v1/namespaces/{ns}/secrets",
            body={
                "metadata": {"name": SECRET},
                "stringData": {
                    "username": server.username,
                    "password": server.password,
                    "ca.crt": server.ca_pem.decode(),
                },
            },
        )
        first = git_repo.commit(files(ns, a="0", b="0"), "first")
        url = server.url_for(git_repo.path)
        env.start("--watch-namespace", ns)
        git = {"url": url, "ref": {"branch": "main"}, "secretRef": {"name": SECRET}}
        env.gitsync(
            ns,
            NAME,
            url,
            raw_url=True,
            source={"git": git},
            path="app",
            interval="1s",
            retryInterval="1s",
            timeout=f"{TIMEOUT}s",
        )
        scene.ready_at(first)
        faults = GitFaults(scene, git_repo, server)
        for trial in trials(faults, server, git_repo):
            faults.run(trial, reliability)
        tags(faults, git_repo, reliability)
    finally:
        server.stop()


def trials(faults: GitFaults, server: gitserver.HTTPSGitServer, repo: gitserver.BareRepo) -> list[Trial]:
    password = server.password

    def rotate(sha: str) -> None:
        server.password = "pw-rotated-on-the-server"

    def restore() -> None:
        server.password = password

    moved = repo.path.with_name(repo.path.name + ".moved")

    def move(sha: str) -> None:
        repo.path.rename(moved)
        gitserver.git("--git-dir", str(moved), "update-ref", "refs/heads/main", sha)

    def back() -> None:
        moved.rename(repo.path)

    def corrupt(sha: str) -> None:
        """Zero the loose object of the staged commit's app/a.yaml on the server."""
        blob = repo._git("rev-parse", f"{sha}:app/a.yaml").strip()
        path = repo.path / "objects" / blob[:2] / blob[2:]
        faults.saved[path] = path.read_bytes()
        path.chmod(0o644)
        path.write_bytes(b"\0" * len(faults.saved[path]))

    def repair() -> None:
        for path, data in faults.saved.items():
            path.write_bytes(data)
        faults.saved.clear()

    return [
        Trial(
            f"git server slow: every upload-pack request answered after {TIMEOUT + 2}s, spec.timeout {TIMEOUT}s",
            *_fault(server, GitFault(delay=TIMEOUT + 2)),
            says=rf"timed out after {TIMEOUT}s",
        ),
        Trial(
            "pack cut mid-stream: the fetch's answer closed after 300 of its bytes",
            *_fault(server, GitFault(request="/git-upload-pack", command=b"command=fetch", truncate=300)),
            says=r"the connection to 127\.0\.0\.1 was cut during the transfer",
        ),
        Trial(
            "HTTP 500 on the upload-pack POSTs",
            *_fault(server, GitFault(request="/git-upload-pack", status=500, body=b"Internal Server Error\n")),
            says=r"answered with a server error \(HTTP 5xx\): git said: .*HTTP 500",
        ),
        Trial(
            "an HTML page (captive portal) answered 200 instead of git's ref advertisement",
            *_fault(server, GitFault(request="info/refs", status=200, body=HTML, content_type="text/html")),
            says=r"did not answer as a git server",
        ),
        Trial(
            "HTTP 401: the password was changed on the server (the Secret still has the old one)",
            rotate,
            restore,
            says=r"authentication failed: the credentials were refused",
        ),
        Trial(
            "repository gone from the server (renamed: 404)",
            move,
            back,
            says=r"repository unreachable",
            publishes=True,
        ),
        Trial(
            "an object of the new commit corrupt on the server (its loose object zeroed)",
            corrupt,
            repair,
            says=r"the repository is corrupt on the git server",
        ),
    ]


def tags(faults: GitFaults, repo: gitserver.BareRepo, rec: Recorder) -> None:
    """The GitSync follows tag v1 instead: moved to another commit, it is followed (as Flux does);
    deleted, the sync fails and the last good revision stays until the tag is back."""
    scene = faults.scene
    ns = scene.ns
    sha, want = faults.stage()
    faults.publish(sha)
    repo.tag("v1", sha)
    path = f"{GS}/namespaces/{ns}/gitsyncs/{NAME}"
    scene.env.kube.request(
        "PATCH",
        path,
        body={"spec": {"source": {"git": {"ref": {"branch": None, "tag": "v1"}}}}},
        content_type="application/merge-patch+json",
    )
    scene.ready_at(sha)
    assert scene.live() == want

    moved, want = faults.stage()
    faults.publish(moved)
    t0 = time.monotonic()
    repo.tag("v1", moved)
    scene.ready_at(moved)
    assert scene.live() == want
    assert scene.listed() == set(want)
    rec.record(
        area="git",
        fault="followed tag moved to another commit (re-tagged, as a force-pushed tag)",
        expected="the tag's new commit is applied (as Flux follows a moved tag); only what it dropped is pruned",
        observed=f"applied the new commit {time.monotonic() - t0:.1f}s after the tag moved; live and inventory = git",
    )

    live = scene.live()
    faults.good = moved
    after, want = faults.stage()
    faults.publish(after)
    t0 = time.monotonic()
    repo.delete_ref("refs/tags/v1")
    cond = scene.eventually(scene.failed("ArtifactFailed", "v1 not found"), 30, "the deleted tag reported")
    failed_in = time.monotonic() - t0
    scene.held(moved, live)
    t0 = time.monotonic()
    repo.tag("v1", after)
    scene.ready_at(after)
    assert scene.live() == want
    rec.record(
        area="git",
        fault="followed tag deleted on the server",
        expected="Ready=False ArtifactFailed naming the tag; last good revision applied, live and listed, nothing "
        "pruned; recovers on its own once the tag is back",
        observed=f"Ready=False {failed_in:.1f}s after the delete: {_reported(cond)}; "
        f"recovered {time.monotonic() - t0:.1f}s after the tag was pushed again",
    )
