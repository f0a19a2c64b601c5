"""One connection to one API server, speaking raw JSON.

The official client is used for what it does well (kubeconfig and in-cluster config,
TLS, token refresh hooks, one urllib3 pool), but requests and responses bypass its
generated models: decoding a large list through them costs ~15x ``json.loads``.
Every request is counted by verb, so benchmarks and metrics can show API traffic.
"""

from __future__ import annotations

import collections
import copy
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import kubernetes.client
import kubernetes.config
import urllib3

from reconciler.kube import paths

JSON = "application/json"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
DEFAULT_TIMEOUT = (10.0, 60.0)  # (connect, read) seconds
THROTTLE_RETRIES = 5
"""How often a request the API server throttled (429) is sent again after its Retry-After."""
MAX_RETRY_AFTER = 30.0
_RETRIES = urllib3.Retry(3, respect_retry_after_header=False)
"""urllib3's own retries, for connection errors only: a 429 comes back to Kube._send, which counts
every attempt (metrics show the real traffic) and waits out its Retry-After itself."""
"""Seconds: the longest Retry-After honoured; a longer one is waited for this long."""


def retry_after(value: str | None) -> float:
    """Seconds a 429 asks us to wait: its Retry-After in seconds (API Priority and Fairness sends
    it on every rejection), 1 when absent or unreadable (as client-go), capped at MAX_RETRY_AFTER."""
    try:
        seconds = float(value) if value else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class RateLimiter:
    """A token bucket: ``qps`` requests a second on average, ``burst`` at once (client-go's flags).

    The controller's own bound on its API traffic, so a push that wakes a thousand GitSyncs
    does not become a burst the API server has to shed with 429s."""

    def __init__(self, *, qps: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.qps, self.burst, self._clock = qps, max(1, burst), clock
        self._tokens, self._at = float(self.burst), clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take one token; returns how long to wait before using it (0: at once)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.qps)
            self._at = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            time.sleep(delay)


@dataclass
class KubeError(Exception):
    """A failed API request, carrying the API server's own ``Status`` explanation.

    ``reason`` is the machine-readable Status reason (``NotFound``, ``Conflict``,
    ``Invalid``, ``Forbidden``...); ``causes`` lists per-field problems (e.g. which
    immutable field a change touched), so callers can name the field in their message.
    """

    status: int
    reason: str
    message: str
    method: str
    path: str
    causes: list[dict[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.method} {self.path}: {self.status} {self.reason}: {self.message}"

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


class UnreachableError(Exception):
    """The API server could not be reached at all (connection, TLS or timeout).

    Its message says ``cannot reach the API server``, the words the runbook's row for it starts
    with, whatever urllib3 called the failure (a refused connection, a reset, a half-read body,
    a read timeout); only a :class:`FenceError` (never sent) says why it was not sent instead."""


class MalformedResponseError(UnreachableError):
    """The API server (or whatever answers in its place: a proxy, a load balancer) sent a 2xx
    whose body is not JSON. An :class:`UnreachableError`, so every step treats it as it treats a
    cut connection (fail, keep the last good revision, retry) rather than as a bug: the request
    may or may not have been carried out, and only asking again can tell."""


class FenceError(UnreachableError):
    """A request not sent, or cut off, because its fence passed: the deadline a fenced handle
    (:meth:`Kube.fenced`) was given, such as the end of a shard claim. Never reached the server
    after that deadline, so no other replica can see it as a write of ours."""


class CredentialsError(UnreachableError):
    """No bearer token could be had for the request (e.g. the cloud credentials behind it expired).

    An :class:`UnreachableError` to every caller: the request never reached the API server,
    and retrying later is the remedy either way.
    """


class ConfigError(Exception):
    """No usable kubeconfig or in-cluster configuration."""


def _parse_error(status: int, data: bytes, *, http_reason: str, method: str, path: str) -> KubeError:
    try:
        st = json.loads(data)
    except ValueError:
        st = None
    if isinstance(st, dict) and st.get("kind") == "Status":
        details = st.get("details") or {}
        return KubeError(
            status=status,
            reason=str(st.get("reason") or http_reason),
            message=str(st.get("message") or ""),
            method=method,
            path=path,
            causes=[{k: str(v) for k, v in c.items()} for c in details.get("causes", []) if isinstance(c, dict)],
        )
    text = data.decode("utf-8", "replace").strip()[:500]
    return KubeError(status=status, reason=http_reason, message=text, method=method, path=path)


def request_kind(
    method: str, path: str, *, query: Sequence[tuple[str, str]] | None, content_type: str
) -> tuple[str, str]:
    """(Kubernetes verb, resource[/subresource]) of a request, for counting: never a name or a value.

    ``get``/``list``/``watch`` for GETs of an object, a collection or a stream; ``apply`` and
    ``apply-dry-run`` for server-side apply; ``create``, ``patch``, ``update``, ``delete`` otherwise."""
    q = dict(query or ())
    parts = path.split("?", 1)[0].strip("/").split("/")
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]  # a namespaced resource: namespaces/<ns>/<resource>[/<name>[/<sub>]]
    resource = (rest[0] if rest else "-") + (f"/{rest[2]}" if len(rest) > 2 else "")
    if method == "GET":
        verb = "watch" if q.get("watch") in ("1", "true") else ("get" if len(rest) > 1 else "list")
    elif method == "PATCH" and content_type == APPLY_PATCH:
        verb = "apply-dry-run" if q.get("dryRun") else "apply"
    else:
        verb = {"POST": "create", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}.get(method, method.lower())
    return verb, resource


