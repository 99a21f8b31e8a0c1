"""A bounded schemathesis run against the app's published OpenAPI: no 5xx, every answer as documented.

Schemathesis generates requests for every operation from ``/openapi.json`` (valid and invalid ones, derandomized
so a run is repeatable) and sends them to the real app in-process; each answer must not be a server error and
must match the documented status codes, content types and schemas.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.unit.web_support import RED, build_small_model, png

EXAMPLES_PER_OPERATION = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


def test_schemathesis_finds_no_5xx_and_no_schema_mismatch(tmp_path: Path) -> None:
    from mlupdate.web import create_app

    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "red.png").write_bytes(png(RED))
    app = create_app(build_small_model(tmp_path / "m.mlmodel"), tmp_path / "data", samples,
                     allowed_hosts=["testserver"])  # schemathesis' in-process client calls itself "testserver"
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 11
    started, calls, failures = time.monotonic(), 0, []

    for operation in operations:
        strategy = operation.as_strategy()

        @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case: schemathesis.Case) -> None:
            nonlocal calls
            calls += 1
            try:
                case.call_and_validate(headers={"X-Requested-With": "schemathesis"}, checks=CHECKS)
            except Exception as exc:  # noqa: BLE001 - collected, reported together below
                failures.append(f"{case.method} {case.path}: {exc}")

        run()
    elapsed = time.monotonic() - started
    assert not failures, "\n\n".join(failures[:5])
    assert calls >= len(operations) * 3 and elapsed < 30, (calls, elapsed)


@pytest.mark.parametrize("header", [{}, {"X-Requested-With": "schemathesis"}])
def test_every_documented_operation_answers_a_documented_status(tmp_path: Path, header: dict) -> None:
    """Without the client header, changes are refused with the documented 403, never a 5xx."""
    from fastapi.testclient import TestClient

    from mlupdate.web import create_app

    app = create_app(build_small_model(tmp_path / "m.mlmodel"), tmp_path / "data")
    with TestClient(app, base_url="http://127.0.0.1", headers=header) as c:
        spec = c.get("/openapi.json").json()
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                r = c.request(method.upper(), path.replace("{example_id}", "nope"))
                assert str(r.status_code) in op["responses"], (method, path, r.status_code, r.text)
