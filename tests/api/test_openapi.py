"""The OpenAPI document tells the truth for every operation, and Swagger UI works offline.

The schema tests walk the whole generated document, so a new route that forgets a header, an
error response or an example fails here by name.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import jsonschema_rs
import pytest
from cryptography.fernet import Fernet

from app.audit import WRITE_METHODS
from app.core.settings import Settings
from app.idempotency.middleware import VALID_IDEMPOTENCY_KEY
from app.main import create_app

API = "/api/v1/"
RENTER_PATHS = ("/api/v1/credentials", "/api/v1/subscriptions", "/api/v1/principals")
EVERY_API_CALL_CAN_GET = {"401", "422", "429", "431"}
ERROR_REF = "#/components/schemas/ErrorBody"

Operation = tuple[str, str, dict[str, Any]]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    # Building the document needs no database: the app is never started.
    settings = Settings(
        database_url="sqlite+aiosqlite:///:memory:", fernet_keys=Fernet.generate_key().decode()
    )
    return create_app(settings).openapi()


def operations(document: dict[str, Any]) -> Iterator[Operation]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def api_operations(document: dict[str, Any]) -> Iterator[Operation]:
    return ((p, m, o) for p, m, o in operations(document) if p.startswith(API))


def header(operation: dict[str, Any], name: str) -> dict[str, Any] | None:
    found = [p for p in operation.get("parameters", []) if p["in"] == "header"]
    return next((p for p in found if p["name"].lower() == name.lower()), None)


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def bodies(operation: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, media type object) of the request body and every response body."""
    for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
        yield f"request {media_type}", media
    for status, response in operation["responses"].items():
        for media_type, media in response.get("content", {}).items():
            yield f"response {status} {media_type}", media


def test_the_document_covers_the_whole_contract(document: dict[str, Any]) -> None:
    # Guards the walks below against walking nothing.
    assert len(list(api_operations(document))) >= 20
    assert any(p.startswith(RENTER_PATHS) for p, _, _ in api_operations(document))


def test_every_write_declares_an_optional_idempotency_key(document: dict[str, Any]) -> None:
    writes = {m.lower() for m in WRITE_METHODS}
    for path, method, operation in operations(document):
        declared = header(operation, "Idempotency-Key")
        if not (path.startswith(API) and method in writes):
            assert declared is None, f"{method} {path}: only writes are idempotent"
            continue
        assert declared is not None, f"{method} {path} does not declare Idempotency-Key"
        # The middleware runs a write without the header once, as any other request.
        assert declared["required"] is False
        assert declared["schema"]["pattern"] == VALID_IDEMPOTENCY_KEY.pattern
        assert "409" in operation["responses"], f"{method} {path}: a reused key is a 409"


