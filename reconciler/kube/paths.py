"""API request paths, built from names that users and tenants choose.

A GitSync's author picks the names of the Secrets, ConfigMaps and ServiceAccounts it refers
to, and a repository picks the names of the objects it holds.  Pasted into a path as they
are, ``x/../../../kube-system/secrets/admin`` reads another namespace's Secret: urllib3
normalises ``..`` segments before the request leaves, and the API server authorises the
path it receives, not the one we meant.  So every path segment that carries a name goes
through :func:`segment`, which refuses what the API server itself refuses as a path segment
name (``.``, ``..``, anything with ``/`` or ``%``; and a backslash) and quotes the rest, and
:func:`check_request_path` is the last check in ``Kube`` before any request is sent.
"""

from __future__ import annotations

import urllib.parse

_FORBIDDEN_IN_SEGMENT = ("/", "%", "\\")  # a backslash is a separator to some proxies
_FORBIDDEN_ENCODED = ("%2f", "%2e", "%25", "%5c")  # an encoded '/', '.', '%' or '\' inside a segment


class PathError(ValueError):
    """A name cannot be a path segment, or a request path could leave the object it names."""


def segment(value: str, *, what: str = "name") -> str:
    """One path segment for ``value``, or :class:`PathError` naming ``what`` it was.

    The rule is the API server's own (``IsValidPathSegmentName``: not empty, not ``.`` or
    ``..``, no ``/`` and no ``%``), plus no backslash, which some proxies treat as ``/``.
    Valid names are quoted all the same (``:`` and ``@`` stay as they are: RBAC names such
    as ``system:controller`` are common and legal in a path).
    """
    if not isinstance(value, str) or not value:
        raise PathError(f"{what}: must be a non-empty string")
    if value in (".", ".."):
        raise PathError(f"{what}: {value!r} may not be a name")
    for bad in _FORBIDDEN_IN_SEGMENT:
        if bad in value:
            raise PathError(f"{what}: {value!r} may not contain {bad!r}")
    return urllib.parse.quote(value, safe=":@")


def api_path(
    *,
    group: str,
    version: str,
    resource: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """``/api/v1/...`` for the core group (``group=""``), ``/apis/<group>/<version>/...`` otherwise."""
    parts = ["api", segment(version, what="version")] if not group else ["apis", segment(group, what="group")]
    if group:
        parts.append(segment(version, what="version"))
    if namespace is not None:
        parts += ["namespaces", segment(namespace, what="namespace")]
    parts.append(segment(resource, what="resource"))
    if name is not None:
        parts.append(segment(name, what=f"{resource} name"))
    if subresource is not None:
        parts.append(segment(subresource, what="subresource"))
    return "/" + "/".join(parts)


def check_request_path(path: str) -> None:
    """Refuse a request path that a client library or a proxy could rewrite into another one.

    Called by ``Kube`` for every request, so a path built anywhere without :func:`segment`
    still cannot climb out of the namespace or object it names.
    """
    if not path.startswith("/") or "?" in path or "#" in path or "\\" in path:
        raise PathError(f"request path {path!r} is not an absolute API path")
    lowered = path.lower()
    for enc in _FORBIDDEN_ENCODED:
        if enc in lowered:
            raise PathError(f"request path {path!r} has an encoded separator or dot")
    segments = path[1:].split("/")
    for i, seg in enumerate(segments):
        if seg in (".", ".."):
            raise PathError(f"request path {path!r} has a {seg!r} segment")
        if not seg and i != len(segments) - 1:
            raise PathError(f"request path {path!r} has an empty segment")
