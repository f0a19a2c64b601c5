"""The soak's generator (bench/soak.py): random commits to a fleet repository of two GitSyncs.

It keeps the repository as it intends it (path -> documents) and turns each random operation into
the files of one commit.  Valid operations: add/remove/rename files, edit fields, move objects
between the GitSyncs, add and remove Namespaces (with an object inside) and CRDs (with a custom
resource), remove most files of one GitSync at once.  Invalid ones (bad YAML, an object defined
twice, a policy violation, an object the other GitSync owns) leave the intended state unchanged
and add one bad file, which the next commit removes.  Files are JSON documents after '---'
lines: every YAML reader reads them alike, so the independent render need not share our YAML
rules.  tests/unit/test_properties_soak.py checks that what it calls valid is valid.

A valid commit may remove most of a GitSync's objects (``remove_most``, or a Namespace with
everything in it): the controller's mass-prune guard refuses it until it is approved, and
bench/soak.py checks that refusal and approves it, as an operator would.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

BASE_NS = "soak-base"  # a namespace both GitSyncs put objects in (created by the harness)
SYNCS = ("a", "b")  # GitSync names; each syncs the folder of its name


def _cm(name: str, ns: str, value: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"k": value}}


def _crd(n: int) -> dict[str, Any]:
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"things{n}.soak.example.com"},
        "spec": {
            "group": "soak.example.com",
            "scope": "Namespaced",
            "names": {
                "plural": f"things{n}",
                "singular": f"thing{n}",
                "kind": f"Thing{n}",
                "listKind": f"Thing{n}List",
            },
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}],
        },
    }


def _ident(doc: dict[str, Any]) -> tuple[str, str, str]:
    md = doc["metadata"]
    return (doc["kind"], md.get("namespace", ""), md["name"])


def _text(docs: list[dict[str, Any]]) -> str:
    """JSON documents, each after a '---' line (a file starting with '{' would be read as one JSON value)."""
    return "".join("---\n" + json.dumps(d, indent=1, sort_keys=True) + "\n" for d in docs)


@dataclass
class Change:
    """One commit: the files it sets (None: deletes), what it does, and which GitSync it breaks."""

    files: dict[str, str | None]
    what: str
    breaks: str = ""  # "" for a valid commit, else the GitSync name whose sync must refuse it
    op: str = ""  # the kind of change, for the totals (the generator's method, or "invalid: <what>")


@dataclass
class Fleet:
    """The repository as the generator intends it: path -> documents (valid content only)."""

    rng: random.Random
    files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    counter: int = 0
    bad: str = ""  # the invalid file of the previous commit, removed by the next one

    def _new(self) -> int:
        self.counter += 1
        return self.counter

    def _of(self, sync: str, prefix: str = "") -> list[str]:
        return sorted(p for p in self.files if p.startswith(f"{sync}/{prefix}"))

    def _namespaces(self, sync: str) -> list[str]:
        return [d["metadata"]["name"] for p in self._of(sync, "ns-") for d in self.files[p] if d["kind"] == "Namespace"]

    def _set(self, path: str, docs: list[dict[str, Any]] | None) -> dict[str, str | None]:
        if docs is None:
            self.files.pop(path, None)
            return {path: None}
        self.files[path] = docs
        return {path: _text(docs)}

    def next_change(self, invalid_share: float) -> Change:
        cleanup: dict[str, str | None] = {self.bad: None} if self.bad else {}
        self.bad = ""
        if not cleanup and self.rng.random() < invalid_share:
            change = self._invalid()
            if change is not None:
                return change
        ops: list[Callable[[str], Change | None]] = [
            self.add_configmaps, self.add_configmaps, self.remove_file, self.rename_file, self.edit_field,
            self.edit_field, self.move_between_syncs, self.add_namespace, self.remove_namespace, self.add_crd,
            self.remove_crd, self.remove_most,
        ]  # fmt: skip
        while True:
            op = self.rng.choice(ops)
            change = op(self.rng.choice(SYNCS))
            if change is not None:
                change.files = {**cleanup, **change.files}
                change.op = op.__name__.replace("_", " ")
                return change

    # --- valid operations -------------------------------------------------------------------

    def add_configmaps(self, sync: str) -> Change:
        n = self._new()
        spaces = [BASE_NS, *self._namespaces(sync)]
        docs = [_cm(f"cm-{n}-{i}", self.rng.choice(spaces), f"v{n}") for i in range(self.rng.randint(1, 3))]
        return Change(self._set(f"{sync}/cm-{n}.yaml", docs), f"add {len(docs)} ConfigMap(s) to {sync}")

    def remove_file(self, sync: str) -> Change | None:
        paths = self._of(sync, "cm-")
        if not paths:
            return None
        return Change(self._set(self.rng.choice(paths), None), f"remove a ConfigMap file of {sync}")

    def rename_file(self, sync: str) -> Change | None:
        paths = self._of(sync, "cm-")
        if not paths:
            return None
        old = self.rng.choice(paths)
        docs = self.files[old]
        new = f"{sync}/cm-{self._new()}-renamed.yaml"
        return Change({**self._set(old, None), **self._set(new, docs)}, f"rename {old} -> {new}")

    def edit_field(self, sync: str) -> Change | None:
        paths = self._of(sync, "cm-")
        if not paths:
            return None
        path = self.rng.choice(paths)
        docs = json.loads(json.dumps(self.files[path]))
        doc = self.rng.choice(docs)
        doc["data"]["k"] = f"edited-{self._new()}"
        if self.rng.random() < 0.3:
            doc["data"][f"extra{self.counter}"] = "x"
        return Change(self._set(path, docs), f"edit {doc['metadata']['name']} in {sync}")

    def move_between_syncs(self, sync: str) -> Change | None:
        movable = [
            p for p in self._of(sync, "cm-") if all(d["metadata"]["namespace"] == BASE_NS for d in self.files[p])
        ]
        if not movable:
            return None
        old = self.rng.choice(movable)
        other = SYNCS[1 - SYNCS.index(sync)]
        new = f"{other}/{old.split('/', 1)[1]}"
        docs = self.files[old]
        return Change({**self._set(old, None), **self._set(new, docs)}, f"move {old} to GitSync {other}")

    def add_namespace(self, sync: str) -> Change:
        n = self._new()
        ns = f"soak-ns-{n}"
        docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, _cm(f"in-{n}", ns, "inside")]
        return Change(self._set(f"{sync}/ns-{n}.yaml", docs), f"add Namespace {ns} (+1 ConfigMap) to {sync}")

    def remove_namespace(self, sync: str) -> Change | None:
        spaces = self._namespaces(sync)
        if not spaces:
            return None
        ns = self.rng.choice(spaces)
        files: dict[str, str | None] = {}
        for path in self._of(sync):
            docs = self.files[path]
            keep = [d for d in docs if d["metadata"].get("namespace") != ns and d["metadata"]["name"] != ns]
            if len(keep) != len(docs):
                files |= self._set(path, keep or None)
        return Change(files, f"remove Namespace {ns} and what {sync} has in it")

    def add_crd(self, sync: str) -> Change:
        n = self._new()
        crd = _crd(n)
        thing = {
            "apiVersion": "soak.example.com/v1",
            "kind": f"Thing{n}",
            "metadata": {"name": "t", "namespace": BASE_NS},
        }
        thing["spec"] = {"size": n}
        return Change(
            self._set(f"{sync}/crd-{n}.yaml", [crd, thing]), f"add CRD Thing{n} (+1 custom resource) to {sync}"
        )

    def remove_crd(self, sync: str) -> Change | None:
        paths = self._of(sync, "crd-")
        if not paths:
            return None
        return Change(self._set(self.rng.choice(paths), None), f"remove a CRD and its custom resource from {sync}")

    def remove_most(self, sync: str) -> Change | None:
        """Decommission: every file of ``sync`` but one ConfigMap file goes in one commit (a folder of
        apps retired, or the bad merge the mass-prune guard is for: git cannot tell them apart)."""
        paths = self._of(sync)  # the kept file lives in BASE_NS: every Namespace of the GitSync goes
        keep = [p for p in self._of(sync, "cm-") if all(d["metadata"]["namespace"] == BASE_NS for d in self.files[p])]
        if not keep or len(paths) < 3:
            return None
        kept = self.rng.choice(keep)
        files: dict[str, str | None] = {}
        for path in paths:
            if path != kept:
                files |= self._set(path, None)
        return Change(files, f"remove {len(files)} of {len(paths)} files of {sync}")

    # --- invalid operations: the model is unchanged; one bad file is added ------------------

    def _invalid(self) -> Change | None:
        sync = self.rng.choice(SYNCS)
        other = SYNCS[1 - SYNCS.index(sync)]
        mine = [d for p in self._of(sync, "cm-") for d in self.files[p]]
        theirs = [d for p in self._of(other, "cm-") for d in self.files[p]]
        kinds = (
            ["bad YAML", "policy violation"]
            + (["duplicate object"] if mine else [])
            + (["foreign object"] if theirs else [])
        )
        kind = self.rng.choice(kinds)
        if kind == "bad YAML":
            text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [unclosed\n"
        elif kind == "policy violation":
            text = _text([_cm(f"forbidden-{self._new()}", BASE_NS, "x") | {"data": {"forbidden": "yes"}}])
        elif kind == "duplicate object":
            dup = self.rng.choice(mine)
            text = _text([_cm(dup["metadata"]["name"], dup["metadata"]["namespace"], "duplicate")])
        else:
            foreign = self.rng.choice(theirs)
            text = _text([_cm(foreign["metadata"]["name"], foreign["metadata"]["namespace"], "stolen")])
        self.bad = f"{sync}/zz-invalid-{self._new()}.yaml"
        return Change({self.bad: text}, f"INVALID ({kind}) in {sync}", breaks=sync, op=f"invalid: {kind}")
