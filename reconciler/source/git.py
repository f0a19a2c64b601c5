"""Follow a branch, tag, semver range or commit of a git repository and hand out its files.

Each (URL, ref) pair gets its own cache directory under ``cache_dir``: a shallow bare repository
that survives restarts and is updated with ``git fetch --depth=1`` rather than re-cloned, an
flock that serialises workers sharing it, and the snapshot directories handed out as
:class:`~reconciler.source.artifact.Artifact` paths.

GitPython leaks ``git cat-file`` children unless every Repo is closed, so a Repo lives only for
the duration of one fetch, inside ``with``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import threading
import time
import uuid
from pathlib import Path

import git

from reconciler.report import redact
from reconciler.source import auth, gitcmd, limits, lock, refs, snapshot, urls
from reconciler.source.artifact import Artifact, SourceError
from reconciler.source.auth import GitCredentials as GitCredentials
from reconciler.source.refs import GitRef as GitRef

__all__ = ["Artifact", "GitCredentials", "GitRef", "GitSource", "SourceError"]

log = logging.getLogger(__name__)

_TARGET = "refs/reconciler/target"  # where the followed ref is stored in the cache repo
# What git (or GitPython reading objects) says when the cache's own object store is damaged
# (a truncated or zeroed file on disk), as opposed to the remote or the network failing.
_DAMAGED = re.compile(
    r"bad object|did not send all necessary objects|is corrupt|object file .* is empty|inflate: data stream error"
    r"|packfile .* (cannot be accessed|does not match)|loose object|unable to read [0-9a-f]{40}|BadObject|BadName"
    r"|invalid object|fatal: not a git repository",
    re.IGNORECASE,
)


class GitSource:
    """One followed (URL, ref), owned by one worker; fetch() and close() are serialised anyway, so a
    shutdown path may call close() from another thread."""

    def __init__(
        self,
        url: str,
        ref: GitRef,
        *,
        cache_dir: Path,
        credentials: GitCredentials | None = None,
        timeout: float = 60.0,
        tree_limits: limits.TreeLimits = limits.DEFAULT,
    ) -> None:
        self._remote = urls.parse(url)
        self._limits = tree_limits
        self._display_url = redact.redact_url(url)
        self._ref = ref
        self._creds = credentials or GitCredentials()
        self._timeout = timeout
        key = hashlib.sha256(f"{self._remote.url}\n{self._remote.username}\n{ref!r}".encode()).hexdigest()[:24]
        self._dir = Path(cache_dir) / "git" / key
        self._handed = snapshot.Handed()
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"GitSource({self._display_url!r}, {self._ref})"

    def fetch(self) -> Artifact:
        """Fetch the ref and return its files; on any failure raise SourceError and leave the
        previously returned Artifact untouched."""
        with self._mutex:
            try:
                return self._fetch()
            except gitcmd.GitError as e:
                raise self._error(str(e)) from None
            except snapshot.UnsafeTreeError as e:
                raise self._error(f"refusing the commit: {e}") from None
            except limits.TreeLimitError as e:
                raise self._error(f"refusing the commit: {e.reason}") from None
            except TimeoutError as e:
                raise self._error(f"timed out after {self._timeout:g}s waiting for the cache lock: {e}") from None
            except (git.GitError, OSError, ValueError) as e:
                secrets = auth.secrets(self._remote, self._creds)
                raise self._error(f"{type(e).__name__}: {redact.scrub(redact.scrub_urls(str(e)), secrets)}") from None

    def close(self) -> None:
        """Remove the snapshot handed out last; the cache repository stays for the next process."""
        with self._mutex:
            self._handed.release()

    def __enter__(self) -> GitSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _error(self, reason: str) -> SourceError:
        return SourceError(reason, url=self._display_url, ref=str(self._ref))

    def _fetch(self) -> Artifact:
        problem = auth.problem(self._remote, self._creds)
        if problem:
            raise self._error(problem)
        deadline = time.monotonic() + self._timeout
        self._dir.mkdir(parents=True, exist_ok=True)
        repo_dir = self._dir / "repo.git"
        with lock.exclusive(self._dir / "lock", deadline=deadline):
            try:
                got = self._export(repo_dir, deadline)
            except (gitcmd.GitError, git.GitError, ValueError) as e:
                if not _DAMAGED.search(str(e)):
                    raise
                # A damaged object store fails every fetch the same way until it is rebuilt; the
                # remote still has everything, so rebuild it now rather than fail forever.
                log.warning("the cache repository of %s is damaged (%s); fetching it afresh", self._display_url, e)
                shutil.rmtree(repo_dir, ignore_errors=True)
                got = self._export(repo_dir, deadline)
            if isinstance(got, Artifact):
                return got
            artifact = self._handed.hand_out(got[0], revision=got[1])
        log.info("fetched %s %s: %s", self._display_url, self._ref, artifact.revision)
        return artifact

    def _export(self, repo_dir: Path, deadline: float) -> Artifact | tuple[snapshot.Snapshot, str]:
        """Update the cache repository; the artifact already handed out when the revision is the
        same, else a new snapshot of it and its revision string. Call with the cache lock held."""
        with (
            auth.environment(self._remote, self._creds, git_dir=repo_dir, timeout=self._timeout) as env,
            _open_repo(repo_dir, self._remote.url) as repo,
        ):
            repo.git.update_environment(**env)
            name, sha = self._update(repo, deadline)
            _check_pack(repo, repo_dir, self._limits)
            revision = f"{name}@sha1:{sha}" if name else f"sha1:{sha}"
            if (same := self._handed.same(revision)) is not None:
                return same
            snapshot.collect(self._dir / "snapshots")
            return snapshot.create(repo, sha, root=self._dir / "snapshots", limits=self._limits), revision

    def _git(self, repo: git.Repo, *args: str, deadline: float) -> str:
        return gitcmd.run(
            repo.git,
            args,
            deadline=deadline,
            timeout=self._timeout,
            secrets=auth.secrets(self._remote, self._creds),
            host=self._remote.host,
            ref=str(self._ref),
        )

    def _update(self, repo: git.Repo, deadline: float) -> tuple[str | None, str]:
        """Fetch what the ref names into the cache; returns (branch or tag name, commit sha)."""
        ref = self._ref
        if ref.commit is not None:
            self._fetch_commit(repo, ref.commit, deadline)
            return None, ref.commit
        if ref.branch is not None:
            name, remote_ref = ref.branch, f"refs/heads/{ref.branch}"
        elif ref.tag is not None:
            name, remote_ref = ref.tag, f"refs/tags/{ref.tag}"
        elif ref.semver is not None:
            name = self._pick_tag(repo, ref.semver, deadline)
            remote_ref = f"refs/tags/{name}"
        else:
            name, remote_ref = self._default_branch(repo, deadline)
        self._git(repo, "fetch", "--depth=1", "--no-tags", "--no-write-fetch-head", "origin",
                  f"+{remote_ref}:{_TARGET}", deadline=deadline)  # fmt: skip
        sha = self._git(repo, "rev-parse", "--verify", f"{_TARGET}^{{commit}}", deadline=deadline).strip()
        return name, sha

    def _default_branch(self, repo: git.Repo, deadline: float) -> tuple[str, str]:
        out = self._git(repo, "ls-remote", "--symref", "origin", "HEAD", deadline=deadline)
        for line in out.splitlines():
            target, _, what = line.partition("\t")
            if target.startswith("ref: refs/heads/") and what == "HEAD":
                branch = target.removeprefix("ref: refs/heads/")
                return branch, f"refs/heads/{branch}"
        if not out.strip():
            raise gitcmd.GitError("the repository has no default branch (HEAD); set ref.branch")
        return "HEAD", "HEAD"  # a server that does not advertise the symref

    def _pick_tag(self, repo: git.Repo, constraint: str, deadline: float) -> str:
        out = self._git(repo, "ls-remote", "--tags", "--refs", "origin", deadline=deadline)
        tags = [line.partition("\trefs/tags/")[2] for line in out.splitlines() if "\trefs/tags/" in line]
        chosen = refs.select_tag(constraint, tags)
        if chosen is None:
            seen = ", ".join(sorted(tags)[-5:]) or "none"
            raise gitcmd.GitError(f"no tag matches the semver range {constraint!r} ({len(tags)} tags; last: {seen})")
        return chosen

    def _fetch_commit(self, repo: git.Repo, sha: str, deadline: float) -> None:
        """A commit never changes, so one already in the cache needs no network at all (and is
        served even while the remote is down)."""
        if _has_commit(repo, sha):
            return
        try:
            self._git(repo, "fetch", "--depth=1", "--no-tags", "--no-write-fetch-head", "origin",
                      f"+{sha}:{_TARGET}", deadline=deadline)  # fmt: skip
        except gitcmd.GitError as e:
            # Protocol v0 servers refuse unadvertised objects unless uploadpack.allow*SHA1InWant
            # is set; the whole history is the only way to get the commit from them.
            if not any(word in str(e) for word in ("unadvertised object", "not our ref")):
                raise
            log.info("fetching %s by sha failed (%s); fetching all branches and tags", sha, e)
            self._git(repo, "fetch", "--no-tags", "--no-write-fetch-head", "origin",
                      "+refs/heads/*:refs/reconciler/heads/*", "+refs/tags/*:refs/reconciler/tags/*",
                      deadline=deadline)  # fmt: skip
        if not _has_commit(repo, sha):
            raise gitcmd.GitError(f"commit {sha} not found in the repository")
        self._git(repo, "update-ref", _TARGET, sha, deadline=deadline)


def _check_pack(repo: git.Repo, repo_dir: Path, tree_limits: limits.TreeLimits) -> None:
    """Refuse a cache repository whose objects outgrew the cap, and delete it so the space comes back.

    The fetch itself cannot be capped (git has no client-side limit; the deadline bounds it), but
    a shallow cache holds about one commit's objects, compressed: more than a revision may hold in
    all is a hostile or broken repository, and must not stay on the volume every GitSync shares.
    """
    out = repo.git.count_objects("-v")
    kib = sum(int(v) for k, _, v in (line.partition(": ") for line in out.splitlines()) if k in ("size", "size-pack"))
    if kib * 1024 > tree_limits.max_total_bytes:
        shutil.rmtree(repo_dir, ignore_errors=True)
        raise limits.TreeLimitError(
            f"the fetched objects take {kib * 1024} bytes, over the limit of {tree_limits.max_total_bytes} bytes "
            "for a revision (the cache copy was deleted)"
        )


def _has_commit(repo: git.Repo, sha: str) -> bool:
    status, _, _ = repo.git.execute(
        ["git", "cat-file", "-e", f"{sha}^{{commit}}"], with_extended_output=True, with_exceptions=False
    )
    return status == 0


def _clear_stale_locks(path: Path) -> None:
    """Remove git's own ``*.lock`` files; call only while holding the cache flock.

    With the flock held no other git can be at work here, so any lock file is left over from a
    git we killed at the deadline, and would otherwise fail every later fetch ("shallow.lock:
    File exists").
    """
    if not path.is_dir():
        return
    for pattern in ("*.lock", "refs/**/*.lock", "objects/info/**/*.lock"):
        for stale in path.glob(pattern):
            log.warning("removing stale git lock %s", stale)
            stale.unlink(missing_ok=True)


def _open_repo(path: Path, url: str) -> git.Repo:
    """Open the cache repository, (re)creating it when it is missing or unreadable."""
    _clear_stale_locks(path)
    try:
        repo = git.Repo(path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        for leftover in (path, *path.parent.glob(f".{path.name}.*")):  # also half-made ones of a crash
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        with git.Repo.init(tmp, bare=True) as fresh, fresh.config_writer() as cfg:
            cfg.set_value('remote "origin"', "url", url)
            # A detached auto-gc would be a git process outliving the fetch; keep it in the foreground.
            cfg.set_value("gc", "autoDetach", "false")
            cfg.set_value("core", "logAllRefUpdates", "false")
            # Reject malformed objects (trees with ".." or ".git" entries) before they reach the disk.
            cfg.set_value("transfer", "fsckObjects", "true")
        tmp.rename(path)
        repo = git.Repo(path)
    return repo
