"""Repositories shaped like the public ones a new user brings, synced as they are.

tests/fixtures/real-world holds four trees written for these tests in the shapes of
kube-prometheus (plain folder: CRDs with ``=`` enums and ``${...}`` in descriptions, a
ConfigMapList of Grafana dashboards, CRs of those CRDs), flux2's install (kustomize: nested
bases, ``images:``, labels, a JSON 6902 and a strategic-merge patch, a bootstrap
GitRepository/Kustomization), podinfo's overlays (nested bases, components,
``configMapGenerator`` with a shell script, ``secretGenerator``, ``replicas:``, ``images:``)
and Grafana dashboards generated from JSON files.  No substitution is asked for, so every
``${...}`` is applied verbatim.

For each tree, from a real git repository and through ``reconciler sync`` as a user runs it:
render equals kubectl's (``kubectl kustomize`` or ``kubectl create -R -f`` for a plain
folder, both printed by ``kubectl create --dry-run=client -o json``) -> the sync's result is
what ``kubectl diff --server-side --field-manager gitops-reconciler`` of kubectl's own
reading expects (exit 0) -> a re-sync writes nothing -> a commit dropping about a third of
the objects prunes exactly those -> ``git revert`` of it brings them back.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler import cli
from reconciler.render import kustomize, render
from reconciler.sync import inventory
from reconciler.sync.objects import OWNER_LABEL, ObjectId

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "real-world"
_INT64 = range(-(2**63), 2**63)


@dataclass(frozen=True)
class Tree:
    name: str  # folder under CORPUS, and in the git repository
    path: str  # what the sync reads, relative to the repository root
    # the commit that removes about a third: file -> None (delete it) or [(text, replacement), ...]
    drop: dict[str, list[tuple[str, str]] | None] = field(default_factory=dict)


TREES = [
    Tree(
        "kube-prometheus",
        "kube-prometheus",
        {
            "kube-prometheus/setup/0prometheusruleCustomResourceDefinition.yaml": None,
            "kube-prometheus/prometheus-prometheusRule.yaml": None,
            "kube-prometheus/grafana-dashboardDefinitions.yaml": None,
        },
    ),
    Tree(
        "flux-install",
        "flux-install",
        {
            "flux-install/kustomization.yaml": [
                ("  - kustomize-controller\n  - policies.yaml\n  - gotk-sync.yaml\n", ""),
            ]
        },
    ),
    Tree(
        "podinfo",
        "podinfo/overlays/staging",
        {
            "podinfo/overlays/staging/kustomization.yaml": [
                ("  - ../../components/pdb\n", ""),
                (
                    "configMapGenerator:\n  - name: frontend-config\n    literals:\n"
                    "      - PODINFO_UI_MESSAGE=Welcome to staging\n      - PODINFO_UI_COLOR=#34577c\n"
                    "      - PODINFO_CACHE_ENABLED=yes\nsecretGenerator:\n  - name: backend-credentials\n"
                    "    literals:\n      - token=staging-not-a-secret\n    type: Opaque\n",
                    "",
                ),
            ],
        },
    ),
    Tree(
        "dashboards",
        "dashboards",
        {
            "dashboards/kustomization.yaml": [
                (
                    "  - name: dashboard-node-exporter\n    files:\n      - json/node-exporter.json\n"
                    "  - name: dashboard-coredns\n    files:\n      - json/coredns.json\n",
                    "",
                )
            ]
        },
    ),
]


def _number(text: str) -> int | float:
    value = int(text)
    return value if value in _INT64 else float(text)


def canonical(obj: Any) -> str:
    return json.dumps(json.loads(json.dumps(obj), parse_int=_number), sort_keys=True)


def json_stream(text: str) -> list[dict[str, Any]]:
    objs, decoder, i = [], json.JSONDecoder(), 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return objs
        obj, i = decoder.raw_decode(text, i)
        objs.extend(obj.get("items", [obj]))


def counts(output: str) -> dict[str, int]:
    """The plan's summary line (``main@sha1:...: 11 unchanged, 5 prune``) as {action: number}."""
    (line,) = [x for x in output.splitlines() if re.match(r"^main@sha1:[0-9a-f]{40}: ", x)]
    return {a: int(n) for n, a in (part.split() for part in line.split(": ", 1)[1].split(", "))}


