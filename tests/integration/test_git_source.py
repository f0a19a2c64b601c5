"""The git source against real repositories: over file://, over ssh to a real sshd, and over
https to ``git http-backend``."""

from __future__ import annotations

import os
import pickle
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gitserver
import pytest

from reconciler.source.git import Artifact, GitCredentials, GitRef, GitSource, SourceError


@dataclass
class Remote:
    url: str
    credentials: GitCredentials | None


MakeSource = Callable[..., GitSource]


@pytest.fixture(params=["file", "ssh", "https"])
def remote(request: pytest.FixtureRequest, git_repo: gitserver.BareRepo) -> Remote:
    """The test repository, reached over each transport in turn."""
    if request.param == "file":
        return Remote(git_repo.url, None)
    if request.param == "https":
        web: gitserver.HTTPSGitServer = request.getfixturevalue("https_git_server")
        creds = GitCredentials(username=web.username, password=web.password, ca_bundle=web.ca_pem)
        return Remote(web.url_for(git_repo.path), creds)
    server: gitserver.SSHServer = request.getfixturevalue("ssh_git_server")
    creds = GitCredentials(ssh_private_key=server.private_key, known_hosts=server.known_hosts)
    return Remote(server.url_for(git_repo.path), creds)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def make_source(remote: Remote, cache: Path) -> Iterator[MakeSource]:
    made: list[GitSource] = []

    def make(ref: GitRef | None = None, **overrides: object) -> GitSource:
        kwargs: dict[str, object] = {"cache_dir": cache, "credentials": remote.credentials, "timeout": 30.0}
        kwargs.update(overrides)
        src = GitSource(str(kwargs.pop("url", remote.url)), ref or GitRef(branch="main"), **kwargs)  # type: ignore[arg-type]
        made.append(src)
        return src

    yield make
    for src in made:
        src.close()


