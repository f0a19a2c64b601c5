"""GitSync ``patches``: JSON6902 with ``jsonpatch``, strategic merge with kustomize.

Why two engines: a JSON6902 patch is fully specified by RFC 6902, so ``jsonpatch`` gives
exactly kustomize's result with a precise error per object.  A strategic-merge patch is
not: how a list merges depends on the field's ``patchMergeKey`` in the OpenAPI schema
(containers and env by ``name``, ports by ``containerPort``, volumeMounts by
``mountPath``, tolerations and args replaced whole, ...), plus ``$patch``,
``$setElementOrder`` and ``$retainKeys`` directives.  Re-implementing that from a
hand-written table would silently drift from what ``kustomize build`` and Flux produce,
so the objects a strategic-merge patch selects are handed to the same kustomize binary
that builds kustomizations, together with one copy of the patch per object (its
apiVersion/kind/name/namespace rewritten to that object's, which is exactly how kustomize
applies a patch with a target).  Selection is ours (``selectors``), for both kinds of
patch, so a target means the same thing everywhere.  One kustomize run per patch; only
when it fails is it re-run object by object, to name the object in the error.

Patches are applied in order, before ``targetNamespace`` and substitution, as Flux does
(so a patch may contain ``${VAR}`` and a target matches the names written in git).
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

from reconciler.render import decrypt_tree, kustomize, yaml_safe
from reconciler.render.errors import ManifestError, RenderError, describe
from reconciler.render.manifests import Manifest, check_object
from reconciler.render.namespaces import Scope
from reconciler.render.options import Limits, Patch
from reconciler.render.selectors import Target

_RETRY_LIMIT = 50  # object-by-object re-runs to find the culprit of a failed strategic-merge patch


@dataclass(frozen=True)
class _Patching:
    """What every step of applying one patch needs: which patch it is, and the render's scope and limits."""

    i: int  # the patch's index in the GitSync's ``patches``, for messages
    scope: Scope
    limits: Limits


def apply_patches(
    manifests: Sequence[Manifest], patches: Sequence[Patch], *, scope: Scope, limits: Limits
) -> list[Manifest]:
    """``manifests`` with every patch applied in order; a patch selecting nothing is not an error."""
    out = list(manifests)
    for i, patch in enumerate(patches):
        out = _apply(out, patch, _Patching(i, scope, limits))
    return out


def _blame(m: Manifest, why: str) -> RenderError:
    """The error for a patch that broke on ``m``: names its file, document and object."""
    return RenderError.about(describe(m.obj), file=m.file, doc=m.doc, why=why)


def _parse(i: int, patch: Patch, limits: Limits) -> tuple[list[Any], Target | None]:
    where = f"patches[{i}]"
    try:
        docs = yaml_safe.load_all(patch.patch, max_aliases=limits.max_aliases, max_nodes=limits.max_file_bytes)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise RenderError(where, None, f"patch: invalid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    except yaml_safe.YAMLLimitError as e:
        raise RenderError(where, None, f"patch: {e.why}") from None
    try:
        target = Target.parse(patch.target) if patch.target is not None else None
        patch.check()
    except ValueError as e:
        raise RenderError(where, None, str(e)) from None
    return [d for d in docs if d is not None], target


def _apply(ms: list[Manifest], patch: Patch, ctx: _Patching) -> list[Manifest]:
    docs, target = _parse(ctx.i, patch, ctx.limits)
    if len(docs) == 1 and isinstance(docs[0], list):
        assert target is not None  # Patch.check insists
        return _json6902(ms, docs[0], target=target, ctx=ctx)
    return _strategic_merge(ms, docs, target=target, ctx=ctx)


def _json6902(ms: list[Manifest], ops: list[Any], *, target: Target, ctx: _Patching) -> list[Manifest]:
    i, scope = ctx.i, ctx.scope
    try:
        steps = [jsonpatch.JsonPatch([op]) for op in ops]  # one by one, to name the operation that fails
    except (jsonpatch.InvalidJsonPatch, jsonpatch.JsonPointerException, TypeError, ValueError) as e:
        raise RenderError(f"patches[{i}]", None, f"patch: invalid JSON6902 patch: {_safe(e)}") from None
    out = []
    for m in ms:
        if not target.matches(m.obj, scope.cluster_scoped(m.obj)):
            out.append(m)
            continue
        new: Any = copy.deepcopy(m.obj)
        for k, step in enumerate(steps):
            try:
                new = step.apply(new, in_place=True)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, IndexError, TypeError) as e:
                op = ops[k]
                why = f"patches[{i}] (JSON6902) operation {k} ({op.get('op')} {op.get('path')}) failed: {_safe(e)}"
                raise _blame(m, why) from None
        out.append(replace(m, obj=_checked(new, m, f"patches[{i}] (JSON6902)")))
    return out


