"""The S3 bucket source against the moto server on 127.0.0.1, alone and inside `reconciler run`
against the real control plane. Failures the moto server cannot produce (access denied,
throttling, a connection dropped mid-download) come from tests/s3fault.py, a proxy in front
of it that answers like S3 does."""

from __future__ import annotations

import base64
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import awsserver
import pytest
import s3fault
from controllers import Env, cm

from reconciler.source.artifact import Artifact, SourceError
from reconciler.source.bucket import BucketCredentials, BucketLimits, BucketSource

BUCKET = "fleet-bucket"


def make_bucket(aws: awsserver.MotoServer, objects: dict[str, str]) -> Any:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": awsserver.REGION})
    for key, body in objects.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())
    return s3


def files(artifact: Artifact) -> dict[str, str]:
    return {str(p.relative_to(artifact.path)): p.read_text() for p in artifact.path.rglob("*") if p.is_file()}


def source(endpoint: str, tmp_path: Path, **kw: Any) -> BucketSource:
    return BucketSource(
        BUCKET, prefix="prod/", region=awsserver.REGION, endpoint=endpoint, cache_dir=tmp_path, timeout=10, **kw
    )


def test_fetch_downloads_only_what_changed(aws: awsserver.MotoServer, tmp_path: Path) -> None:
    s3 = make_bucket(aws, {"prod/a.yaml": "a: 1\n", "prod/sub/b.yaml": "b: 1\n", "prod/": "", "staging/c.yaml": "c"})
    with source(aws.endpoint, tmp_path) as src:
        first = src.fetch()
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", first.revision)
        assert files(first) == {"prod/a.yaml": "a: 1\n", "prod/sub/b.yaml": "b: 1\n"}, "only the prefix, no marker"
        assert src.downloaded == 2

        assert src.fetch() == first, "an unchanged bucket keeps its revision and snapshot"
        assert src.downloaded == 0

        s3.put_object(Bucket=BUCKET, Key="prod/a.yaml", Body=b"a: 2\n")
        second = src.fetch()
        assert second.revision != first.revision
        assert src.downloaded == 1
        assert files(second) == {"prod/a.yaml": "a: 2\n", "prod/sub/b.yaml": "b: 1\n"}
        assert not first.path.exists(), "the previous snapshot is released once the new one is handed out"

        s3.delete_object(Bucket=BUCKET, Key="prod/sub/b.yaml")
        third = src.fetch()
        assert src.downloaded == 0
        assert files(third) == {"prod/a.yaml": "a: 2\n"}
        assert third.revision not in (first.revision, second.revision)

    # a new process (same cache) downloads nothing for objects it already has
    with source(aws.endpoint, tmp_path) as again:
        assert again.fetch().revision == third.revision
        assert again.downloaded == 0


def test_pagination_lists_every_object(aws: awsserver.MotoServer, tmp_path: Path) -> None:
    make_bucket(aws, {f"prod/cm-{i:04d}.yaml": f"i: {i}\n" for i in range(1005)})  # > one page of 1,000
    with source(aws.endpoint, tmp_path) as src:
        assert len(files(src.fetch())) == 1005


@pytest.mark.parametrize(
    ("fault", "rule", "expect"),
    [
        ("deny", ("GET", "list-type=2"), "ListObjectsV2: AccessDenied: Access Denied"),
        ("throttle", ("GET", "list-type=2"), "ListObjectsV2: SlowDown"),
        ("deny", ("GET", "prod/b.yaml"), "GetObject prod/b.yaml: AccessDenied"),
        ("truncate", ("GET", "prod/b.yaml"), "GetObject prod/b.yaml: IncompleteReadError: 2500 read"),
        ("pad", ("GET", "prod/b.yaml"), "GetObject prod/b.yaml: more than the 5000 bytes listed"),
    ],
)
def test_failures_keep_the_previous_artifact(
    aws: awsserver.MotoServer, tmp_path: Path, fault: str, rule: tuple[str, str], expect: str
) -> None:
    s3 = make_bucket(aws, {"prod/a.yaml": "a: 1\n"})
    creds = BucketCredentials(awsserver.ACCESS_KEY, awsserver.SECRET_KEY, "session-token-value")
    with s3fault.proxy(aws.endpoint) as (endpoint, faults), source(endpoint, tmp_path, credentials=creds) as src:
        good = src.fetch()
        s3.put_object(Bucket=BUCKET, Key="prod/b.yaml", Body=b"b: 1\n" * 1000)
        faults.rules[rule] = fault
        with pytest.raises(SourceError) as e:
            src.fetch()
        msg = str(e.value)
        assert expect in msg
        assert msg.startswith(f"s3://{BUCKET}/prod/ (endpoint {endpoint}): ")
        assert "\n" not in msg
        assert "Traceback" not in msg
        for secret in (awsserver.ACCESS_KEY, awsserver.SECRET_KEY, "session-token-value"):
            assert secret not in msg
        if fault == "throttle":
            assert faults.hits[rule] == 3, "botocore's standard retry mode: 3 attempts in all"
        assert files(good) == {"prod/a.yaml": "a: 1\n"}, "the previous artifact stays as it was"
        cached = list((tmp_path / "bucket").glob("*/objects/*"))
        assert len(cached) == 1, f"nothing half-downloaded is kept in the cache: {cached}"

        faults.rules.clear()
        assert files(src.fetch()) == {"prod/a.yaml": "a: 1\n", "prod/b.yaml": "b: 1\n" * 1000}


