"""What a process is configured with, for the operator: every setting of the settings classes,
its value, where the value came from, and whether it is a secret (never shown).

`casebridge config` prints the live view; `casebridge config --reference` prints the
configuration reference the README carries (tested to match these classes). The classes
document their fields with attribute docstrings, which pydantic reads into each field's
description (`use_attribute_docstrings`): one place to describe a knob.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from services.runtime.settings import REPO_ROOT

MASK = "********"
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


@dataclass(frozen=True)
class Setting:
    variable: str
    """The environment variable, e.g. CASEBRIDGE_KAFKA_BOOTSTRAP."""
    value: str
    """As configured, secrets masked (`MASK`), unset ones empty."""
    source: str
    """`environment` or `default`."""
    secret: bool
    type: str
    default: str
    description: str


def settings_of(instance: BaseSettings, environ: Mapping[str, str] | None = None) -> list[Setting]:
    """Every field of a settings object, in declaration order."""
    env = {k.upper(): v for k, v in (os.environ if environ is None else environ).items()}
    prefix = str(type(instance).model_config.get("env_prefix", "")).upper()
    out = []
    for name, field in type(instance).model_fields.items():
        variable = prefix + name.upper()
        secret = _is_secret(field.annotation)
        value = getattr(instance, name)
        shown = "" if value is None else MASK if secret else _without_password(str(value))
        out.append(
            Setting(
                variable=variable,
                value=shown,
                source="environment" if variable in env else "default",
                secret=secret,
                type=_type_name(field.annotation),
                default=_default(field, secret),
                description=_description(type(instance), name, field),
            )
        )
    return out


def _without_password(text: str) -> str:
    """A URL's password masked (`scheme://user:password@host`): settings are meant to carry
    none, but one pasted into a URL must not be printed."""
    return _URL_PASSWORD.sub(rf"\g<1>{MASK}@", text)


def table(settings: Sequence[Setting]) -> list[str]:
    """`casebridge config`: one line per setting, aligned."""
    head = ("setting", "value", "source", "secret")
    rows = [
        (s.variable, s.value or "(unset)", s.source, "yes" if s.secret else "") for s in settings
    ]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in (head, *rows)
    ]


def reference(classes: Sequence[type[BaseSettings]]) -> list[str]:
    """The Markdown configuration reference: every variable, its type, default and meaning."""
    lines = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for cls in classes:
        prefix = str(cls.model_config.get("env_prefix", "")).upper()
        for name, field in cls.model_fields.items():
            secret = _is_secret(field.annotation)
            meaning = _description(cls, name, field).replace("|", "\\|").replace("\n", " ")
            default = _default(field, secret).replace("|", "\\|")
            lines.append(
                f"| `{prefix + name.upper()}` | {_type_name(field.annotation)}"
                f"{' (secret)' if secret else ''} | {default} | {meaning} |"
            )
    return lines


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(a) for a in typing.get_args(annotation))


def _type_name(annotation: Any) -> str:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return " or ".join(repr(a) for a in args)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " or ".join(_type_name(a) for a in args)
    if annotation is type(None):
        return "unset"
    name = getattr(annotation, "__name__", str(annotation))
    names = {"str": "text", "SecretStr": "text", "int": "integer", "float": "number"}
    return names.get(name, "path" if name == "Path" else name)


def _default(field: FieldInfo, secret: bool) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "(unset)"
    if secret:
        return MASK
    if isinstance(value, Path) and value.is_relative_to(REPO_ROOT):
        value = value.relative_to(REPO_ROOT)  # the same in every checkout
    text = str(value)
    return f"`{text}`" if text else '`""`'


def _description(cls: type[BaseSettings], name: str, field: FieldInfo) -> str:
    """The field's attribute docstring (`use_attribute_docstrings` in the class's config)."""
    return " ".join((field.description or "").split())