def test_renter_operations_require_a_principal(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        principal = header(operation, "X-Principal-ID")
        renter = path.startswith(RENTER_PATHS)
        if not renter and principal is None:
            continue
        assert principal is not None, f"{method} {path} is a renter endpoint"
        # Elsewhere (backtests) a marketplace key may name a principal; it needs none.
        assert principal["required"] is renter, f"{method} {path}"
        for optional in ("X-Principal-Assertion", "X-Principal-Signature"):
            declared = header(operation, optional)
            assert declared is not None and declared["required"] is False, (
                f"{method} {path}: {optional}"
            )
        if renter:
            assert "403" in operation["responses"], f"{method} {path}: other scopes get 403"


def test_no_parameter_is_documented_as_null(document: dict[str, Any]) -> None:
    # Absent or a value: "null" is not something a header or a query string can carry.
    for path, method, operation in operations(document):
        for parameter in operation.get("parameters", []):
            assert "null" not in str(parameter["schema"]), f"{method} {path} {parameter['name']}"


def test_every_contract_header_can_be_sent_from_swagger(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    (name,) = [n for n, s in schemes.items() if s["type"] == "apiKey" and s["in"] == "header"]
    assert schemes[name]["name"] == "X-API-Key"
    for path, method, operation in operations(document):
        assert header(operation, "X-Request-ID") is not None, f"{method} {path}"
        for response in operation["responses"].values():
            assert "X-Request-ID" in response["headers"], f"{method} {path}"
        if path.startswith(API):
            assert operation["security"] == [{name: []}], f"{method} {path}"


def test_every_error_is_in_the_contract_shape(document: dict[str, Any]) -> None:
    error = document["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]
    info = resolve(document, error["properties"]["error"])
    assert set(info["required"]) == {"code", "message", "details"}
    assert "HTTPValidationError" not in str(document)
    for path, method, operation in operations(document):
        expected = {"431"}
        if path.startswith(API):
            expected |= EVERY_API_CALL_CAN_GET
        if "requestBody" in operation:
            expected.add("413")
        assert expected <= set(operation["responses"]), f"{method} {path}"
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            content = response.get("content", {})
            assert list(content) == ["application/json"], f"{method} {path} {status}"
            assert content["application/json"]["schema"] == {"$ref": ERROR_REF}, (
                f"{method} {path} {status}"
            )
        if "429" in operation["responses"]:
            assert operation["responses"]["429"]["headers"]["Retry-After"]["required"] is True


def test_every_body_has_an_example_that_fits_its_schema(document: dict[str, Any]) -> None:
    for path, method, operation in api_operations(document):
        for where, media in bodies(operation):
            schema = media["schema"]
            if "example" in media:
                examples = [media["example"]]
            elif "examples" in media:
                examples = [e["value"] for e in media["examples"].values()]
            else:
                examples = resolve(document, schema).get("examples", [])
            assert examples, f"{method} {path} {where} has no example"
            validator = jsonschema_rs.validator_for(
                {**schema, "components": document["components"]}
            )
            for example in examples:
                errors = [e.message for e in validator.iter_errors(example)]
                assert not errors, f"{method} {path} {where}: {errors}"


def _decimals(
    document: dict[str, Any], schema: dict[str, Any], where: str, seen: set[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, schema) of every decimal in a schema: pydantic writes one as a number or a
    string."""
    if "$ref" in schema:
        if schema["$ref"] in seen:
            return
        seen.add(schema["$ref"])
    schema = resolve(document, schema)
    branches = schema.get("anyOf", [])
    if {"number", "string"} <= {branch.get("type") for branch in branches}:
        yield where, schema
    for branch in branches:
        yield from _decimals(document, branch, where, seen)
    for name, part in schema.get("properties", {}).items():
        yield from _decimals(document, part, f"{where}.{name}", seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _decimals(document, schema[key], f"{where}[]", seen)


def test_every_decimal_a_request_gives_documents_its_bounds_and_spelling(
    document: dict[str, Any],
) -> None:
    # Without a pattern the document says any string is a decimal, and a client cannot tell
    # "12.5" from "twelve" before the API answers 422.
    found = [
        (f"{method} {path} {where}", schema)
        for path, method, operation in operations(document)
        for media in operation.get("requestBody", {}).get("content", {}).values()
        for where, schema in _decimals(document, media["schema"], "body", set())
    ]
    assert len(found) >= 15, found
    for where, schema in found:
        # Bounds pydantic could not put on the decimal land here as keywords no validator reads.
        assert not {"gt", "ge", "lt", "le", "decimal_places", "max_digits"} & set(schema), where
        by_type = {branch["type"]: branch for branch in schema["anyOf"]}
        assert {"minimum", "exclusiveMinimum"} & set(by_type["number"]), where
        pattern = by_type["string"]["pattern"]
        # JSON Schema searches: the pattern anchors itself.
        assert re.search(pattern, "12.5"), where
        for invalid in ("twelve", "12.5 ", " 12.5", "1_2.5", "12.123456789"):
            assert not re.search(pattern, invalid), (where, invalid)


async def test_the_served_document_is_the_contract_document(
    client: httpx.AsyncClient, app: Any
) -> None:
    served = await client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == app.openapi()


class _AssetLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


ASSET_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}


async def test_swagger_ui_loads_only_local_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert not re.search(r"https?://", page.text), "Swagger UI must not need the internet"
    parser = _AssetLinks()
    parser.feed(page.text)
    assert {link.rsplit(".", 1)[1] for link in parser.links} == {"js", "css", "png"}
    for link in parser.links:
        asset = await client.get(link)
        assert asset.status_code == 200, link
        suffix = "." + link.rsplit(".", 1)[1]
        content_type = asset.headers["content-type"].split(";")[0]
        assert content_type in ASSET_TYPES[suffix], (link, content_type)
        assert asset.content, link
    # The page loads the document from this server too.
    assert "'/openapi.json'" in page.text or '"/openapi.json"' in page.text


@pytest.fixture
async def docs_off_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings.model_copy(update={"docs_enabled": False}))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def test_docs_can_be_switched_off(docs_off_client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/openapi.json", "/docs/assets/swagger-ui-bundle.js", "/redoc"):
        response = await docs_off_client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "NOT_FOUND"
    assert (await docs_off_client.get("/health/live")).status_code == 200


# Every method HTTP defines that a client might try; a path serves some of them.
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _concrete(path: str) -> str:
    # Any value fits a path parameter's place: routing only needs the segment to be there.
    return re.sub(r"\{[^}]+\}", "x", path)


async def test_a_method_a_path_does_not_serve_is_a_405_that_lists_what_it_does(
    client: httpx.AsyncClient, app: Any
) -> None:
    for path, methods in app.openapi()["paths"].items():
        served = {method.upper() for method in methods}
        for method in sorted(set(HTTP_METHODS) - served):
            response = await client.request(method, _concrete(path))
            where = f"{method} {path}"
            assert response.status_code == 405, where
            assert set(response.headers["Allow"].split(", ")) == served, where
            if method != "HEAD":  # a HEAD answer has no body
                assert response.json() == {
                    "error": {
                        "code": "METHOD_NOT_ALLOWED",
                        "message": "Method Not Allowed",
                        "details": [],
                    }
                }, where
