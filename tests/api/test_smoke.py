import httpx


async def test_health_and_docs(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    assert (await client.get("/health/ready")).status_code == 200
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = (await client.get("/openapi.json")).json()
    assert "X-API-Key" in str(schema["components"]["securitySchemes"])


async def test_admin_creates_and_lists_keys(client: httpx.AsyncClient, admin_key: str) -> None:
    response = await client.post(
        "/api/v1/api-keys",
        json={"name": "canister", "scope": "marketplace"},
        headers={"X-API-Key": admin_key},
    )
    assert response.status_code == 201, response.text
    assert response.json()["key"].startswith("bmk_")
    listed = await client.get("/api/v1/api-keys", headers={"X-API-Key": admin_key})
    assert listed.status_code == 200
    assert {k["name"] for k in listed.json()["items"]} == {"admin", "canister"}
