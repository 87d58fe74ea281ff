"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

Endpoints raise ``APIError`` (or one of the named helpers below); the handlers installed by
``install_handlers`` turn it, FastAPI's own exceptions and anything unexpected into that body
with the right status. Clients such as the official ``openai`` package read ``message`` and
map the status to an exception class (400 BadRequestError, 401 AuthenticationError, ...).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

# status -> OpenAI's error type
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
    504: "timeout_error",
}


class APIError(Exception):
    """An error a client gets back: HTTP ``status``, a one-line ``message``, the offending ``param``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(
    message: str, type: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def check_count(count: int, limit: int, noun: str, param: str) -> None:
    """400 when a request carries more inputs than the server allows (``--max-inputs``)."""
    if count > limit:
        raise bad_request(f"{count} {noun} in one request; this server allows at most {limit}", param=param)


def queue_full(model: str, waiting: int, retry_after: int) -> APIError:
    return APIError(
        429,
        f"model {model!r} is busy: {waiting} requests are already waiting (the queue's limit); "
        f"retry in {retry_after} s",
        code="queue_full",
        headers={"Retry-After": str(retry_after)},
    )


def timed_out(seconds: float) -> APIError:
    return APIError(
        504, f"the request took longer than the server's limit of {seconds:g} s and was stopped", code="timeout"
    )


def validation_message(err: ValidationError | RequestValidationError, prefix: tuple = ()) -> tuple[str, str | None]:
    """Pydantic's errors as one line naming the field, e.g. ``messages.0.role: Input should be ...``."""
    parts, param = [], None
    for item in err.errors()[:3]:
        loc = [str(p) for p in item.get("loc", ()) if p not in prefix]
        where = ".".join(loc)
        param = param or where or None
        parts.append(f"{where}: {item.get('msg', 'invalid')}" if where else item.get("msg", "invalid"))
    return "; ".join(parts) or "invalid request", param


def install_handlers(app: FastAPI) -> None:
    """Every error response of ``app`` in OpenAI's shape."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, err: APIError):
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, err: RequestValidationError):
        message, param = validation_message(err, prefix=("body",))
        return JSONResponse(error_body(message, param=param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException):
        message = err.detail if isinstance(err.detail, str) else str(err.detail)
        if err.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif err.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse(
            error_body(message, ERROR_TYPES.get(err.status_code, "invalid_request_error")),
            status_code=err.status_code,
            headers=getattr(err, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception):  # the server logs the traceback after this
        return JSONResponse(
            error_body(f"internal server error ({type(err).__name__})", "server_error"), status_code=500
        )