def test_a_listing_cut_short_is_refused_whole(aws: awsserver.MotoServer, tmp_path: Path) -> None:
    """An endpoint that marks the first page truncated but gives no continuation token (the V1
    listing format) must not pass for the whole prefix: the unlisted objects would be pruned."""
    s3 = make_bucket(aws, {f"prod/cm-{i:04d}.yaml": f"i: {i}\n" for i in range(1005)})
    with s3fault.proxy(aws.endpoint) as (endpoint, faults), source(endpoint, tmp_path) as src:
        good = src.fetch()
        s3.put_object(Bucket=BUCKET, Key="prod/new.yaml", Body=b"n: 1\n")
        faults.rules[("GET", "list-type=2")] = "drop-token"
        with pytest.raises(SourceError, match="truncated but has no continuation token"):
            src.fetch()
        assert src.downloaded == 0
        assert len(files(good)) == 1005, "the previous artifact stays whole"


def test_a_prefix_over_the_limits_is_refused_before_any_download(aws: awsserver.MotoServer, tmp_path: Path) -> None:
    make_bucket(aws, {"prod/a.yaml": "a: 1\n", "prod/backup.tar": "x" * 5000})
    with source(aws.endpoint, tmp_path, limits=BucketLimits(max_object_bytes=1000)) as src:
        with pytest.raises(SourceError, match=r"ListObjectsV2: prod/backup\.tar is 5000 bytes, over 1000"):
            src.fetch()
        assert src.downloaded == 0
    with (
        source(aws.endpoint, tmp_path, limits=BucketLimits(max_objects=1)) as src,
        pytest.raises(SourceError, match="more than 1 objects or"),
    ):
        src.fetch()
    with (
        source(aws.endpoint, tmp_path, limits=BucketLimits(max_total_bytes=4000)) as src,
        pytest.raises(SourceError, match="or 4000 bytes"),
    ):
        src.fetch()
    assert not list(tmp_path.glob("bucket/*/objects/*")), "nothing was downloaded"


def test_missing_bucket_and_unreachable_endpoint(aws: awsserver.MotoServer, tmp_path: Path) -> None:
    with source(aws.endpoint, tmp_path) as src, pytest.raises(SourceError, match="ListObjectsV2: NoSuchBucket"):
        src.fetch()
    with source(unreachable(), tmp_path) as src:
        with pytest.raises(SourceError) as e:
            src.fetch()
        assert "ListObjectsV2: EndpointConnectionError: Could not connect" in str(e.value)


def test_keys_escaping_the_tree_refuse_the_listing(aws: awsserver.MotoServer, tmp_path: Path) -> None:
    s3 = make_bucket(aws, {"prod/a.yaml": "a: 1\n"})
    with source(aws.endpoint, tmp_path) as src:
        good = src.fetch()
        s3.put_object(Bucket=BUCKET, Key="prod/../../escape.yaml", Body=b"x")
        with pytest.raises(SourceError, match=r"refusing the listing: unsafe path 'prod/\.\./\.\./escape\.yaml'"):
            src.fetch()
        assert src.downloaded == 0, "refused before any download"
        assert files(good) == {"prod/a.yaml": "a: 1\n"}
    assert not list(tmp_path.rglob("escape.yaml"))


