"""The Lambda API's routes are botocore's operations (same method, same path) and each is
documented in docs/lambda-api.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, cast

import botocore.session

from nimbus.compat import lambda_ops
from nimbus.compat.lambda_api import API_PATH

if TYPE_CHECKING:
    from nimbus.app import Platform

DOC = (Path(__file__).resolve().parents[2] / "docs" / "lambda-api.md").read_text(encoding="utf-8")
MODEL = botocore.session.get_session().get_service_model("lambda")
#: Served, but not a Lambda operation: where GetFunction's Code.Location points.
NIMBUS_ONLY = {("GET", "/2015-03-31/functions/{function}/code")}


def _model_operations() -> dict[tuple[str, str], str]:
    """(method, path with our parameter names) → operation name, for every operation."""
    out = {}
    for name in MODEL.operation_names:
        http = MODEL.operation_model(name).http
        path = http["requestUri"].split("?", 1)[0].rstrip("/") or "/"
        path = path.replace("{FunctionName}", "{function}").replace("{Name}", "{alias}")
        out[(http["method"], path)] = name
    return out


def _served() -> list[tuple[str, str]]:
    routes = lambda_ops.routes(cast("Platform", object()))
    return [(r.method, "/" + "/".join(r.pattern)) for r in routes]


def test_every_route_is_a_botocore_operation() -> None:
    operations = _model_operations()
    for method, path in _served():
        assert API_PATH.match(path), path
        if (method, path) in NIMBUS_ONLY:
            continue
        assert (method, path) in operations, f"{method} {path} is no Lambda operation"


def test_every_served_operation_is_documented() -> None:
    operations = _model_operations()
    served = [operations[r] for r in _served() if r not in NIMBUS_ONLY]
    assert len(served) >= 18
    missing = [op for op in served if not re.search(rf"`{op}`", DOC)]
    assert not missing, f"docs/lambda-api.md does not list {missing}"
