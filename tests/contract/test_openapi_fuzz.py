"""Property-based fuzzing of the service's OpenAPI document with schemathesis (in-process ASGI).

Every operation of ``/openapi.json`` is called with generated inputs, valid and invalid; each
response must be no server error (5xx) and conform to the document (status code documented,
body and headers matching the declared schema, content type declared). Generation is
deterministic (``derandomize=True``, no example database) and bounded (``MAX_EXAMPLES``
per operation), so the run takes seconds and fails the same way twice.

One check is left out: *schema-valid data must be accepted*. Some of the API's rules cannot
be written in JSON Schema (``sample_ids`` or ``subject_id``, ``method`` only with
``approximate``) and others depend on state (the model must exist, at most
``max_ids_per_request`` ids), so a schema-valid body can rightly get a 422 naming the field.
Negative data must still be rejected, and nothing may be a 5xx or undocumented.

Calls carry an ``admin`` key, so the fuzzer reaches the handlers instead of stopping at 401;
the auth errors themselves are covered by ``tests/unit/service/test_api.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

from obliviate import SISAConfig, TrainConfig, Workspace  # noqa: E402
from obliviate.service import ServiceSettings, create_app  # noqa: E402
from obliviate.testing import make_blobs  # noqa: E402

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 10
CONFIG = SISAConfig(
    shards=2,
    slices=2,
    model_options={"hidden": (8,)},
    train=TrainConfig(epochs=1, batch_size=16, lr=0.05),
)
_HEADERS: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The app's OpenAPI schema, loaded in-process over a tiny trained workspace."""
    previous = os.environ.get("OBLIVIATE_EXECUTOR")
    os.environ["OBLIVIATE_EXECUTOR"] = "inline"
    root: Path = tmp_path_factory.mktemp("fuzz") / "ws"
    workspace = Workspace.init(root)
    try:
        workspace.register(make_blobs(n=40, subjects=4), dataset="d")
        workspace.train(name="m", dataset="d", config=CONFIG)
        settings = ServiceSettings(workspace=root, batch_window_seconds=0.0, max_ids_per_request=50)
        app = create_app(settings, workspace=workspace)
        secret = app.state.obliviate.keys.create(name="fuzz", scopes=["admin"]).secret
        _HEADERS["Authorization"] = f"Bearer {secret}"
        yield schemathesis.openapi.from_asgi("/openapi.json", app)
    finally:
        workspace.close()
        if previous is None:
            os.environ.pop("OBLIVIATE_EXECUTOR", None)
        else:
            os.environ["OBLIVIATE_EXECUTOR"] = previous


def _fuzz(operation: Any, mode: Any) -> None:
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    # Hypothesis directly (schemathesis's pytest loader predates pytest 9's node API).
    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.call_and_validate(headers=dict(_HEADERS), excluded_checks=[positive_data_acceptance])

    run()


def _has_inputs(operation: Any) -> bool:
    return bool(operation.definition.raw.get("parameters") or operation.body)


def test_every_operation_conforms_and_never_fails(api_schema: Any) -> None:
    from schemathesis import GenerationMode

    operations = [result.ok() for result in api_schema.get_all_operations()]
    labels = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {"POST /v1/unlearn", "GET /v1/queue/summary", "POST /v1/predict"} <= labels
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, mode)
            except hypothesis.errors.Unsatisfiable:
                # No parameters and no body: there is no invalid input to generate.
                if mode is not GenerationMode.NEGATIVE or _has_inputs(operation):
                    failures.append(f"{operation.method.upper()} {operation.path}: unsatisfiable")
            except BaseException as exc:  # schemathesis raises an exception group
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                failures.append(
                    f"{operation.method.upper()} {operation.path} [{mode.value}]: {exc}"
                )
    assert not failures, "\n\n".join(failures)
