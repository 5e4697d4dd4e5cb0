"""The statistics release under k = 11: property tests over random case populations (and
consecutive pairs of them), plus examples a naive release would fail."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.statistics.release import (
    DIMENSIONS,
    K_ANONYMITY,
    CaseFacts,
    Node,
    Release,
    children_index,
    make_release,
    node_counts,
)

K = K_ANONYMITY
OUTCOMES = ("Active", "Closed", "FollowUp")

# Few values per dimension, so that random populations have cells on both sides of k.
facts_strategy = st.builds(
    CaseFacts,
    country=st.sampled_from(("ID", "TH")),
    month=st.sampled_from(("2026-10", "2026-11")),
    case_type=st.sampled_from(("referral", "returns")),
    exploitation_type=st.sampled_from(("forced_labour", "sexual_exploitation")),
    age_band=st.sampled_from(("adult", "minor")),
    gender=st.just("Female") | st.sampled_from(("Male", "Female")),
    outcome=st.sampled_from(OUTCOMES),
)
populations = st.lists(facts_strategy, max_size=400)
dense_facts = st.builds(
    CaseFacts,
    country=st.just("ID"),
    month=st.just("2026-11"),
    case_type=st.just("referral"),
    exploitation_type=st.just("forced_labour"),
    age_band=st.just("adult"),
    gender=st.sampled_from(("Male", "Female")),
    outcome=st.sampled_from(OUTCOMES),
)
"""Cells large enough to be published, so that changes between releases matter."""


@st.composite
def consecutive(draw: st.DrawFn) -> tuple[list[CaseFacts], list[CaseFacts]]:
    """A population, and a later one: some outcomes changed, new cases added."""
    facts = draw(st.sampled_from((facts_strategy, dense_facts)))
    first = draw(st.lists(facts, max_size=300))
    later = [
        dataclasses.replace(f, outcome=draw(st.sampled_from(OUTCOMES)))
        if draw(st.booleans())
        else f
        for f in first
    ]
    # At least k new cases: with fewer the release is empty (a test below shows it).
    return first, later + draw(st.lists(facts, min_size=K, max_size=150))


def assert_safe(release: Release, population: Sequence[CaseFacts]) -> None:
    """Exact counts, none small, parents published, remainders 0 or at least k."""
    truth = node_counts(population)
    for node, count in release.cells.items():
        assert count == truth.get(node, 0), node
        assert count >= K, (node, count)
        if node:
            assert node[:-1] in release.cells, node
    for node in release.cells:
        remainder = release.remainder(node)
        assert remainder == 0 or remainder >= K, (node, remainder)


def derivable_changes(before: Release, after: Release, node: Node) -> list[int]:
    """What a reader of both releases computes under `node`: each child published in both,
    and the rest of the node together (or the two remainders apart, when they can be)."""
    was, now = before.children(node), after.children(node)
    both = set(was) & set(now)
    changes = [now[c] - was[c] for c in both]
    if before.remainder(node) == 0:
        # Every child not published before was empty then.
        changes += [now[c] for c in set(now) - set(was)]
        changes.append(after.remainder(node) - sum(was[c] for c in set(was) - set(now)))
        return changes
    rest = (after.cells[node] - sum(now[c] for c in both)) - (
        before.cells[node] - sum(was[c] for c in both)
    )
    changes.append(rest)
    return changes


def assert_no_small_difference(before: Release, after: Release) -> None:
    for node in set(before.cells) & set(after.cells):
        change = after.cells[node] - before.cells[node]
        assert change == 0 or abs(change) >= K, (node, change)
        if len(node) == len(DIMENSIONS):
            continue
        changes = derivable_changes(before, after, node)
        sums = {0}
        for change in changes:  # every sum of some of them, computed here independently
            sums |= {s + change for s in sums}
        small = [s for s in sums if 0 < abs(s) < K]
        assert not small, (node, changes)


def published_totals_are_true_totals(release: Release, population: Sequence[CaseFacts]) -> None:
    truth = node_counts(population)
    by_country: dict[str, int] = {}
    for facts in population:
        by_country[facts.country] = by_country.get(facts.country, 0) + 1
    for node, count in release.cells.items():
        if len(node) == 1:
            assert count == by_country[node[0]]
        if node == ():
            assert count == len(population)
        assert count == truth[node]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(populations)
def test_no_published_cell_reveals_fewer_than_k_cases(population: list[CaseFacts]) -> None:
    release = make_release(population)
    assert_safe(release, population)
    published_totals_are_true_totals(release, population)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(consecutive())
def test_no_difference_between_consecutive_releases_reveals_fewer_than_k(
    pair: tuple[list[CaseFacts], list[CaseFacts]],
) -> None:
    first, later = pair
    before = make_release(first)
    after = make_release(later, previous=before)
    assert_safe(after, later)
    assert_no_small_difference(before, after)
    published_totals_are_true_totals(after, later)
    third = make_release(later + first[: len(first) // 2], previous=after, earlier=[before])
    assert_safe(third, later + first[: len(first) // 2])
    assert_no_small_difference(after, third)
    assert_no_small_difference(before, third)


# --- examples ------------------------------------------------------------------------------------

BASE = CaseFacts("ID", "2026-11", "referral", "forced_labour", "adult", "Female", "Active")


def cases(n: int, **changes: str) -> list[CaseFacts]:
    return [dataclasses.replace(BASE, **changes)] * n


def leaf(facts: CaseFacts) -> Node:
    return facts.values()


def test_a_population_with_every_cell_at_least_k_is_published_whole_and_exact() -> None:
    population = cases(11) + cases(12, gender="Male") + cases(30, country="TH", outcome="Closed")
    release = make_release(population)
    assert release.cells == node_counts(population)
    assert release.cells[()] == 53


def test_a_small_cell_and_its_complement_are_suppressed_the_rest_published() -> None:
    # Female 20, Male 3, Unknown 15 under one node: Male is primary, Unknown its complement
    # (the smallest other), so the node's remainder (18) reveals no group smaller than k.
    population = cases(20) + cases(3, gender="Male") + cases(15, gender="Unknown")
    release = make_release(population)
    parent = leaf(BASE)[:5]
    assert release.cells[parent] == 38
    assert release.children(parent) == {(*parent, "Female"): 20}
    assert release.remainder(parent) == 18
    assert_safe(release, population)


def test_a_single_small_cell_would_otherwise_be_recoverable_from_its_parent() -> None:
    # A naive release publishes Female 20 and the parent 23: 23 - 20 = 3 males.
    population = cases(20) + cases(3, gender="Male")
    release = make_release(population)
    parent = leaf(BASE)[:5]
    assert release.children(parent) == {}
    assert release.cells[parent] == 23


def test_fewer_than_k_cases_overall_publish_nothing() -> None:
    assert make_release(cases(10)).cells == {}
    assert make_release([]).cells == {}  # an empty release: "0 to 10 cases", never "none"


def test_a_cell_that_grew_by_fewer_than_k_is_withheld_in_the_next_release() -> None:
    first = cases(20) + cases(40, gender="Male")
    before = make_release(first)
    assert before.cells[leaf(BASE)] == 20
    after = make_release([*first, *cases(3), *cases(11, gender="Male")], previous=before)
    female = leaf(BASE)[:6]
    assert female not in after.cells  # 20 -> 23 would reveal 3 new cases
    assert female in after.withheld
    assert_no_small_difference(before, after)


def test_a_withheld_cell_is_compared_with_the_release_before_too() -> None:
    first = cases(20) + cases(40, gender="Male")
    r1 = make_release(first)
    later = [*first, *cases(3), *cases(11, gender="Male")]
    r2 = make_release(later, previous=r1)
    female = leaf(BASE)[:6]
    assert female not in r2.cells
    # Only Thailand changes: against r2 alone, Female (23) could come back; r1 said 20.
    third = later + cases(11, country="TH")
    assert female in make_release(third, previous=r2).cells
    r3 = make_release(third, previous=r2, earlier=[r1])
    assert female not in r3.cells
    assert r3.cells[("TH",)] == 11
    assert_no_small_difference(r1, r3)


def test_a_remainder_that_was_empty_cannot_grow_by_fewer_than_k() -> None:
    # Female 20, Male 20, nothing else; then Male 23 (withheld) and Unknown 15: publishing
    # Female 20 and Unknown 15 under a total of 58 would say the rest (Male) grew by 3.
    first = cases(20) + cases(20, gender="Male")
    before = make_release(first)
    later = [*first, *cases(3, gender="Male"), *cases(15, gender="Unknown")]
    after = make_release(later, previous=before)
    parent = leaf(BASE)[:5]
    assert after.cells[parent] == 58
    assert (*parent, "Unknown") not in after.cells
    assert_no_small_difference(before, after)


def test_cells_that_each_grew_by_k_or_more_are_published_again() -> None:
    first = cases(20) + cases(40, gender="Male")
    before = make_release(first)
    later = [*first, *cases(11), *cases(15, gender="Male")]
    after = make_release(later, previous=before)
    assert after.cells == node_counts(later)


def test_a_gain_and_a_loss_cannot_be_added_into_a_small_net_change() -> None:
    # 14 cases close: Active 40 -> 26, Closed 20 -> 34: -14 and +14, each safe and their sum 0
    # (and 11 new cases in Thailand, or the release would be empty).
    first = cases(40) + cases(20, outcome="Closed")
    before = make_release(first)
    moved = cases(26) + cases(34, outcome="Closed") + cases(11, country="TH")
    after = make_release(moved, previous=before)
    assert after.cells == node_counts(moved)
    # With 3 new active cases too, Indonesia grew by 3: only the grand total is published.
    later = moved + cases(3)
    assert make_release(later, previous=before).cells == {(): 74}


def test_a_release_after_fewer_than_k_new_cases_is_empty_even_after_none() -> None:
    first = cases(40) + cases(20, outcome="Closed")
    before = make_release(first)
    assert make_release(first + cases(3), previous=before).cells == {}
    assert make_release(first, previous=before).cells == {}  # so empty means 0 to 10
    assert make_release(first + cases(11), previous=before).cells[()] == 71


def test_outcome_changes_under_one_node_are_published_one_group_at_a_time() -> None:
    # Active 40 -> 25 (-15), Closed 20 -> 24 (+4, small), FollowUp 20 -> 31 (+11): withholding
    # Closed alone is not enough, a reader could add -15 and +11 into -4.
    first = cases(40) + cases(20, outcome="Closed") + cases(20, outcome="FollowUp")
    before = make_release(first)
    later = cases(25) + cases(24, outcome="Closed") + cases(31, outcome="FollowUp")
    after = make_release(later, previous=before)
    assert_no_small_difference(before, after)
    assert_safe(after, later)
    parent = leaf(BASE)[:6]
    assert len(after.children(parent)) < 3


def test_no_sum_of_changes_under_a_node_is_small() -> None:
    # Active 40 -> 25 (-15), Closed 20 -> 32 (+12), FollowUp 20 -> 34 (+14), the node +11:
    # each change is at least k, but -15 + 12 = -3.
    first = cases(40) + cases(20, outcome="Closed") + cases(20, outcome="FollowUp")
    before = make_release(first)
    later = cases(25) + cases(32, outcome="Closed") + cases(34, outcome="FollowUp")
    after = make_release(later, previous=before)
    parent = leaf(BASE)[:6]
    assert after.cells[parent] == 91
    assert len(after.children(parent)) < 3
    assert_no_small_difference(before, after)


def test_children_index_lists_each_nodes_children() -> None:
    index = children_index([(), ("ID",), ("TH",), ("ID", "2026-11")])
    assert index[()] == {("ID",), ("TH",)}
    assert index[("ID",)] == {("ID", "2026-11")}


def test_release_follows_the_documented_hierarchy() -> None:
    counts: Mapping[Node, int] = node_counts(cases(11))
    assert max(len(n) for n in counts) == len(DIMENSIONS) == 7
