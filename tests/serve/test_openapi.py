"""The JSON API against its own OpenAPI document: schemathesis finds no 5xx and no
response that breaks the schema."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.serve.conftest import LiveServer


@pytest.fixture(scope="module")
def api_schema(live_server: LiveServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")


def test_document_describes_every_endpoint(live_server: LiveServer) -> None:
    doc = httpx.get(f"{live_server.url}/openapi.json").json()
    paths = set(doc["paths"])
    for endpoint in (
        "search",
        "tracks/{track_id}",
        "albums/{album_id}",
        "artists/{artist_id}",
        "shuffle",
        "stats",
        "torrents",
    ):
        assert f"/api/v1/{endpoint}" in paths
    track = doc["components"]["schemas"]["Track"]
    assert {"id", "title", "artists", "availability"} <= set(track["properties"])


def test_api_conforms(api_schema: schemathesis.BaseSchema) -> None:
    """Each operation with generated parameters (valid and not): never a 5xx, and every
    response matches the document."""
    operations = [r.ok() for r in api_schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 7
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def check(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            case.call_and_validate()

        check()
