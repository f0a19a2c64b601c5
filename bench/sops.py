"""Benchmark: a revision of N SOPS-encrypted Secrets (default 200), first render/sync vs a no-op reconcile.

Every Secret is its own file, encrypted by the real sops for an AWS KMS key in a moto server on
loopback (``--age`` encrypts for an age identity instead); sops reaches KMS through a counting
proxy (tests/sopstools.py), so the KMS column is what KMS itself would have been asked.  In one
process, with the one process-wide decryptor:
  1. render, cold: every file decrypted (one sops run and one KMS ``Decrypt`` per file);
  2. render, no-op x R (default 3): the same revision again;
  3. with ``--sync``, on a fresh local control plane: the same revision synced through the one
     pipeline (``sync_revision``), then R no-op reconciles, with API requests and writes.
The target: a no-op decrypts nothing and calls KMS zero times.

Prints, per phase: wall time, CPU seconds (this process + its children: sops, kustomize),
decryptions (sops runs), cache hits, KMS Decrypt calls and, for syncs, API requests/writes.

    .venv/bin/python bench/sops.py [--secrets 200] [--reconciles 3] [--age] [--sync]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

import awsserver  # noqa: E402
import controlplane  # noqa: E402
import sopstools  # noqa: E402

from reconciler.gitsync.cluster import KubeCluster  # noqa: E402
from reconciler.gitsync.pipeline import sync_revision  # noqa: E402
from reconciler.gitsync.rendered import Rendered  # noqa: E402
from reconciler.gitsync.results import SyncOptions  # noqa: E402
from reconciler.kube import client, discovery  # noqa: E402
from reconciler.render import build  # noqa: E402
from reconciler.render.decryption import Decryption, DecryptionKeys, Decryptor  # noqa: E402
from reconciler.source.artifact import Artifact  # noqa: E402

WRITES = ("POST", "PATCH", "PUT", "DELETE")


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def write_revision(root: Path, *, secrets: int, encrypt: Callable[[bytes], bytes]) -> None:
    """N Secret files, encrypted in parallel (sops runs are independent processes)."""
    root.mkdir(parents=True)

    def one(i: int) -> None:
        obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"s-{i:04d}", "namespace": "bench"},
            "type": "Opaque",
            "stringData": {"password": f"bench-plain-{i:04d}", "user": f"user-{i}"},
        }
        (root / f"s-{i:04d}.yaml").write_bytes(encrypt(yaml.safe_dump(obj).encode()))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, range(secrets)))


class Meter:
    """Deltas of wall time, CPU, decryptor counters and KMS calls around one phase."""

    def __init__(self, decryptor: Decryptor, proxy: sopstools.KmsProxy) -> None:
        self.decryptor, self.proxy = decryptor, proxy

    def snapshot(self) -> tuple[float, float, int, int, int]:
        d = self.decryptor
        return time.perf_counter(), cpu_seconds(), d.decryptions, d.cache_hits, self.proxy.count("Decrypt")

    def line(self, label: str, before: tuple[float, float, int, int, int], extra: str = "") -> None:
        now = self.snapshot()
        wall, cpu, dec, hits, kms = (a - b for a, b in zip(now, before, strict=True))
        print(
            f"{label:<24} {wall * 1000:9.1f} ms  cpu={cpu:6.2f} s  decryptions={dec:<4d} cache hits={hits:<4d} "
            f"KMS Decrypt calls={kms:<4d}{extra}"
        )


class Steps:
    """The pipeline's steps for the benchmark revision: rendered with decryption, no policies."""

    def __init__(self, root: Path, decryption: Decryption) -> None:
        self.root, self.decryption = root, decryption

    def fetch(self) -> Artifact:
        return Artifact(revision="bench@sha1:" + "0" * 40, path=self.root)

    def render(self, artifact: Artifact) -> Rendered | None:
        opts = build.RenderOptions(decryption=self.decryption)
        return Rendered(manifests=build.render(artifact.path, ".", opts))

    def policies(self) -> None:
        return None

    def hold(self, revision: str) -> bool:
        return False

    def report(self, violations: Any) -> None:
        return None


def render_rows(root: Path, decryption: Decryption, meter: Meter, *, reconciles: int) -> None:
    opts = build.RenderOptions(decryption=decryption)
    before = meter.snapshot()
    objs = build.render(root, ".", opts)
    assert all(m.decrypted for m in objs)
    meter.line("render, cold", before, f"  objects={len(objs)}")
    before = meter.snapshot()
    for _ in range(reconciles):
        build.render(root, ".", opts)
    meter.line(f"render, no-op x{reconciles}", before)


def sync_rows(root: Path, decryption: Decryption, meter: Meter, *, kubeconfig: str, reconciles: int) -> None:
    decryption.decryptor.clear()  # the sync starts as a freshly started controller would
    kube = client.connect(kubeconfig, pool_size=16)
    mapper = discovery.RestMapper(kube)
    kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": "bench"}})
    opts = SyncOptions(name="bench", namespace="bench", default_namespace="bench")
    cluster = KubeCluster(kube, mapper, opts)
    for label, runs in (("sync, cold", 1), (f"sync, no-op x{reconciles}", reconciles)):
        requests = dict(kube.requests)
        before = meter.snapshot()
        for _ in range(runs):
            res = sync_revision(steps=Steps(root, decryption), cluster=cluster, options=opts)
            assert res.plan is not None
        delta = {k: v - requests.get(k, 0) for k, v in kube.requests.items()}
        writes = sum(delta.get(v, 0) for v in WRITES)
        meter.line(label, before, f"  API requests={sum(delta.values())} writes={writes}")
    live = kube.request("GET", "/api/v1/namespaces/bench/secrets/s-0000")
    assert live["data"]["password"], "the live Secret holds the plaintext"
    kube.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--secrets", type=int, default=200)
    parser.add_argument("--reconciles", type=int, default=3)
    parser.add_argument("--age", action="store_true", help="encrypt for an age identity instead of KMS")
    parser.add_argument("--sync", action="store_true", help="also sync into a fresh local control plane")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    with tempfile.TemporaryDirectory(prefix="bench-sops-") as tmp, awsserver.moto_server() as moto:
        work = Path(tmp)
        with sopstools.kms_proxy(moto) as proxy:
            aws_env = sopstools.kms_env(proxy.endpoint)
            os.environ.update(aws_env)  # the controller's own AWS chain -> moto
            ident = sopstools.age_identity()
            arn = sopstools.kms_key(moto)
            recipients: dict[str, Any] = {"age": [ident.recipient]} if args.age else {"kms": [arn]}
            start = time.perf_counter()
            write_revision(
                work / "repo",
                secrets=args.secrets,
                encrypt=lambda data: sopstools.encrypt(data, fmt="yaml", env=aws_env, **recipients),
            )
            print(f"{'encrypt (sops, setup)':<24} {(time.perf_counter() - start) * 1000:9.1f} ms  files={args.secrets}")
            keys = DecryptionKeys(age_identities=(ident.secret,) if args.age else ())
            decryption = Decryption(keys=keys, decryptor=Decryptor(binary=sopstools.sops_binary()))
            meter = Meter(decryption.decryptor, proxy)
            render_rows(work / "repo", decryption, meter, reconciles=args.reconciles)
            if args.sync:
                with controlplane.running(work / "cluster", kwok=False) as cp:
                    sync_rows(
                        work / "repo", decryption, meter, kubeconfig=str(cp.kubeconfig), reconciles=args.reconciles
                    )


if __name__ == "__main__":
    main()
