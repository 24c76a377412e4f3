"""The drift statistics against scipy on random samples, PSI against hand-computed values."""

from __future__ import annotations

import math
import warnings
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from layerops.monitoring import stats

TOLERANCE = 1e-9

values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
samples = st.lists(values, min_size=1, max_size=60)
tied_samples = st.lists(st.integers(-3, 3).map(float), min_size=1, max_size=60)
any_sample = samples | tied_samples


def _large_pair(seed: int, small: int, large: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """A reference of `small` and a current sample of `large` values (rounded: many ties)."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, small).round(2), rng.normal(shift, 1.2, large).round(2)


def _scipy_ks(reference: object, current: object) -> object:
    """`ks_2samp`, quiet when its exact p-value fails and it falls back to the asymptotic one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return scipy_stats.ks_2samp(reference, current)


@given(any_sample, any_sample)
def test_ks_equals_scipy(reference: list[float], current: list[float]) -> None:
    expected: Any = _scipy_ks(reference, current)
    statistic, p_value = stats.ks(reference, current)
    assert statistic == pytest.approx(expected.statistic, abs=TOLERANCE)
    assert p_value == pytest.approx(expected.pvalue, abs=TOLERANCE)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6000), st.integers(10_001, 60_000), st.floats(-0.3, 0.3))
def test_ks_on_large_samples_equals_scipy(seed: int, small: int, large: int, shift: float) -> None:
    reference, current = _large_pair(seed, small, large, shift)
    for first, second in ((reference, current), (current, reference)):
        expected: Any = scipy_stats.ks_2samp(first, second)
        statistic, p_value = stats.ks(first, second)
        assert statistic == pytest.approx(expected.statistic, abs=TOLERANCE)
        assert p_value == pytest.approx(expected.pvalue, abs=TOLERANCE)


two_or_more = st.lists(values, min_size=2, max_size=60) | st.lists(
    st.integers(-3, 3).map(float), min_size=2, max_size=60
)


@given(two_or_more, two_or_more)  # with one value each, scipy's own formula divides by zero
def test_asymptotic_ks_equals_scipys_asymp_method(reference: list[float], current: list[float]) -> None:
    expected: Any = scipy_stats.ks_2samp(reference, current, method="asymp")
    statistic, p_value = stats.ks_sorted(stats.prepare(reference), stats.prepare(current), exact=False)
    assert statistic == pytest.approx(expected.statistic, abs=TOLERANCE)
    assert p_value == pytest.approx(expected.pvalue, abs=TOLERANCE)


@given(any_sample, any_sample)
def test_wasserstein_equals_scipy(reference: list[float], current: list[float]) -> None:
    expected = scipy_stats.wasserstein_distance(reference, current)
    assert stats.wasserstein(reference, current) == pytest.approx(expected, rel=1e-12, abs=TOLERANCE)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6000), st.integers(6000, 60_000), st.floats(-1, 1))
def test_wasserstein_on_large_samples_equals_scipy(seed: int, small: int, large: int, shift: float) -> None:
    reference, current = _large_pair(seed, small, large, shift)
    expected = scipy_stats.wasserstein_distance(reference, current)
    assert stats.wasserstein(reference, current) == pytest.approx(expected, abs=TOLERANCE)
    assert stats.wasserstein(current, reference) == pytest.approx(expected, abs=TOLERANCE)


def test_missing_values_are_dropped_before_testing() -> None:
    rng = np.random.default_rng(3)
    reference, current = rng.normal(0, 1, 300), rng.normal(0.4, 1, 200)
    holed = np.concatenate([current, [np.nan] * 50])
    assert stats.ks(reference, holed) == stats.ks(reference, current)
    assert stats.wasserstein(np.append(reference, np.nan), holed) == stats.wasserstein(reference, current)


def test_empty_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        stats.ks([1.0, 2.0], [np.nan])
    with pytest.raises(ValueError, match="at least one value"):
        stats.wasserstein([], [1.0])


counts = st.lists(st.integers(0, 10_000), min_size=2, max_size=8)


@given(
    counts.flatmap(
        lambda ref: st.tuples(
            st.just(ref), st.lists(st.integers(0, 10_000), min_size=len(ref), max_size=len(ref))
        )
    )
)
def test_chi_square_equals_scipy(pair: tuple[list[int], list[int]]) -> None:
    reference, current = np.array(pair[0]), np.array(pair[1])
    kept = (reference + current) > 0
    statistic, p_value, dof = stats.chi_square(reference, current)
    if kept.sum() < 2 or reference.sum() == 0 or current.sum() == 0:
        assert (statistic, p_value, dof) == (0.0, 1.0, 0)
        return
    expected = scipy_stats.chi2_contingency([reference[kept], current[kept]], correction=False)
    assert statistic == pytest.approx(expected.statistic, rel=1e-12, abs=TOLERANCE)
    assert p_value == pytest.approx(expected.pvalue, abs=TOLERANCE)
    assert dof == expected.dof == kept.sum() - 1


def test_chi_square_drops_categories_empty_in_both_samples() -> None:
    with_empty = stats.chi_square([30, 0, 50, 20], [10, 0, 70, 25])
    assert with_empty == stats.chi_square([30, 50, 20], [10, 70, 25])
    assert with_empty[2] == 2


