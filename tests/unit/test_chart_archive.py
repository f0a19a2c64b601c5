"""Untrusted chart archives: everything refused is refused before a single file is written."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from reconciler.source.artifact import SourceError
from reconciler.source.charts import archive
from reconciler.source.charts.archive import ArchiveLimits

CHART_YAML = b"apiVersion: v2\nname: demo\nversion: 0.1.0\n"


def tgz(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return gzip.compress(raw.getvalue())


def entry(name: str, kind: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for k, v in kw.items():
        setattr(info, k, v)
    return info


GOOD = (entry("demo/Chart.yaml"), CHART_YAML)


def test_a_good_archive_is_extracted_with_fixed_modes(tmp_path: Path) -> None:
    data = tgz(
        GOOD,
        (entry("demo/templates", tarfile.DIRTYPE), None),
        (entry("demo/templates/cm.yaml", mode=0o4777), b"kind: ConfigMap\n"),
    )
    chart = archive.extract(data, tmp_path / "out", chart="demo", label="demo@0.1.0")
    assert chart == tmp_path / "out" / "demo"
    assert (chart / "Chart.yaml").read_bytes() == CHART_YAML
    assert (chart / "templates" / "cm.yaml").stat().st_mode & 0o7777 == 0o644  # no setuid, no exec


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([GOOD, (entry("demo/../../evil.yaml"), b"x")], r"'demo/\.\./\.\./evil\.yaml' escapes the chart directory"),
        ([GOOD, (entry("/etc/cron.d/x"), b"x")], r"'/etc/cron\.d/x' has an absolute or unsafe path"),
        ([GOOD, (entry("demo\\..\\x"), b"x")], r"absolute or unsafe path"),
        ([GOOD, (entry("other/file"), b"x")], r"'other/file' is not under the chart directory 'demo/'"),
        ([GOOD, (entry("demo/link", tarfile.SYMTYPE, linkname="/etc/passwd"), None)], r"'demo/link' is a link"),
        ([GOOD, (entry("demo/hard", tarfile.LNKTYPE, linkname="demo/Chart.yaml"), None)], r"'demo/hard' is a link"),
        ([GOOD, (entry("demo/dev", tarfile.CHRTYPE, devmajor=1, devminor=3), None)], r"'demo/dev' is not a regular"),
        ([GOOD, (entry("demo/fifo", tarfile.FIFOTYPE), None)], r"'demo/fifo' is not a regular file"),
        ([(entry("demo/values.yaml"), b"a: 1\n")], r"archive has no demo/Chart\.yaml"),
        ([GOOD, GOOD], r"'demo/Chart\.yaml' appears twice"),
    ],
)
def test_unsafe_archives_are_refused_before_anything_is_written(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], message: str
) -> None:
    data = tgz(*members)
    with pytest.raises(SourceError, match=rf"^chart demo@0\.1\.0: .*{message}"):
        archive.extract(data, tmp_path / "out", chart="demo", label="demo@0.1.0")
    if "appears twice" not in message:  # only a duplicate is found while writing (into a fresh dir)
        assert not (tmp_path / "out").exists()


def test_escape_is_refused_even_when_it_comes_after_good_files(tmp_path: Path) -> None:
    data = tgz(GOOD, (entry("demo/templates/a.yaml"), b"a"), (entry("demo/../x"), b"x"))
    with pytest.raises(SourceError, match="escapes"):
        archive.extract(data, tmp_path / "out", chart="demo", label="demo@0.1.0")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "x").exists()


def test_size_limits(tmp_path: Path) -> None:
    big = (entry("demo/big.bin"), b"\0" * 4096)
    limits = ArchiveLimits(max_entry_bytes=1000)
    with pytest.raises(SourceError, match=r"'demo/big\.bin' is 4096 bytes, over the limit of 1000"):
        archive.extract(tgz(GOOD, big), tmp_path / "a", chart="demo", label="demo@0.1.0", limits=limits)
    with pytest.raises(SourceError, match=r"unpacks to more than 2000 bytes"):  # a gzip bomb stops here
        archive.extract(
            tgz(GOOD, big), tmp_path / "b", chart="demo", label="demo@0.1.0", limits=ArchiveLimits(max_total_bytes=2000)
        )
    with pytest.raises(SourceError, match=r"archive is \d+ bytes, over the limit of 10"):
        archive.extract(
            tgz(GOOD), tmp_path / "c", chart="demo", label="demo@0.1.0", limits=ArchiveLimits(max_compressed_bytes=10)
        )
    many = [(entry(f"demo/f{i}"), b"") for i in range(5)]
    with pytest.raises(SourceError, match=r"more than 3 entries"):
        archive.extract(
            tgz(GOOD, *many), tmp_path / "d", chart="demo", label="demo@0.1.0", limits=ArchiveLimits(max_entries=3)
        )
    assert not any((tmp_path / d).exists() for d in "abcd")


def test_not_gzip_or_not_tar(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a gzip archive"):
        archive.extract(b"<html>login</html>", tmp_path / "a", chart="demo", label="demo@0.1.0")
    with pytest.raises(SourceError, match="not a valid tar archive"):
        archive.extract(gzip.compress(b"x" * 1000), tmp_path / "b", chart="demo", label="demo@0.1.0")


def test_chart_yaml_must_name_the_fetched_version(tmp_path: Path) -> None:
    data = tgz(GOOD)
    assert archive.extract(data, tmp_path / "ok", chart="demo", label="demo@0.1.0", version="0.1.0").is_dir()
    with pytest.raises(SourceError, match=r"^chart demo@9\.9\.9: the archive's Chart\.yaml says demo@0\.1\.0$"):
        archive.extract(data, tmp_path / "bad", chart="demo", label="demo@9.9.9", version="9.9.9")
    assert not (tmp_path / "bad").exists()
