"""Faults of the S3 endpoint, one trial each, against the real controller (issue 17, acceptance 2).

One `reconciler run` follows one bucket GitSync through tests/s3fault.py's proxy in front of
moto. For each fault the proxy is armed, then the next revision is put into the bucket
(ConfigMap a changes, so a GetObject must happen; b goes or comes back, so a prune is waiting),
and the trial checks the promises: Ready=False with reason ArtifactFailed naming the call and
AWS's error code, the last good revision still applied, live and listed, nothing pruned; once
the fault is disarmed, the waiting revision applied on its own. Faults the client retries are
checked the other way: the retry is seen at the proxy and the sync succeeds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import awsserver
import pytest
import s3fault
from controllers import Controller, Env
from reliability import Recorder
from sourcescene import NAME, Scene, files

BUCKET = "fleet-s3-faults"
TIMEOUT = 2  # seconds: spec.timeout, botocore's read timeout for each attempt
LIST = ("GET", "list-type=2")
GET = ("GET", f"/{BUCKET}/app/")  # every GetObject under the prefix (a listing's path has no "/app/")
EXPECTED = (
    "Ready=False ArtifactFailed naming the call and the error; last good revision applied, live and listed, "
    "nothing pruned; the waiting revision applied on its own once the fault ends"
)


@pytest.fixture
def scene(env: Env, namespace: str, eventually: Any) -> Scene:
    return Scene(env, namespace, eventually)


@dataclass
class Bucket:
    scene: Scene
    s3: Any
    faults: s3fault.Faults
    ctl: Controller
    good: str = ""
    serial: int = 0

    def put(self) -> dict[str, dict[str, str]]:
        """The next revision into the bucket; returns the live state it makes."""
        self.serial += 1
        n = str(self.serial)
        data: dict[str, str | None] = {"a": n, "b": None if self.serial % 2 else n}
        for key, body in files(self.scene.ns, **data).items():
            if body is None:
                self.s3.delete_object(Bucket=BUCKET, Key=key)
            else:
                self.s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())
        return {k: {"v": v} for k, v in data.items() if v is not None}

    def hits(self, rule: tuple[str, str]) -> int:
        return self.faults.hits.get(rule, 0)

    def trial(self, rec: Recorder, fault: str, rule: tuple[str, str], kind: str, says: str) -> None:
        """``rule`` answered ``kind`` until the failure is reported; then the proxy forwards again."""
        scene = self.scene
        live = scene.live()
        before = self.hits(rule)
        self.faults.rules[rule] = kind
        try:
            t0 = time.monotonic()
            want = self.put()
            cond = scene.eventually(scene.failed("ArtifactFailed", says, regex=True), 40, f"{fault}: reported")
            failed_in = time.monotonic() - t0
            scene.held(self.good, live)
            hits = self.hits(rule) - before
        finally:
            del self.faults.rules[rule]
        t0 = time.monotonic()
        self.converge(want)
        rec.record(
            area="s3",
            fault=fault,
            expected=EXPECTED,
            observed=f"Ready=False {failed_in:.1f}s after the put ({hits} requests faulted): {_reported(cond)}; "
            f"recovered {time.monotonic() - t0:.1f}s after the fault ended, prune included",
        )

    def converge(self, want: dict[str, dict[str, str]]) -> None:
        self.good = self.scene.ready_after(self.good)
        assert self.scene.live() == want
        assert self.scene.listed() == set(want)


def _reported(cond: dict[str, Any]) -> str:
    """The Ready message after its `GitSync NS/NAME: revision R: fetch failed: s3://B/ (endpoint E): ` lead."""
    text = str(cond["message"]).split(": fetch failed: ", 1)[-1]
    return re.sub(r"^s3://\S+ \(endpoint [^)]*\): ", "", text)[:220]


def test_s3_faults(scene: Scene, aws: awsserver.MotoServer, reliability: Recorder) -> None:
    ns, env = scene.ns, scene.env
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": awsserver.REGION})
    with s3fault.proxy(aws.endpoint) as (endpoint, faults):
        ctl = env.start(
            "--watch-namespace",
            ns,
            "--allow-bucket-endpoint",
            f"{ns}=http://127.0.0.1",
            "--allow-bucket",
            f"{ns}={BUCKET}",
        )
        b = Bucket(scene, s3, faults, ctl)
        want = b.put()
        spec = {"bucket": BUCKET, "region": awsserver.REGION, "endpoint": endpoint}
        env.gitsync(
            ns, NAME, "", source={"bucket": spec}, path="app", interval="1s", retryInterval="1s", timeout=f"{TIMEOUT}s"
        )
        b.converge(want)

        b.trial(reliability, "403 AccessDenied on GetObject", GET, "deny", r"GetObject app/a\.yaml: AccessDenied")
        b.trial(reliability, "403 AccessDenied on ListObjectsV2", LIST, "deny", r"ListObjectsV2: AccessDenied")
        b.trial(
            reliability,
            "503 SlowDown on every GetObject (botocore's retries spent)",
            GET,
            "throttle",
            r"GetObject app/a\.yaml: SlowDown",
        )
        b.trial(
            reliability,
            "GetObject body cut mid-stream (half the bytes, then the connection closed)",
            GET,
            "truncate",
            r"GetObject app/a\.yaml: IncompleteReadError: \d+ read, but total bytes expected is \d+",
        )
        b.trial(
            reliability,
            "GetObject sends more bytes than the listing said",
            GET,
            "pad",
            r"GetObject app/a\.yaml: more than the \d+ bytes listed",
        )
        b.trial(reliability, "404 NoSuchBucket on ListObjectsV2", LIST, "nosuchbucket", r"ListObjectsV2: NoSuchBucket")
        faults.delay = TIMEOUT + 2
        b.trial(
            reliability,
            f"slow endpoint: GetObject answered after {TIMEOUT + 2}s, spec.timeout {TIMEOUT}s",
            GET,
            "slow",
            r"GetObject app/a\.yaml: ReadTimeoutError: Read timeout on endpoint URL",
        )
        throttled_once(b, reliability)
        changed_between_list_and_get(b, reliability)


def throttled_once(b: Bucket, rec: Recorder) -> None:
    """One 503 SlowDown on the listing: botocore's standard retry sends it again, the sync succeeds."""
    b.faults.hits.pop(LIST, None)  # ``times`` counts from here
    b.faults.rules[LIST], b.faults.times[LIST] = "throttle", 1
    try:
        mark, logged = len(b.faults.seen), len(b.ctl.lines())
        t0 = time.monotonic()
        want = b.put()
        b.converge(want)
        took = time.monotonic() - t0
    finally:
        del b.faults.rules[LIST], b.faults.times[LIST]
    assert b.hits(LIST) == 1
    seen = b.faults.seen[mark:]
    first = next(i for i, (m, p) in enumerate(seen) if m == "GET" and LIST[1] in p)
    again = [p for m, p in seen[first + 1 :] if m == "GET" and LIST[1] in p]
    assert again, "the throttled listing was never sent again"
    errors = [ln["msg"] for ln in b.ctl.lines()[logged:] if "SlowDown" in ln.get("msg", "")]
    assert not errors, f"the retried 503 surfaced as a failure: {errors}"
    rec.record(
        area="s3",
        fault="503 SlowDown once on ListObjectsV2 (retried by the client)",
        expected="botocore's standard retry sends the listing again; the sync succeeds, no failure reported",
        observed=f"1 throttled, sent again ({len(again)} listing(s) after it); applied {took:.1f}s after the put, "
        "no SlowDown in the controller's log",
    )


