"""The console API's OpenAPI document is checked in (docs/console-openapi.json) and current."""

from __future__ import annotations

import json

from services.console.app import openapi_document
from services.runtime.settings import REPO_ROOT

CHECKED_IN = REPO_ROOT / "docs" / "console-openapi.json"


def test_checked_in_openapi_is_current() -> None:
    current = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    assert CHECKED_IN.read_text() == current, (
        "docs/console-openapi.json is stale: casebridge console openapi > docs/console-openapi.json"
    )


def test_every_case_endpoint_needs_a_session() -> None:
    doc = openapi_document()
    paths: dict[str, dict[str, dict[str, object]]] = doc["paths"]  # type: ignore[assignment]
    guarded = [
        (path, method)
        for path, ops in paths.items()
        for method, op in ops.items()
        if not (path == "/api/v1/session" and method == "post")
    ]
    assert len(guarded) == 4
    for path, method in guarded:
        assert paths[path][method].get("security") == [{"sessionToken": []}], (path, method)
