"""The controller's steps for one GitSync: its source, its render and its policy gate.

Handed to :func:`reconciler.gitsync.pipeline.sync_revision`, which runs them in order. They read
what the GitSync names (its Secrets and ConfigMaps, through its own identity) and keep what
outlives one reconcile in its :class:`SyncState` (the source cache, the secrets to scrub).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler import policy
from reconciler.gitsync import decryptkeys, helmstep, inputs
from reconciler.gitsync.errors import PolicyFailedError, RenderFailedError, SourceFailedError
from reconciler.gitsync.helmspec import HelmSpec
from reconciler.gitsync.outcome import Outcomes
from reconciler.gitsync.rendered import Rendered
from reconciler.gitsync.results import Stage
from reconciler.gitsync.spec import GitSyncSpec, SpecError
from reconciler.kube.client import Kube, KubeError, UnreachableError
from reconciler.kube.discovery import RestMapper
from reconciler.render import build as render_build
from reconciler.render.decryption import Decryption, Decryptor
from reconciler.render.manifests import Manifest, ManifestError
from reconciler.report import redact
from reconciler.source.artifact import Artifact, Source, SourceError
from reconciler.source.limits import TreeLimitError
from reconciler.source.shared import Checkout, SharedSources

log = logging.getLogger("reconciler.gitsync")


@dataclass
class SyncState:
    """Per-GitSync state that outlives one reconcile (failures, what it last fetched and synced)."""

    failures: int = 0  # default 0: consecutive failures (for the retry backoff)
    drifted: int = 0  # default 0: objects drifted at last report (for DriftCorrected)
    inputs: str = ""  # default "": digest of everything the last successful sync rendered from
    synced_at: float = float("-inf")  # default -inf: monotonic time of the last full successful sync
    secrets: frozenset[str] = frozenset()  # default empty: values read from its Secrets, scrubbed everywhere
    fetched: tuple[str, int] = ("", 0)  # default none: (shared source key, fetch seq) of its last checkout
    watched: bool = False  # default False: the drift watches vouch its live state is as its last sync left it
    extra: dict[str, Any] = field(default_factory=dict)  # default {}: what the loop keeps beside


@dataclass
class GitSyncSteps:
    """The :class:`~reconciler.gitsync.pipeline.Steps` of one reconcile of one GitSync."""

    obj: dict[str, Any]  # the GitSync as read
    spec: GitSyncSpec
    state: SyncState
    reader: Callable[[], Kube]  # what its Secrets and ConfigMaps are read through (its own identity if any)
    shared: SharedSources  # the process's fetches and checkouts, one per (source, revision)
    cache_dir: Path  # where the shared sources keep their caches (one directory per source key)
    handled_request: str | None  # the requested-at value this reconcile answers (None: none)
    policy_mode: str  # the spec's mode, raised to the controller's minimum
    load_policies: Callable[[], policy.PolicySet | None]
    outcomes: Outcomes
    charts: helmstep.Charts | None = None  # default None: no chart support (spec.helm fails to render)
    decryptor: Decryptor = field(default_factory=Decryptor)  # default: its own; the controller shares one
    own_keys: bool = True  # default True: may decrypt with the controller's keys (False: a locked-down tenant)
    target: tuple[Kube, RestMapper] | None = None  # default None: set once the target is reached (discovery)
    revision: str = ""  # default "": set once fetched
    checkout: Checkout | None = None  # default None: the read-only revision, held until release()
    inputs: str = ""  # default "": digest of what it renders from, set once read

    @property
    def gid(self) -> str:
        md = self.obj["metadata"]
        return f"{md['namespace']}/{md['name']}"

    @property
    def raised(self) -> str:
        """Said after a policy verdict when --min-policy-mode raised the spec's mode."""
        if self.policy_mode == self.spec.policy_mode:
            return ""
        return f" (spec.policy.mode {self.spec.policy_mode} raised to {self.policy_mode} by --min-policy-mode)"

    def fetch(self) -> Artifact:
        """The newest revision, through the shared fetch: every GitSync of one source and
        credentials shares one fetch and one read-only checkout. A request this reconcile answers
        (a push webhook, a manual reconcile) asks the remote again, once per request."""
        md = self.obj["metadata"]
        try:
            key, opener = self._source()
            handled = (self.obj.get("status") or {}).get("lastHandledRequestedAt")
            if self.handled_request and self.handled_request != handled:  # a push: ask the remote again
                self.shared.invalidate(key, token=self.handled_request)
            f0 = time.monotonic()
            self.release()
            after = self.state.fetched[1] if self.state.fetched[0] == key else 0  # never the fetch it last saw
            self.checkout = self.shared.checkout(key, open_source=opener, after=after)
            self.state.fetched = (key, self.checkout.seq)
            self.outcomes.metrics.fetch_duration.labels(md["namespace"], md["name"]).observe(time.monotonic() - f0)
        except (SourceError, KubeError, UnreachableError, ValueError) as e:
            raise SourceFailedError(str(e), stage=Stage.SOURCE) from e
        self.revision = self.checkout.revision
        if self.revision != (self.obj.get("status") or {}).get("lastAppliedRevision"):  # a no-op if marked already
            self.outcomes.reconciling(self.obj, f"reconciling {inputs.describe(self.spec)}")
        return self.checkout.artifact

    def release(self) -> None:
        """Give the checkout back (the reconcile is done with its files)."""
        if self.checkout is not None:
            self.checkout.release()
            self.checkout = None

    def _source(self) -> tuple[str, Callable[[], Source]]:
        """The sharing key of the spec's source with its Secret, and how to open it the first time.

        The key names the Secret and a digest of its content: GitSyncs with other credentials never
        share a fetch (nor a cache directory: a commit cached for one tenant is not served to
        another), and rotated keys make a new key, so the next reconcile opens a new Source."""
        src, state, md = self.spec.source, self.state, self.obj["metadata"]
        secret = inputs.secret_data(self.reader(), md["namespace"], src.secret_ref.name) if src.secret_ref else None
        if secret is not None:
            state.secrets |= inputs.printable_secrets(secret.values())
        key = inputs.shared_key(src, secret, namespace=md["namespace"])
        timeout = min(self.spec.timeout, 300.0)
        cache_dir = self.cache_dir / "sources" / key[:16]
        return key, lambda: inputs.open_source(src, secret, timeout=timeout, cache_dir=cache_dir)

    def render(self, artifact: Artifact) -> Rendered | None:
        spec, state, md = self.spec, self.state, self.obj["metadata"]
        try:
            values, secret_vars = inputs.variables(self.reader(), md["namespace"], spec)
            keys = self._keys()
            state.secrets |= keys.secrets if keys else frozenset()  # key material: scrubbed everywhere
            root = artifact.path if spec.helm else render_build.confine(artifact.path, spec.path)
            # a chart may read values files anywhere in the source
            self.inputs = inputs.digest(root, values, md=md, keys=keys.digest if keys else "")
            last = (state.inputs, state.drifted, state.synced_at)
            if inputs.unchanged(
                self.obj,
                interval=spec.interval,
                last=last,
                inputs=self.inputs,
                handled_request=self.handled_request,
                watched=state.watched,
            ):
                return None
            state.inputs = ""  # until this sync succeeds: a failure may have changed live state
            state.secrets |= frozenset(values[k] for k in secret_vars if len(values[k]) >= redact.MIN_LEN)
            if spec.helm is not None:
                return self._chart(artifact, spec.helm)
            options = render_build.RenderOptions(
                substitute=values if spec.substitution else None,  # opt-in, as Flux's postBuild
                secret_vars=secret_vars,
                patches=spec.patches,
                target_namespace=spec.target_namespace,
                decryption=Decryption(keys=keys.keys, decryptor=self.decryptor) if keys else None,
            )
            manifests = render_build.render(artifact.path, spec.path, options)
        except (ManifestError, SpecError, KubeError, UnreachableError, TreeLimitError) as e:
            raise RenderFailedError(str(e), stage=Stage.RENDER) from e
        state.secrets |= redact.secret_values(manifests)
        return Rendered(manifests=manifests)

    def _keys(self) -> decryptkeys.Keys | None:
        """What ``spec.decryption`` decrypts with (None without it), read as the GitSync."""
        if self.spec.decryption is None:
            return None
        ns = self.obj["metadata"]["namespace"]
        return decryptkeys.read(self.reader(), ns, decryption=self.spec.decryption, own_aws=self.own_keys)

    def _chart(self, artifact: Artifact, helm: HelmSpec) -> Rendered:
        """``spec.helm``: the chart rendered for the target cluster; its Secret-sourced values scrubbed."""
        if self.charts is None or self.target is None:
            raise RenderFailedError("spec.helm: this controller was started without chart support", stage=Stage.RENDER)
        md = self.obj["metadata"]
        kube, mapper = self.target
        objects = helmstep.read_objects(self.reader(), md["namespace"], helm)  # with the GitSync's identity
        self.state.secrets |= inputs.printable_secrets(t.encode() for t in helmstep.secret_texts(objects))
        target = helmstep.ChartTarget(
            namespace=md["namespace"],
            name=md["name"],
            release_namespace=helmstep.default_namespace(self.spec, md["namespace"]),
            kube=kube,
            mapper=mapper,
        )
        try:
            out = self.charts.render(artifact.path, helm, objects=objects, target=target, metrics=self.outcomes.metrics)
        except SourceError as e:  # the chart cannot be fetched: the GitSync's source failed
            raise SourceFailedError(str(e), stage=Stage.RENDER) from e
        self.state.secrets |= frozenset(s for s in out.sensitive if len(s) >= redact.MIN_LEN)
        hooks = [Manifest(obj=h.obj, file=h.source, doc=0) for h in out.hooks]
        self.state.secrets |= redact.secret_values([*out.manifests, *out.crds, *hooks])
        return Rendered(manifests=out.manifests, chart=out)

    def policies(self) -> policy.PolicySet | None:
        if self.raised:
            log.info(
                f"GitSync {self.gid}: policy mode{self.raised}",
                extra={"gitsync": self.gid, "reason": "PolicyModeRaised"},
            )
        try:
            return self.load_policies() if self.policy_mode != "off" else None
        except (policy.PolicyError, OSError) as e:
            raise PolicyFailedError(str(e), stage=Stage.POLICY) from e

    def hold(self, revision: str) -> bool:
        """drift.mode warn: report drift, never correct it; only a new revision or spec applies."""
        st, md, req = self.obj.get("status") or {}, self.obj["metadata"], self.handled_request
        return bool(
            self.spec.drift_mode == "warn"
            and self.state.drifted
            and revision == st.get("lastAppliedRevision")
            and md.get("generation") == st.get("observedGeneration")
            and (not req or req == st.get("lastHandledRequestedAt"))
        )

    def report(self, violations: Sequence[policy.Violation]) -> None:
        lines = [redact.scrub(policy.describe(v), self.state.secrets) for v in violations[:10]]
        counts = [(pol, n) for (pol, _action), n in policy.counts(violations).items()]
        self.outcomes.violations(self.obj, lines, counts=counts, total=len(violations))
