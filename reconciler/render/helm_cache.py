"""A bounded, in-memory cache of chart renders, so a no-op reconcile does not run ``helm``.

``helm template`` is a pure function of the chart's bytes, the values and what the cluster
says about itself, so the key is exactly that: the chart digest, a digest of the values, the
kube version, and a digest of the rest of the render context (release name, namespace, API
versions).  The values digest is a sha256 over canonical JSON, so Secret values never sit in a
key in the clear.  Entries hold the parsed :class:`ChartRender`; a hit hands out deep copies
(:func:`clone`) because the sync labels and edits the objects it is given.

Bounded by entry count (least recently used goes first): one entry per GitSync-with-a-chart
is the steady state, a few more while a values change rolls through.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.render.helm import ChartRender, Hook

DEFAULT_MAX_ENTRIES = 128


def _digest(value: Any) -> str:
    raw = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    return "sha256:" + hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class RenderKey:
    """What a render depends on; two equal keys render the same objects."""

    chart_digest: str
    values_digest: str
    kube_version: str
    context_digest: str  # release name, namespace, API versions

    @classmethod
    def of(
        cls,
        *,
        chart_digest: str,
        values: Mapping[str, Any],
        kube_version: str | None,
        release_name: str,
        namespace: str,
        api_versions: Sequence[str],
    ) -> RenderKey:
        context = {"release": release_name, "namespace": namespace, "apis": sorted(api_versions)}
        return cls(
            chart_digest=chart_digest,
            values_digest=_digest(values),
            kube_version=kube_version or "",
            context_digest=_digest(context),
        )


def clone(value: Any) -> Any:
    """A deep copy of JSON-shaped data (maps, lists, immutable scalars): about twice as fast as
    ``copy.deepcopy`` (no memo), which a no-op of a chart of large objects pays on every reconcile."""
    if type(value) is dict:
        return {k: clone(v) for k, v in value.items()}
    if type(value) is list:
        return [clone(v) for v in value]
    return value


def _copy(render: ChartRender) -> ChartRender:
    return ChartRender(
        chart=render.chart,
        crds=tuple(clone(o) for o in render.crds),
        objects=tuple(clone(o) for o in render.objects),
        hooks=tuple(
            Hook(
                obj=clone(h.obj),
                events=h.events,
                weight=h.weight,
                delete_policies=h.delete_policies,
                source=h.source,
            )
            for h in render.hooks
        ),
        skipped=render.skipped,
    )


class RenderCache:
    """LRU of renders; ``renders`` counts the ``helm`` runs (misses) and ``hits`` the runs saved."""

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[RenderKey, ChartRender] = OrderedDict()
        self.hits = 0
        self.renders = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_render(self, key: RenderKey, render: Callable[[], ChartRender]) -> tuple[ChartRender, bool]:
        """(the render for ``key``, whether it came from the cache); ``render`` runs only on a miss.

        A failed render is not cached: the next reconcile tries again (and says why again).
        """
        cached = self._entries.get(key)
        if cached is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return _copy(cached), True
        self.renders += 1
        result = render()
        self._entries[key] = result
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return _copy(result), False
