"""The OpenAPI document as the service really behaves, and Swagger UI served without a CDN.

FastAPI documents what a route's signature shows. What the middleware and the shared
dependencies do to every call is added here, in one place, so that no route can forget it:
the `Idempotency-Key` header on writes, `X-Request-ID` both ways, `X-API-Key` on every
`/api/v1` call and a required `X-Principal-ID` on renter endpoints (app/deps.py reads both from
the raw request: a declared parameter costs FastAPI parsing on every request, and a
non-marketplace key must get its 403 before it is asked for a principal), the error responses
every `/api/v1` call can get, all in the contract's `{"error": {...}}` shape instead of
FastAPI's `HTTPValidationError`, and examples for list bodies composed from their items'
examples. A route declares only the errors that depend on it: `responses=error_responses(403,
404)` (app.core.errors). A 405 names in `Allow` the methods the document gives its path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from copy import deepcopy
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from swagger_ui_bundle import swagger_ui_path

from app.api_keys.assertions import ASSERTION_HEADER, SIGNATURE_HEADER
from app.audit import WRITE_METHODS
from app.core.errors import ErrorBody, error_responses, http_error
from app.deps import API_KEY_HEADER, PRINCIPAL_HEADER
from app.idempotency.middleware import VALID_IDEMPOTENCY_KEY

API_PREFIX = "/api/v1/"
# The contract's renter endpoints: X-Principal-ID is required there. Elsewhere (backtests) a
# marketplace key may send it, and the same assertion then applies.
RENTER_PATHS = ("/api/v1/credentials", "/api/v1/subscriptions", "/api/v1/principals")
SWAGGER_ASSETS = "/docs/assets"
_REF = "#/components/schemas/{model}"
_FASTAPI_422 = ("HTTPValidationError", "ValidationError")
_WRITES = frozenset(method.lower() for method in WRITE_METHODS)


_RESPONSE_REQUEST_ID = {
    "description": "correlation id of this request, also in every log line it made",
    "schema": {"type": "string"},
}

# What a 429 carries besides Retry-After (app/core/ratelimit.py): draft-ietf-httpapi-ratelimit-
# headers' fields, naming the budgets the request drew on and the one that ran out.
_RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": {
        "description": 'the budgets the request drew on: `"key";q=<requests>;w=60`, and for a '
        'marketplace key\'s renter `"renter";q=<requests>;w=60` first',
        "required": True,
        "schema": {"type": "string", "example": '"renter";q=600;w=60, "key";q=60000;w=60'},
    },
    "RateLimit": {
        "description": "the budget that ran out, with no requests left (`r=0`) and the "
        "seconds until one is (`t`, as `Retry-After`)",
        "required": True,
        "schema": {"type": "string", "example": '"renter";r=0;t=7'},
    },
}

_REQUEST_ID = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "your correlation id (1-64 of `A-Za-z0-9._-`), echoed in the response "
    "header; anything else is replaced by a generated one",
    "schema": {"type": "string"},
}

_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Optional. Copies with the same key, method, path and body run once and get "
    "byte-identical answers for at least 24 hours; the same key on another request is 409 "
    "`IDEMPOTENCY_KEY_REUSED`. 1-255 visible ASCII characters, case-sensitive.",
    "schema": {"type": "string", "pattern": VALID_IDEMPOTENCY_KEY.pattern},
    "example": "order-7f3c2a",
}


_API_KEY_SCHEME = "APIKeyHeader"
_API_KEY = {
    "type": "apiKey",
    "in": "header",
    "name": API_KEY_HEADER,
    "description": "Your key, `bmk_<prefix>_<secret>`. Scopes: admin, developer, marketplace.",
}


def _header(name: str, description: str, *, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "schema": {"description": description, "title": name, "type": "string"},
        "description": description,
    }


_PRINCIPAL = _header(
    PRINCIPAL_HEADER,
    "The renter's textual ICP principal; only a marketplace key may send it.",
    required=True,
)
_PRINCIPAL["schema"]["examples"] = ["ryjl3-tyaaa-aaaaa-aaaba-cai"]
# The event feed reads it from the raw request too, optional there.
FEED_PATH = "/api/v1/events"
_FEED_PRINCIPAL = _header(
    PRINCIPAL_HEADER, "marketplace keys: only this renter's events; other keys' is ignored"
)


# Read by check_principal_assertion from the raw request, on every operation that takes
# X-Principal-ID; not declared as parameters, which FastAPI would parse on every request.
_ASSERTION_HEADERS = [
    _header(
        ASSERTION_HEADER,
        "base64url of the canister's signed statement that it acts for X-Principal-ID; needed "
        "when the marketplace key has assertion keys (docs/principal-assertions.md).",
    ),
    _header(SIGNATURE_HEADER, "base64url signature of the assertion."),
]


def _errors_of(path: str, method: str, operation: Mapping[str, Any]) -> list[int]:
    """The errors the middleware and the shared dependencies can answer this operation with."""
    statuses = [431]  # the header limit guards every request
    if "requestBody" in operation:
        statuses.append(413)
    if path.startswith(API_PREFIX):
        statuses += [401, 422, 429]  # the key, validation and the rate limits
        if method in _WRITES:
            statuses.append(409)  # Idempotency-Key reused or still running
    return statuses


def _resolve(schema: Mapping[str, Any], schemas: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _restore_nulls(value: Any, schema: Mapping[str, Any], schemas: Mapping[str, Any]) -> None:
    """Put back the nulls FastAPI drops from examples (it encodes with exclude_none).

    A required property that an example lacks was null in it, if the property may be null.
    """
    schema = _resolve(schema, schemas)
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        _restore_nulls(value, branches[0], schemas)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            _restore_nulls(item, schema["items"], schemas)
    elif isinstance(value, dict) and "properties" in schema:
        for name, part in schema["properties"].items():
            if name in value:
                _restore_nulls(value[name], part, schemas)
            elif name in schema.get("required", ()) and {"type": "null"} in part.get("anyOf", []):
                value[name] = None


def _never_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without FastAPI's `| null` of an optional one: a header or query
    parameter is absent or a string, and no client can send it as null."""
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) != 1 or len(schema["anyOf"]) != 2:
        return schema
    return {**{k: v for k, v in schema.items() if k != "anyOf"}, **branches[0]}


