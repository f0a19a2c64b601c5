"""Offline policy gate evaluated on rendered objects before anything is applied.

Policies are Kubernetes ValidatingAdmissionPolicies (see docs/policies.md).  The sync engine
needs two calls: :func:`load_policies` once per revision (a :class:`PolicyError` means the
sync must not proceed) and :func:`evaluate` on the whole render (a ``Deny`` violation in
enforce mode means nothing of the revision is applied or pruned).
"""

from reconciler.policy.engine import PolicyError, PolicySet, Violation, admission_message, evaluate, load_policies

__all__ = ["PolicyError", "PolicySet", "Violation", "admission_message", "evaluate", "load_policies"]
