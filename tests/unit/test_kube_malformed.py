"""A 2xx whose body is not JSON (a proxy's page, a cut-and-padded answer) is an API server that
could not be read, not a bug: regression test for the fault trial that found it raising a bare
JSONDecodeError, which every step let through as "unexpected error"."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reconciler.kube import client

BODY = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{'


class Garbling(BaseHTTPRequestHandler):
    def do_PATCH(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def kube() -> Iterator[client.Kube]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Garbling)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    k = client.connect_token(f"http://127.0.0.1:{srv.server_address[1]}", "token")
    yield k
    k.close()
    srv.shutdown()
    srv.server_close()


def test_a_2xx_that_is_not_json_is_an_unreadable_answer(kube: client.Kube) -> None:
    with pytest.raises(client.MalformedResponseError) as e:
        kube.request("PATCH", "/api/v1/namespaces/default/configmaps/x", body={"data": {"a": "b"}})
    assert isinstance(e.value, client.UnreachableError), "every step handles it as a failed request"
    text = str(e.value)
    assert text.startswith("PATCH http://127.0.0.1:")
    assert "/api/v1/namespaces/default/configmaps/x: " in text
    assert "answered 200 with a body that is not JSON" in text
    assert '"metadata":{' in text, "the start of what came back, for whoever reads the log"
