"""Property-based fuzzing of every operation in our OpenAPI document (schemathesis).

Generated bodies, path parameters and Bearer values go to the ASGI app: nothing may
answer 5xx, and every answer must be one the document declares, with the declared body.
Bounded: a fixed number of examples per operation.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings

from project.asgi import application

schema = schemathesis.openapi.from_asgi("/api/openapi.json", application)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation(case):
    case.call_and_validate()
