"""Which API handle each GitSync reads, applies and prunes with.

The controller's own handle, or one that impersonates the GitSync's ServiceAccount (so RBAC
limits what a tenant may read and apply), or one on a remote EKS target, or both. Handles are
built once per (target, identity) and kept in a bounded cache, so a remote cluster costs one
DescribeCluster, one connection pool and one discovery, not one per reconcile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from reconciler.aws import target as eks_target
from reconciler.gitsync.clientcache import ClientCache
from reconciler.gitsync.spec import EksTarget, GitSyncSpec, SpecError
from reconciler.gitsync.tenancy import Tenancy, service_account_user
from reconciler.kube import discovery
from reconciler.kube.client import Kube

ClientFactory = Callable[[EksTarget | None, dict[str, str]], Kube]
"""Builds a handle on the management cluster (target None) or a GitSync's remote target,
sending extra headers (impersonation) with every request."""


def client_factory(local: Callable[[dict[str, str]], Kube]) -> ClientFactory:
    """The production factory: ``local`` for this cluster, EKS targets from their name and region."""

    def make(target: EksTarget | None, headers: dict[str, str]) -> Kube:
        if target is None:
            return local(headers)
        return eks_target.connect(target.cluster, target.region, headers=headers)

    return make


class Handles(NamedTuple):
    """What a GitSync applies with; closable so the bounded client cache can drop it."""

    kube: Kube
    mapper: discovery.RestMapper

    def close(self) -> None:
        self.kube.close()


class ClientHandles:
    """The handles of every GitSync, made by ``factory`` (None: everything goes through ``kube``)."""

    def __init__(
        self, kube: Kube, mapper: discovery.RestMapper, *, tenancy: Tenancy, factory: ClientFactory | None
    ) -> None:
        self.kube, self.mapper, self.tenancy = kube, mapper, tenancy
        self._factory = factory
        self._cache: ClientCache[tuple[EksTarget | None, str], Handles] = ClientCache()

    def drift_kube(self) -> Kube:
        """Who watches managed objects for drift: the platform ServiceAccount when one is set.

        The watches are cluster-wide per kind and filtered by the owner label, so the controller's
        own narrow identity (no list/watch on arbitrary kinds) cannot hold them. The platform
        identity reads only objects some GitSync labelled, and a GitSync's drift report names
        only paths of objects its own (impersonated) sync applied: docs/security.md.
        """
        sa = self.tenancy.platform_service_account
        if sa is None or self._factory is None:
            return self.kube
        kube = self._factory(None, {"Impersonate-User": service_account_user(*sa)})
        kube.on_request, kube.on_resource = self.kube.on_request, self.kube.on_resource
        return kube

    def reader_for(self, namespace: str, spec: GitSyncSpec) -> Kube | None:
        """The handle a GitSync's reads in this cluster go through: its Secrets and ConfigMaps
        (secretRef, substituteFrom) and, for a GitSync without a target, its inventory.

        The GitSync's own identity (impersonated), so a tenant reads only what its ServiceAccount
        may read, even in its own namespace. None: the controller's own (no identity to act as).
        """
        user = self.tenancy.identity(namespace, spec)
        if self._factory is None or not user:
            return None
        return self._cached(None, user).kube

    def reader(self, namespace: str, spec: GitSyncSpec) -> Kube:
        """:meth:`reader_for`, the controller's own handle when that is None."""
        made = self.reader_for(namespace, spec)
        return made if made is not None else self.kube

    def clients_for(self, namespace: str, spec: GitSyncSpec) -> Handles | None:
        """The handle a GitSync applies and prunes with; None means the controller's own.

        Another one when the GitSync acts as a ServiceAccount (its own serviceAccountName, or the
        one --default-service-account / --platform-service-account give it: RBAC limits what it
        may apply) or a remote target, or both.  One per (target, identity), kept for the life
        of the process (the most recently used ``clientcache.DEFAULT_SIZE`` of them: the least
        recently used is closed).  Raises :class:`AwsError` when a target cannot be reached, and
        :class:`TargetNotAllowedError` (before any AWS call) when ``--allow-eks-target`` does not
        admit it for the GitSync's namespace: a tenant must not borrow the controller's AWS
        identity for any cluster that identity can reach.
        """
        user = self.tenancy.identity(namespace, spec)
        if spec.target is not None:
            # Checked before anything is contacted: the target would be reached with the controller's identity.
            self.tenancy.check_target(namespace, spec.target)
        if self._factory is None or (spec.target is None and not user):
            return None  # the caller refuses a target it has no handle for
        return self._cached(spec.target, user)

    def appliers(self, namespace: str, spec: GitSyncSpec) -> Handles:
        """:meth:`clients_for`, the controller's own handle when that is None, but never the
        controller's own for a GitSync with a ``target``: nothing must land in the local cluster
        by accident. Raises :class:`AwsError` or :class:`SpecError`."""
        made = self.clients_for(namespace, spec)
        if made is not None:
            return made
        if spec.target is not None:
            raise SpecError(
                f"spec.target: this controller was started without support for remote clusters ({spec.target})"
            )
        return Handles(self.kube, self.mapper)

    def _cached(self, target: EksTarget | None, user: str) -> Handles:
        assert self._factory is not None
        factory = self._factory

        def make() -> Handles:
            kube = factory(target, {"Impersonate-User": user} if user else {})
            kube.on_request, kube.on_resource = self.kube.on_request, self.kube.on_resource
            return Handles(kube, discovery.RestMapper(kube))

        return self._cache.get((target, user), make)


def pool_size(workers: int) -> int:
    """Connections for the controller's own handle: every worker plus watches and status writes."""
    return max(8, workers * 4)
