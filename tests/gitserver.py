"""Real git servers for tests: bare repositories written with git plumbing, an sshd on loopback,
and ``git http-backend`` behind an https server with basic/bearer auth and its own CA.

Plain helpers with no pytest dependency, so benchmarks and demos can use them too; the fixtures
live in ``tests/integration/conftest.py``. Everything listens on 127.0.0.1 only, and every server
process is tied to the test process (PR_SET_PDEATHSIG), so even a SIGKILLed pytest leaves none.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import dataclasses
import datetime as dt
import http.server
import ipaddress
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SSHD = Path("/usr/sbin/sshd")

# git without the user's or the system's config, with a fixed identity: tests must not depend on
# whoever runs them.
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.invalid",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.invalid",
    "LC_ALL": "C",
}


class GitServerError(RuntimeError):
    """A test server could not be set up; the message says what is missing."""


def git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None, stdin: bytes | None = None) -> str:
    """Run git for test setup and return stdout; failures raise with git's stderr."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | GIT_ENV | dict(env or {})
    proc = subprocess.run(["git", *args], cwd=cwd, env=full_env, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        raise GitServerError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


class BareRepo:
    """A bare repository that tests commit to directly, without a working tree."""

    def __init__(self, path: Path, *, default_branch: str = "main") -> None:
        self.path = path
        git("init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(path))
        self.default_branch = default_branch

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def _git(self, *args: str, env: Mapping[str, str] | None = None, stdin: bytes | None = None) -> str:
        return git("--git-dir", str(self.path), *args, env=env, stdin=stdin)

    def head(self, branch: str | None = None) -> str:
        return self._git("rev-parse", f"refs/heads/{branch or self.default_branch}").strip()

    def commit(
        self,
        files: Mapping[str, str | bytes | None],
        message: str = "update",
        *,
        branch: str | None = None,
        symlinks: Mapping[str, str] | None = None,
        executable: tuple[str, ...] = (),
    ) -> str:
        """Commit on top of ``branch``: each file is set to its content, or deleted when None.

        Paths not named keep their content from the parent commit. Returns the new commit's sha.
        """
        branch = branch or self.default_branch
        ref = f"refs/heads/{branch}"
        parent = self._git("rev-parse", "--verify", "--quiet", ref).strip() if self._has(ref) else None
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if parent:
                self._git("read-tree", parent, env=env)
            entries = []
            for name, content in files.items():
                if content is None:
                    entries.append(f"0 {'0' * 40}\t{name}\n")  # mode 0 removes the path
                    continue
                data = content.encode() if isinstance(content, str) else content
                blob = self._git("hash-object", "-w", "--stdin", stdin=data).strip()
                entries.append(f"{'100755' if name in executable else '100644'} {blob}\t{name}\n")
            for name, target in (symlinks or {}).items():
                blob = self._git("hash-object", "-w", "--stdin", stdin=target.encode()).strip()
                entries.append(f"120000 {blob}\t{name}\n")
            self._git("update-index", "--index-info", env=env, stdin="".join(entries).encode())
            tree = self._git("write-tree", env=env).strip()
        sha = self._git("commit-tree", tree, *(["-p", parent] if parent else []), "-m", message).strip()
        self._git("update-ref", ref, sha)
        return sha

    def revert(self, sha: str, message: str | None = None, *, branch: str | None = None) -> str:
        """Commit the inverse of ``sha`` on top of ``branch`` (what ``git revert`` does); returns the new sha."""
        branch = branch or self.default_branch
        head = self.head(branch)
        parents = self._git("rev-list", "--parents", "-n", "1", sha).split()[1:]
        base = parents[0] if parents else self._git("hash-object", "-t", "tree", "--stdin", stdin=b"").strip()
        patch = self._git("diff-tree", "-p", "--binary", "--full-index", base, sha).encode()
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self._git("read-tree", head, env=env)
            if patch.strip():
                self._git("apply", "--cached", "-R", env=env, stdin=patch)
            tree = self._git("write-tree", env=env).strip()
        new = self._git("commit-tree", tree, "-p", head, "-m", message or f"Revert {sha[:12]}").strip()
        self._git("update-ref", f"refs/heads/{branch}", new)
        return new

    def tag(self, name: str, rev: str | None = None) -> str:
        """A lightweight tag; returns the commit sha it points to."""
        sha = self._git("rev-parse", f"{rev or self.default_branch}^{{commit}}").strip()
        self._git("update-ref", f"refs/tags/{name}", sha)
        return sha

    def annotated_tag(self, name: str, rev: str | None = None, message: str | None = None) -> str:
        """An annotated tag; returns the sha of the tag object (not of the commit)."""
        self._git("tag", "-a", "-f", "-m", message or f"release {name}", name, rev or self.default_branch)
        return self._git("rev-parse", f"refs/tags/{name}").strip()

    def delete_ref(self, ref: str) -> None:
        self._git("update-ref", "-d", ref)

    def set_default_branch(self, branch: str) -> None:
        self._git("symbolic-ref", "HEAD", f"refs/heads/{branch}")
        self.default_branch = branch

    def _has(self, ref: str) -> bool:
        try:
            self._git("rev-parse", "--verify", "--quiet", ref)
        except GitServerError:
            return False
        return True


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tie_to_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the test process dies, however it dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # 1 == PR_SET_PDEATHSIG


def stop_process(proc: subprocess.Popen[bytes], *, grace: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for_port(port: int, *, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise GitServerError(f"{what} exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise GitServerError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s: {log.read_text()[-2000:]}")


# --------------------------------------------------------------------------- ssh


def ssh_keygen(path: Path, comment: str = "test") -> tuple[bytes, bytes]:
    """A new ed25519 key pair at ``path``/``path.pub``; returns (private, public) bytes."""
    if not shutil.which("ssh-keygen"):
        raise GitServerError("ssh-keygen not found: run scripts/install-deps (Debian package openssh-client)")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path.read_bytes(), path.with_name(path.name + ".pub").read_bytes()


class SSHServer:
    """An OpenSSH server on 127.0.0.1 that serves git over ssh to one generated deploy key.

    git runs as the current user (root in CI: ``PermitRootLogin prohibit-password``), so a repo
    is addressed by its absolute path: ``url_for(repo.path)``.
    """

    def __init__(self, root: Path) -> None:
        if not SSHD.exists():
            raise GitServerError(f"{SSHD} not found: run scripts/install-deps (Debian package openssh-server)")
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.port = free_port()
        self.log = root / "sshd.log"
        _, host_pub = ssh_keygen(root / "host_ed25519_key", "test-host")
        _, other_pub = ssh_keygen(root / "other_host_ed25519_key", "impostor-host")
        self.private_key, deploy_pub = ssh_keygen(root / "deploy_key", "deploy")
        (root / "authorized_keys").write_bytes(deploy_pub)
        host = f"[127.0.0.1]:{self.port}"
        self.known_hosts = f"{host} {_key_part(host_pub)}\n".encode()
        # The same host with another key: what a client sees when someone impersonates the server.
        self.wrong_known_hosts = f"{host} {_key_part(other_pub)}\n".encode()
        # A known_hosts that knows the key but for another host: the server's key is simply unknown.
        self.unknown_known_hosts = f"[127.0.0.1]:{free_port()} {_key_part(host_pub)}\n".encode()
        self._proc: subprocess.Popen[bytes] | None = None

    def url_for(self, repo_path: Path | str) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{Path(repo_path).resolve()}"

    def start(self) -> SSHServer:
        config = self.root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.root / 'host_ed25519_key'}",
                    f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "AllowTcpForwarding no",
                    "AllowAgentForwarding no",
                    "X11Forwarding no",
                    "PermitTTY no",
                    "PrintMotd no",
                    "MaxStartups 100",
                    # sntrup761 costs ~0.3 s a handshake on a small CI machine; the tests make hundreds.
                    "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        # The privilege-separation directory; the Debian package creates it only at boot.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        check = subprocess.run([str(SSHD), "-t", "-f", str(config)], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise GitServerError(f"sshd rejected its test config: {check.stderr.strip()}")
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=tie_to_parent,
            )
        wait_for_port(self.port, proc=self._proc, what="sshd", log=self.log)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def __enter__(self) -> SSHServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _key_part(pub: bytes) -> str:
    """``ssh-ed25519 AAAA...`` without the comment."""
    return " ".join(pub.decode().split()[:2])


@contextlib.contextmanager
def ssh_server(root: Path) -> Iterator[SSHServer]:
    with SSHServer(root) as server:
        yield server


# --------------------------------------------------------------------------- https


def make_tls(root: Path) -> tuple[bytes, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it: (CA PEM, cert, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reconciler test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = root / "server.crt", root / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return ca.public_bytes(serialization.Encoding.PEM), cert_path, key_path


class _TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: HTTPSGitServer

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The handshake runs in the connection's own thread: a client that stalls or rejects
        # the certificate cannot block accept().
        try:
            request = self.owner.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)


class _PlainServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: HTTPGitServer


@dataclasses.dataclass
class GitFault:
    """How an http git server misbehaves for the requests it matches (``server.fault = GitFault(...)``;
    None, the default, serves every request as git does).

    ``request``: a substring of the path and query a request must contain: ``git-upload-pack``
    (default) matches both the ref advertisement (``info/refs?service=git-upload-pack``) and the
    pack POST, ``info/refs`` only the first, ``/git-upload-pack`` only the second.
    Faults, applied in this order: ``delay`` seconds before answering (a slow server);
    ``status`` answered instead of git (with ``body``, ``content_type`` and ``headers``); else git
    runs, and ``truncate`` bytes of its answer are sent under a Content-Length announcing all of
    it before the connection is closed (a pack cut mid-stream). ``times``: how many requests it
    applies to (None: every one); ``hits`` counts them."""

    request: str = "git-upload-pack"
    command: bytes = b""  # and, when set, this in the request body (b"command=fetch": protocol v2's pack request)
    delay: float = 0.0
    status: int = 0
    body: bytes = b""
    content_type: str = "text/plain"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    truncate: int | None = None
    times: int | None = None
    hits: int = 0

    def take(self, path: str, body: bytes = b"") -> bool:
        """Whether the request for ``path`` (with its query) and ``body`` gets the fault; counts it if so."""
        if self.request not in path or self.command not in body:
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        self.hits += 1
        return True


class _GitCGIHandler(http.server.BaseHTTPRequestHandler):
    """Runs ``git http-backend`` for each request, the way a web server's CGI module would."""

    server: _TLSServer | _PlainServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        self.server.owner.requests.append(format % args)

    def _serve(self) -> None:
        owner = self.server.owner
        body = self._body()
        fault = owner.fault if owner.fault is not None and owner.fault.take(self.path, body) else None
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.status:
            self.send_response(fault.status)
            self.send_header("Content-Type", fault.content_type)
            for name, value in fault.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(fault.body)))
            self.end_headers()
            self.wfile.write(fault.body)
            return
        user = owner.authorize(self.headers.get("Authorization"))
        if user is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_PROJECT_ROOT": str(owner.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": urllib.parse.unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": self.client_address[0],
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", "") if owner.protocol_v2 else "",
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        proc = subprocess.run([owner.backend], input=body, env=env, capture_output=True, timeout=60, check=False)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n" if b"\r\n\r\n" in proc.stdout else b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if fault is not None and fault.truncate is not None:
            self.wfile.write(payload[: fault.truncate])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


class HTTPSGitServer:
    """``git http-backend`` over https on 127.0.0.1, serving every repository under ``project_root``.

    Accepts basic auth (``username``/``password``) or a bearer ``token``; anything else gets 401.
    Clients trust it only with ``ca_pem``.
    """

    def __init__(self, root: Path, *, project_root: Path = Path("/")) -> None:
        backend = Path(git("--exec-path").strip()) / "git-http-backend"
        if not backend.exists():
            raise GitServerError(f"{backend} not found: the Debian package git ships it")
        self.backend = str(backend)
        self.project_root = project_root
        root.mkdir(parents=True, exist_ok=True)
        self.ca_pem, cert, key = make_tls(root)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(cert, key)
        self.username = "deploy"
        self.password = "pw-" + secrets.token_hex(8)
        self.token = "tok-" + secrets.token_hex(12)
        self.requests: list[str] = []
        self.fault: GitFault | None = None  # see GitFault; None: serve as git does
        # False makes the server speak protocol v0 only, like older servers: they refuse to serve
        # a commit by sha unless uploadpack.allowReachableSHA1InWant is set.
        self.protocol_v2 = True
        self._server: _TLSServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def authorize(self, header: str | None) -> str | None:
        """The user a request authenticates as, or None."""
        scheme, _, value = (header or "").partition(" ")
        if scheme == "Bearer" and secrets.compare_digest(value, self.token):
            return "token"
        if scheme == "Basic":
            with contextlib.suppress(ValueError):
                user, _, password = base64.b64decode(value).decode().partition(":")
                if user == self.username and secrets.compare_digest(password, self.password):
                    return user
        return None

    def url_for(self, repo_path: Path | str) -> str:
        rel = Path(repo_path).resolve().relative_to(self.project_root.resolve())
        return f"https://127.0.0.1:{self.port}/{urllib.parse.quote(str(rel))}"

    def start(self) -> HTTPSGitServer:
        server = _TLSServer(("127.0.0.1", 0), _GitCGIHandler)
        server.owner = self
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="https-git-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> HTTPSGitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HTTPGitServer:
    """``git http-backend`` over plain http on 127.0.0.1, without auth, serving every repository
    under ``project_root``: what controller tests fetch from (`reconciler run` refuses file://)."""

    def __init__(self, *, project_root: Path = Path("/")) -> None:
        backend = Path(git("--exec-path").strip()) / "git-http-backend"
        if not backend.exists():
            raise GitServerError(f"{backend} not found: the Debian package git ships it")
        self.backend = str(backend)
        self.project_root = project_root
        self.requests: list[str] = []
        self.fault: GitFault | None = None  # see GitFault; None: serve as git does
        self.protocol_v2 = True
        self._server: _PlainServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def authorize(self, header: str | None) -> str | None:
        return "anonymous"

    def url_for(self, repo_path: Path | str) -> str:
        rel = Path(repo_path).resolve().relative_to(self.project_root.resolve())
        return f"http://127.0.0.1:{self.port}/{urllib.parse.quote(str(rel))}"

    def start(self, *, port: int = 0) -> HTTPGitServer:
        """Serve on ``port`` (0: any free one); a stopped server restarts on its old port with ``port=server.port``."""
        server = _PlainServer(("127.0.0.1", port), _GitCGIHandler)
        server.owner = self
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="http-git-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> HTTPGitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
