"""Property-based fuzzing of the whole /v1 API from its own OpenAPI document.

Schemathesis generates valid and invalid requests for every operation and
checks each response: no 5xx, the status code and body are the documented
ones. A refused request must be a 4xx with our error shape.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.integration.harness import TOKEN, Server

ECHO = {"app.py": "def handler(event, context):\n    return event\n"}


@schemathesis.serializer("application/zip")
def _zip_body(ctx: Any, value: Any) -> bytes:
    """Code uploads are raw bytes: whatever the generator made, sent as is."""
    del ctx
    if isinstance(value, bytes):
        return value
    return str(value).encode()


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("fuzz") / "data").start()
    srv.deploy("fuzzfn", ECHO)
    yield srv
    srv.stop()
    srv.close()


def test_api_answers_every_request_as_documented(fuzz_server: Server) -> None:
    """Every operation, valid and invalid inputs (driven through Hypothesis directly:
    schemathesis' pytest plugin does not run under pytest 9)."""
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8

    for operation in operations:
        _fuzz_operation(operation, fuzz_server.url, headers)
    # the server still serves everyone else
    assert fuzz_server.invoke("fuzzfn", {"still": "alive"})["result"] == {"still": "alive"}


def _fuzz_operation(operation: Any, base_url: str, headers: dict[str, str]) -> None:
    # Some validity cannot be said in OpenAPI, so schema-valid input may still be refused:
    # a code upload must be a real zip; a function needs an uploaded package that holds its
    # handler, and a runtime this machine has. Every other check still runs on them.
    # And a qualifier given both in the invocation path and in ?qualifier= must agree.
    # A bucket name must also follow S3's rules that a pattern does not say (no "..", not
    # like an IP address), and be free across the server.
    state_dependent = {
        "POST /v1/buckets",
        "PUT /v1/code",
        "PUT /v1/functions/{name}",
        "PATCH /v1/functions/{name}",
        "POST /v1/functions/{name}/invocations",
    }
    excluded = (
        [schemathesis.checks.positive_data_acceptance] if operation.label in state_dependent else []
    )

    @settings(
        max_examples=int(os.environ.get("NIMBUS_FUZZ_EXAMPLES", "25")),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        if case.query:
            case.query.pop("follow", None)  # a followed log stream never ends by design
        response = case.call_and_validate(
            base_url=base_url, headers=headers, excluded_checks=excluded
        )
        assert response.status_code < 500, f"{operation.label}: {response.status_code}"
        if response.status_code >= 400:
            assert "code" in response.json()["error"]

    check()
