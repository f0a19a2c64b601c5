"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the moto server.

moto answers every request it can serve, and cannot be told to refuse one caller (it enforces no
IAM here), to throttle, or to drop a connection halfway through a body. This proxy forwards
everything to moto unchanged, except requests a test picks out, which it answers the way S3
does when things go wrong: 403 AccessDenied, 503 SlowDown, or the right headers followed by
half the body and a closed connection. botocore therefore parses real S3 error responses and
real broken streams; nothing inside the code under test is replaced.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ERROR = "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
FAULTS = {
    "deny": (403, "AccessDenied", "Access Denied"),
    "throttle": (503, "SlowDown", "Please reduce your request rate."),
    "internal": (500, "InternalError", "We encountered an internal error. Please try again."),
    "nosuchbucket": (404, "NoSuchBucket", "The specified bucket does not exist"),
}


@dataclass
class Faults:
    """``rules``: (HTTP method, substring of the path and query) -> "deny" | "throttle" | "truncate"
    (half the body, then a closed connection) | "drop-token" (a truncated listing without its
    NextContinuationToken, as an endpoint answering in the V1 format gives) | "cut" (any listing
    page marked truncated, without a continuation token) | "internal" (500 InternalError) | "pad"
    (more bytes than the object has).
    "nosuchbucket" (404 NoSuchBucket) | "slow" (forwarded after ``delay`` seconds) | "pass"
    (forwarded unchanged: for a rule that only counts, or calls its hook).
    ``hits`` counts the requests each rule answered. ``revoked``: access key IDs whose signed
    requests are denied, as IAM would after the key was deactivated. ``times``: how many requests
    a rule applies to (absent: every one). ``hooks``: called when a rule applies, before the
    request is forwarded (e.g. to change the object between a LIST and its GET). ``seen``: every
    request, as (method, path and query), in order."""

    rules: dict[tuple[str, str], str] = field(default_factory=dict)
    hits: dict[tuple[str, str], int] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    times: dict[tuple[str, str], int] = field(default_factory=dict)
    hooks: dict[tuple[str, str], Callable[[], None]] = field(default_factory=dict)
    delay: float = 0.0
    seen: list[tuple[str, str]] = field(default_factory=list)

    def match(self, method: str, path: str, authorization: str = "") -> tuple[tuple[str, str], str] | None:
        self.seen.append((method, path))
        if any(f"Credential={key}/" in authorization for key in self.revoked):
            return ("*", "revoked"), "deny"
        for (m, fragment), fault in list(self.rules.items()):
            if (m, fragment) in self.times and self.hits.get((m, fragment), 0) >= self.times[(m, fragment)]:
                continue
            if m == method and fragment in urllib.parse.unquote(path):
                self.hits[(m, fragment)] = self.hits.get((m, fragment), 0) + 1
                return (m, fragment), fault
        return None


@contextmanager
def proxy(upstream: str) -> Iterator[tuple[str, Faults]]:
    """Yield (endpoint URL, Faults) of a proxy to ``upstream`` (http://127.0.0.1:PORT)."""
    target = urllib.parse.urlsplit(upstream)
    faults = Faults()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hit = faults.match(self.command, self.path, self.headers.get("Authorization") or "")
            if hit and hit[0] in faults.hooks:
                faults.hooks[hit[0]]()
            if hit and hit[1] == "slow":
                time.sleep(faults.delay)
            if hit and hit[1] in FAULTS:
                status, code, message = FAULTS[hit[1]]
                payload = _ERROR.format(code=code, message=message).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=30)
            try:
                conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            if hit and hit[1] in ("drop-token", "cut"):
                data = re.sub(rb"<NextContinuationToken>[^<]*</NextContinuationToken>", b"", data)
            if hit and hit[1] == "cut":
                data = data.replace(b"<IsTruncated>false</IsTruncated>", b"<IsTruncated>true</IsTruncated>")
            if hit and hit[1] == "pad":
                data += b"\n# and then some" * 1000
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if hit and hit[1] == "truncate":
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = _forward  # noqa: N815 (http.server's names)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", faults
    finally:
        server.shutdown()
        server.server_close()