class Kube:
    """A shared, thread-safe handle on one cluster.

    One instance per cluster per process: it owns the urllib3 pool that all workers
    share, so concurrency is bounded by ``pool_size`` rather than by sockets opened.
    """

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self._api = api
        self._lock = threading.Lock()
        self.requests: collections.Counter[str] = collections.Counter()
        self.on_request: Callable[[str], None] | None = None  # e.g. a metrics counter
        self.on_resource: Callable[[str, str], None] | None = None  # (verb, resource): see request_kind
        self.limiter: RateLimiter | None = None  # default None: no client-side limit (see limit())
        self.throttled = 0  # responses that were 429 and sent again, for tests and benchmarks
        # default 60 s (DEFAULT_TIMEOUT's read part): how long a request waits for its answer
        # unless it names its own timeout; `--request-timeout` sets it
        self.read_timeout = DEFAULT_TIMEOUT[1]
        self._fence: Callable[[], float] | None = None  # default None: requests have no deadline

    def fenced(self, deadline: Callable[[], float]) -> Kube:
        """This handle (same pool, counters and limits) with a fence: every request must be over
        by ``deadline()`` (``time.monotonic()`` seconds, asked again before each attempt, so a
        renewed claim moves it). Past it a request is refused unsent; before it, its timeout is
        cut to the time left and it is never retried beyond it. Why: a write already in flight
        when a shard claim lapses (a partition that delays packets, a long Retry-After) must not
        land after another replica may have taken the shard over, as client-go's leader election
        bounds each renewal by its renew deadline."""
        clone = copy.copy(self)
        clone._fence = deadline
        return clone

    def _attempt(
        self, method: str, path: str, timeout: float | tuple[float, float] | None
    ) -> tuple[urllib3.Timeout, urllib3.Retry | bool]:
        """The timeout and retries of one attempt: as given, or cut to the fence."""
        if self._fence is None:
            if isinstance(timeout, tuple):
                return urllib3.Timeout(connect=timeout[0], read=timeout[1]), _RETRIES
            return urllib3.Timeout(total=timeout), _RETRIES
        left = self._fence() - time.monotonic()
        if left <= 0:
            raise FenceError(f"{method} {path}: not sent, its fence (the shard claim) has passed")
        if isinstance(timeout, tuple):
            return urllib3.Timeout(connect=timeout[0], read=timeout[1], total=left), False
        return urllib3.Timeout(total=left if timeout is None else min(timeout, left)), False

    def limit(self, *, qps: float, burst: int) -> None:
        """Bound this handle's requests (watches included) to ``qps`` a second, ``burst`` at once;
        ``qps`` <= 0 removes the bound."""
        self.limiter = RateLimiter(qps=qps, burst=burst) if qps > 0 else None

    @property
    def host(self) -> str:
        return str(self._api.configuration.host)

    @property
    def configuration(self) -> kubernetes.client.Configuration:
        """How this handle connects (host, CA, auth hook): for inspection, not for changing."""
        cfg: kubernetes.client.Configuration = self._api.configuration
        return cfg

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]

    def _count(self, verb: str, *, path: str, query: Sequence[tuple[str, str]] | None, content_type: str) -> None:
        with self._lock:
            self.requests[verb] += 1
        if self.on_request is not None:
            self.on_request(verb)
        if self.on_resource is not None:
            self.on_resource(*request_kind(verb, path, query=query, content_type=content_type))

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | None,
        body: Any,
        content_type: str,
        accept: str,
        timeout: float | tuple[float, float] | None,
    ) -> Any:
        paths.check_request_path(path)  # the last word on traversal, however the path was built
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        # param_serialize builds the Authorization header through Configuration.auth_settings(),
        # which calls refresh_api_key_hook: expiring tokens (EKS) are renewed here, per request.
        m, url, hdrs, _, _ = self._api.param_serialize(
            method, path, query_params=list(query or []), header_params=headers, auth_settings=["BearerToken"]
        )
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        if timeout is DEFAULT_TIMEOUT:  # the caller named none: this handle's (--request-timeout)
            timeout = (DEFAULT_TIMEOUT[0], self.read_timeout)
        for attempt in range(THROTTLE_RETRIES + 1):
            if self.limiter is not None:
                self.limiter.wait()
            this, retries = self._attempt(method, path, timeout)
            self._count(method, path=path, query=query, content_type=content_type if body is not None else "")
            try:
                # The pool itself, not rest_client.request(): that one re-encodes bodies by content
                # type and cannot stream, and we need raw bytes both ways (and streams for watches).
                resp = self._api.rest_client.pool_manager.request(
                    m, url, body=payload, headers=hdrs, timeout=this, preload_content=False, retries=retries
                )
            except (urllib3.exceptions.HTTPError, OSError) as e:
                cause = e.reason if isinstance(e, urllib3.exceptions.MaxRetryError) else e
                lapsed = self._fence is not None and self._fence() <= time.monotonic()  # cut off by the fence
                raise (FenceError if lapsed else UnreachableError)(
                    f"{method} {self.host}{path}: cannot reach the API server: {cause}"
                ) from e
            if resp.status != 429 or attempt == THROTTLE_RETRIES:
                break
            # Throttled (max-in-flight or Priority and Fairness): the request was not processed,
            # so it is safe to send again, whatever the verb, once the server's wait is over.
            wait = retry_after(resp.headers.get("Retry-After"))
            resp.drain_conn()
            resp.release_conn()
            with self._lock:
                self.throttled += 1
            time.sleep(wait)
        return resp

    @overload
    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | None = ...,
        body: Any = ...,
        content_type: str = ...,
        accept: str = ...,
        timeout: float | tuple[float, float] | None = ...,
        with_status: Literal[False] = ...,
    ) -> Any: ...

    @overload
    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | None = ...,
        body: Any = ...,
        content_type: str = ...,
        accept: str = ...,
        timeout: float | tuple[float, float] | None = ...,
        with_status: Literal[True],
    ) -> tuple[int, Any]: ...

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = JSON,
        accept: str = JSON,
        timeout: float | tuple[float, float] | None = DEFAULT_TIMEOUT,
        with_status: bool = False,
    ) -> Any:
        """Send one request; return the decoded JSON body or raise :class:`KubeError`.

        ``with_status`` returns ``(HTTP status, body)`` instead: only server-side apply needs
        it, because 201 is the one way the API server tells "created" from "updated".
        """
        resp = self._send(
            method, path, query=query, body=body, content_type=content_type, accept=accept, timeout=timeout
        )
        try:
            data: bytes = resp.read()
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise UnreachableError(
                f"{method} {self.host}{path}: cannot reach the API server (reading the response): {e}"
            ) from e
        finally:
            resp.release_conn()
        if not 200 <= resp.status < 300:
            raise _parse_error(resp.status, data, http_reason=str(resp.reason), method=method, path=path)
        try:
            decoded = json.loads(data) if data else None
        except ValueError as e:
            snippet = data[:80].decode("utf-8", "replace")
            raise MalformedResponseError(
                f"{method} {self.host}{path}: the API server answered {resp.status} with a body that is not JSON "
                f"({e}): {snippet!r}"
            ) from e
        return (resp.status, decoded) if with_status else decoded

    def stream_lines(
        self, path: str, query: Sequence[tuple[str, str]], timeout: tuple[float, float]
    ) -> Iterator[bytes]:
        """GET a streaming response (a watch) and yield it line by line."""
        resp = self._send("GET", path, query=query, body=None, content_type=JSON, accept=JSON, timeout=timeout)
        try:
            if not 200 <= resp.status < 300:
                raise _parse_error(resp.status, resp.read(), http_reason=str(resp.reason), method="GET", path=path)
            buf = b""
            for chunk in resp.stream(64 * 1024, decode_content=True):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                yield from (line for line in lines if line.strip())
            if buf.strip():
                yield buf
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise UnreachableError(f"GET {self.host}{path}: cannot reach the API server (watch stream): {e}") from e
        finally:
            resp.release_conn()

    def get(self, path: str, query: Sequence[tuple[str, str]] | None = None) -> Any:
        return self.request("GET", path, query=query)

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.get(path)
        except KubeError as e:
            if e.not_found:
                return None
            raise
        return obj


