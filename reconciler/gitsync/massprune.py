"""The controller's one-shot approval of a mass prune: the GitSync's ``allow-mass-prune`` annotation.

``reconciler sync`` approves a mass prune with ``--allow-mass-prune`` for one run. A controller
has no such run: it reconciles again every interval, so a standing "allow" would disarm the
guard for good. The approval is therefore bound to one revision (the annotation's value is its
sha, or the full revision string): it lifts the guard for a sync of exactly that revision, and
a later revision that again deletes too much is refused again, annotation or not. The refusal
says so in the words of the entry point that runs it: here, the annotation, its exact value and
a ready ``kubectl annotate`` line.

The approval only ever lifts the guard over this GitSync's own inventory (what it may prune is
decided as always: its owner label and its inventory), so it gives a tenant nothing it could
not already do by deleting the files from git.
"""

from __future__ import annotations

import functools
from typing import Any

from reconciler.gitsync.spec import ALLOW_MASS_PRUNE
from reconciler.sync import prune as pruning


def approval_value(revision: str) -> str:
    """The annotation value that approves ``revision``: a git commit's 40-hex sha (as `git log`
    shows it), else the digest with its algorithm (``sha256:<hex>`` of a bucket or a folder)."""
    digest = revision.rpartition("@")[2]
    algo, _, value = digest.partition(":")
    return value if algo == "sha1" and value else digest


def remedy(namespace: str, name: str, revision: str) -> str:
    """What a refusal tells the GitSync's owner to do, with the exact value and command."""
    value = approval_value(revision)
    command = f"kubectl annotate gitsync -n {namespace} {name} {ALLOW_MASS_PRUNE}={value} --overwrite"
    return f"if this is intended, approve this revision once with the GitSync's annotation: {command}"


def approval(obj: dict[str, Any]) -> str:
    """The GitSync's approval annotation ("" when absent)."""
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(ALLOW_MASS_PRUNE) or "")


def approved_anew(obj: dict[str, Any], old: dict[str, Any]) -> bool:
    """Whether the GitSync's watch event brings a new approval: a refused revision may go now, so
    the controller reconciles at once (removing one approves nothing: no reconcile)."""
    return approval(obj) not in ("", approval(old))


def guard(obj: dict[str, Any], *, max_ratio: float = pruning.Guard.max_ratio) -> pruning.Guard:
    """The mass-prune guard for one reconcile of GitSync ``obj``."""
    md = obj["metadata"]
    return pruning.Guard(
        max_ratio=max_ratio,
        approval=approval(obj),
        remedy=functools.partial(remedy, md["namespace"], md["name"]),
    )


def approved_note(revision: str) -> str:
    """The words that record an approval used, in the success message (status, Event, log line)."""
    return f"; mass prune approved by annotation {ALLOW_MASS_PRUNE} for {revision}"
