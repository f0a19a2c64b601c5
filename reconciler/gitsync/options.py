"""How ``reconciler run`` runs the controller: one field per flag (docs/cli.md), in one frozen value.

Kept apart from the loop so that the CLI, the tests and the benchmarks can build one without
reading the loop, and the loop stays one screenful of steps per method.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from reconciler.aws import ekscheck
from reconciler.gitsync.tenancy import Tenancy, parse_grant


@dataclass(frozen=True)
class ControllerOptions:
    """How ``reconciler run`` runs the controller; each field is one of its flags (docs/cli.md)."""

    namespace: str | None = None
    """--watch-namespace; default None: GitSyncs of every namespace."""
    workers: int = 4
    """--workers; default 4 GitSyncs reconciled at once."""
    kube_api_qps: float = 250.0
    """--kube-api-qps; default 250 requests a second to the API server (0: unbounded)."""
    kube_api_burst: int = 500
    """--kube-api-burst; default 500 requests at once above the QPS."""
    cache_dir: Path = Path("/tmp/gitops-reconciler")  # noqa: S108 - overridden by --cache-dir
    """--cache-dir; default /tmp/gitops-reconciler: git checkouts, per GitSync."""
    leader_elect: bool = False
    """--leader-elect; default False: this replica reconciles without a Lease."""
    lease_namespace: str = "reconciler-system"
    """--lease-namespace; default reconciler-system."""
    lease_name: str = "gitops-reconciler-leader"
    """The leader-election Lease's name; default gitops-reconciler-leader."""
    lease_duration: float = 15.0
    """--lease-duration; default 15s before a standby (or, with shards, another replica) takes over."""
    shards: int = 0
    """--shards; default 0: no shards (this replica, or the elected leader, reconciles everything)."""
    identity: str = "reconciler"
    """This replica's name in the Lease and as the Events' reporting instance; default reconciler."""
    metrics_addr: str = ":8080"
    """--metrics-addr; default :8080 ('' = off)."""
    health_addr: str = ":8081"
    """--health-addr; default :8081 ('' = off)."""
    webhook_addr: str = ""
    """--webhook-addr; default '': no push webhook receiver."""
    webhook_secret: bytes = b""
    """The shared webhook secret read from --webhook-secret-file; default empty (the receiver is off)."""
    alertmanager_url: str = ""
    """--alertmanager-url; default '': no alerts."""
    policies_dir: Path | None = None
    """--policies; default None: no policy gate."""
    eks: ekscheck.EksOptions | None = None
    """--eks-config and its flags; default None: no EKS drift check."""
    allow_eks_targets: tuple[str, ...] = ()
    """Old-form CLUSTER/REGION globs a spec.target may name; default none (see ``tenancy.eks_targets``)."""
    max_concurrent_per_namespace: int = 0
    """--max-concurrent-per-namespace; default 0: fairness.default_limit (half the workers)."""
    max_timeout: float = 3600.0
    """--max-timeout; default 1h: a GitSync with a longer spec.timeout is refused (Stalled)."""
    max_prune_ratio: float = 0.5
    """--max-prune-ratio; default half: the share of its inventory one sync may prune (mass-prune guard)."""
    tenancy: Tenancy = field(default_factory=Tenancy)
    """The lock-down flags (docs/security.md); default: open, as single-tenant installs always were."""

    def effective_tenancy(self) -> Tenancy:
        """``tenancy`` with the old-form ``allow_eks_targets`` (no ``NAMESPACE=``) added to its grants."""
        legacy = tuple(parse_grant(p, "--allow-eks-target", legacy=True) for p in self.allow_eks_targets)
        return replace(self.tenancy, eks_targets=self.tenancy.eks_targets + legacy)
