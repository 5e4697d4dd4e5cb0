"""Fixtures shared by every test layer. The real stack starts only if a test asks for it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.stack import Stack, start_cluster, start_stack, stop_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """A real Kafka broker and PostgreSQL server for the whole session."""
    started = start_stack()
    try:
        yield started
    finally:
        stop_stack(started)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Stack]:
    """A three-node Kafka KRaft cluster (RF 3, min.insync 2) with its own PostgreSQL, for the
    session's tests that need more than one broker; started on first use."""
    started = start_cluster(3)
    try:
        yield started
    finally:
        stop_stack(started)


@pytest.fixture
def namespace() -> str:
    """A topic and consumer-group namespace of the test's own, so tests never see each other."""
    return f"t{uuid.uuid4().hex[:10]}."