def _checked(obj: dict[str, Any], m: Manifest, how: str) -> dict[str, Any]:
    """``obj`` (what a patch made of ``m``) if it is still a valid object; RenderError otherwise."""
    try:
        return check_object(obj, m.file, m.doc)
    except ManifestError as e:
        raise _blame(m, f"{how} left an invalid object: {e.why}") from None


def _safe(e: Exception) -> str:
    """jsonpatch's message without the object content it likes to quote (it may be Secret data)."""
    msg = str(e)
    if isinstance(e, jsonpatch.JsonPatchTestFailed):
        return "test failed: the value at the path differs from the tested value"
    if " not found in " in msg:
        return msg.split(" not found in ", 1)[0] + " not found"
    if msg.startswith("Document '"):
        return "the value at this path is not a list or mapping"
    return msg if len(msg) <= 300 else msg[:300] + "..."


def _identity(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    md = obj.get("metadata") or {}
    return (str(obj.get("apiVersion")), str(obj.get("kind")), md.get("namespace") or "", str(md.get("name")))


def _selects(doc: dict[str, Any], obj: dict[str, Any], scope: Scope) -> bool:
    """kustomize's rule for a strategic-merge patch without target: same group/version/kind/name/namespace."""
    md = doc.get("metadata") or {}
    if (doc.get("apiVersion"), doc.get("kind"), md.get("name")) != (
        obj.get("apiVersion"),
        obj.get("kind"),
        obj["metadata"].get("name"),
    ):
        return False
    if scope.cluster_scoped(obj):
        return True
    return (md.get("namespace") or "default") == (obj["metadata"].get("namespace") or "default")


def _retarget(doc: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    """The patch with the identity of ``obj``, so kustomize applies it to that object and nothing else."""
    out = copy.deepcopy(doc)
    out["apiVersion"], out["kind"] = obj["apiVersion"], obj["kind"]
    md = {**(m if isinstance(m := out.get("metadata"), dict) else {}), "name": obj["metadata"]["name"]}
    md.pop("namespace", None)
    if obj["metadata"].get("namespace"):
        md["namespace"] = obj["metadata"]["namespace"]
    out["metadata"] = md
    return out


# A kustomize ``patches`` entry, tagged with the one object it is for (None: for every object of the run).
_Entry = tuple[int | None, dict[str, Any]]
_CATCH_ALL = {"name": ".*"}  # every object handed to a run is one the patch selected


def _strategic_merge(ms: list[Manifest], docs: list[Any], *, target: Target | None, ctx: _Patching) -> list[Manifest]:
    scope = ctx.scope
    runs: list[tuple[list[int], list[_Entry]]] = []
    if target is not None:
        # One entry for all: with a target, kustomize applies the patch to each selected object with that
        # object's own identity and schema (its name and kind in the patch are ignored).
        idxs = [idx for idx, m in enumerate(ms) if target.matches(m.obj, scope.cluster_scoped(m.obj))]
        if idxs:
            patch = _retarget(docs[0], ms[idxs[0]].obj)
            runs.append((idxs, [(None, {"patch": _json(patch), "target": _CATCH_ALL})]))
    else:
        entries: list[_Entry] = []
        for doc in docs:
            for idx, m in enumerate(ms):
                if _selects(doc, m.obj, scope):
                    entries.append((idx, {"patch": _json(_retarget(doc, m.obj))}))
        if entries:
            runs.append((sorted({idx for idx, _ in entries if idx is not None}), entries))
    patched: dict[int, dict[str, Any] | None] = {}
    for idxs, run_entries in runs:
        patched.update(_run_or_blame(ms, idxs, entries=run_entries, ctx=ctx))
    out: list[Manifest] = []
    for idx, m in enumerate(ms):
        if idx not in patched:
            out.append(m)
        elif (new := patched[idx]) is not None:  # None: deleted by ``$patch: delete``
            out.append(replace(m, obj=new))
    return out


def _json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False)


def _for(entries: list[_Entry], idx: int) -> list[_Entry]:
    return [e for e in entries if e[0] is None or e[0] == idx]


def _run_or_blame(
    ms: list[Manifest], indices: list[int], *, entries: list[_Entry], ctx: _Patching
) -> dict[int, dict[str, Any] | None]:
    """One kustomize run; if it fails, re-run object by object to name the object in the error."""
    try:
        return _run(ms, indices, entries=entries, ctx=ctx)
    except RenderError as e:
        batch_error = e
    culprit: tuple[int, str] | None = None
    if len(indices) == 1:
        culprit = indices[0], _strip(batch_error.why)
    else:
        for idx in indices[:_RETRY_LIMIT]:
            try:
                _run(ms, [idx], entries=_for(entries, idx), ctx=ctx)
            except RenderError as single:
                culprit = idx, _strip(single.why)
                break
    if culprit is None:
        raise RenderError(f"patches[{ctx.i}]", None, f"strategic-merge patch failed: {_strip(batch_error.why)}")
    raise _blame(ms[culprit[0]], f"patches[{ctx.i}] (strategic merge) failed: {culprit[1]}")


def _strip(why: str) -> str:
    """kustomize's own message, without our "kustomize build of <tmpdir> failed:" prefix."""
    return why.split(" failed: ", 1)[-1] if why.startswith("kustomize build of ") else why


def _run(
    ms: list[Manifest], indices: list[int], *, entries: list[_Entry], ctx: _Patching
) -> dict[int, dict[str, Any] | None]:
    """Run kustomize on the selected objects with their patches; object index -> patched object (None: deleted)."""
    i, limits = ctx.i, ctx.limits
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["objects.yaml"],
        "sortOptions": {"order": "fifo"},
        "patches": [entry for _, entry in entries],
    }
    # A decrypted Secret is patched in a folder on a memory file system, never on disk (see decrypt_tree).
    sensitive = any(ms[idx].decrypted for idx in indices)
    scratch = decrypt_tree.memory_dir(f"patches[{i}]") if sensitive else None
    with tempfile.TemporaryDirectory(prefix="reconciler-patch-", dir=scratch) as tmp:
        d = Path(tmp).resolve()
        (d / "objects.yaml").write_text(
            "\n---\n".join(json.dumps(ms[idx].obj, ensure_ascii=False) for idx in indices), encoding="utf-8"
        )
        (d / "kustomization.yaml").write_text(json.dumps(kustomization, ensure_ascii=False), encoding="utf-8")
        text = kustomize.run_build(d, d, max_output=limits.max_total_bytes, file=f"patches[{i}]", workdir=scratch)
    try:
        docs = yaml_safe.load_all(text, max_aliases=limits.max_aliases, max_nodes=limits.max_file_bytes)
    except (yaml.YAMLError, yaml_safe.YAMLLimitError) as e:  # pragma: no cover - kustomize writes plain YAML
        raise RenderError(f"patches[{i}]", None, f"cannot read kustomize's output: {e}") from None
    by_id = {_identity(ms[idx].obj): idx for idx in indices}
    result: dict[int, dict[str, Any] | None] = dict.fromkeys(indices)
    objs = [d for d in docs if d is not None]
    positional = len(objs) == len(indices)
    for n, obj in enumerate(objs):
        if not isinstance(obj, dict):  # pragma: no cover - kustomize only writes objects
            raise RenderError(f"patches[{i}]", None, "kustomize wrote something that is not an object")
        idx = by_id.get(_identity(obj))
        if idx is None and positional:
            idx = indices[n]
        if idx is None:
            raise RenderError(
                f"patches[{i}]", None, f"strategic-merge patch produced an unexpected object {describe(obj)}"
            )
        result[idx] = obj
    for idx, obj in result.items():
        if obj is not None:
            _checked(obj, ms[idx], f"patches[{i}] (strategic merge)")
    return result
