"""A tenant's repository cannot fill the cache volume or the controller's memory: the blob and
tree caps of a git export, the cap on the fetched objects, and the streaming inputs digest.
Real git repositories (file://, as the controller fetches them) and real files on disk."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import gitserver
import pytest

from reconciler.source.git import GitRef, GitSource, SourceError
from reconciler.source.limits import DEFAULT, TreeLimitError, TreeLimits
from reconciler.source.local import tree_digest


def _source(repo: gitserver.BareRepo, cache: Path, **kw: object) -> GitSource:
    return GitSource(repo.url, GitRef(branch="main"), cache_dir=cache, timeout=60, **kw)  # type: ignore[arg-type]


def test_compressible_blob_over_the_cap_fails_and_keeps_the_last_artifact(
    git_repo: gitserver.BareRepo, tmp_path: Path
) -> None:
    good = git_repo.commit({"app/a.yaml": "a: 1\n"}, "good")
    with _source(git_repo, tmp_path / "cache") as src:
        first = src.fetch()
        assert first.revision == f"main@sha1:{good}"
        # 65 MiB of zeros: ~65 KiB in the pack, 65 MiB once exported (the default cap is 64 MiB).
        big = DEFAULT.max_file_bytes + 1024 * 1024
        git_repo.commit({"blobs/zeros.bin": b"\0" * big}, "a bomb")
        with pytest.raises(SourceError) as e:
            src.fetch()
        msg = str(e.value)
        assert f"refusing the commit: blobs/zeros.bin is {big} bytes, over the limit of {DEFAULT.max_file_bytes}" in msg
        assert (first.path / "app" / "a.yaml").read_text() == "a: 1\n", "the last good artifact stays"
        snaps = tmp_path / "cache" / "git"
        assert not list(snaps.rglob("zeros.bin")), "nothing of the refused commit was written"


def test_too_many_files_or_bytes_name_the_file_and_the_cap(git_repo: gitserver.BareRepo, tmp_path: Path) -> None:
    git_repo.commit({f"f{i}.yaml": f"i: {i}\n" + "#" * 995 for i in range(5)}, "five files of 1000 bytes")
    with (
        _source(git_repo, tmp_path / "c1", tree_limits=TreeLimits(max_files=3)) as src,
        pytest.raises(SourceError, match=r"refusing the commit: more than 3 files \(the limit\) at f3\.yaml"),
    ):
        src.fetch()
    with (
        _source(git_repo, tmp_path / "c2", tree_limits=TreeLimits(max_total_bytes=2500)) as src,
        pytest.raises(SourceError, match=r"more than 2500 bytes in all \(the limit\) at f2\.yaml"),
    ):
        src.fetch()


def test_fetched_objects_over_the_cap_are_refused_and_deleted(git_repo: gitserver.BareRepo, tmp_path: Path) -> None:
    git_repo.commit({"noise.bin": os.urandom(2 * 1024 * 1024)}, "2 MiB that does not compress")
    with (
        _source(git_repo, tmp_path / "cache", tree_limits=TreeLimits(max_total_bytes=64 * 1024)) as src,
        pytest.raises(SourceError, match=r"the fetched objects take \d+ bytes, over the limit of 65536 bytes"),
    ):
        src.fetch()
    assert not list((tmp_path / "cache").rglob("repo.git")), "the oversized cache copy does not stay on the volume"


def test_inputs_digest_streams_a_big_file(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"\1" * (48 * 1024 * 1024))
    tracemalloc.start()
    try:
        digest = tree_digest(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.startswith("sha256:")
    assert peak < 8 * 1024 * 1024, f"the digest held {peak} bytes at once"


def test_inputs_digest_stops_at_the_caps(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("x" * 100)
    (tmp_path / "b.yaml").write_text("y")
    with pytest.raises(TreeLimitError, match=r"^a\.yaml is 100 bytes, over the limit of 50 bytes for one file$"):
        tree_digest(tmp_path, limits=TreeLimits(max_file_bytes=50))
    with pytest.raises(TreeLimitError, match=r"^more than 1 files \(the limit\) at b\.yaml$"):
        tree_digest(tmp_path, limits=TreeLimits(max_files=1))
    assert tree_digest(tmp_path / "a.yaml") != tree_digest(tmp_path / "b.yaml"), "a file path is digested too"


def test_inputs_digest_does_not_follow_symlinks_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("1")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "link").symlink_to(outside)
    before = tree_digest(tree)
    (outside / "secret").write_text("2")
    assert tree_digest(tree) == before, "the digest read through a symlink out of the tree"
