"""Real chart servers on loopback for the Helm tests: a static HTTP(S) chart repository and the
CNCF distribution registry (built from the Go module proxy by ``scripts/build-tool registry``).

Plain helpers with no pytest dependency, like tests/gitserver.py.  Both count the requests they
answer, so tests can prove that a cached chart is not downloaded again.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.server
import json
import secrets
import ssl
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
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


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    server: _RepoHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        owner: TokenServer = self.server.owner  # type: ignore[attr-defined]
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        owner.requests.append(self.path)
        if not owner.authorized(self.headers.get("Authorization")):
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"token": owner.issue(query.get("scope", []), query.get("service", [""])[0])}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class TokenServer:
    """A registry token service (the Docker token flow): basic auth in, an ES256 JWT out.

    The JWT carries its certificate in ``x5c``; the registry trusts it through ``rootcertbundle``
    (``cert_file``).  Every requested action is granted to the one user.
    """

    issuer = "test-token-issuer"

    def __init__(self, root: Path, *, username: str = "puller", password: str | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.username = username
        self.password = password or "pw-" + secrets.token_hex(8)
        self.requests: list[str] = []
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token signer")])
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_file = root / "token-signer.pem"
        self.cert_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._server: _RepoHTTPServer | None = None
        self.port = 0

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def authorized(self, header: str | None) -> bool:
        scheme, _, value = (header or "").partition(" ")
        with contextlib.suppress(ValueError):
            user, _, pw = base64.b64decode(value).decode().partition(":")
            return scheme == "Basic" and user == self.username and secrets.compare_digest(pw, self.password)
        return False

    def issue(self, scopes: list[str], service: str) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(dt.datetime.now(dt.UTC).timestamp())
        der = self._cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        claims = {
            "iss": self.issuer,
            "sub": self.username,
            "aud": service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def start(self) -> TokenServer:
        server = _RepoHTTPServer(("127.0.0.1", 0), _TokenHandler)
        server.owner = self  # type: ignore[attr-defined]
        self.port = int(server.server_address[1])
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), name="token-server", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class RegistryServer:
    """The distribution registry on 127.0.0.1 with a temp storage dir.

    ``auth=True``: htpasswd basic auth (bcrypt hash written here) for ``username``/``password``;
    ``tls=True``: https with a throwaway CA (``ca_pem``, ``ca_file``); ``token_server``: the
    Docker token flow instead (``Bearer realm=...``), with that server's user.
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
        token_server: TokenServer | None = None,
    ) -> None:
        self.binary, self.root = binary, root
        root.mkdir(parents=True, exist_ok=True)
        self.username = username
        self.password = password or ("pw-" + secrets.token_hex(8)) if auth else ""
        self.auth, self.tls = auth, tls
        self.token_server = token_server
        if token_server is not None:
            self.auth, self.username, self.password = True, token_server.username, token_server.password
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
        if self.token_server is not None:
            cfg["auth"] = {
                "token": {
                    "realm": self.token_server.realm,
                    "service": "test-registry",
                    "issuer": TokenServer.issuer,
                    "rootcertbundle": str(self.token_server.cert_file),
                }
            }
        elif self.auth:
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
