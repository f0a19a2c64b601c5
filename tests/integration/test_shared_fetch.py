"""Shared fetches against a real git server over http: many readers of one repository cost one
``git fetch``, counted from the server's own request log (one ``info/refs?service=git-upload-pack``
per fetch the client runs)."""

from __future__ import annotations

import threading
from pathlib import Path

import awsserver
import gitserver

from reconciler.source.artifact import Artifact
from reconciler.source.bucket import BucketSource
from reconciler.source.git import GitRef, GitSource
from reconciler.source.shared import SharedOptions, SharedSources, source_key


def fetches(server: gitserver.HTTPGitServer, repo: gitserver.BareRepo) -> int:
    return sum("info/refs?service=git-upload-pack" in r and repo.path.name in r for r in server.requests)


def test_fifty_readers_one_fetch_then_one_per_push(
    tmp_path: Path, git_repo: gitserver.BareRepo, git_http: gitserver.HTTPGitServer
) -> None:
    first = git_repo.commit({"apps/a/app.yaml": "kind: ConfigMap\n", "apps/b/app.yaml": "kind: Secret\n"})
    url = git_http.url_for(git_repo.path)
    shared = SharedSources(root=tmp_path / "cache", options=SharedOptions(fresh_for=60))
    key = source_key(kind="git", location=url, ref="branch=main", credentials="")

    def open_source() -> GitSource:
        return GitSource(url, GitRef(branch="main"), cache_dir=tmp_path / "cache")

    start = threading.Barrier(50)
    seen: list[tuple[str, str]] = []

    def reader(i: int) -> None:
        start.wait()
        with shared.checkout(key, open_source=open_source) as co:
            seen.append((co.revision, (co.path / "apps" / "ab"[i % 2] / "app.yaml").read_text()))

    before = fetches(git_http, git_repo)
    threads = [threading.Thread(target=reader, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert fetches(git_http, git_repo) - before == 1
    assert len(seen) == 50
    assert {rev for rev, _ in seen} == {f"main@sha1:{first}"}
    assert {text for _, text in seen} == {"kind: ConfigMap\n", "kind: Secret\n"}

    second = git_repo.commit({"apps/a/app.yaml": "kind: Service\n"})
    shared.invalidate(key)  # what a push webhook does
    for _ in range(10):
        with shared.checkout(key, open_source=open_source) as co:
            assert co.revision == f"main@sha1:{second}"
            assert (co.path / "apps" / "a" / "app.yaml").read_text() == "kind: Service\n"
    assert fetches(git_http, git_repo) - before == 2, "one more fetch for the push, none for the 10 readers"
    shared.close()


def test_unshared_sources_fetch_each(
    tmp_path: Path, git_repo: gitserver.BareRepo, git_http: gitserver.HTTPGitServer
) -> None:
    """What the count above saves: today each GitSync's own GitSource runs its own fetch."""
    git_repo.commit({"app.yaml": "kind: ConfigMap\n"})
    url = git_http.url_for(git_repo.path)
    before = fetches(git_http, git_repo)
    for _ in range(5):
        with GitSource(url, GitRef(branch="main"), cache_dir=tmp_path / "cache") as src:
            src.fetch()
    assert fetches(git_http, git_repo) - before == 5


class Counting:
    """A real source, with its fetches counted."""

    def __init__(self, source: BucketSource) -> None:
        self.source, self.fetches = source, 0

    def fetch(self) -> Artifact:
        self.fetches += 1
        return self.source.fetch()

    def close(self) -> None:
        self.source.close()


def test_bucket_readers_share_one_listing_and_download(aws: awsserver.MotoServer, tmp_path: Path) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="fleet", CreateBucketConfiguration={"LocationConstraint": awsserver.REGION})
    s3.put_object(Bucket="fleet", Key="prod/a.yaml", Body=b"a: 1\n")
    shared = SharedSources(root=tmp_path / "cache", options=SharedOptions(fresh_for=60))
    key = source_key(kind="bucket", location=f"{aws.endpoint}/fleet/prod/", ref="", credentials="")
    made: list[Counting] = []

    def open_source() -> Counting:
        src = BucketSource(
            "fleet", prefix="prod/", region=awsserver.REGION, endpoint=aws.endpoint, cache_dir=tmp_path / "cache"
        )
        made.append(Counting(src))
        return made[-1]

    start = threading.Barrier(20)
    seen: list[str] = []

    def reader() -> None:
        start.wait()
        with shared.checkout(key, open_source=open_source) as co:
            seen.append((co.path / "prod" / "a.yaml").read_text())

    threads = [threading.Thread(target=reader) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert seen == ["a: 1\n"] * 20
    assert len(made) == 1
    assert made[0].fetches == 1
    s3.put_object(Bucket="fleet", Key="prod/a.yaml", Body=b"a: 2\n")
    shared.invalidate(key)
    with shared.checkout(key, open_source=open_source) as co:
        assert (co.path / "prod" / "a.yaml").read_text() == "a: 2\n"
    assert made[0].fetches == 2
    shared.close()
