"""The one error type of tidewright: a refusal keeps the gRPC status code,
the server's message and the request field it names."""

from __future__ import annotations

from typing import Any, Optional

import grpc

#: The trailing metadata key the control plane names a refused field in.
FIELD_METADATA = "tidewright-field"

_NAMES = {
    grpc.StatusCode.INVALID_ARGUMENT: "invalid argument",
    grpc.StatusCode.NOT_FOUND: "not found",
    grpc.StatusCode.UNAVAILABLE: "unavailable",
    grpc.StatusCode.PERMISSION_DENIED: "permission denied",
    grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "resource exhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "failed precondition",
    grpc.StatusCode.ABORTED: "conflict",
    grpc.StatusCode.ALREADY_EXISTS: "already exists",
    grpc.StatusCode.DEADLINE_EXCEEDED: "deadline exceeded",
}


class TidewrightError(Exception):
    """A call tidewright refused or could not answer.

    ``code`` is the gRPC status code (``None`` when the request never
    reached the server), ``field`` the request field at fault for
    INVALID_ARGUMENT (``"spec.steps[1].id"``), ``message`` the server's.
    """

    def __init__(
        self,
        message: str,
        code: Optional[grpc.StatusCode] = None,
        field: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field

    def __str__(self) -> str:
        if self.code is None:
            return self.message
        return f"{_NAMES.get(self.code, 'request failed')}: {self.message}"

    @classmethod
    def from_rpc(cls, error: grpc.RpcError) -> "TidewrightError":
        call: Any = error
        code = call.code() if hasattr(call, "code") else None
        details = call.details() if hasattr(call, "details") else None
        return cls(details or str(code), code=code, field=trailer(error, FIELD_METADATA))


def trailer(error: grpc.RpcError, key: str) -> Optional[str]:
    """A trailing metadata value of a failed call, sync or asyncio."""
    call: Any = error
    trailers = call.trailing_metadata() if hasattr(call, "trailing_metadata") else None
    for entry in trailers or ():
        # Sync calls give (key, value) named tuples; asyncio ones tuples.
        if entry[0] == key:
            value = entry[1]
            return value if isinstance(value, str) else bytes(value).decode()
    return None


class SpecError(TidewrightError, ValueError):
    """A task spec (a dict or a YAML file) that cannot be sent as it is;
    found before anything reaches the server."""


class StreamLost(TidewrightError):
    """A watch could not be resumed within its patience."""

    def __init__(self, task_id: str, last_seq: int) -> None:
        super().__init__(f"lost the stream of task {task_id} after event {last_seq}")
        self.task_id = task_id
        self.last_seq = last_seq