def unreachable() -> str:
    """An endpoint on 127.0.0.1 where nothing listens (a port bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


# --------------------------------------------------------------------------- controller and CLI


def _status(env: Env, ns: str, name: str) -> dict[str, Any]:
    return dict((env.get(ns, name) or {}).get("status") or {})


def _fetch_lines(ctl: Any) -> list[str]:
    return [line["msg"] for line in ctl.lines() if str(line.get("msg", "")).startswith(f"fetched s3://{BUCKET}/")]


def test_controller_syncs_a_bucket_prefix(env: Env, aws: awsserver.MotoServer, namespace: str, eventually: Any) -> None:
    """Acceptance 1: a prefix syncs; one changed object gives a new revision and only that change;
    a deleted object is pruned; an unreachable or missing bucket fails the fetch and prunes nothing."""
    ns = namespace
    s3 = make_bucket(aws, {f"prod/app/{n}.yaml": cm(n, ns, {"v": "1"}) for n in ("a", "b", "c")})
    env.kube.request(
        "POST",
        f"/api/v1/namespaces/{ns}/secrets",
        body={
            "metadata": {"name": "s3-keys"},
            "data": {
                "accesskey": base64.b64encode(awsserver.ACCESS_KEY.encode()).decode(),
                "secretkey": base64.b64encode(awsserver.SECRET_KEY.encode()).decode(),
            },
        },
    )
    # The endpoints are on loopback: allowed for this namespace only (docs/security.md).
    ctl = env.start("--watch-namespace", ns, "--allow-bucket-endpoint", f"{ns}=http://127.0.0.1")
    bucket_spec = {
        "bucket": BUCKET,
        "prefix": "prod/",
        "region": awsserver.REGION,
        "endpoint": aws.endpoint,
        "secretRef": {"name": "s3-keys"},
    }
    env.gitsync(ns, "app", "", source={"bucket": bucket_spec}, path="prod/app")

    obj = eventually(lambda: env.ready(ns, "app"), 60, "the bucket GitSync to become Ready")
    rev1 = obj["status"]["lastAppliedRevision"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", rev1)
    assert obj["status"]["lastPlan"]["create"] == 3
    live = {n: env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/{n}") for n in ("a", "b", "c")}
    assert {n: o["data"] for n, o in live.items()} == {n: {"v": "1"} for n in "abc"}

    # one object changed: a new revision, one download, one object updated, the others untouched
    s3.put_object(Bucket=BUCKET, Key="prod/app/b.yaml", Body=cm("b", ns, {"v": "2"}).encode())
    obj = eventually(
        lambda: (o := env.ready(ns, "app")) and o["status"]["lastAppliedRevision"] != rev1 and o,
        30,
        "the changed object's revision to be applied",
    )
    rev2 = obj["status"]["lastAppliedRevision"]
    assert obj["status"]["lastPlan"] == {"create": 0, "configure": 1, "unchanged": 2, "prune": 0, "skip": 0}
    assert env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/b")["data"] == {"v": "2"}
    for n in ("a", "c"):
        after = env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/{n}")
        assert after["metadata"]["resourceVersion"] == live[n]["metadata"]["resourceVersion"], n
    assert f"fetched s3://{BUCKET}/prod/: {rev2} (3 objects, 1 downloaded)" in _fetch_lines(ctl)

    # one object deleted: pruned
    s3.delete_object(Bucket=BUCKET, Key="prod/app/c.yaml")
    eventually(lambda: env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/c") is None, 30, "c to be pruned")
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/a") is not None
    st = eventually(lambda: (st := _status(env, ns, "app")).get("lastPlan", {}).get("prune") == 1 and st, 10, "prune")
    rev3 = st["lastAppliedRevision"]
    assert rev3 not in (rev1, rev2)

    # unreachable endpoint, then a missing bucket: SourceFailed, nothing pruned
    for endpoint, bucket, expect in (
        (unreachable(), BUCKET, "ListObjectsV2: EndpointConnectionError"),
        (aws.endpoint, "no-such-bucket", "ListObjectsV2: NoSuchBucket"),
    ):
        env.kube.request(
            "PATCH",
            f"/apis/gitops.reconciler.dev/v1/namespaces/{ns}/gitsyncs/app",
            body={"spec": {"source": {"bucket": {**bucket_spec, "bucket": bucket, "endpoint": endpoint}}}},
            content_type="application/merge-patch+json",
        )

        def failed(expect: str = expect) -> dict[str, Any] | None:
            ready = [c for c in _status(env, ns, "app").get("conditions", []) if c["type"] == "Ready"]
            return ready[0] if ready and ready[0]["status"] == "False" and expect in ready[0]["message"] else None

        ready = eventually(failed, 30, f"Ready=False with {expect}")
        assert ready["reason"] == "ArtifactFailed"
        assert f"s3://{bucket}/prod/" in ready["message"]
        notes = [e["note"] for e in env.events(ns, "app") if e["reason"] == "SourceFailed"]
        assert any(expect in n for n in notes), notes
        assert _status(env, ns, "app")["lastAppliedRevision"] == rev3
        assert {n for n in "abc" if env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/{n}")} == {"a", "b"}

    # no credential anywhere the controller reports
    reported = ctl.log.read_text() + str(env.events(ns, "app")) + str(env.get(ns, "app"))
    assert awsserver.SECRET_KEY not in reported
    assert awsserver.ACCESS_KEY not in reported


def test_controller_uses_the_secret_and_picks_up_rotated_keys(
    env: Env, aws: awsserver.MotoServer, namespace: str, eventually: Any
) -> None:
    """The Secret's keys, not the controller's environment, sign the requests; a Secret without
    secretkey fails naming the key; a rotated key takes effect without any change to the GitSync."""
    ns = namespace
    revoked = "AKIAREVOKEDKEY000000"
    make_bucket(aws, {"prod/app/a.yaml": cm("a", ns, {"v": "1"})})

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    secret_path = f"/api/v1/namespaces/{ns}/secrets/s3-keys"
    env.kube.request(
        "POST",
        f"/api/v1/namespaces/{ns}/secrets",
        body={"metadata": {"name": "s3-keys"}, "data": {"accesskey": b64(revoked)}},
    )

    def set_secret(data: dict[str, str]) -> None:
        body = {"data": {k: b64(v) for k, v in data.items()}}
        env.kube.request("PATCH", secret_path, body=body, content_type="application/merge-patch+json")

    def failed(expect: str) -> dict[str, Any] | None:
        ready = [c for c in _status(env, ns, "app").get("conditions", []) if c["type"] == "Ready"]
        return ready[0] if ready and ready[0]["status"] == "False" and expect in ready[0]["message"] else None

    with s3fault.proxy(aws.endpoint) as (endpoint, faults):
        faults.revoked.add(revoked)
        ctl = env.start("--watch-namespace", ns, "--allow-bucket-endpoint", f"{ns}=http://127.0.0.1")
        spec = {"bucket": BUCKET, "prefix": "prod/", "endpoint": endpoint, "secretRef": {"name": "s3-keys"}}
        env.gitsync(ns, "app", "", source={"bucket": spec}, path="prod/app")

        ready = eventually(lambda: failed("secretkey"), 30, "Ready=False naming the missing Secret key")
        assert "Secret s3-keys has no secretkey key" in ready["message"]

        set_secret({"secretkey": awsserver.SECRET_KEY})  # complete, but with the revoked access key
        ready = eventually(lambda: failed("AccessDenied"), 30, "AccessDenied for the revoked key")
        assert "ListObjectsV2: AccessDenied" in ready["message"]
        assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/a") is None

        set_secret({"accesskey": awsserver.ACCESS_KEY})  # rotated
        eventually(lambda: env.ready(ns, "app"), 30, "Ready with the rotated key")
    assert env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/a")["data"] == {"v": "1"}
    assert (env.get(ns, "app") or {})["metadata"]["generation"] == 1, "the GitSync itself never changed"
    reported = ctl.log.read_text() + str(env.events(ns, "app"))
    for value in (revoked, awsserver.ACCESS_KEY, awsserver.SECRET_KEY):
        assert value not in reported


def test_cli_diff_and_sync_from_a_bucket(
    aws: awsserver.MotoServer, cluster: Any, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    make_bucket(aws, {"prod/app/a.yaml": cm("a", ns, {"v": "1"})})
    common = ["--kubeconfig", str(cluster.kubeconfig), "-n", ns, "--cache-dir", str(tmp_path)]
    bucket = ["--bucket", BUCKET, "--prefix", "prod/", "--bucket-region", awsserver.REGION, "--endpoint", aws.endpoint]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reconciler", *args], capture_output=True, text=True, timeout=120, check=False
        )

    diff = cli("diff", *common, *bucket, "--path", "prod/app")
    assert diff.returncode == 1, diff.stderr
    assert f"ConfigMap/{ns}/a" in diff.stdout
    sync = cli("sync", *common, *bucket, "--path", "prod/app")
    assert sync.returncode == 0, sync.stderr
    assert cli("diff", *common, *bucket, "--path", "prod/app").returncode == 0
    missing = cli("diff", *common, "--bucket", "no-such-bucket", "--endpoint", aws.endpoint)
    assert missing.returncode == 2
    assert "s3://no-such-bucket/" in missing.stderr
    assert "NoSuchBucket" in missing.stderr
    assert "Traceback" not in missing.stderr
