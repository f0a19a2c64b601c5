"""Validate a plan before any write: a server-side dry run of every create and configure.

The plan decides cheaply; the dry run settles what it could not know: whether a "create"
is really an object that exists without our label (adopted — unless another sync owns
it), whether a "configure" changes anything at all once the server has normalised and
defaulted it, and what the diff is. Invalid objects, immutable-field changes and objects
of other syncs become plan errors here, so nothing is applied or pruned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from reconciler.kube import ssa
from reconciler.kube.client import Kube, KubeError, UnreachableError
from reconciler.kube.discovery import RestMapper, UnknownKindError
from reconciler.sync import immutable
from reconciler.sync.changeset import Action
from reconciler.sync.objects import (
    DISABLED,
    ENABLED,
    FORCE_ANNOTATION,
    OWNER_LABEL,
    RECONCILE_ANNOTATION,
    annotation,
)
from reconciler.sync.plan import Item, Plan, comparable


def _missing_namespace(e: KubeError) -> bool:
    return e.status == 404 and e.reason == "NotFound" and "namespaces" in e.message


def dry_run(
    kube: Kube, item: Item, *, mapper: RestMapper, owner: str, field_manager: str, want_diff: bool
) -> str | None:
    """Validate one create/configure with a server-side dry run; returns an error, or None.

    Also settles whether a "create" is an adoption and whether a "configure" changes
    anything, and computes the diff when ``want_diff``.
    """
    assert item.desired is not None
    try:
        dry = ssa.apply(kube, item.desired, mapper=mapper, field_manager=field_manager, dry_run=True)
    except KubeError as e:
        return rejected(item, e)
    except (UnreachableError, UnknownKindError) as e:
        return f"{item.oid} ({item.source}): {e}"
    if item.action is Action.CREATE and not dry.created:
        refused = _adopt(kube, item, mapper=mapper, owner=owner)
        if refused:
            return refused
    if item.action is Action.CONFIGURE:
        before, after = comparable(item.live), comparable(dry.live)
        if before == after and not item.adopt:
            item.action = Action.UNCHANGED
            item.live = dry.live if item.live is None else item.live
        elif want_diff:
            item.set_diff(before, after)
    elif want_diff and item.action is Action.CREATE:  # not one left as it is (see _adopt)
        item.set_diff(None, comparable(dry.live))
    return None


def rejected(item: Item, e: KubeError) -> str | None:
    """What a refused dry run means: a Namespace this sync creates (deferred), an immutable
    field git changes (recreate, if forced), or an error naming the object."""
    assert item.desired is not None
    if _missing_namespace(e) and item.oid.namespace in item.desired_namespaces:
        item.deferred = True  # its Namespace is created by this sync; checked again before its stage
        return None
    fields = immutable.fields(e)
    if not fields:
        return f"{item.oid} ({item.source}): {e.reason}: {e.message}"
    if annotation(item.desired, FORCE_ANNOTATION) == ENABLED and item.live is not None:
        item.recreate = True
        item.reason = f"immutable field {', '.join(fields)} changed; {FORCE_ANNOTATION}: {ENABLED}"
        item.diff = [f"~ recreate: {item.reason}"]
        return None
    hint = (
        f"set annotation {FORCE_ANNOTATION}: {ENABLED} to delete and recreate it"
        if item.live is not None
        else "it exists without this sync's label, so it is not recreated; delete it by hand"
    )
    below = [p for f in fields for p in immutable.changed_below(f, item.desired, item.live)]
    what = f" (git changes {', '.join(below)})" if below else ""
    return (
        f"{item.oid} ({item.source}): field {', '.join(fields)} is immutable and would change{what}; {hint}. "
        f"The API server said: {immutable.server_message(e)}"
    )


def _adopt(kube: Kube, item: Item, *, mapper: RestMapper, owner: str) -> str | None:
    """It exists but is not labelled ours: adopt it, unless another sync owns it (the error).

    Unless git says never to update it (``reconcile: disabled``, a chart's create-only CRD that
    two releases of one chart share): then it is left as it is, whoever owns it.
    """
    assert item.desired is not None
    if annotation(item.desired, RECONCILE_ANNOTATION) == DISABLED:
        item.action, item.reason = Action.SKIP, f"exists; {RECONCILE_ANNOTATION}: {DISABLED}"
        return None
    real = kube.get_or_none(
        mapper.find(item.desired["apiVersion"], item.desired["kind"]).object_path(
            item.oid.name, item.oid.namespace or None
        )
    )
    other = ((real or {}).get("metadata") or {}).get("labels", {}).get(OWNER_LABEL)
    if other and other != owner:
        return (
            f"{item.oid} ({item.source}): already managed by sync {other} "
            f"(label {OWNER_LABEL}); two syncs must not manage one object"
        )
    if other == owner:  # ours already (planned without a LIST: a sync with no inventory)
        item.action, item.live = Action.CONFIGURE, real
        if annotation(real or {}, RECONCILE_ANNOTATION) == DISABLED:
            item.action, item.reason = Action.SKIP, f"{RECONCILE_ANNOTATION}: {DISABLED}"
        return None
    item.action, item.live, item.adopt = Action.CONFIGURE, real, True
    item.reason = "adopting an existing object"
    return None


def lone_write(p: Plan, *, owner: str, want_diff: bool) -> Item | None:
    """The plan's one write, when a dry run of it could tell nothing its apply does not.

    The dry run before the first write exists so that one bad object stops a revision before any
    of it is written. A plan with a single write cannot be written in part: its apply lands or is
    refused, and the refusal reads the same (:func:`rejected`). A push that changes one field of
    one Deployment is the common case, and its dry run doubled the API server's work. Only a
    configure of an object already labelled ours qualifies: a create may be an adoption of another
    sync's object (the dry run finds out), a forced recreate needs the dry run's verdict, and a
    diff (``want_diff``, the CLI) needs the dry run's result.
    """
    writes = [i for i in p.items if i.action in (Action.CREATE, Action.CONFIGURE)]
    if want_diff or len(writes) != 1:
        return None
    item = writes[0]
    labels = ((item.live or {}).get("metadata") or {}).get("labels") or {}
    if (
        item.action is not Action.CONFIGURE
        or item.adopt
        or item.deferred
        or item.desired is None
        or labels.get(OWNER_LABEL) != owner
        or annotation(item.desired, FORCE_ANNOTATION) == ENABLED
    ):
        return None
    return item


def _is_namespace(item: Item) -> bool:
    return item.oid.kind == "Namespace" and item.oid.group == ""


def _each(
    check: Callable[[Item], str | None], items: list[Item], *, concurrency: int
) -> Iterator[tuple[Item, str | None]]:
    """Each item with its check's result, in order: several at once, but no thread to start for
    a single one (a push's one change)."""
    if len(items) <= 1:
        yield from ((item, check(item)) for item in items)
        return
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(items)))) as pool:
        yield from zip(items, pool.map(check, items), strict=True)


