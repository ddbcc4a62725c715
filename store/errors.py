"""The error tree every package raises from.

One root, a few branches; where a builtin means the same thing it is a base too, so
callers that only know the builtin still catch it. The HTTP middleware in
``gateway.http`` maps each branch to one status and the JSON error shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


@dataclass(frozen=True)
class ErrorDetail:
    """One problem inside a larger error: where (a dotted path or a field) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class FrontdeskError(Exception):
    """Root of every error frontdesk raises on purpose."""

    code = "error"
    status = 500

    def __init__(self, message: str, details: list[ErrorDetail] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class ConfigError(FrontdeskError, ValueError):
    """The settings are unusable; ``details`` names the YAML path of each problem."""

    code = "config_error"


class SignatureInvalid(FrontdeskError, PermissionError):
    """A webhook's signature or shared secret did not verify."""

    code = "signature_invalid"
    status = 403


class ValidationFailed(FrontdeskError, ValueError):
    """The input is well-formed enough to read but not acceptable."""

    code = "bad_request"
    status = 400


class PayloadTooLarge(ValidationFailed):
    """The input is over a configured size limit."""

    code = "payload_too_large"
    status = 413


class PermissionDenied(FrontdeskError, PermissionError):
    """The acting member's role does not allow this."""

    code = "forbidden"
    status = 403


class Unauthenticated(FrontdeskError):
    """No credentials, or credentials that do not identify anyone."""

    code = "unauthenticated"
    status = 401


class NotFound(FrontdeskError, LookupError):
    """No such resource, or one the caller may not see (the two look the same)."""

    code = "not_found"
    status = 404


class Conflict(FrontdeskError):
    """The request conflicts with the current state."""

    code = "conflict"
    status = 409


class DeliveryFailed(FrontdeskError):
    """A channel could not deliver; ``retryable`` says whether trying again may help.

    ``maybe_sent``: the request may have reached the provider before it failed (a timeout,
    a connection lost after sending), so it may have gone out all the same.
    """

    code = "delivery_failed"
    status = 502

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        provider_code: str | None = None,
        maybe_sent: bool = False,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.provider_code = provider_code
        self.maybe_sent = maybe_sent


class Unavailable(FrontdeskError):
    """Something this needs is down for now (Redis, say); trying again later may work."""

    code = "unavailable"
    status = 503


class TooManyAttempts(FrontdeskError):
    """Too many tries in too little time; wait and try again."""

    code = "too_many_attempts"
    status = 429


def repeats(names: Sequence[str]) -> list[int]:
    """The positions of names already seen earlier in ``names`` (for "used twice" errors)."""
    seen: set[str] = set()
    again = []
    for i, name in enumerate(names):
        if name in seen:
            again.append(i)
        seen.add(name)
    return again


def own_errors(exc: ValidationError) -> list[Any]:
    """``exc``'s errors, one per problem: pydantic drops a list's item that failed and then
    also says the list is too short (``numbers: at least 1 item``); that echo goes."""
    errors = exc.errors(include_url=False)
    failed = [tuple(e["loc"]) for e in errors]
    return [
        e for e in errors
        if not (e["type"] == "too_short"
                and any(len(f) > len(e["loc"]) and f[: len(e["loc"])] == tuple(e["loc"])
                        for f in failed))
    ]  # fmt: skip
