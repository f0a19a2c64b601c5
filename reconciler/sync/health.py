"""Is an applied object ready?  kstatus-style readiness of one live object.

``wait: true`` must answer "did this revision roll out?" without knowing every CRD in the
cluster, so the rules follow kstatus (sigs.k8s.io/cli-utils ``pkg/kstatus/status``), the
convention Flux and the Kubernetes API guidelines share:

1. an object being deleted is Terminating, whatever else it says;
2. a status the controller wrote for an older spec (``observedGeneration`` behind
   ``metadata.generation``) says nothing about the current spec, so it is InProgress;
3. the generic conditions any controller may set win next: ``Stalled=True`` is Failed,
   ``Reconciling=True`` is InProgress;
4. built-in kinds, whose controllers predate those conditions, get rules of their own;
5. anything else is judged by its ``Ready`` condition, and an object without one is Current
   (ConfigMaps, RBAC, most CRs of "passive" kinds have nothing to wait for).

Where this deliberately differs from kstatus, the function says so and why.  The message is
one line meant for a status condition, an Event and a log line; it is built from counts,
condition reasons and condition messages, never from an object's data (Secret values cannot
reach it: Secrets are answered before anything of theirs is read).
"""

from __future__ import annotations

from typing import Any

from reconciler.sync.health_rules import RULES
from reconciler.sync.kstatus import Conditions, Health, State, conditions, explain, get, group_of, has, integer, text

__all__ = ["Health", "State", "assess"]

_MAX_MESSAGE = 500


def assess(obj: dict[str, Any] | None) -> Health:
    """Readiness of one live object as read from the API server (``None``: it does not exist).

    Never raises on odd shapes: a CR with a malformed status must give a health answer, not
    take the sync loop down.
    """
    if obj is None:
        return Health(State.NOT_FOUND, "object not found")
    health = _assess(obj)
    return Health(health.state, _one_line(health.message))


def _assess(obj: dict[str, Any]) -> Health:
    kind = text(obj, "kind") or "Object"
    if get(obj, "metadata", "deletionTimestamp"):
        finalizers = [f for f in get(obj, "metadata", "finalizers") or [] if isinstance(f, str)]
        waiting = f"; waiting for finalizers: {', '.join(finalizers)}" if finalizers else ""
        return Health(State.TERMINATING, f"{kind} is being deleted{waiting}")

    group = group_of(obj)
    if group == "" and kind in ("Secret", "ConfigMap"):
        # Nothing to wait for, and nothing of a Secret may be read into a message.
        return Health(State.CURRENT, f"{kind} exists")

    generation = integer(obj, "metadata", "generation")
    observed = integer(obj, "status", "observedGeneration")
    # kstatus compares with !=: a status from any other generation describes another spec.
    if generation is not None and observed is not None and generation != observed:
        return Health(
            State.IN_PROGRESS,
            f"{kind} generation {generation} not yet observed by its controller (observed {observed})",
        )

    conds = conditions(obj)
    if has(conds, "Stalled", "True"):
        return Health(State.FAILED, f"{kind} stalled{explain(conds['Stalled'])}")
    if has(conds, "Reconciling", "True"):
        return Health(State.IN_PROGRESS, f"{kind} reconciling{explain(conds['Reconciling'])}")

    rule = RULES.get((group, kind))
    if rule is not None:
        return rule(obj, conds)
    return _ready_condition(obj, conds, kind=kind, generation=generation)


def _ready_condition(obj: dict[str, Any], conds: Conditions, *, kind: str, generation: int | None) -> Health:
    ready = conds.get("Ready")
    if ready is None:
        return Health(State.CURRENT, f"{kind} has no readiness conditions; nothing to wait for")
    if ready.get("status") == "True":
        # metav1.Condition carries its own observedGeneration (Flux, cert-manager set it): a
        # Ready=True written for an older spec must not end the wait.
        cond_gen = ready.get("observedGeneration")
        if isinstance(cond_gen, int) and generation is not None and cond_gen < generation:
            return Health(
                State.IN_PROGRESS,
                f"{kind} Ready condition is for generation {cond_gen}, object is at generation {generation}",
            )
        return Health(State.CURRENT, f"{kind} is ready{explain(ready)}")
    # Ready=False alone is not terminal: only Stalled (handled above) says the controller gave up.
    return Health(State.IN_PROGRESS, f"{kind} not ready{explain(ready)}")


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."