def our_writes(obj: dict[str, Any]) -> tuple[Any, ...]:
    """What only a write by this sync changes: the generation and our field manager's entries.

    (resourceVersion alone would not do: the deployment controller writes status on its own.)
    """
    md = obj["metadata"]
    mine = [m for m in md.get("managedFields", []) if m.get("manager") == "gitops-reconciler"]
    return md.get("generation"), json.dumps(mine, sort_keys=True)


def oid(obj: dict[str, Any]) -> str:
    return str(ObjectId.of(obj))


@dataclass
class Corpus:
    """One tree in a real git repository, the CLI pointed at it, and kubectl beside it."""

    tree: Tree
    repo: Any
    kubeconfig: str
    ns: str  # where the inventory lives
    work: Path
    name: str = field(default_factory=lambda: f"corpus-{uuid.uuid4().hex[:6]}")
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        return f"{self.ns}.{self.name}"

    def sync(self) -> str:
        start = time.monotonic()
        argv = ["sync", "--repo", self.repo.url, "--ref", "main", "--path", self.tree.path]
        argv += ["--kubeconfig", self.kubeconfig, "--name", self.name, "--namespace", self.ns]
        argv += ["--cache-dir", str(self.work / "cache")]
        r = CliRunner().invoke(cli.cli, argv, catch_exceptions=False)
        self.timings[f"sync {len(self.timings)}"] = time.monotonic() - start
        assert r.exit_code == 0, r.output
        return r.output

    def kubectl(self, *args: str, stdin: str | None = None, ok: tuple[int, ...] = (0,)) -> str:
        binary = shutil.which("kubectl")
        assert binary, "kubectl is the oracle of this test"
        r = subprocess.run(
            [binary, "--kubeconfig", self.kubeconfig, *args], input=stdin, capture_output=True, text=True, timeout=120
        )
        assert r.returncode in ok, f"kubectl {' '.join(args)} exited {r.returncode}: {r.stderr}{r.stdout}"
        return r.stdout

    def kubectl_reading(self, checkout: Path) -> str:
        """The tree as kubectl reads it, as a JSON stream (kustomize built by kubectl's own kustomize)."""
        where = checkout / self.tree.path
        if kustomize.find_kustomization(where) is not None:
            built = self.kubectl("kustomize", str(where))
            return self.kubectl("create", "--dry-run=client", "--validate=false", "-o", "json", "-f", "-", stdin=built)
        return self.kubectl("create", "--dry-run=client", "--validate=false", "-o", "json", "-R", "-f", str(where))

    def server_side_diff(self, checkout: Path) -> subprocess.CompletedProcess[str]:
        """``kubectl diff --server-side`` of kubectl's reading, with the owner label the sync adds."""
        reading = self.kubectl_reading(checkout)
        labelled = self.kubectl(
            "label", "--local", "-f", "-", "-o", "json", f"{OWNER_LABEL}={self.owner}", stdin=reading
        )
        binary = shutil.which("kubectl")
        assert binary
        diff = ["diff", "--server-side", "--field-manager", "gitops-reconciler", "-f", "-"]
        return subprocess.run(
            [binary, "--kubeconfig", self.kubeconfig, *diff],
            input=labelled,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def live(self, rendered: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The live objects of ``rendered`` that exist, by id."""
        listing = {"apiVersion": "v1", "kind": "List", "items": rendered}
        out = self.kubectl("get", "--ignore-not-found", "-o", "json", "-f", "-", stdin=json.dumps(listing))
        return {oid(o): o for o in json_stream(out)}


def checkout(tree: Tree, where: Path, drop: bool = False) -> Path:
    """The tree as a checked-out revision: the corpus files, with the drop commit applied if asked."""
    shutil.copytree(CORPUS / tree.name, where / tree.name)
    if drop:
        for rel, change in tree.drop.items():
            if change is None:
                (where / rel).unlink()
            else:
                (where / rel).write_text(_edited(CORPUS / rel, change))
    return where


def _edited(path: Path, changes: list[tuple[str, str]]) -> str:
    text = path.read_text()
    for old, new in changes:
        assert old in text, (path, old)
        text = text.replace(old, new)
    return text


def drop_commit(tree: Tree) -> dict[str, str | None]:
    return {rel: None if change is None else _edited(CORPUS / rel, change) for rel, change in tree.drop.items()}


def test_every_tree_is_tested() -> None:
    assert {p.name for p in CORPUS.iterdir() if p.is_dir()} == {t.name for t in TREES}


@pytest.mark.parametrize("tree", TREES, ids=[t.name for t in TREES])
def test_real_world_tree_syncs_as_kubectl_reads_it(
    tree: Tree, cluster: Any, git_repo: Any, namespace: str, tmp_path: Path, eventually: Any
) -> None:
    corpus = Corpus(tree, git_repo, str(cluster.kubeconfig), namespace, tmp_path)
    files = {str(p.relative_to(CORPUS)): p.read_text() for p in sorted((CORPUS / tree.name).rglob("*")) if p.is_file()}
    git_repo.commit(files, f"add {tree.name}")
    full = checkout(tree, tmp_path / "full")
    try:
        _sync_prune_revert(corpus, full, eventually)
    finally:  # other tests share the control plane: leave none of the tree's objects behind
        listing = {"apiVersion": "v1", "kind": "List", "items": [m.obj for m in render(full, tree.path)]}
        corpus.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", stdin=json.dumps(listing))


def _sync_prune_revert(corpus: Corpus, full: Path, eventually: Any) -> None:
    tree, git_repo, namespace, tmp_path = corpus.tree, corpus.repo, corpus.ns, corpus.work

    # 1. the first sync creates everything (CRDs first, so that kubectl can map their kinds below)
    out = corpus.sync()
    rendered = [m.obj for m in render(full, tree.path)]
    ids = {oid(o) for o in rendered}
    assert counts(out) == {"create": len(ids)}, out

    # 2. our reading equals kubectl's, object for object
    theirs = {oid(o): canonical(o) for o in json_stream(corpus.kubectl_reading(full))}
    assert {oid(o): canonical(o) for o in rendered} == theirs

    # 3. the cluster holds exactly what kubectl would apply: a server-side diff is clean
    diff = corpus.server_side_diff(full)
    assert diff.returncode == 0, diff.stdout + diff.stderr

    # 4. a re-sync of the same revision writes nothing
    live = corpus.live(rendered)
    assert set(live) == ids
    before = {i: our_writes(o) for i, o in live.items()}
    inv = ("get", "configmap", "-n", namespace, inventory.configmap_name(corpus.name), "-o", "json")
    inv_version = corpus.kubectl(*inv)
    out = corpus.sync()
    assert counts(out) == {"unchanged": len(ids)}, out
    assert {i: our_writes(o) for i, o in corpus.live(rendered).items()} == before
    assert corpus.kubectl(*inv) == inv_version

    # 5. a commit dropping about a third prunes exactly those objects; the others are not touched
    dropping = git_repo.commit(drop_commit(tree), f"drop a third of {tree.name}")
    after = {oid(m.obj): canonical(m.obj) for m in render(checkout(tree, tmp_path / "dropped", drop=True), tree.path)}
    kept, gone = set(after), ids - set(after)
    # objects that stay but change with the drop (a Deployment naming a generated ConfigMap)
    changed = {i for i in kept if after[i] != canonical(next(o for o in rendered if oid(o) == i))}
    expect = {"configure": len(changed), "unchanged": len(kept - changed)}
    assert kept < ids
    assert 0.25 <= len(gone) / len(ids) <= 0.5, (len(gone), len(ids))
    uids = {i: o["metadata"]["uid"] for i, o in live.items()}
    out = corpus.sync()
    assert counts(out) == {k: n for k, n in {**expect, "prune": len(gone)}.items() if n}, out
    eventually(lambda: not set(corpus.live(rendered)) & gone, 60, f"{sorted(gone)} to be deleted")
    assert {i: o["metadata"]["uid"] for i, o in corpus.live(rendered).items()} == {i: uids[i] for i in kept}

    # 6. git revert brings them back, and the cluster again matches kubectl's reading exactly
    git_repo.revert(dropping)
    out = corpus.sync()
    assert counts(out) == {k: n for k, n in {**expect, "create": len(gone)}.items() if n}, out
    assert set(corpus.live(rendered)) == ids
    diff = corpus.server_side_diff(full)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    print(f"{tree.name}: {len(ids)} objects, {len(gone)} pruned and restored; sync seconds {corpus.timings}")
