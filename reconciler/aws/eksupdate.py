"""Follow an EKS update (``update.id``) until it succeeds, fails or times out.

boto3 ships no waiter for DescribeUpdate, so we give botocore's waiter machinery a model
for one (the same JSON shape as botocore's own ``waiters-2.json``): polling, the attempt
budget and the terminal states are the library's, only the acceptors are ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore import exceptions as bce
from botocore import waiter as bwaiter

from reconciler.aws.errors import AwsError, describe_aws_error

if TYPE_CHECKING:
    from mypy_boto3_eks import EKSClient
    from mypy_boto3_eks.type_defs import WaiterConfigTypeDef

TERMINAL_FAILURES = ("Failed", "Cancelled")
_MODEL = bwaiter.WaiterModel(
    {
        "version": 2,
        "waiters": {
            "UpdateSuccessful": {
                "operation": "DescribeUpdate",
                "delay": 15,
                "maxAttempts": 120,
                "acceptors": [
                    {"matcher": "path", "argument": "update.status", "expected": "Successful", "state": "success"},
                    *(
                        {"matcher": "path", "argument": "update.status", "expected": s, "state": "failure"}
                        for s in TERMINAL_FAILURES
                    ),
                ],
            }
        },
    }
)


@dataclass(frozen=True)
class Wait:
    """How long to follow an update; EKS version upgrades take 10-40 minutes."""

    timeout: float = 3600.0  # seconds before giving up on the update; default 1 hour
    interval: float = 15.0  # seconds between DescribeUpdate calls; default 15

    def config(self) -> WaiterConfigTypeDef:
        delay = max(0, math.ceil(self.interval))
        return {"Delay": delay, "MaxAttempts": max(1, math.ceil(self.timeout / max(delay, 1)))}


def _errors(update: dict[str, Any]) -> str:
    errs = update.get("errors") or []
    text = "; ".join(f"{e.get('errorCode', '?')}: {e.get('errorMessage', '')}".strip() for e in errs)
    return text or "no error detail given"


def follow(
    client: EKSClient,
    update: dict[str, Any] | None,
    *,
    describe: dict[str, str],
    resource: str,
    region: str,
    wait: Wait,
) -> str:
    """Wait for ``update`` to succeed; returns its final status, raises AwsError otherwise.

    ``describe`` holds DescribeUpdate's resource arguments (``name`` and, for a node group
    or addon, ``nodegroupName``/``addonName``).  An update already Successful in the
    response (small config changes can be) needs no polling.  A response without an
    update (moto's UpdateClusterConfig) is returned as "no update to follow": the caller
    re-describes the resource in any case, and that is the check that counts.
    """
    if not update or not update.get("id"):
        return "done (no update to follow)"
    uid, status = str(update["id"]), str(update.get("status") or "")
    where = f"eks:DescribeUpdate {resource}"
    if status == "Successful":
        return status
    if status in TERMINAL_FAILURES:
        raise AwsError(f"{where} ({region}): update {uid} {status}: {_errors(update)}")
    waiter = bwaiter.create_waiter_with_client("UpdateSuccessful", _MODEL, client)
    try:
        waiter.wait(**describe, updateId=uid, WaiterConfig=wait.config())
    except bce.WaiterError as e:
        last: dict[str, Any] = dict(e.last_response or {})
        if "Error" in last:
            err = bce.ClientError(last, "DescribeUpdate")  # type: ignore[arg-type]
            raise AwsError(
                describe_aws_error("eks:DescribeUpdate", f"{resource} update {uid}", exc=err, region=region)
            ) from e
        now: dict[str, Any] = last.get("update") or {}
        if now.get("status") in TERMINAL_FAILURES:
            raise AwsError(f"{where} ({region}): update {uid} {now['status']}: {_errors(now)}") from e
        raise AwsError(
            f"{where} ({region}): update {uid} still {now.get('status') or 'unknown'} after {wait.timeout:.0f}s; "
            "it goes on in AWS (see aws eks describe-update)"
        ) from e
    except bce.BotoCoreError as e:
        raise AwsError(
            describe_aws_error("eks:DescribeUpdate", f"{resource} update {uid}", exc=e, region=region)
        ) from e
    return "Successful"