def _configuration(kubeconfig: str | None, context: str | None) -> kubernetes.client.Configuration:
    cfg = kubernetes.client.Configuration()
    try:
        _load(cfg, kubeconfig, context)
    except (kubernetes.config.ConfigException, OSError, ValueError) as e:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ConfigError(f"cannot load cluster configuration from {where}: {e}") from e
    return cfg


def _load(cfg: kubernetes.client.Configuration, kubeconfig: str | None, context: str | None) -> None:
    in_cluster = kubeconfig is None and not os.environ.get("KUBECONFIG") and "KUBERNETES_SERVICE_HOST" in os.environ
    if in_cluster:
        kubernetes.config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=cfg
        )


def connect(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    pool_size: int = 8,
    user_agent: str = "gitops-reconciler",
    headers: Mapping[str, str] | None = None,
) -> Kube:
    """Build the one shared handle: kubeconfig (explicit, ``$KUBECONFIG``, ``~/.kube/config``)
    or the in-cluster service account when running as a Pod."""
    return _handle(_configuration(kubeconfig, context), pool_size=pool_size, user_agent=user_agent, headers=headers)


TokenSource = Callable[[], str]
"""Returns a bearer token that is valid now; called before every request, so it must cache."""


def connect_token(
    host: str,
    token: str | TokenSource,
    *,
    ca_file: str | None = None,
    ca_data: str | None = None,
    pool_size: int = 8,
    user_agent: str = "gitops-reconciler",
    headers: Mapping[str, str] | None = None,
) -> Kube:
    """A handle that authenticates with a bearer token (a ServiceAccount's, or an EKS token).

    ``token`` may be a callable for tokens that expire: it is asked before each request
    through ``refresh_api_key_hook``, which the official client calls while building the
    Authorization header (also on our raw request path, see :meth:`Kube._send`).
    ``ca_data`` is PEM text, for CAs that come from an API rather than a file.
    """
    cfg = kubernetes.client.Configuration()
    cfg.host = host
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    cfg.ssl_ca_cert = ca_file
    cfg.ca_cert_data = ca_data
    if isinstance(token, str):
        cfg.api_key = {"BearerToken": token}
    else:
        cfg.api_key = {"BearerToken": ""}  # the key must exist for the client to ask the hook at all
        cfg.refresh_api_key_hook = _refresh_hook(token, host)  # type: ignore[assignment]  # typed as None
    return _handle(cfg, pool_size=pool_size, user_agent=user_agent, headers=headers)


def _refresh_hook(token: TokenSource, host: str) -> Callable[[kubernetes.client.Configuration], None]:
    def refresh(cfg: kubernetes.client.Configuration) -> None:
        try:
            value = token()
        except Exception as e:  # whatever the source (AWS, a file): one clear error, never a traceback
            raise CredentialsError(f"{host}: cannot get a bearer token: {e}") from e
        cfg.api_key["BearerToken"] = value

    return refresh


def _handle(
    cfg: kubernetes.client.Configuration, *, pool_size: int, user_agent: str, headers: Mapping[str, str] | None
) -> Kube:
    cfg.connection_pool_maxsize = pool_size
    api = kubernetes.client.ApiClient(configuration=cfg)
    api.user_agent = user_agent
    for k, v in (headers or {}).items():
        api.set_default_header(k, v)  # type: ignore[no-untyped-call]
    return Kube(api)
