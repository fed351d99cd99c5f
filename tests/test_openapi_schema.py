"""schemathesis against the running server: every response matches the OpenAPI schema (status codes,
bodies, content types, server-sent events), no 5xx, and invalid input is refused with a 4xx.

Bounded: at most ``EXAMPLES`` generated requests per operation and mode, and a wall-clock budget
after which the remaining examples are skipped (the count run is checked to be substantial).
"""

from __future__ import annotations

import time

import pytest
from serve_helpers import ServerThread, make_tokenizer, micro_model

from murmur.engine import Engine
from murmur.serve.app import create_app

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

KEY = "sk-schema"
EXAMPLES = 40
BUDGET_S = 150.0


@pytest.mark.slow
def test_the_server_does_what_its_openapi_schema_says(tmp_path):
    from schemathesis import GenerationMode
    from schemathesis.checks import positive_data_acceptance

    tok = make_tokenizer(tmp_path / "tok")
    # A short context keeps every generated request quick (at most 32 tokens per choice).
    engine = Engine(micro_model(tok.vocab_size, max_seq_len=32), tok, max_batch=16, max_queue=64, name="m")
    with ServerThread(create_app(engine, api_key=KEY)) as url:
        schema = schemathesis.openapi.from_url(url + "/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
            "GET /v1/models", "POST /v1/chat/completions", "POST /v1/completions", "GET /health", "GET /metrics"}
        deadline = time.monotonic() + BUDGET_S
        ran = 0
        for op in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                @given(case=op.as_strategy(generation_mode=mode))
                @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
                def check(case) -> None:
                    nonlocal ran
                    if time.monotonic() > deadline:
                        return
                    ran += 1
                    # A request that fits the schema may still not fit the model's context (a 400 the
                    # schema cannot express), so "schema-valid data must be accepted" is not checked.
                    case.call_and_validate(base_url=url, headers={"Authorization": f"Bearer {KEY}"},
                                           excluded_checks=[positive_data_acceptance], timeout=60)

                try:
                    check()
                except Unsatisfiable:  # no invalid input exists (a GET without parameters)
                    assert mode == GenerationMode.NEGATIVE
        print(f"schemathesis: {ran} requests over {len(operations)} operations")
        assert ran >= 150, f"only {ran} requests in the time budget"
    assert engine.running == 0
