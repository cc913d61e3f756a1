"""One JSON error shape for every endpoint: ``{"detail": "<what was wrong>", ...}``.

Why handlers here and not try/except in routes: domain errors (unknown job,
unsafe name, Prefect unreachable) are raised from helpers deep down; mapping
them once keeps every route's answer consistent and free of tracebacks.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

import pymongo.errors

from api.gateway import DeploymentMissing, JobNotFound, RunRefused
from api.idempotency import IdempotencyConflict
from core.sites import SchemaNotFound, SiteExists, SiteNotFound
from core.dataset_build import DatasetBuildError
from core.layout import FileTooLarge, InvalidJobId, OutsideDataRoot, UnsafeNameError
from core.limits import LimitExceeded
from core.safe_yaml import YamlRefused
from core.experiment import ExperimentConfigConflict, ExperimentConfigError, ExperimentConfigMissing

log = logging.getLogger("opeva.api")


class ApiError(Exception):
    """Raise from a route to answer ``status_code`` with ``detail`` and extra fields."""

    def __init__(self, status_code: int, detail: str | dict[str, Any], **extra: Any) -> None:
        """``detail`` is text, or an object where an upstream answer has one (noted at the raise)."""
        super().__init__(detail if isinstance(detail, str) else str(detail.get("message", detail)))
        self.status_code = status_code
        self.detail = detail
        self.extra = extra


def error(status_code: int, detail: str | dict[str, Any], **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status_code)


def _location(loc: tuple | list) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def _validation_message(exc: RequestValidationError) -> str:
    messages = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            messages.append(f"request body is not valid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}")
        elif err.get("type") == "missing" and not [p for p in err.get("loc", ()) if p != "body"]:
            messages.append("request body is required")
        else:
            messages.append(f"{_location(err.get('loc', ()))}: {err.get('msg')}")
    return "; ".join(messages) or "invalid request"


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE and getattr(route, "methods", None) and getattr(route, "include_in_schema", True):
            methods |= set(route.methods) - {"HEAD"}
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error(exc.status_code, exc.detail, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        return error(422, _validation_message(exc), errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers or None)

    @app.exception_handler(JobNotFound)
    async def _job_not_found(_: Request, exc: JobNotFound) -> JSONResponse:
        return error(404, str(exc), status="not_found", job_id=exc.job_id)

    @app.exception_handler(UnsafeNameError)
    async def _unsafe(_: Request, exc: UnsafeNameError) -> JSONResponse:
        if isinstance(exc, InvalidJobId):
            return error(404, str(exc), status="not_found")
        return error(403 if isinstance(exc, OutsideDataRoot) else 400, str(exc))

    install_limits(app)

    @app.exception_handler(ExperimentConfigError)
    async def _config(_: Request, exc: ExperimentConfigError) -> JSONResponse:
        return error(422, str(exc), field=exc.field)

    @app.exception_handler(ExperimentConfigMissing)
    async def _config_missing(_: Request, exc: ExperimentConfigMissing) -> JSONResponse:
        return error(404, str(exc), field=exc.field)

    @app.exception_handler(ExperimentConfigConflict)
    async def _config_conflict(_: Request, exc: ExperimentConfigConflict) -> JSONResponse:
        return error(409, str(exc), field=exc.field, file=exc.file)

    @app.exception_handler(SiteNotFound)
    @app.exception_handler(SchemaNotFound)
    async def _site_missing(_: Request, exc: LookupError) -> JSONResponse:
        return error(404, str(exc))

    @app.exception_handler(SiteExists)
    async def _site_exists(_: Request, exc: SiteExists) -> JSONResponse:
        return error(409, str(exc))

    @app.exception_handler(DatasetBuildError)
    async def _build(_: Request, exc: DatasetBuildError) -> JSONResponse:
        return error(422, str(exc))

    @app.exception_handler(pymongo.errors.PyMongoError)
    async def _mongo_down(_: Request, exc: pymongo.errors.PyMongoError) -> JSONResponse:
        log.warning("MongoDB call failed: %r", exc)
        return error(503, f"MongoDB is unreachable or failed: {type(exc).__name__}")

    install_prefect(app)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); the server log has details")


def install_prefect(app: FastAPI) -> None:
    """What Prefect answered, or failed to."""

    @app.exception_handler(DeploymentMissing)
    async def _deployment(_: Request, exc: DeploymentMissing) -> JSONResponse:
        return error(503, str(exc))

    @app.exception_handler(IdempotencyConflict)
    async def _idempotency(_: Request, exc: IdempotencyConflict) -> JSONResponse:
        return error(409, str(exc), job_id=str(exc.run_id) if exc.run_id else None)

    @app.exception_handler(RunRefused)
    async def _refused(_: Request, exc: RunRefused) -> JSONResponse:
        return error(422, f"Prefect refused the job: {exc}")

    @app.exception_handler(httpx.HTTPStatusError)
    async def _prefect_answered(_: Request, exc: httpx.HTTPStatusError) -> JSONResponse:
        return prefect_status_error(exc)

    @app.exception_handler(httpx.HTTPError)
    async def _prefect_down(_: Request, exc: httpx.HTTPError) -> JSONResponse:
        log.warning("Prefect API call failed: %r", exc)
        return error(503, f"the Prefect API is unreachable or failed: {type(exc).__name__}")


PREFECT_4XX = {404: "not found", 409: "conflict", 422: "refused as invalid"}


def prefect_status_error(exc: httpx.HTTPStatusError) -> JSONResponse:
    """Prefect's 404/409/422 mean what they say (a run deleted meanwhile, a state change it
    refused, a value it would not take): the same code here, with Prefect's words. Other
    answers (its auth refused, 5xx) are the platform's fault: 503."""
    code = exc.response.status_code
    if code in PREFECT_4XX:
        try:
            said = exc.response.json().get("detail")
        except (ValueError, AttributeError):
            said = None
        said = said if isinstance(said, str) else exc.response.text
        return error(code, f"Prefect: {PREFECT_4XX[code]}: {said[:500]}")
    log.warning("Prefect API answered %s: %r", code, exc)
    return error(503, f"the Prefect API failed: HTTP {code}")