def test_chi_square_with_one_category_left_has_nothing_to_test() -> None:
    assert stats.chi_square([40, 0], [60, 0]) == (0.0, 1.0, 0)
    assert stats.chi_square([0, 0, 0], [0, 0, 0]) == (0.0, 1.0, 0)


def test_chi_square_refuses_vectors_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        stats.chi_square([1, 2], [1, 2, 3])


def test_psi_is_the_textbook_sum_with_epsilon_for_an_empty_bin() -> None:
    reference = [0.5, 0.3, 0.2, 0.0]
    current = [0.4, 0.3, 0.1, 0.2]
    expected = (
        (0.4 - 0.5) * math.log(0.4 / 0.5)
        + 0.0
        + (0.1 - 0.2) * math.log(0.1 / 0.2)
        + (0.2 - 1e-4) * math.log(0.2 / 1e-4)  # the empty reference bin counts as 1e-4
    )
    assert stats.EPSILON == 1e-4
    assert stats.psi(reference, current) == pytest.approx(expected, rel=1e-12)
    assert stats.psi(reference, current) == pytest.approx(1.6110, abs=1e-4)
    assert stats.psi(reference, current, epsilon=1e-3) == pytest.approx(
        expected - (0.2 - 1e-4) * math.log(0.2 / 1e-4) + (0.2 - 1e-3) * math.log(0.2 / 1e-3), rel=1e-12
    )


def test_psi_of_identical_shares_is_zero() -> None:
    assert stats.psi([0.25, 0.25, 0.5, 0.0], [0.25, 0.25, 0.5, 0.0]) == 0.0


shares_pair = st.integers(2, 10).flatmap(
    lambda k: st.tuples(
        *[st.lists(st.integers(0, 1000), min_size=k, max_size=k).filter(lambda v: sum(v) > 0)] * 2
    )
)


@given(shares_pair)
def test_psi_is_non_negative_and_symmetric(pair: tuple[list[int], list[int]]) -> None:
    reference, current = (np.array(v) / sum(v) for v in pair)
    assert stats.psi(reference, current) >= 0.0
    assert stats.psi(reference, current) == pytest.approx(stats.psi(current, reference), rel=1e-9, abs=1e-12)


def test_numeric_bins_are_the_reference_deciles_between_infinite_outer_edges() -> None:
    reference = np.arange(1.0, 101.0)
    edges = stats.numeric_bins(reference, bins=10)
    assert edges[0] == -math.inf and edges[-1] == math.inf
    assert list(edges[1:-1]) == pytest.approx(list(np.quantile(reference, np.arange(1, 10) / 10)))
    assert stats.shares(reference, edges) == pytest.approx([0.1] * 10)


def test_numeric_bins_deduplicate_tied_quantiles() -> None:
    assert list(stats.numeric_bins([5.0] * 50)) == [-math.inf, 5.0, math.inf]
    edges = stats.numeric_bins([0.0] * 50 + [1.0] * 50, bins=10)  # deciles 0, 0, 0, 0, 0.5, 1, 1, 1, 1
    assert list(edges) == [-math.inf, 0.0, 0.5, 1.0, math.inf]
    assert stats.shares([0.0, 0.25, 0.5, 1.0, 2.0, np.nan], edges) == pytest.approx([0.0, 0.4, 0.2, 0.4])


def test_shares_count_values_outside_the_reference_in_the_outer_bins() -> None:
    edges = stats.numeric_bins(np.linspace(0, 1, 101), bins=4)
    got = stats.shares([-100.0, 0.1, 0.3, 0.6, 0.9, 100.0, math.inf, -math.inf], edges)
    assert got == pytest.approx([3 / 8, 1 / 8, 1 / 8, 3 / 8])
    assert list(stats.shares([], edges)) == [0.0] * 4


@given(samples, samples)
def test_shares_sum_to_one(reference: list[float], current: list[float]) -> None:
    assert stats.shares(current, stats.numeric_bins(reference)).sum() == pytest.approx(1.0)


def test_time_slices_cut_the_span_into_equal_slices() -> None:
    base = np.datetime64("2026-12-01T00:00:00", "ns")
    hours = np.array([0, 1, 2, 3, 5, 6, 7, 8], dtype="timedelta64[h]")
    times = np.concatenate([base + hours, [np.datetime64("NaT", "ns")]])
    cut = stats.TimeSlices.of(times, 4)
    assert list(cut.index) == [0, 0, 1, 1, 2, 3, 3, 3, -1]  # the latest time is in the last slice
    assert cut.span(0) == (datetime(2026, 12, 1, 0, tzinfo=UTC), datetime(2026, 12, 1, 2, tzinfo=UTC))
    assert cut.span(3)[1] == datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert [list(group) for group in cut.groups(np.arange(9))] == [[0, 1], [2, 3], [4], [5, 6, 7]]
    bins = np.array([0, 1, 1, -1, 0, 0, 1, 1, 0])
    assert [list(row) for row in cut.counts(bins, 2)] == [[1, 1], [0, 1], [1, 0], [1, 2]]


def test_time_slices_of_a_single_moment_fill_the_first_slice() -> None:
    times = np.array(["2026-12-01T10:00"] * 3, dtype="datetime64[ns]")
    cut = stats.TimeSlices.of(times, 3)
    assert [group.size for group in cut.groups(np.arange(3))] == [3, 0, 0]
