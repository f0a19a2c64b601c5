"""snapshot.Handed: the last snapshot a source handed out stays until the next revision replaces it."""

from __future__ import annotations

from pathlib import Path

from reconciler.source import snapshot


def test_same_revision_is_handed_out_again_and_a_new_one_releases_the_old(tmp_path: Path) -> None:
    handed = snapshot.Handed()
    assert handed.same("main@sha1:1") is None
    first = handed.hand_out(snapshot.allocate(tmp_path, "one"), revision="main@sha1:1")
    assert handed.same("main@sha1:1") == first
    assert handed.same("main@sha1:2") is None
    second = handed.hand_out(snapshot.allocate(tmp_path, "two"), revision="main@sha1:2")
    assert not first.path.exists()  # a sync reading the old tree has moved on: it goes
    assert second.path.is_dir()
    handed.release()
    assert not second.path.exists()
    assert handed.same("main@sha1:2") is None
    handed.release()  # closing twice is harmless