def preflight(
    kube: Kube,
    p: Plan,
    *,
    mapper: RestMapper,
    owner: str,
    field_manager: str = ssa.FIELD_MANAGER,
    concurrency: int = 8,
    want_diff: bool = True,
    progress: Callable[[Item], None] | None = None,
) -> None:
    """Dry-run every create/configure: confirm real differences, compute diffs, and turn
    invalid objects, immutable-field changes and objects of other syncs into plan errors
    before any write. Except a plan's lone write (:func:`lone_write`): its apply is its check."""
    lone = lone_write(p, owner=owner, want_diff=want_diff)
    if lone is not None:
        lone.undry = True
        return
    new_namespaces = frozenset(i.oid.name for i in p.items if i.desired is not None and _is_namespace(i))
    todo = [i for i in p.items if i.action in (Action.CREATE, Action.CONFIGURE) and not i.deferred]
    for i in todo:
        i.desired_namespaces = new_namespaces

    def check(item: Item) -> str | None:
        return dry_run(kube, item, mapper=mapper, owner=owner, field_manager=field_manager, want_diff=want_diff)

    def check_all(items: list[Item]) -> None:
        for item, err in _each(check, items, concurrency=concurrency):
            if err:
                p.errors.append(err)
            if progress:
                progress(item)

    # Namespaces first: a dry run in a Namespace that does not exist yet can only answer
    # "namespace not found", so what goes into a truly new one (still a create after its own
    # dry run, not an adoption) is deferred without that request and validated before its stage.
    namespaces = [i for i in todo if _is_namespace(i)]
    rest = [i for i in todo if not _is_namespace(i)]
    check_all(namespaces)
    new = {i.oid.name for i in namespaces if i.action is Action.CREATE}
    for i in rest:
        if i.oid.namespace in new:
            i.deferred = True
            if progress:
                progress(i)
    check_all([i for i in rest if not i.deferred])
    if want_diff:
        _diff_the_rest(p)


def _diff_the_rest(p: Plan) -> None:
    """Diffs the dry runs did not compute: deferred objects (all new) and prunes (all gone)."""
    for item in p.items:
        if item.deferred:
            item.set_diff(None, item.desired)
        if item.action is Action.PRUNE:
            item.set_diff(comparable(item.live), None)
