"""schemathesis over the server's own OpenAPI document, against a real `layerops serve` process.

Every documented operation gets seeded positive and negative cases (a few hundred in all; `make
fuzz` runs thousands): no answer may be a 5xx, and every answer must have a documented status,
content type and body schema. `positive_data_acceptance` is left out on purpose: the generic
schemas of the V2 and MLflow routes admit bodies that a given model refuses (unknown tensor
names), and a 4xx is the right answer to those.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.delivery.conftest import USER
from tests.delivery.test_serve_process import Server

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = int(os.environ.get("LAYEROPS_FUZZ_EXAMPLES", "12"))
"""Cases per operation and mode: 12 in the suite (a few hundred in all); `make fuzz` sets 300."""


@pytest.fixture(scope="module")
def live_server(served_home: Path) -> Iterator[Server]:
    """`layerops serve` over the shared demo home (iris and shipping), polling off."""
    server = Server(served_home, "--reload-interval", "0")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def fuzz_operations(url: str, headers: dict[str, str], examples: int) -> tuple[int, list[str]]:
    """Seeded positive and negative cases for every operation of `url`'s OpenAPI document.

    Returns the number of cases sent and one line per operation and mode that failed a check.
    """
    api = schemathesis.openapi.from_url(f"{url}/openapi.json")
    sent = 0
    failures: list[str] = []
    for result in api.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                derandomize=True,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate],
            )
            def run(case: Any) -> None:
                nonlocal sent
                sent += 1
                case.call_and_validate(
                    headers=headers, excluded_checks=[positive_data_acceptance], timeout=30
                )

            try:
                run()
            except Unsatisfiable:
                pass  # nothing about this operation can be made invalid (no parameter, no body)
            except (Exception, BaseExceptionGroup) as exc:  # every operation is tried; all are reported
                first = str(exc).strip().splitlines()[:12]
                failures.append(f"{operation.label} [{mode.value}]: " + " | ".join(first))
    return sent, failures


def test_every_operation_answers_as_documented(live_server: Server) -> None:
    sent, failures = fuzz_operations(live_server.url, USER, EXAMPLES_PER_OPERATION)
    assert not failures, "\n".join(failures)
    assert sent >= 100, sent  # the document lists every route; each got its cases
