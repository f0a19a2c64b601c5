"""Kind -> resource (plural) offline, as the apiserver's REST mapping would answer.

``resourceRules`` name resources (``deployments``), manifests name kinds (``Deployment``).
Without discovery we use, in order: the CustomResourceDefinitions of the same render
(their ``spec.names.plural``), a table of the built-in kinds whose plural is irregular,
and Kubernetes' own guess (lowercase; ``-s`` -> ``-ses``, ``-y`` -> ``-ies``, else ``+s``),
which is right for every other built-in kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from reconciler.render.namespaces import crd_names

IRREGULAR: dict[tuple[str, str], str] = {
    ("", "Endpoints"): "endpoints",
    ("", "PodSecurityPolicy"): "podsecuritypolicies",
}


def guess_plural(kind: str) -> str:
    """Kubernetes' ``UnsafeGuessKindToResource`` for a kind nobody declared."""
    low = kind.lower()
    if not low:
        return low
    if low.endswith("s"):
        return low + "es"
    if low.endswith("y"):
        return low[:-1] + "ies"
    return low + "s"


class Resources:
    """Plural names for one render (CRDs in it included)."""

    def __init__(self, objs: Iterable[dict[str, Any]] = ()) -> None:
        self.plurals: dict[tuple[str, str], str] = dict(IRREGULAR)
        for crd in crd_names(objs):
            if isinstance(crd.plural, str) and crd.plural:
                self.plurals[(crd.group, crd.kind)] = crd.plural

    def plural(self, group: str, kind: str) -> str:
        return self.plurals.get((group, kind)) or guess_plural(kind)