def changed_between_list_and_get(b: Bucket, rec: Recorder) -> None:
    """The object is rewritten after the controller listed it and before its GetObject reaches
    the endpoint: the download asks for the listed version (If-Match), so the endpoint refuses it
    (412) rather than hand over content that does not match the revision; the next fetch lists
    the new version and applies it."""
    ns = b.scene.ns
    newest = {"a": {"v": "rewritten"}}
    key = "app/a.yaml"
    rewritten = files(ns, a="rewritten")[key]
    assert rewritten is not None

    def rewrite() -> None:
        b.s3.put_object(Bucket=BUCKET, Key=key, Body=rewritten.encode())

    hook: Callable[[], None] = rewrite
    rule = ("GET", f"/{BUCKET}/{key}")
    b.faults.rules[rule], b.faults.times[rule], b.faults.hooks[rule] = "pass", 1, hook
    mark = len(b.ctl.lines())
    try:
        b.s3.delete_object(Bucket=BUCKET, Key="app/b.yaml")
        t0 = time.monotonic()
        b.s3.put_object(Bucket=BUCKET, Key=key, Body=(files(ns, a="listed")[key] or "").encode())
        scene = b.scene

        def converged() -> bool:
            ready = scene.env.ready(ns, NAME) is not None
            return ready and scene.live() == newest and scene.listed() == set(newest)

        scene.eventually(converged, 40, "the rewritten object applied")
        took = time.monotonic() - t0
        b.good = str(scene.status().get("lastAppliedRevision", ""))
    finally:
        del b.faults.rules[rule], b.faults.times[rule], b.faults.hooks[rule]
    assert b.hits(rule) == 1
    refused = [ln["msg"] for ln in b.ctl.lines()[mark:] if "PreconditionFailed" in ln.get("msg", "")]
    assert refused, "the GetObject of a version no longer current was not refused (If-Match)"
    rec.record(
        area="s3",
        fault="object rewritten between ListObjectsV2 and its GetObject (ETag changed)",
        expected="the listed version is asked for (If-Match) and refused, never a mix of versions; the next fetch "
        "applies the new one",
        observed=f"the GetObject was refused ({_reported({'message': refused[0]})[:140]}); "
        f"the rewritten object applied {took:.1f}s after the put",
    )
