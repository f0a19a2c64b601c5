"""What the render step hands the pipeline: the manifests, and for a chart its CRDs and hooks.

A plain revision (kustomize, plain YAML) is just its manifests. A chart's render depends on
one fact only the cluster knows: whether this is Helm's *install* (the inventory is empty) or
an *upgrade*. That decides which CRD policy applies and which hooks run, so the render hands
back a :class:`Rendered` and the pipeline asks it for the :class:`Staged` objects once the
inventory is loaded.

CRD policies (Flux's names) map onto the plan's own rules rather than onto a second applier:
``CreateReplace`` applies the CRDs like any object; ``Create`` applies them with the
``reconcile: disabled`` annotation, so a missing CRD is created and an existing one is left as
it is; ``Skip`` leaves them out on install and, on upgrade, keeps the ones the inventory already
holds (annotated the same way) so that a CRD created at install is never pruned by an upgrade
that skips CRDs: pruning a CRD deletes every custom resource of it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from reconciler.gitsync.helmrender import HelmRender
from reconciler.gitsync.helmspec import CRDPolicy
from reconciler.render.helm import Hook
from reconciler.render.manifests import Manifest
from reconciler.sync import inventory
from reconciler.sync.objects import DISABLED, RECONCILE_ANNOTATION, ObjectId


class ReleaseAction(StrEnum):
    """What Helm would call this sync of a chart; its hooks are named ``pre-``/``post-`` that."""

    INSTALL = "install"  # the inventory is empty: the first sync
    UPGRADE = "upgrade"  # every later sync


@dataclass(frozen=True)
class Staged:
    """What one sync applies, in order: pre-hooks (awaited), the manifests, post-hooks (after health)."""

    manifests: Sequence[Manifest] = field(repr=False)
    pre_hooks: tuple[Hook, ...] = field(default=(), repr=False)  # default none: nothing before the apply
    post_hooks: tuple[Hook, ...] = field(default=(), repr=False)  # default none: nothing after health
    action: ReleaseAction = ReleaseAction.INSTALL  # default install: the inventory was empty


@dataclass(frozen=True)
class Rendered:
    """The render step's result: plain manifests, or a chart's render split by phase."""

    manifests: Sequence[Manifest] = field(repr=False)  # everything but a chart's crds/ and hooks
    chart: HelmRender | None = None  # default None: no chart (kustomize or plain YAML)

    @property
    def chart_revision(self) -> str:
        """``name@version@sha256:...`` of the chart, or "" without one."""
        return self.chart.revision if self.chart else ""

    def checked(self) -> list[Manifest]:
        """Everything the policy gate sees: the manifests, the chart's CRDs and its hooks."""
        if self.chart is None:
            return list(self.manifests)
        label = f"chart {self.chart.chart.name}@{self.chart.chart.version}"
        hooks = [Manifest(obj=h.obj, file=f"{label} ({h.source})", doc=0) for h in self.chart.hooks]
        return [*self.chart.crds, *self.manifests, *hooks]

    def staged(self, previous: inventory.Inventory) -> Staged:
        """What to apply into a cluster whose inventory is ``previous`` (empty: install)."""
        if self.chart is None:
            return Staged(manifests=self.manifests)
        upgrade = len(previous) > 0
        chart = self.chart
        return Staged(
            manifests=[*_crds(chart, upgrade=upgrade, previous=previous), *self.manifests],
            pre_hooks=chart.pre_hooks(upgrade=upgrade),
            post_hooks=chart.post_hooks(upgrade=upgrade),
            action=ReleaseAction.UPGRADE if upgrade else ReleaseAction.INSTALL,
        )


def _crds(chart: HelmRender, *, upgrade: bool, previous: inventory.Inventory) -> list[Manifest]:
    """The chart's ``crds/`` under the phase's policy (see the module docstring)."""
    policy = (chart.upgrade if upgrade else chart.install).crds
    if policy is CRDPolicy.CREATE_REPLACE:
        return list(chart.crds)
    if policy is CRDPolicy.SKIP:
        if not upgrade:
            return []
        return [_create_only(m) for m in chart.crds if ObjectId.of(m.obj) in previous.entries]
    return [_create_only(m) for m in chart.crds]


def _create_only(m: Manifest) -> Manifest:
    """The CRD with ``reconcile: disabled``: created when missing, never updated."""
    obj = copy.deepcopy(m.obj)
    obj.setdefault("metadata", {}).setdefault("annotations", {})[RECONCILE_ANNOTATION] = DISABLED
    return Manifest(obj=obj, file=m.file, doc=m.doc)
