"""A statistics release under k-anonymity, with complementary suppression and differencing
protection. Pure: no I/O; `services/statistics/feed.py` reads the cases and publishes.

Design: one hierarchy of nested tables
--------------------------------------
Counts are published along one fixed hierarchy of the dimensions (`DIMENSIONS`): the grand
total, then per country, per country and month, per country, month and case type, ... down to
the full cross-tabulation (country, month, case type, exploitation type, age band, gender,
outcome). A *node* is a prefix of values (the root is `()`); its count is the number of cases
that agree on that prefix, and its children split it by the next dimension, so every case sits
in exactly one leaf and every node's count is the sum of its children's. Several overlapping
tables (say per country x gender and per month x gender) would be linked tables, whose
complementary suppression is a hard problem and whose safety we could not prove; one tree we
can. The outcome is the last level, so a case whose outcome changes moves between siblings only.

Within one release
------------------
- A node is published only if its parent is (the root excepted), with its exact count, and only
  if that count is at least `k`; with fewer than `k` cases in all, even none, a release is
  empty (so an empty release does not tell "none" from "a few"). Cells that are not
  published are simply absent: an absent cell reads "0 or suppressed", so a suppressed cell is
  indistinguishable from an empty one (listing it as suppressed would reveal that a small group
  exists).
- Complementary suppression: under every published node, the *remainder* (its count minus its
  published children's) is 0 or at least `k`; while it is not, the smallest published child
  joins the remainder. Since the node itself is 0 or at least `k`, this ends.

Why that is safe: walk a case down the tree; it stops at a published leaf or in the remainder of
the last published node on its path. These *atoms* partition the population, each has 0 or at
least `k` cases, and the release is exactly their sizes (every published count is a sum of
atoms, every remainder is one atom). Two populations that differ only in how cases are spread
inside atoms give the same release, so no count the release determines is smaller than `k`
unless it is 0.

Between consecutive releases
----------------------------
Given the previous release, under every node published in both, the reader can also compute
changes: of each child published in both (a *singleton*), and of the rest taken together (the
children published in neither or in only one release, the *union*; when the previous remainder
was empty, or its children are all published now, the previous and the current remainders
separately). The rules:
- a node published in both releases changed by 0 or by at least `k` (else it is withheld);
- every such group's change is 0 or at least `k` in size;
- a reader may add changes up: when a group under a node shrank (cases changed outcome, or an
  age or gender was corrected), no sum of some of the node's changes may be small either (a
  gain of 15 and a loss of 12 make 3); with gains only, every sum is 0 or at least `k`.
A violation withholds the smallest published child (it joins the remainder, merging groups)
until none is left; with no child published, the only group is the node itself, already
checked. Releases therefore may publish fewer cells than the previous one: publishing a stale
count instead would make the totals wrong, and published totals are always exact.

The same rules hold against every release passed as `earlier` (the feed passes the last ones
it made): a cell withheld in one release for a small change, and published in the next, is
then also compared with the release before. The rules are checked pair by pair; what a reader
could combine from three releases at once is not analysed.

Not covered: gains and losses under *different* nodes can still be added by a reader (a loss of
12 in one month's outcomes and a gain of 15 in another's); each is at least `k` and they concern
disjoint sets of cases, but their sum is not a group. Withholding a cell for its change is itself
a sign that something under it moved, but never only that: complements are withheld too.

The grand total is the exception: a release is empty when the total differs from a past
release's by fewer than `k`, *including 0*, so that an empty release says "fewer than `k` new
cases (perhaps none)", never "a few". Release less often rather than more.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

K_ANONYMITY: Final = 11
"""CTDC's threshold: no published count, and no published change, of 1 to 10 cases."""

DIMENSIONS: Final = (
    "country",
    "month",
    "case_type",
    "exploitation_type",
    "age_band",
    "gender",
    "outcome",
)
"""The hierarchy, outermost first."""

Node = tuple[str, ...]
"""A prefix of dimension values; `()` is the grand total."""


@dataclass(frozen=True, slots=True, order=True)
class CaseFacts:
    """What a case contributes to the statistics: no identifier, no name, no date of birth."""

    country: str
    month: str
    """`YYYY-MM`, the month the case was opened."""
    case_type: str
    exploitation_type: str
    age_band: str
    gender: str
    outcome: str

    def values(self) -> Node:
        return (
            self.country,
            self.month,
            self.case_type,
            self.exploitation_type,
            self.age_band,
            self.gender,
            self.outcome,
        )


@dataclass(frozen=True, slots=True)
class Release:
    """The published cells (node -> exact count); an absent node is 0 or suppressed."""

    k: int
    cells: Mapping[Node, int]
    made_at: dt.datetime | None = None
    dimensions: tuple[str, ...] = DIMENSIONS
    withheld: tuple[Node, ...] = field(default=(), compare=False)
    """Nodes of at least k cases withheld: complements, and changes since the last release."""

    def children(self, node: Node) -> dict[Node, int]:
        depth = len(node) + 1
        return {n: v for n, v in self.cells.items() if len(n) == depth and n[:-1] == node}

    def remainder(self, node: Node) -> int:
        """The node's count less its published children's: the suppressed part, summed."""
        return self.cells[node] - sum(self.children(node).values())


def node_counts(population: Iterable[CaseFacts]) -> dict[Node, int]:
    """Every non-empty node's count (all prefixes of every case's values)."""
    counts: dict[Node, int] = defaultdict(int)
    for facts in population:
        values = facts.values()
        for depth in range(len(values) + 1):
            counts[values[:depth]] += 1
    counts.setdefault((), 0)
    return dict(counts)


