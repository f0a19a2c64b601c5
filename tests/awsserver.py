"""A moto server on loopback: AWS (S3, STS, EKS) for the tests, never the real thing.

moto's own default address is 0.0.0.0; we bind 127.0.0.1 and let the OS pick the port.
Every test gets a clean account state (``reset``), and the AWS credentials/region the
clients see come from the environment variables set here, never from ``~/.aws``.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

REGION = "eu-west-1"
ACCESS_KEY = "AKIAMOTOTESTKEY00000"
SECRET_KEY = "moto-test-secret-key-not-real"

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    # Keep the tests away from the developer's real AWS configuration.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


# Ambient settings that would make boto3 reach past moto: a profile, temporary credentials, IRSA
# web identity, or the ECS/EKS Pod Identity credential endpoint (169.254.170.2, not loopback).
AMBIENT = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_EKS",
    "AWS_ENDPOINT_URL_STS",
)


class MotoServer:
    """A running moto server: ``.endpoint``, ``.client(service)``, ``.reset()``."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> None:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        """Forget every bucket, cluster and node group (moto's own reset endpoint)."""
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST", data=b"")  # noqa: S310
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback http)
            resp.read()

    def client(self, service: str, **kw: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=kw.pop("region_name", REGION),
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            **kw,
        )

    def state(self) -> dict[str, Any]:
        """moto's data dump (handy in assertion messages)."""
        with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=10) as resp:  # noqa: S310
            data: dict[str, Any] = json.loads(resp.read())
            return data


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
