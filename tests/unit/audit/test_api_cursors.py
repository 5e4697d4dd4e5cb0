"""Page cursors are opaque, round-trip, and anything else is a clean ValueError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.audit.queries import MAX_SEQ, decode_cursor, encode_cursor


@given(kind=st.sampled_from(["e", "h"]), position=st.integers(min_value=0, max_value=MAX_SEQ))
def test_cursors_round_trip(kind: str, position: int) -> None:
    cursor = encode_cursor(kind, position)
    assert cursor.isascii()
    assert str(position) not in cursor or position < 10  # opaque, not the number itself
    assert decode_cursor(kind, cursor) == position


def test_a_cursor_of_another_list_is_refused() -> None:
    with pytest.raises(ValueError, match="malformed"):
        decode_cursor("h", encode_cursor("e", 5))


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!",
        "ZTo",
        "ZTotMQ",
        "ZTox" * 20,
        encode_cursor("e", 5) + "=",
        encode_cursor("e", 10**20),
    ],
)
def test_malformed_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        decode_cursor("e", cursor)


@given(st.text(max_size=60))
def test_any_text_either_decodes_or_raises_value_error(text: str) -> None:
    try:
        position = decode_cursor("e", text)
    except ValueError:
        return
    assert 0 <= position <= MAX_SEQ
