"""Write the published JSON Schemas: ``python -m schemas.generate [--check]``.

Output is deterministic (sorted keys, 2-space indent, trailing newline) so that the checked-in
files can be compared in CI: ``--check`` writes nothing and exits 1 listing stale files.

Each ``Generator`` owns one directory under ``schemas/`` and produces its complete contents;
files there that no longer correspond to anything are reported (and deleted on write). To add
AsyncAPI output, append a ``Generator("asyncapi", ...)`` to ``GENERATORS`` whose ``produce``
imports FastStream *inside* the function, so that ``schemas`` stays importable without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.envelope import envelope_json_schema
from schemas.privacy import REQUEST_TYPES
from schemas.registry import EVENT_TYPES
from schemas.topics import ERASURES, INBOUND_PREFIX

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "GENERATORS",
    "SCHEMAS_DIR",
    "Generator",
    "dump",
    "expected_files",
    "main",
    "stale_files",
    "write",
]

SCHEMAS_DIR = Path(__file__).resolve().parent
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True, slots=True)
class Generator:
    """Produces every file (name -> text) of one directory under ``schemas/``."""

    directory: str
    produce: Callable[[], Mapping[str, str]]


def dump(document: Mapping[str, Any]) -> str:
    """The canonical text form of a generated JSON document."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _payload_schema(event_type: str, model: type[BaseModel], topic: str) -> str:
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["$id"] = f"urn:casebridge:schema:{event_type}"
    schema["x-casebridge-event-type"] = event_type
    schema["x-casebridge-topic"] = topic
    return dump(schema)


def _json_schemas() -> dict[str, str]:
    files = {"envelope.json": dump(envelope_json_schema())}
    for event_type, model in sorted(EVENT_TYPES.items()):
        # An agency publishes to its own inbound topic.
        files[f"{event_type}.json"] = _payload_schema(
            event_type, model, INBOUND_PREFIX + "{agency-id}"
        )
    for event_type, model in sorted(REQUEST_TYPES.items()):
        # Only the data-protection officer's principal may write the erasures topic.
        files[f"{event_type}.json"] = _payload_schema(event_type, model, ERASURES.name)
    return files


GENERATORS: list[Generator] = [
    Generator("jsonschema", _json_schemas),
    # Generator("asyncapi", _asyncapi_documents),  # added by the services layer (FastStream)
]


def expected_files(root: Path = SCHEMAS_DIR) -> dict[Path, str]:
    """Every generated file's path and expected content."""
    expected: dict[Path, str] = {}
    for generator in GENERATORS:
        for name, text in generator.produce().items():
            expected[root / generator.directory / name] = text
    return expected


def _orphans(root: Path, expected: Mapping[Path, str]) -> list[Path]:
    found: list[Path] = []
    for generator in GENERATORS:
        directory = root / generator.directory
        if directory.is_dir():
            found.extend(p for p in directory.glob("*.json") if p not in expected)
    return sorted(found)


def stale_files(root: Path = SCHEMAS_DIR) -> list[Path]:
    """Generated files that are missing, outdated, or no longer generated."""
    expected = expected_files(root)
    stale = [
        path
        for path, text in expected.items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]
    return sorted(stale + _orphans(root, expected))


def write(root: Path = SCHEMAS_DIR) -> list[Path]:
    """Bring every generated file up to date; return the paths changed or removed."""
    expected = expected_files(root)
    changed: list[Path] = []
    for path, text in expected.items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    for path in _orphans(root, expected):
        path.unlink()
        changed.append(path)
    return sorted(changed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if any file is stale")
    parser.add_argument("--root", type=Path, default=SCHEMAS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.root)
        for path in stale:
            sys.stderr.write(f"stale: {path}\n")
        if stale:
            sys.stderr.write("run: python -m schemas.generate\n")
        return 1 if stale else 0
    for path in write(args.root):
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
