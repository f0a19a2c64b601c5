"""One-line AWS error messages that name the call, the resource and the region.

A user reading ``reconciler eks diff`` output or a controller log must see at once which
permission or which resource is wrong: ``eks:DescribeNodegroup prod/ng-1 (eu-west-1):
AccessDeniedException: ...`` is what an IAM policy or a typo fix needs, a botocore
traceback is not.  The ``service:Operation`` spelling is the IAM action name, so the
message doubles as the missing permission.
"""

from __future__ import annotations

from botocore import exceptions as bce

MAX_MESSAGE = 400


class AwsError(Exception):
    """An AWS call failed; ``str()`` is the one-line message for the user."""


def describe_aws_error(call: str, resource: str, exc: Exception, region: str = "") -> str:
    """``<call> <resource> (<region>): <Code>: <message>`` for any botocore failure."""
    where = f"{call} {resource}" + (f" ({region})" if region else "")
    if isinstance(exc, bce.ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code") or "Error"
        message = " ".join(str(err.get("Message") or exc).split())
        if message.startswith("<"):  # an HTML error page: a proxy, or an endpoint without this API
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", code)
            message = f"HTTP {status} from the endpoint, not an AWS error (does it serve this API?)"
            code = "HTTPError"
        return f"{where}: {code}: {message[:MAX_MESSAGE]}"
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return f"{where}: no AWS credentials found (environment, shared config, web identity or instance role)"
    if isinstance(exc, bce.EndpointConnectionError | bce.ConnectTimeoutError | bce.ReadTimeoutError):
        return f"{where}: cannot reach the endpoint: {exc}"
    return f"{where}: {type(exc).__name__}: {exc}"