def files_of(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- refs


def test_branch_gives_exactly_the_files_of_its_head(git_repo: gitserver.BareRepo, make_source: MakeSource) -> None:
    git_repo.commit({"a.yaml": "a: 1\n", "apps/b.yaml": "b: 2\n", "old.yaml": "x"}, "first")
    head = git_repo.commit(
        {"old.yaml": None, "run.sh": "#!/bin/sh\n"},
        "second",
        symlinks={"apps/link.yaml": "../a.yaml"},
        executable=("run.sh",),
    )
    art = make_source().fetch()
    assert art.revision == f"main@sha1:{head}"
    assert files_of(art.path) == {
        "a.yaml": "a: 1\n",
        "apps/b.yaml": "b: 2\n",
        "apps/link.yaml": "a: 1\n",
        "run.sh": "#!/bin/sh\n",
    }
    assert not (art.path / ".git").exists()
    assert (art.path / "apps/link.yaml").readlink() == Path("../a.yaml")
    assert stat.S_IMODE((art.path / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((art.path / "a.yaml").stat().st_mode) == 0o644


def test_new_commit_gives_new_revision_and_the_cache_is_fetched_not_recloned(
    git_repo: gitserver.BareRepo, make_source: MakeSource, cache: Path
) -> None:
    first = git_repo.commit({"a.yaml": "v1", "gone.yaml": "x"}, "first")
    src = make_source()
    art1 = src.fetch()
    assert art1.revision == f"main@sha1:{first}"
    assert src.fetch() == art1, "an unchanged ref hands out the same snapshot"
    [repo_dir] = cache.glob("git/*/repo.git")
    inode = repo_dir.stat().st_ino
    (repo_dir / "marker").write_text("still here")

    second = git_repo.commit({"a.yaml": "v2", "gone.yaml": None}, "second")
    art2 = src.fetch()
    assert art2.revision == f"main@sha1:{second}"
    assert files_of(art2.path) == {"a.yaml": "v2"}
    assert not art1.path.exists(), "the previous snapshot is replaced"

    # A new process (a new GitSource on the same cache dir) reuses the repository.
    src.close()
    third = git_repo.commit({"a.yaml": "v3"}, "third")
    art3 = make_source().fetch()
    assert art3.revision == f"main@sha1:{third}"
    assert repo_dir.stat().st_ino == inode
    assert (repo_dir / "marker").read_text() == "still here"
    assert gitserver.git("--git-dir", str(repo_dir), "rev-parse", "--is-shallow-repository").strip() == "true"


def test_annotated_tag_revision_names_the_commit_not_the_tag_object(
    git_repo: gitserver.BareRepo, make_source: MakeSource
) -> None:
    commit = git_repo.commit({"a.yaml": "tagged"}, "release")
    tag_object = git_repo.annotated_tag("v1.0.0")
    git_repo.commit({"a.yaml": "later"}, "after the tag")
    assert tag_object != commit
    art = make_source(GitRef(tag="v1.0.0")).fetch()
    assert art.revision == f"v1.0.0@sha1:{commit}"
    assert files_of(art.path) == {"a.yaml": "tagged"}


def test_lightweight_tag(git_repo: gitserver.BareRepo, make_source: MakeSource) -> None:
    commit = git_repo.commit({"a.yaml": "x"}, "one")
    git_repo.tag("stable")
    assert make_source(GitRef(tag="stable")).fetch().revision == f"stable@sha1:{commit}"


def test_semver_picks_the_highest_matching_tag_and_fetches_only_it(
    git_repo: gitserver.BareRepo, make_source: MakeSource, cache: Path
) -> None:
    git_repo.commit({"v": "1.0.0"}, "1.0.0")
    git_repo.annotated_tag("v1.0.0")
    c12 = git_repo.commit({"v": "1.2.0"}, "1.2.0")
    git_repo.annotated_tag("v1.2.0")
    c2 = git_repo.commit({"v": "2.0.0"}, "2.0.0")
    git_repo.tag("v2.0.0")
    git_repo.tag("not-a-version")
    src = make_source(GitRef(semver=">=1.0.0 <2.0.0"))
    art = src.fetch()
    assert art.revision == f"v1.2.0@sha1:{c12}"
    assert files_of(art.path) == {"v": "1.2.0"}
    [repo_dir] = cache.glob("git/*/repo.git")
    with pytest.raises(gitserver.GitServerError):
        gitserver.git("--git-dir", str(repo_dir), "cat-file", "-e", c2)

    c13 = git_repo.commit({"v": "1.3.0"}, "1.3.0")
    git_repo.tag("1.3.0")
    assert src.fetch().revision == f"1.3.0@sha1:{c13}"


def test_semver_without_a_match_is_a_clear_error(git_repo: gitserver.BareRepo, make_source: MakeSource) -> None:
    git_repo.commit({"v": "1"}, "one")
    git_repo.tag("v1.0.0")
    with pytest.raises(SourceError, match=r"no tag matches the semver range '\^2'") as err:
        make_source(GitRef(semver="^2")).fetch()
    assert "(semver ^2)" in str(err.value)


def test_commit_ref_fetches_that_commit(git_repo: gitserver.BareRepo, make_source: MakeSource) -> None:
    old = git_repo.commit({"a.yaml": "old"}, "old")
    git_repo.commit({"a.yaml": "new"}, "new")
    src = make_source(GitRef(commit=old))
    art = src.fetch()
    assert art.revision == f"sha1:{old}"
    assert files_of(art.path) == {"a.yaml": "old"}
    assert src.fetch() == art


def test_commit_from_a_protocol_v0_server_falls_back_to_a_full_fetch(
    git_repo: gitserver.BareRepo,
    https_git_server: gitserver.HTTPSGitServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="reconciler.source.git")
    old = git_repo.commit({"a.yaml": "old"}, "old")
    git_repo.commit({"a.yaml": "new"}, "new")
    creds = GitCredentials(bearer_token=https_git_server.token, ca_bundle=https_git_server.ca_pem)
    url = https_git_server.url_for(git_repo.path)
    https_git_server.protocol_v2 = False
    try:
        with GitSource(url, GitRef(commit=old), cache_dir=tmp_path, credentials=creds) as src:
            art = src.fetch()
            assert art.revision == f"sha1:{old}"
            assert files_of(art.path) == {"a.yaml": "old"}
        assert "by sha failed" in caplog.text, "the v0 server should have refused the sha"
        with pytest.raises(SourceError, match="not found in the repository"):
            GitSource(url, GitRef(commit="1" * 40), cache_dir=tmp_path, credentials=creds).fetch()
    finally:
        https_git_server.protocol_v2 = True


def test_commit_that_does_not_exist(git_repo: gitserver.BareRepo, make_source: MakeSource) -> None:
    git_repo.commit({"a.yaml": "x"}, "one")
    with pytest.raises(SourceError, match="not found"):
        make_source(GitRef(commit="0" * 40)).fetch()


def test_default_branch_is_followed_by_name(git_repo: gitserver.BareRepo, make_source: MakeSource) -> None:
    head = git_repo.commit({"a.yaml": "trunk"}, "one", branch="trunk")
    git_repo.set_default_branch("trunk")
    assert make_source(GitRef()).fetch().revision == f"trunk@sha1:{head}"


# --------------------------------------------------------------------------- failures


def test_missing_branch_is_a_clear_error_and_the_last_snapshot_stays(
    git_repo: gitserver.BareRepo, make_source: MakeSource
) -> None:
    git_repo.commit({"a.yaml": "good"}, "good")
    src = make_source()
    good = src.fetch()
    git_repo.delete_ref("refs/heads/main")
    with pytest.raises(SourceError, match="branch main not found in the repository") as err:
        src.fetch()
    assert "\n" not in str(err.value)
    assert files_of(good.path) == {"a.yaml": "good"}, "a failed fetch must not touch the previous snapshot"

    with pytest.raises(SourceError, match="branch nope not found"):
        make_source(GitRef(branch="nope")).fetch()


def test_symlink_out_of_the_tree_is_refused_and_the_last_snapshot_stays(
    git_repo: gitserver.BareRepo, make_source: MakeSource
) -> None:
    git_repo.commit({"a.yaml": "good"}, "good")
    src = make_source()
    good = src.fetch()
    git_repo.commit({}, "evil", symlinks={"token": "/var/run/secrets/kubernetes.io/serviceaccount/token"})
    with pytest.raises(SourceError, match="points outside the repository"):
        src.fetch()
    git_repo.commit({"token": None}, "evil 2", symlinks={"d/up": "..", "d/x": "up/.."})
    with pytest.raises(SourceError, match="outside the repository"):
        src.fetch()
    assert files_of(good.path) == {"a.yaml": "good"}
    assert sorted(p.name for p in good.path.parent.iterdir() if p.is_dir()) == [good.path.name]


def test_unreachable_repository(tmp_path: Path, make_source: MakeSource, remote: Remote) -> None:
    url = remote.url.replace("repo.git", "missing.git")
    with pytest.raises(SourceError, match="repository unreachable") as err:
        make_source(url=url).fetch()
    assert str(err.value).startswith(url)


def test_stale_git_locks_from_a_killed_fetch_do_not_block_later_fetches(
    git_repo: gitserver.BareRepo, make_source: MakeSource, cache: Path
) -> None:
    git_repo.commit({"a.yaml": "1"}, "one")
    src = make_source()
    src.fetch()
    [repo_dir] = cache.glob("git/*/repo.git")
    for stale in ("shallow.lock", "refs/reconciler/target.lock", "packed-refs.lock", "config.lock"):
        (repo_dir / stale).write_text("")
    second = git_repo.commit({"a.yaml": "2"}, "two")
    assert src.fetch().revision == f"main@sha1:{second}"


def test_snapshots_left_by_a_crashed_process_are_removed(
    git_repo: gitserver.BareRepo, remote: Remote, make_source: MakeSource, cache: Path
) -> None:
    git_repo.commit({"a.yaml": "1"}, "one")
    crash = (
        "import os, pickle, sys; from pathlib import Path; from reconciler.source.git import GitSource, GitRef\n"
        "url, creds, cache = pickle.loads(sys.stdin.buffer.read())\n"
        "GitSource(url, GitRef(branch='main'), cache_dir=Path(cache), credentials=creds).fetch()\n"
        "os._exit(0)  # no close(): its snapshot stays on disk\n"
    )
    payload = pickle.dumps((remote.url, remote.credentials, str(cache)))
    subprocess.run([sys.executable, "-c", crash], input=payload, check=True, timeout=60)
    [snapshots] = cache.glob("git/*/snapshots")
    assert len([p for p in snapshots.iterdir() if p.is_dir()]) == 1
    art = make_source().fetch()
    assert [p for p in snapshots.iterdir() if p.is_dir()] == [art.path]


def test_close_removes_the_snapshot_but_not_the_cache(
    git_repo: gitserver.BareRepo, make_source: MakeSource, cache: Path
) -> None:
    git_repo.commit({"a.yaml": "x"}, "one")
    src = make_source()
    art = src.fetch()
    src.close()
    assert not art.path.exists()
    assert list(cache.glob("git/*/repo.git"))


def test_two_workers_share_one_cache(git_repo: gitserver.BareRepo, make_source: MakeSource) -> None:
    git_repo.commit({"a.yaml": "x"}, "one")
    sources = [make_source(), make_source()]
    results: list[Artifact | Exception | None] = [None, None]

    def work(i: int) -> None:
        try:
            results[i] = [sources[i].fetch() for _ in range(5)][-1]
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    a, b = results
    assert isinstance(a, Artifact), a
    assert isinstance(b, Artifact), b
    assert a.revision == b.revision
    assert a.path != b.path
    sources[0].close()
    assert files_of(b.path) == {"a.yaml": "x"}, "closing one worker's source must not touch the other's snapshot"


def _children() -> list[str]:
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_text()
        except OSError:
            continue
        comm, fields = stat_line[stat_line.index("(") + 1 : stat_line.rindex(")")], stat_line.rsplit(")", 1)[1].split()
        if fields[1] == me:  # the run state (R/S/D) changes on its own; only a zombie (Z) is a leak
            found.append(f"{entry.name} {comm}" + (" zombie" if fields[0] == "Z" else ""))
    return found


def test_100_fetches_leak_no_processes_and_no_fds(git_repo: gitserver.BareRepo, make_source: MakeSource) -> None:
    git_repo.commit({"a.yaml": "0"}, "zero")
    src = make_source()
    src.fetch()
    before = _children()
    fds = len(list(Path("/proc/self/fd").iterdir()))
    for i in range(100):
        if i % 10 == 0:
            git_repo.commit({"a.yaml": str(i)}, f"commit {i}")
        art = src.fetch()
    assert files_of(art.path) == {"a.yaml": "90"}
    assert _children() == before, "a fetch left child processes behind"
    assert len(list(Path("/proc/self/fd").iterdir())) <= fds, "a fetch leaked file descriptors"


# --------------------------------------------------------------------------- ssh specifics


@pytest.fixture
def ssh_source(
    git_repo: gitserver.BareRepo, ssh_git_server: gitserver.SSHServer, tmp_path: Path
) -> Iterator[MakeSource]:
    git_repo.commit({"a.yaml": "x"}, "one")
    made: list[GitSource] = []

    def make(**creds: object) -> GitSource:
        values: dict[str, object] = {
            "ssh_private_key": ssh_git_server.private_key,
            "known_hosts": ssh_git_server.known_hosts,
        }
        values.update(creds)
        src = GitSource(
            ssh_git_server.url_for(git_repo.path),
            GitRef(branch="main"),
            cache_dir=tmp_path / "cache",
            credentials=GitCredentials(**values),  # type: ignore[arg-type]
            timeout=30,
        )
        made.append(src)
        return src

    yield make
    for src in made:
        src.close()


def test_ssh_unknown_host_key_is_refused(ssh_source: MakeSource, ssh_git_server: gitserver.SSHServer) -> None:
    with pytest.raises(
        SourceError, match=r"host key of 127\.0\.0\.1 is not in known_hosts; refusing to connect"
    ) as err:
        ssh_source(known_hosts=ssh_git_server.unknown_known_hosts).fetch()
    assert "\n" not in str(err.value)


def test_ssh_changed_host_key_is_refused_as_possible_mitm(
    ssh_source: MakeSource, ssh_git_server: gitserver.SSHServer
) -> None:
    with pytest.raises(SourceError, match=r"has CHANGED .*man-in-the-middle"):
        ssh_source(known_hosts=ssh_git_server.wrong_known_hosts).fetch()


def test_ssh_without_known_hosts_is_refused_before_connecting(ssh_source: MakeSource) -> None:
    with pytest.raises(SourceError, match="known_hosts is required"):
        ssh_source(known_hosts=None).fetch()


def test_ssh_wrong_deploy_key_is_an_auth_error(ssh_source: MakeSource, tmp_path: Path) -> None:
    other, _ = gitserver.ssh_keygen(tmp_path / "other_key")
    with pytest.raises(SourceError, match="ssh authentication failed: the server refused the deploy key"):
        ssh_source(ssh_private_key=other).fetch()
    with pytest.raises(SourceError, match="deploy key could not be loaded"):
        ssh_source(ssh_private_key=b"not a key").fetch()


def test_ssh_key_with_crlf_and_no_final_newline_works(
    ssh_source: MakeSource, ssh_git_server: gitserver.SSHServer
) -> None:
    mangled = ssh_git_server.private_key.rstrip(b"\n").replace(b"\n", b"\r\n")
    assert ssh_source(ssh_private_key=mangled).fetch().revision.startswith("main@sha1:")


def test_ssh_server_that_never_answers_times_out(git_repo: gitserver.BareRepo, tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        src = GitSource(
            f"ssh://git@127.0.0.1:{port}/repo.git",
            GitRef(branch="main"),
            cache_dir=tmp_path / "cache",
            credentials=GitCredentials(known_hosts=b"[127.0.0.1]:1 ssh-ed25519 AAAA\n"),
            timeout=2,
        )
        with pytest.raises(SourceError, match="timed out"):
            src.fetch()
        src.close()


# --------------------------------------------------------------------------- https specifics


@pytest.fixture
def https_source(
    git_repo: gitserver.BareRepo, https_git_server: gitserver.HTTPSGitServer, tmp_path: Path
) -> Iterator[Callable[..., GitSource]]:
    git_repo.commit({"a.yaml": "x"}, "one")
    made: list[GitSource] = []

    def make(url: str | None = None, **creds: object) -> GitSource:
        values: dict[str, object] = {"ca_bundle": https_git_server.ca_pem}
        values.update(creds)
        src = GitSource(
            url or https_git_server.url_for(git_repo.path),
            GitRef(branch="main"),
            cache_dir=tmp_path / "cache",
            credentials=GitCredentials(**values),  # type: ignore[arg-type]
            timeout=30,
        )
        made.append(src)
        return src

    yield make
    for src in made:
        src.close()


def test_https_bearer_token(https_source: MakeSource, https_git_server: gitserver.HTTPSGitServer) -> None:
    assert https_source(bearer_token=https_git_server.token).fetch().revision.startswith("main@sha1:")


def test_https_wrong_or_missing_credentials_are_an_auth_error_without_the_secret(
    https_source: MakeSource, https_git_server: gitserver.HTTPSGitServer
) -> None:
    with pytest.raises(SourceError, match="authentication failed") as err:
        https_source(username=https_git_server.username, password="wrong-pass-123").fetch()
    assert "wrong-pass-123" not in str(err.value)
    with pytest.raises(SourceError, match="authentication failed"):
        https_source().fetch()
    with pytest.raises(SourceError, match="authentication failed") as err:
        https_source(bearer_token="bad-token-456").fetch()
    assert "bad-token-456" not in str(err.value)


def test_https_credentials_in_the_url_work_and_never_show(
    https_source: MakeSource, https_git_server: gitserver.HTTPSGitServer, git_repo: gitserver.BareRepo
) -> None:
    clean = https_git_server.url_for(git_repo.path)
    user = https_git_server.username
    src = https_source(url=clean.replace("https://", f"https://{user}:{https_git_server.password}@"))
    assert src.fetch().revision.startswith("main@sha1:")
    assert https_git_server.password not in repr(src)
    with pytest.raises(SourceError, match="authentication failed") as err:
        https_source(url=clean.replace("https://", f"https://{user}:not-the-password-789@")).fetch()
    assert "not-the-password-789" not in str(err.value)
    assert str(err.value).startswith(clean)


def test_https_without_the_private_ca_fails_verification(https_source: MakeSource) -> None:
    with pytest.raises(SourceError, match="TLS certificate verification failed"):
        https_source(ca_bundle=None, bearer_token="x").fetch()


def test_https_server_that_never_answers_times_out_and_leaves_no_process(tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        before = _children()
        src = GitSource(
            f"https://127.0.0.1:{silent.getsockname()[1]}/repo.git",
            GitRef(branch="main"),
            cache_dir=tmp_path / "cache",
            timeout=2,
        )
        with pytest.raises(SourceError, match="timed out after 2s"):
            src.fetch()
        src.close()
        assert _children() == before
