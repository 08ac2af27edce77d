"""One error tree, one body shape: `{"error": {"code", "message", "details"}}`.

Every error FastAPI or Starlette can raise is rendered in that shape too, so the marketplace
parses one format. Bodies never carry stack traces, secrets or timestamps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException


class AppError(Exception):
    status_code = 400
    code = "BAD_REQUEST"

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = headers


class Unauthenticated(AppError):
    status_code = 401
    code = "UNAUTHENTICATED"


class InvalidPrincipalAssertion(Unauthenticated):
    code = "INVALID_PRINCIPAL_ASSERTION"


class Forbidden(AppError):
    status_code = 403
    code = "FORBIDDEN"


class NotFound(AppError):
    status_code = 404
    code = "NOT_FOUND"

    def __init__(self, resource: str = "resource") -> None:
        super().__init__(f"{resource} not found")


class Conflict(AppError):
    status_code = 409
    code = "CONFLICT"


class InvalidStateTransition(Conflict):
    code = "INVALID_STATE_TRANSITION"


class IdempotencyKeyReused(Conflict):
    code = "IDEMPOTENCY_KEY_REUSED"


class IdempotencyInProgress(Conflict):
    code = "IDEMPOTENCY_IN_PROGRESS"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class Unprocessable(AppError):
    status_code = 422
    code = "VALIDATION_ERROR"


class CredentialsRequired(Unprocessable):
    code = "CREDENTIALS_REQUIRED"


class InvalidPrincipalError(Unprocessable):
    code = "INVALID_PRINCIPAL"


class InvalidHeader(Unprocessable):
    code = "INVALID_HEADER"


class RateLimited(AppError):
    status_code = 429
    code = "RATE_LIMITED"


STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}


class ErrorDetail(BaseModel):
    loc: str = Field(
        description="where: `header.<name>`, `query.<name>`, `path.<name>` or `body.<field path>`"
    )
    message: str


class ErrorInfo(BaseModel):
    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", description="stable, UPPER_SNAKE")
    message: str = Field(description="for people; never a secret, a stack trace or a time")
    details: list[ErrorDetail]


class ErrorBody(BaseModel):
    """Every non-2xx body: what `error_response` writes."""

    error: ErrorInfo


# What the OpenAPI document says of each error status: when it happens, and a typical body.
@dataclass(frozen=True)
class _DocumentedError:
    description: str
    code: str
    message: str
    details: tuple[tuple[str, str], ...] = ()
    retry_after: bool = False


_DOCUMENTED = {
    401: _DocumentedError(
        "No valid `X-API-Key` (`UNAUTHENTICATED`); on renter endpoints also a bad, expired or "
        "mismatched principal assertion (`INVALID_PRINCIPAL_ASSERTION`).",
        "UNAUTHENTICATED",
        "missing, unknown or revoked API key",
    ),
    403: _DocumentedError(
        "The key's scope (or ownership) does not allow this (`FORBIDDEN`).",
        "FORBIDDEN",
        "only a marketplace key may act for a principal",
    ),
    404: _DocumentedError(
        "No such resource, or not the caller's: the two are indistinguishable (`NOT_FOUND`).",
        "NOT_FOUND",
        "subscription not found",
    ),
    409: _DocumentedError(
        "`IDEMPOTENCY_KEY_REUSED`: the `Idempotency-Key` was used for another request; "
        "`IDEMPOTENCY_IN_PROGRESS` (with `Retry-After`): its first copy is still running; "
        "`CONFLICT` or `INVALID_STATE_TRANSITION`: the resource's state does not allow it.",
        "IDEMPOTENCY_KEY_REUSED",
        "this Idempotency-Key was used for a different request",
    ),
    413: _DocumentedError(
        "The body is larger than `MAX_BODY_BYTES` (`PAYLOAD_TOO_LARGE`).",
        "PAYLOAD_TOO_LARGE",
        "request body is larger than 65536 bytes",
    ),
    422: _DocumentedError(
        "`VALIDATION_ERROR` with one detail per field (the input is never echoed); "
        "`INVALID_PRINCIPAL`, `INVALID_HEADER` or `CREDENTIALS_REQUIRED` where they apply.",
        "VALIDATION_ERROR",
        "the request is not valid",
        (("body.symbol", "must be 5-20 upper-case letters or digits, like BTCUSDT"),),
    ),
    429: _DocumentedError(
        "More requests a minute than the key, or for a marketplace key the renter, may make "
        "(`RATE_LIMITED`); replays of idempotent requests do not count.",
        "RATE_LIMITED",
        "more than 600 requests a minute for this renter",
        retry_after=True,
    ),
    431: _DocumentedError(
        "More request headers than `MAX_HEADER_COUNT`, or more than `MAX_HEADER_BYTES` of them "
        "(`REQUEST_HEADERS_TOO_LARGE`).",
        "REQUEST_HEADERS_TOO_LARGE",
        "at most 100 request headers of 16384 bytes in all",
    ),
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses (a route's `responses=`) in the contract's error shape."""
    return {status: _documented_response(status) for status in statuses}


def _documented_response(status: int) -> dict[str, Any]:
    error = _DOCUMENTED[status]
    example = {
        "error": {
            "code": error.code,
            "message": error.message,
            "details": [{"loc": loc, "message": message} for loc, message in error.details],
        }
    }
    response: dict[str, Any] = {
        "description": error.description,
        "content": {
            "application/json": {
                "schema": {"$ref": f"#/components/schemas/{ErrorBody.__name__}"},
                "example": example,
            }
        },
    }
    if error.retry_after:
        response["headers"] = {
            "Retry-After": {
                "description": "seconds to wait before trying again",
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
            }
        }
    return response


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return JSONResponse(body, status_code=status_code, headers=headers)


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)


async def http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, UnicodeDecodeError | RecursionError):
        # FastAPI answers a body that is not UTF-8, or nested deeper than the parser's stack,
        # with a bare 400, and JSON that does not parse with a 422: all are a body that is not
        # JSON the service reads, so all are the contract's 422.
        return error_response(
            422,
            "VALIDATION_ERROR",
            "the request is not valid",
            [{"loc": "body", "message": "JSON decode error"}],
        )
    code = STATUS_CODES.get(exc.status_code, "HTTP_ERROR")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ").lower()
    return error_response(exc.status_code, code, message, headers=exc.headers)


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only where and what: echoing the rejected input could echo a secret.
    details = [
        {"loc": _location(tuple(err.get("loc", ()))), "message": str(err.get("msg", ""))}
        for err in exc.errors()
    ]
    return error_response(422, "VALIDATION_ERROR", "the request is not valid", details)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