def install_limits(app: FastAPI) -> None:
    """Inputs over a limit and hostile files: a 4xx that says what was wrong, never a 500."""

    @app.exception_handler(LimitExceeded)
    async def _limit(_: Request, exc: LimitExceeded) -> JSONResponse:
        return error(exc.status_code, str(exc))

    @app.exception_handler(YamlRefused)
    async def _yaml(_: Request, exc: YamlRefused) -> JSONResponse:
        return error(422, str(exc), line=exc.line, column=exc.column)

    @app.exception_handler(FileTooLarge)
    async def _too_large(_: Request, exc: FileTooLarge) -> JSONResponse:
        return error(413, str(exc))

    @app.exception_handler(FileExistsError)
    async def _exists(_: Request, exc: FileExistsError) -> JSONResponse:
        return error(409, f"{exc.filename or 'the file'} already exists")

    @app.exception_handler(FileNotFoundError)
    async def _missing(_: Request, exc: FileNotFoundError) -> JSONResponse:
        return error(404, "not found")  # no path: it may name the data root

    @app.exception_handler(RecursionError)
    async def _deep(_: Request, exc: RecursionError) -> JSONResponse:
        return error(422, "input nested too deeply")


class BodySizeLimit:
    """Refuse bodies over ``max_bytes`` with 413, also when no Content-Length is sent.

    ``streamed`` names routes that take big bodies (a dataset upload): they get their own
    limit and are not buffered here; past it the stream ends as a disconnect, so the route
    never sees more than its limit.
    """

    def __init__(self, app: Any, max_bytes: int, streamed: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.streamed = streamed or {}

    async def _streamed(self, scope: dict, receive: Any, send: Any, limit: int) -> None:
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            too_big = error(413, f"request body too large: the limit of {scope['path']} is {limit} bytes")
            too_big.headers["connection"] = "close"  # not drained by the server either
            return await too_big(scope, receive, send)
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return {"type": "http.disconnect"} if received > limit else message

        await self.app(scope, counted, send)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope.get("path") in self.streamed:
            return await self._streamed(scope, receive, send, self.streamed[scope["path"]])
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = error(413, f"request body too large: the limit is {self.max_bytes} bytes")
        too_big.headers["connection"] = "close"  # the rest of the body is not read (nor drained by the server)
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await too_big(scope, receive, send)
        # No trustworthy length: read up to the limit first (memory stays bounded
        # by max_bytes), then hand the app the buffered body.
        messages: list[dict] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                return await too_big(scope, receive, send)
            if not message.get("more_body"):
                break

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
