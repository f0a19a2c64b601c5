"""Offline policy gate evaluated on rendered objects before anything is applied.

Policies are Kubernetes ValidatingAdmissionPolicies (see docs/policies.md).  The sync engine
needs two calls: :func:`load_policies` once per revision (a :class:`PolicyError` means the
sync must not proceed) and :func:`evaluate` on the whole render (a ``Deny`` violation in
enforce mode, :func:`denied`, means nothing of the revision is applied or pruned), then
:func:`describe` for each Event/log line and :func:`counts` for the metric.
"""

from reconciler.policy.evaluation import evaluate
from reconciler.policy.loading import load_policies
from reconciler.policy.model import (
    PolicyError,
    PolicyMode,
    PolicySet,
    ValidationAction,
    Violation,
    admission_message,
    counts,
    denied,
    describe,
)

__all__ = [
    "PolicyError",
    "PolicyMode",
    "PolicySet",
    "ValidationAction",
    "Violation",
    "admission_message",
    "counts",
    "denied",
    "describe",
    "evaluate",
    "load_policies",
]
