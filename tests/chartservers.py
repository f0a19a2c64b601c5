"""Real chart servers on loopback for the Helm tests: a static HTTP(S) chart repository and the
CNCF distribution registry (built from the Go module proxy by ``scripts/build-tool registry``).

Plain helpers with no pytest dependency, like tests/gitserver.py.  Both count the requests they
answer, so tests can prove that a cached chart is not downloaded again.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import secrets
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import yaml
from gitserver import free_port, make_tls, stop_process, tie_to_parent, wait_for_port


class _RepoHandler(http.server.SimpleHTTPRequestHandler):
    server: _RepoHTTPServer

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        super().__init__(request, client_address, server, directory=str(server.owner.root))

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        owner: ChartRepoServer = self.server.owner  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        if (status := owner.fail.get(path)) is not None:
            owner.requests.append((path, status))
            self.send_error(status)
            return
        if owner.password and not owner.authorized(self.headers.get("Authorization")):
            owner.requests.append((path, 401))
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="charts"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        owner.requests.append((path, 0))
        super().do_GET()


class _RepoHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


class ChartRepoServer:
    """A Helm repository: a directory of .tgz files and index.yaml, served on 127.0.0.1.

    ``tls=True`` serves https with a throwaway CA (``ca_pem``); ``auth=True`` demands basic
    auth (``username``/``password``); ``fail[path] = status`` makes one path answer an error.
    """

    def __init__(self, root: Path, *, tls: bool = False, auth: bool = False) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.username = "charts"
        self.password = ("pw-" + secrets.token_hex(8)) if auth else ""
        self.fail: dict[str, int] = {}
        self.requests: list[tuple[str, int]] = []
        self.ca_pem = b""
        self._tls: ssl.SSLContext | None = None
        if tls:
            (tls_dir := root.parent / f"{root.name}-tls").mkdir(exist_ok=True)
            self.ca_pem, cert, key = make_tls(tls_dir)
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(cert, key)
        self._server: _RepoHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}/"

    def authorized(self, header: str | None) -> bool:
        scheme, _, value = (header or "").partition(" ")
        if scheme != "Basic":
            return False
        with contextlib.suppress(ValueError):
            user, _, pw = base64.b64decode(value).decode().partition(":")
            return user == self.username and secrets.compare_digest(pw, self.password)
        return False

    def downloads(self, suffix: str = ".tgz") -> int:
        return sum(1 for path, status in self.requests if path.endswith(suffix) and status == 0)

    def start(self) -> ChartRepoServer:
        server = _RepoHTTPServer(("127.0.0.1", 0), _RepoHandler)
        server.owner = self  # type: ignore[attr-defined]
        if self._tls is not None:
            server.socket = self._tls.wrap_socket(server.socket, server_side=True)
        self.port = int(server.server_address[1])
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), name="chart-repo", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ChartRepoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RegistryServer:
    """The distribution registry on 127.0.0.1 with a temp storage dir.

    ``auth=True``: htpasswd basic auth (bcrypt hash written here) for ``username``/``password``;
    ``tls=True``: https with a throwaway CA (``ca_pem``, ``ca_file``).
    """

    def __init__(
        self,
        binary: str,
        root: Path,
        *,
        auth: bool = False,
        tls: bool = False,
        username: str = "pusher",
        password: str | None = None,
    ) -> None:
        self.binary, self.root = binary, root
        root.mkdir(parents=True, exist_ok=True)
        self.username = username
        self.password = password or ("pw-" + secrets.token_hex(8)) if auth else ""
        self.auth, self.tls = auth, tls
        self.ca_pem = b""
        self.ca_file: Path | None = None
        self.port = 0
        self.log = root / "registry.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.root / "data")}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{self.port}", "secret": secrets.token_hex(16)},
        }
        if self.auth:
            htpasswd = self.root / "htpasswd"
            hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=5)).decode()
            htpasswd.write_text(f"{self.username}:{hashed}\n")
            cfg["auth"] = {"htpasswd": {"realm": "test-registry", "path": str(htpasswd)}}
        if self.tls:
            (self.root / "tls").mkdir(exist_ok=True)
            self.ca_pem, cert, key = make_tls(self.root / "tls")
            self.ca_file = self.root / "tls" / "ca.crt"
            self.ca_file.write_bytes(self.ca_pem)
            cfg["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
        return cfg

    def start(self) -> RegistryServer:
        self.port = free_port()
        config = self.root / "config.yml"
        config.write_text(yaml.safe_dump(self._config()))
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(
                [self.binary, "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=tie_to_parent,
                env={"PATH": "/usr/bin:/bin", "OTEL_TRACES_EXPORTER": "none"},
            )
        wait_for_port(self.port, proc=self._proc, what="registry", log=self.log)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None

    def manifest_requests(self) -> int:
        return self.log.read_text(errors="replace").count("/manifests/")

    def blob_downloads(self) -> int:
        return sum(
            1
            for line in self.log.read_text(errors="replace").splitlines()
            if '"GET /v2/' in line and "/blobs/sha256:" in line
        )

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def registry(binary: str, root: Path, **kw: Any) -> Iterator[RegistryServer]:
    server = RegistryServer(binary, root, **kw)
    server.start()
    try:
        yield server
    finally:
        server.stop()