def small(n: int, k: int) -> bool:
    """A count or a change that would reveal a group smaller than k (0 reveals nothing)."""
    return 0 < abs(n) < k


@dataclass(frozen=True, slots=True)
class _Index:
    now: Mapping[Node, set[Node]]
    before: Mapping[Node, set[Node]]
    """Children of the past release's cells."""


def _change_groups(
    node: Node,
    published: set[Node],
    counts: Mapping[Node, int],
    previous: Release,
    index: _Index,
) -> list[tuple[int, set[Node]]]:
    """The changes a reader can compute under `node` from the two releases, each with the
    published children whose withholding would merge its group into a larger one."""
    before = {c: previous.cells[c] for c in index.before.get(node, ())}
    both = published & set(before)
    groups = [(counts[c] - before[c], {c}) for c in sorted(both)]
    old_remainder = previous.cells[node] - sum(before.values())
    # The previous remainder's children, as far as the current counts show them.
    hidden_before = {c for c in index.now.get(node, ()) if c not in before}
    hidden_now = set(before) - published
    remainder_now = counts.get(node, 0) - sum(counts[c] for c in published)
    if old_remainder == 0:
        # Every child unpublished before was empty: a reader knows each child published now
        # changed by its whole count, and the current remainder by what it holds beyond the
        # newly withheld children's previous counts.
        groups += [(counts[c], {c}) for c in sorted(published - set(before))]
        groups.append((remainder_now - sum(before[c] for c in hidden_now), set(published)))
    elif hidden_before and hidden_before <= published:
        # Each is published now (unless one has emptied since): a reader may compute the
        # previous and the current remainder's changes separately.
        groups.append((sum(counts[c] for c in hidden_before) - old_remainder, set(hidden_before)))
        groups.append((remainder_now - sum(before[c] for c in hidden_now), set(hidden_before)))
    else:
        rest_now = counts.get(node, 0) - sum(counts[c] for c in both)
        rest_before = previous.cells[node] - sum(before[c] for c in both)
        groups.append((rest_now - rest_before, set(both)))
    return groups


def children_index(nodes: Iterable[Node]) -> dict[Node, set[Node]]:
    """Each node's children among `nodes`."""
    index: dict[Node, set[Node]] = defaultdict(set)
    for n in nodes:
        if n:
            index[n[:-1]].add(n)
    return index


def _violation(
    node: Node,
    published: set[Node],
    counts: Mapping[Node, int],
    pasts: Sequence[tuple[Release, _Index]],
    k: int,
) -> Node | None:
    """A child to withhold so that `node`'s children break no rule, or None if they do not."""
    if not published:
        return None

    def smallest(among: Iterable[Node]) -> Node:
        return min(
            (c for c in among if c in published),
            key=lambda c: (counts[c], c),
            default=min(published, key=lambda c: (counts[c], c)),
        )

    if small(counts.get(node, 0) - sum(counts[c] for c in published), k):
        return smallest(published)
    for past, index in pasts:
        if node not in past.cells:
            continue
        groups = _change_groups(node, published, counts, past, index)
        for change, merge_by_withholding in groups:
            if small(change, k):
                return smallest(merge_by_withholding)
        if any(change < 0 for change, _ in groups) and any(
            small(total, k) for total in subset_sums(change for change, _ in groups)
        ):
            return smallest(c for change, fix in groups if change != 0 for c in fix)
    return None


def subset_sums(changes: Iterable[int]) -> set[int]:
    """Every sum of some of `changes`: what a reader can add up."""
    sums = {0}
    for change in changes:
        if change:
            sums |= {s + change for s in sums}
    return sums


def make_release(
    population: Iterable[CaseFacts],
    *,
    k: int = K_ANONYMITY,
    previous: Release | None = None,
    earlier: Sequence[Release] = (),
    made_at: dt.datetime | None = None,
) -> Release:
    """The cells that may be published about `population`, given the previous release (and,
    to be safe against them too, the `earlier` ones)."""
    if k < 2:
        raise ValueError("k must be at least 2")
    counts = node_counts(population)
    now = children_index(counts)
    # A release along other dimensions shares no cell with this one.
    pasts = [
        (past, _Index(now, children_index(past.cells)))
        for past in (*earlier, *([previous] if previous is not None else []))
        if past.dimensions == DIMENSIONS
    ]
    withheld: list[Node] = []
    total = counts[()]
    # An empty release must not tell "a few new cases" from none: so it is empty whenever the
    # total moved by fewer than k, 0 included (and a release is made only with k new cases).
    if total < k or any(() in past.cells and abs(total - past.cells[()]) < k for past, _ in pasts):
        return Release(k=k, cells={}, made_at=made_at)
    cells: dict[Node, int] = {(): total}
    frontier: list[Node] = [()]
    while frontier:
        node = frontier.pop()
        if len(node) == len(DIMENSIONS):
            continue
        published = {c for c in now.get(node, ()) if counts[c] >= k}
        for c in sorted(published):
            if any(c in past.cells and small(counts[c] - past.cells[c], k) for past, _ in pasts):
                published.discard(c)
                withheld.append(c)
        while (drop := _violation(node, published, counts, pasts, k)) is not None:
            published.discard(drop)
            withheld.append(drop)
        for c in sorted(published, reverse=True):
            cells[c] = counts[c]
            frontier.append(c)
    return Release(k=k, cells=cells, made_at=made_at, withheld=tuple(withheld))
