"""Every personal and free-text value the demo publishes, and how to spot one in a log.

Derived from the scenario's own messages, read through the payload models: a value is
collected because its field is typed `PersonRef` (every field of it) or free text (`Name`,
`ShortText`: strings whose only constraint is "no control characters"), not because someone
remembered to list it. A new person field or free-text field in the scenario is checked
without touching the log test.

Long text (names, dates, descriptions) is searched as a bare substring. Short or ambiguous
values (a nationality "MM", an age 16) occur innocently in logs ("origin_country": "MM",
version 16), so they are searched as they would appear in a leaked record: next to their
field name (JSON `"nationality": "MM"`, console `nationality=MM`, a repr `'nationality':
'MM'`, escaped JSON inside JSON) or as a pydantic error's input (`input_value='MM'`).
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, get_args, get_origin

import orjson
from pydantic import BaseModel, StringConstraints
from pydantic.fields import FieldInfo

from schemas.common import PersonRef, ShortText
from schemas.registry import EVENT_TYPES
from services.demo import coordination, priorities
from services.demo.scenario import AgencyMessage, build_scenario

FREE_TEXT_PATTERN = next(m.pattern for m in get_args(ShortText) if isinstance(m, StringConstraints))
"""The one constraint `Name` and `ShortText` share: what makes a string free text."""
MIN_BARE_CHARS = 6
"""Shorter text is searched only in its leaked-record forms."""

Scalar = str | int | float | bool

# Around a key or a value: nothing, a quote, or a quote escaped inside a JSON string.
_QUOTE = r"""(?:\\?["'])?"""


@dataclass(frozen=True)
class ScenarioValue:
    """One value of one field of one published event."""

    path: str
    """Dotted field path in the payload, e.g. `person.nationality`, `place_of_safety`."""
    value: Scalar
    personal: bool
    """A `PersonRef` field (else free text)."""
    text: bool
    """Free text or a date: distinctive when long enough (codes, numbers and flags are not)."""

    @property
    def key(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    @property
    def bare(self) -> bool:
        return self.text and isinstance(self.value, str) and len(self.value) >= MIN_BARE_CHARS

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        value = _rendered(self.value)
        forms = [
            rf"(?<!\w){re.escape(self.key)}{_QUOTE}\s*[:=]\s*{_QUOTE}{value}(?![\w-])",
            rf"(?<!\w)input(?:_value)?{_QUOTE}\s*[:=]\s*{_QUOTE}{value}(?![\w-])",
        ]
        if self.bare:
            forms.append(value)
        return re.compile("|".join(forms))

    def found_in(self, text: str) -> bool:
        return self.pattern.search(text) is not None


def _rendered(value: Scalar) -> str:
    """The value as any renderer would write it (Python and JSON spellings of true/false)."""
    if isinstance(value, bool):
        return "(?:true|True)" if value else "(?:false|False)"
    if isinstance(value, str):
        escaped = json.dumps(value)[1:-1]
        return "(?:" + "|".join(dict.fromkeys(re.escape(v) for v in (value, escaped))) + ")"
    return re.escape(json.dumps(value))


def demo_messages(run: str = "LOGCHECK") -> list[AgencyMessage]:
    """What `casebridge demo` publishes: the pipeline scenario, every coordination scenario
    (each `*_steps` function of `services.demo.coordination`), then the priority acts (the
    business's report, the returnee's document request and her refused departure)."""
    steps = [
        fn
        for name, fn in inspect.getmembers(coordination, inspect.isfunction)
        if name.endswith("_steps") and fn.__module__ == coordination.__name__
    ]
    before, refused, after = priorities.document_request_steps(run)
    acts = [*priorities.business_report_steps(run), *before, *after]
    return [
        *build_scenario(run),
        *(s.message for fn in steps for s in fn(run)),
        *(s.message for s in acts),
        refused,
    ]


def scenario_values(messages: list[AgencyMessage] | None = None) -> list[ScenarioValue]:
    """Every personal and free-text value in `messages` (the demo's by default), once each."""
    found: dict[ScenarioValue, None] = {}
    for message in demo_messages() if messages is None else messages:
        headers = dict(message.headers)
        model = EVENT_TYPES[headers["ce_type"].decode()]
        for value in _walk(model, orjson.loads(message.value), ""):
            found.setdefault(value)
    return list(found)


def _annotation(field: FieldInfo) -> Any:
    """The field's type with its constraints, as written (pydantic splits `Annotated` off)."""
    if field.metadata:
        return Annotated[(field.annotation, *field.metadata)]
    return field.annotation


def _is_free_text(tp: Any) -> bool:
    if get_origin(tp) is Annotated:
        inner, *meta = get_args(tp)
        return any(
            isinstance(m, StringConstraints) and m.pattern == FREE_TEXT_PATTERN for m in meta
        ) or _is_free_text(inner)
    return any(_is_free_text(arg) for arg in _union_args(tp))


def _is_date(tp: Any) -> bool:
    if get_origin(tp) is Annotated:
        return _is_date(get_args(tp)[0])
    if isinstance(tp, type):
        return issubclass(tp, dt.date)
    return any(_is_date(arg) for arg in _union_args(tp))


def _union_args(tp: Any) -> tuple[Any, ...]:
    return get_args(tp) if get_origin(tp) in (typing.Union, types.UnionType) else ()


def _walk(tp: Any, value: Any, path: str) -> Iterator[ScenarioValue]:
    """The personal and free-text leaves of `value`, read as type `tp` (not validated: the
    demo's malformed event is walked as well)."""
    if value is None:
        return
    origin = get_origin(tp)
    if origin is Annotated:
        if isinstance(value, str) and _is_free_text(tp):
            yield ScenarioValue(path, value, personal=False, text=True)
        else:
            yield from _walk(get_args(tp)[0], value, path)
    elif origin in (typing.Union, types.UnionType):
        for arg in get_args(tp):
            yield from _walk(arg, value, path)
    elif origin in (tuple, list, set, frozenset) and isinstance(value, list):
        item = get_args(tp)[0] if get_args(tp) else Any
        for v in value:
            yield from _walk(item, v, path)
    elif isinstance(tp, type) and issubclass(tp, PersonRef) and isinstance(value, dict):
        for key, v in value.items():
            field = tp.model_fields.get(key)
            ftype = _annotation(field) if field is not None else Any
            text = _is_free_text(ftype) or _is_date(ftype)
            yield ScenarioValue(f"{path}.{key}".lstrip("."), v, personal=True, text=text)
    elif isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(value, dict):
        for name, field in tp.model_fields.items():
            key = field.alias or name
            yield from _walk(_annotation(field), value.get(key), f"{path}.{key}".lstrip("."))
