"""Generated JSON Schemas are current, deterministic, and the package stands alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from schemas import generate
from schemas.privacy import REQUEST_TYPES
from schemas.registry import EVENT_TYPES

REPO = Path(__file__).parents[3]


def test_checked_in_schemas_are_current() -> None:
    stale = generate.stale_files()
    assert not stale, "run: python -m schemas.generate\n" + "\n".join(map(str, stale))


def test_one_schema_per_event_type_plus_envelope() -> None:
    names = {p.name for p in generate.expected_files()}
    published = {*EVENT_TYPES, *REQUEST_TYPES}  # agencies' events, the officer's requests
    assert names == {f"{t}.json" for t in published} | {"envelope.json"}


def test_output_is_canonical() -> None:
    for text in generate.expected_files().values():
        document = json.loads(text)
        assert text == json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_check_reports_changed_missing_and_orphaned_files(tmp_path: Path) -> None:
    assert generate.main(["--root", str(tmp_path)]) == 0
    assert generate.main(["--root", str(tmp_path), "--check"]) == 0
    directory = tmp_path / "jsonschema"
    changed = directory / "envelope.json"
    changed.write_text("{}\n", encoding="utf-8")
    missing = directory / f"{next(iter(EVENT_TYPES))}.json"
    missing.unlink()
    orphan = directory / "org.casebridge.referral.submitted.v0.json"
    orphan.write_text("{}\n", encoding="utf-8")
    assert generate.stale_files(tmp_path) == sorted([changed, missing, orphan])
    assert generate.main(["--root", str(tmp_path), "--check"]) == 1
    assert generate.main(["--root", str(tmp_path)]) == 0
    assert generate.stale_files(tmp_path) == []
    assert not orphan.exists()


def test_schemas_import_without_service_dependencies(tmp_path: Path) -> None:
    # An integrator installs only pydantic: prove nothing else is imported.
    shutil.copytree(REPO / "schemas", tmp_path / "schemas")
    code = (
        "import sys\n"
        "import schemas.registry, schemas.envelope, schemas.topics, schemas.generate\n"
        "bad = {'faststream', 'sqlmodel', 'sqlalchemy', 'aiokafka', 'orjson', 'services'}\n"
        "loaded = bad & {m.split('.')[0] for m in sys.modules}\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)
