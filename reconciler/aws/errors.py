"""One-line AWS error messages that name the call, the resource and the region.

Whoever reads the CLI's stderr, a controller log or a GitSync's Ready condition must see at
once which permission or which resource is wrong: ``eks:DescribeNodegroup prod/ng-1
(eu-west-1): AccessDeniedException: ...`` is what an IAM policy fix or a typo fix needs, a
botocore traceback is not.  The ``service:Operation`` spelling is the IAM action name, so the
message doubles as the missing permission.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from botocore import exceptions as bce

MAX_MESSAGE = 400


class AwsError(Exception):
    """An AWS call failed; ``str()`` is the one-line message for the user."""


def describe_aws_error(call: str, resource: str, *, exc: BaseException, region: str = "") -> str:
    """``<call> <resource> (<region>): <Code>: <message>`` for any botocore failure."""
    where = f"{call} {resource}" + (f" ({region})" if region else "")
    if isinstance(exc, bce.ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code") or "Error"
        detail = " ".join(str(err.get("Message") or exc).split())
        if detail.startswith("<"):  # an HTML error page: a proxy, or an endpoint without this API
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", code)
            code, detail = "HTTPError", f"HTTP {status} from the endpoint, not an AWS error (does it serve this API?)"
        detail = detail[:MAX_MESSAGE]
    elif isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        code = type(exc).__name__
        detail = "no AWS credentials found (environment, web identity/IRSA, shared config or instance role)"
    elif isinstance(exc, bce.EndpointConnectionError | bce.ConnectTimeoutError | bce.ReadTimeoutError):
        code, detail = "EndpointUnreachable", str(exc)
    else:
        code, detail = type(exc).__name__, str(exc)
    return " ".join(f"{where}: {code}: {detail}".split())  # one line, whatever AWS put in the message


@contextlib.contextmanager
def aws_call(call: str, resource: str, region: str = "") -> Iterator[None]:
    """Turn any botocore failure inside the block into an :class:`AwsError` naming ``call``."""
    try:
        yield
    except (bce.BotoCoreError, bce.ClientError) as e:
        raise AwsError(describe_aws_error(call, resource, exc=e, region=region)) from e
