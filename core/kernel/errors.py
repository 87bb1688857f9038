"""Error codes: what every failed operation reports, in ZStack's shape.

An :class:`ErrorCode` has a code (``SYS.1007``), a one-line description, free
details, and an optional cause (another ErrorCode), so a failure deep in a
flow chain reaches the user with the whole chain of reasons.  Raise
:class:`OperationError` anywhere in the core to fail with one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class SysErrors:
    """Codes shared by every service (ZStack's ``SysErrors``)."""

    INTERNAL = "SYS.1000"
    TIMEOUT = "SYS.1001"
    OPERATION_ERROR = "SYS.1006"
    INVALID_ARGUMENT = "SYS.1007"
    RESOURCE_NOT_FOUND = "SYS.1008"
    INVALID_STATE = "SYS.1009"
    ROLLBACK_FAILED = "SYS.1010"
    NOT_SUPPORTED = "SYS.1011"
    INTERRUPTED = "SYS.1012"
    """The node died while the operation ran; the next start rolled it back or ran it on."""


@dataclass(frozen=True)
class ErrorCode:
    code: str
    description: str
    details: str = ""
    cause: ErrorCode | None = None
    location: str = ""
    """Where it happened, e.g. the flow ``create-vm: VmAllocateHostFlow (3/8)``."""
    extra: dict[str, Any] = field(default_factory=dict)

    def causes(self) -> list[ErrorCode]:
        """This error followed by its causes, outermost first."""
        chain: list[ErrorCode] = []
        err: ErrorCode | None = self
        while err is not None:
            chain.append(err)
            err = err.cause
        return chain

    def root_cause(self) -> ErrorCode:
        return self.causes()[-1]

    def with_location(self, location: str) -> ErrorCode:
        return ErrorCode(
            self.code, self.description, self.details, self.cause, location, self.extra
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "description": self.description}
        if self.details:
            out["details"] = self.details
        if self.location:
            out["location"] = self.location
        if self.extra:
            out["extra"] = self.extra
        if self.cause is not None:
            out["cause"] = self.cause.to_dict()
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ErrorCode:
        cause = raw.get("cause")
        return cls(
            code=raw["code"],
            description=raw.get("description", ""),
            details=raw.get("details", ""),
            cause=cls.from_dict(cause) if cause else None,
            location=raw.get("location", ""),
            extra=raw.get("extra") or {},
        )

    def __str__(self) -> str:
        text = f"{self.code}: {self.description}"
        if self.details:
            text += f" ({self.details})"
        if self.cause is not None:
            text += f"; caused by {self.cause}"
        return text


class OperationError(Exception):
    """An exception that carries an :class:`ErrorCode`; raise it to fail an operation."""

    def __init__(self, error: ErrorCode) -> None:
        super().__init__(str(error))
        self.error = error


def argerr(description: str, details: str = "") -> OperationError:
    """Bad input from the caller (ZStack's ``argerr``)."""
    return OperationError(ErrorCode(SysErrors.INVALID_ARGUMENT, description, details))


def operr(description: str, details: str = "", cause: ErrorCode | None = None) -> OperationError:
    """An operation that could not be carried out (ZStack's ``operr``)."""
    return OperationError(ErrorCode(SysErrors.OPERATION_ERROR, description, details, cause))


def stateerr(description: str, details: str = "") -> OperationError:
    """A resource not in a state the operation can take (a running VM's revert, ...)."""
    return OperationError(ErrorCode(SysErrors.INVALID_STATE, description, details))


def inerr(description: str, details: str = "") -> OperationError:
    """A bug or an unexpected condition inside the system (ZStack's ``inerr``)."""
    return OperationError(ErrorCode(SysErrors.INTERNAL, description, details))


def not_found(resource_type: str, uuid: str) -> OperationError:
    return OperationError(
        ErrorCode(SysErrors.RESOURCE_NOT_FOUND, f"{resource_type}[uuid:{uuid}] is not found")
    )


def error_from_exception(exc: BaseException) -> ErrorCode:
    """The ErrorCode an exception stands for; unexpected exceptions become internal errors."""
    if isinstance(exc, OperationError):
        return exc.error
    text = str(exc) or type(exc).__name__
    return ErrorCode(SysErrors.INTERNAL, f"unexpected {type(exc).__name__}: {text}")
