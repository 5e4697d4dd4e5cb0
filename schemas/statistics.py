"""Regional statistics on the wire: one release of aggregate case counts under k-anonymity.

Published on ``casebridge.statistics.regional`` by ``casebridge statistics release --publish``
(services/statistics), which only the ``casebridge-statistics`` principal may write and the
partners the access plan names may read. A release holds counts only: no case id, no person.
Cells follow one hierarchy of dimensions (``dimensions``); a cell names the values of the first
``len(values)`` of them, and a cell that is absent is empty or suppressed (the two are
deliberately indistinguishable).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictInt, StringConstraints

from schemas.common import StrictModel, Timestamp

__all__ = ["STATISTICS_RELEASED", "StatisticsCell", "StatisticsRelease"]

STATISTICS_RELEASED = "org.casebridge.statistics.released.v1"

CellValue = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class StatisticsCell(StrictModel):
    """The number of cases whose first ``len(values)`` dimensions have these values."""

    values: Annotated[list[CellValue], Field(max_length=16)]
    count: Annotated[StrictInt, Field(ge=0)]


class StatisticsRelease(StrictModel):
    """A release: every published cell, exact, each at least k (none with fewer cases)."""

    release_id: Annotated[str, StringConstraints(max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    made_at: Timestamp
    k: Annotated[StrictInt, Field(ge=2)]
    dimensions: Annotated[list[CellValue], Field(min_length=1, max_length=16)]
    cells: list[StatisticsCell]
