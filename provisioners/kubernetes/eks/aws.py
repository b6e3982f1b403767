"""The AWS calls of an EKS run: session and clients, the credentials check, waiters with a
deadline, create calls whose quota errors become CapacityError, describe/delete that treat
"not found" as done. A mixin of `EksCluster` (one resource family per module)."""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import boto3
import botocore.exceptions as bexc
from botocore.config import Config

from harness.system.errors import ConfigError, InfrastructureError, Interrupted
from harness.system.redact import redact
from harness.system.waits import CANCEL, DeadlineExceeded
from provisioners.kubernetes.eks.settings import (
    CREDENTIAL_ERRORS,
    CREDENTIAL_VARIABLES,
    QUOTA_ERRORS,
    QUOTA_WORDS,
    EksSettings,
    capacity_error,
    credentials_error,
)


def _code(exc: BaseException) -> str:
    if isinstance(exc, bexc.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _not_found(exc: BaseException) -> bool:
    code = _code(exc)
    return code in ("ResourceNotFoundException", "NotFoundException", "NoSuchEntity",
                    "InvalidNetworkInterfaceID.NotFound", "InvalidGroup.NotFound",
                    "InvalidVolume.NotFound", "LoadBalancerNotFound") or (
        code == "ValidationError" and "does not exist" in str(exc))


class AwsAccess:
    """Clients, credentials, waiters and guarded calls (state: settings, session, identity)."""

    settings: EksSettings
    identity: dict[str, Any]
    _session: boto3.session.Session | None
    _clients: dict[str, Any]

    @property
    def session(self) -> boto3.session.Session:
        if self._session is None:
            try:
                self._session = boto3.session.Session(region_name=self.settings.region or None)
            except bexc.ProfileNotFound as exc:
                raise credentials_error(str(exc)) from None
        return self._session

    @property
    def region(self) -> str:
        region = (self.settings.region or os.environ.get("AWS_REGION")
                  or self.session.region_name)
        if not region:
            raise credentials_error("no region: set AWS_REGION or `region:` in matrix.yaml")
        return region

    def client(self, service: str) -> Any:
        if service not in self._clients:
            config = Config(connect_timeout=10, read_timeout=60,
                            retries={"mode": "standard", "max_attempts": 5},
                            user_agent_extra="mlflow-matrix")
            self._clients[service] = self.session.client(service, region_name=self.region,
                                                         config=config)
        return self._clients[service]

    def check_credentials(self) -> dict[str, Any]:
        """STS GetCallerIdentity with short timeouts: a missing or expired key fails in seconds."""
        try:
            credentials = self.session.get_credentials()
        except bexc.BotoCoreError as exc:  # unknown profile, partial keys, SSO/process errors
            raise credentials_error(redact(str(exc))) from None
        if credentials is None:
            raise credentials_error("none found (looked at " + ", ".join(CREDENTIAL_VARIABLES)
                                   + ", ~/.aws/credentials and ~/.aws/config)")
        _ = self.region
        sts = self.session.client("sts", region_name=self.region, config=Config(
            connect_timeout=5, read_timeout=10, retries={"max_attempts": 1}))
        try:
            self.identity = sts.get_caller_identity()
        except (bexc.NoCredentialsError, bexc.CredentialRetrievalError, bexc.TokenRetrievalError,
                bexc.SSOError) as exc:  # also: expired SSO session, refresh failing
            raise credentials_error(redact(str(exc))) from None
        except bexc.ClientError as exc:
            if _code(exc) in CREDENTIAL_ERRORS:
                raise credentials_error(f"rejected by STS: {redact(str(exc))}") from None
            raise InfrastructureError(f"STS GetCallerIdentity failed: {redact(str(exc))}") from None
        except (bexc.EndpointConnectionError, bexc.ConnectTimeoutError) as exc:
            raise ConfigError(f"cannot reach AWS STS: {exc}",
                              hint="check the network, or AWS_ENDPOINT_URL if you set one") \
                from None
        except bexc.BotoCoreError as exc:
            raise InfrastructureError(f"STS GetCallerIdentity failed: {redact(str(exc))}") \
                from None
        return self.identity

    @property
    def partition(self) -> str:
        arn = str(self.identity.get("Arn") or "arn:aws:")
        return arn.split(":")[1] or "aws"

    def principal_arn(self) -> str:
        """The IAM principal an access entry takes: an assumed-role session maps to its role."""
        arn = str(self.identity["Arn"])
        match = re.match(r"^arn:([^:]+):sts::(\d+):assumed-role/([^/]+)/", arn)
        if match:
            return f"arn:{match[1]}:iam::{match[2]}:role/{match[3]}"
        return arn

    # -- deadlines and waiters

    def attempts(self, timeout: float) -> int:
        return max(1, math.ceil(timeout / self.settings.waiter_delay))

    def wait(self, service: str, waiter_name: str, what: str, deadline: float, *,
             cancellable: bool = True, **params: Any) -> None:
        """One waiter attempt at a time until the waiter matches, fails, or `deadline` passes.

        Ctrl-C (CANCEL) ends a create wait at its next poll; deletions are not cancellable
        (they are the teardown), only bounded by their deadline."""
        waiter = self.client(service).get_waiter(waiter_name)
        started = time.monotonic()
        while True:
            if cancellable and CANCEL.is_set():
                raise Interrupted()
            try:
                waiter.wait(WaiterConfig={"Delay": 0, "MaxAttempts": 1}, **params)
                return
            except bexc.WaiterError as exc:
                if "Max attempts exceeded" not in str(exc.kwargs.get("reason", "")):
                    detail = self._failure_detail(service, params) or str(exc.last_response
                                                                          .get("Error", ""))
                    if QUOTA_WORDS.search(detail):
                        raise capacity_error(what, detail) from None
                    raise InfrastructureError(f"{what} failed: {exc.kwargs.get('reason')}"
                                              + (f": {detail}" if detail else "")) from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"timed out after {time.monotonic() - started:.0f}s waiting for {what}",
                    hint="raise `up_timeout`/`down_timeout` for this platform in matrix.yaml")
            pause = min(self.settings.waiter_delay, remaining)
            if cancellable:
                CANCEL.wait(pause)
            else:
                time.sleep(pause)

    def _failure_detail(self, service: str, params: Mapping[str, Any]) -> str:
        """Why a resource reached a failed state (health issues, stack events)."""
        try:
            if service == "cloudformation":
                events = self.client(service).describe_stack_events(
                    StackName=params["StackName"])["StackEvents"]
                return "; ".join(f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
                                 for e in events if str(e.get("ResourceStatus", "")).endswith(
                                     "_FAILED") and e.get("ResourceStatusReason"))[:800]
            eks = self.client("eks")
            if "nodegroupName" in params:
                health = eks.describe_nodegroup(**params)["nodegroup"].get("health", {})
            elif "addonName" in params:
                health = eks.describe_addon(**params)["addon"].get("health", {})
            else:
                return ""
            return "; ".join(f"{i.get('code')}: {i.get('message')}"
                             for i in health.get("issues", []))
        except (bexc.BotoCoreError, bexc.ClientError, KeyError):
            return ""

    def _call(self, what: str, fn: Callable[..., Any], **params: Any) -> Any:
        """An AWS create call: quotas become CapacityError (exit 3), the rest InfrastructureError."""
        if CANCEL.is_set():
            raise Interrupted()
        try:
            return fn(**params)
        except bexc.ClientError as exc:
            if _code(exc) in QUOTA_ERRORS or QUOTA_WORDS.search(_code(exc)):
                raise capacity_error(what, redact(str(exc))) from None
            if _code(exc) in CREDENTIAL_ERRORS:
                raise credentials_error(f"rejected during {what}: {redact(str(exc))}") from None
            raise InfrastructureError(f"{what} failed: {redact(str(exc))}") from None
        except bexc.BotoCoreError as exc:
            raise InfrastructureError(f"{what} failed: {redact(str(exc))}") from None

    def _describe(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except bexc.ClientError as exc:
            if _not_found(exc):
                return None
            raise InfrastructureError(redact(str(exc))) from None
        except bexc.BotoCoreError as exc:
            raise InfrastructureError(redact(str(exc))) from None

    def _delete(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except bexc.ClientError as exc:
            if not _not_found(exc):
                raise InfrastructureError(redact(str(exc))) from None
        except bexc.BotoCoreError as exc:
            raise InfrastructureError(redact(str(exc))) from None