class _NoExample(Exception):
    pass


def _example(schema: Mapping[str, Any], schemas: Mapping[str, Any]) -> Any:
    """An example of a body made of documented parts: a list or page of examples."""
    schema = _resolve(schema, schemas)
    if schema.get("examples"):
        return schema["examples"][0]
    if schema.get("type") == "array":
        return [_example(schema["items"], schemas)]
    if schema.get("type") == "object" and "properties" in schema:
        return {name: _example(part, schemas) for name, part in schema["properties"].items()}
    raise _NoExample


def _add_examples(content: dict[str, Any], schemas: Mapping[str, Any]) -> None:
    for media in content.values():
        if "example" in media or "examples" in media or "schema" not in media:
            continue
        if "examples" in _resolve(media["schema"], schemas):
            continue
        try:
            media["example"] = _example(media["schema"], schemas)
        except _NoExample:
            continue  # tests/api/test_openapi.py names the body that lacks one


def contract_document(document: dict[str, Any]) -> dict[str, Any]:
    """Add to FastAPI's document what the middleware and shared dependencies do."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorBody.model_json_schema(ref_template=_REF)
    schemas.update(error_schema.pop("$defs"))
    schemas[ErrorBody.__name__] = error_schema
    for schema in schemas.values():
        for example in schema.get("examples", []):
            _restore_nulls(example, schema, schemas)
    document["components"]["securitySchemes"] = {_API_KEY_SCHEME: _API_KEY}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            parameters = operation.setdefault("parameters", [])
            if path.startswith(API_PREFIX):
                operation["security"] = [{_API_KEY_SCHEME: []}]
            if path.startswith(RENTER_PATHS):
                parameters.append(deepcopy(_PRINCIPAL))
            if path == FEED_PATH and method == "get":
                parameters.append(deepcopy(_FEED_PRINCIPAL))
            if any(p["name"] == PRINCIPAL_HEADER for p in parameters):
                parameters += deepcopy(_ASSERTION_HEADERS)
            for parameter in parameters:
                parameter["schema"] = _never_null(parameter["schema"])
            if path.startswith(API_PREFIX) and method in _WRITES:
                parameters.append(deepcopy(_IDEMPOTENCY_KEY))
            parameters.append(deepcopy(_REQUEST_ID))
            responses = operation["responses"]
            responses.pop("422", None)  # FastAPI's HTTPValidationError: never what we send
            for status in _errors_of(path, method, operation):
                responses.setdefault(str(status), error_responses(status)[status])
            if "429" in responses:
                responses["429"]["headers"].update(deepcopy(_RATE_LIMIT_HEADERS))
            for response in responses.values():
                response.setdefault("headers", {})["X-Request-ID"] = deepcopy(_RESPONSE_REQUEST_ID)
                _add_examples(response.get("content", {}), schemas)
            operation["responses"] = dict(sorted(responses.items()))
            if "requestBody" in operation:
                _add_examples(operation["requestBody"]["content"], schemas)
    for name in _FASTAPI_422:
        schemas.pop(name, None)
    return document


def install_openapi(app: FastAPI, *, swagger_ui: bool) -> None:
    """The contract's document at `app.openapi()`, and Swagger UI on /docs from local assets."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = contract_document(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    if not swagger_ui:
        return
    openapi_url = app.openapi_url
    assert openapi_url is not None, "Swagger UI needs the document it shows"
    app.mount(SWAGGER_ASSETS, StaticFiles(directory=swagger_ui_path), name="swagger-ui-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui_html(request: Request) -> HTMLResponse:
        # Behind a proxy that strips a path prefix, every URL the page loads needs it back.
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{SWAGGER_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{SWAGGER_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{SWAGGER_ASSETS}/favicon-32x32.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )


class _MethodsByPath:
    """The methods the document gives each path, for the `Allow` header of a 405.

    FastAPI nests included routers, so Starlette's own 405 names only the methods of the one
    route it tried (`Allow: GET` on a path that also takes PATCH). Built from the document on
    the first 405, when every route exists, and kept.
    """

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._paths: list[tuple[re.Pattern[str], frozenset[str]]] | None = None

    def allow(self, path: str) -> str | None:
        """`Allow` for a path, or None for one the document does not give (its own routes)."""
        if self._paths is None:
            self._paths = [
                (compile_path(template)[0], frozenset(method.upper() for method in operations))
                for template, operations in self._app.openapi()["paths"].items()
            ]
        # A path can fit several templates: it is served every method any of them takes.
        methods = {m for pattern, served in self._paths if pattern.match(path) for m in served}
        return ", ".join(sorted(methods)) if methods else None


def install_method_not_allowed(app: FastAPI) -> None:
    """A 405's `Allow` lists every method the document serves on the path."""
    methods = _MethodsByPath(app)

    async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        # Routing matches the path below the mount point a proxy strips (`root_path`).
        path = request.scope["path"].removeprefix(request.scope.get("root_path", ""))
        allow = methods.allow(path)
        if allow is not None:
            exc = StarletteHTTPException(405, exc.detail, {**(exc.headers or {}), "Allow": allow})
        return await http_error(request, exc)

    app.add_exception_handler(405, method_not_allowed)
