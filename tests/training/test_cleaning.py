"""The Cleaner: each drop reason, the report, and that no value is ever changed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from layerops.errors import DataError, TrainingError
from layerops.spec import CleaningSpec
from layerops.training.cleaning import CleaningReport, clean

_NOTHING = {
    "drop_duplicates": False,
    "drop_constant": False,
    "outliers": {"method": "none"},
    "collinearity_threshold": None,
}


def _spec(**options: Any) -> CleaningSpec:
    return CleaningSpec.model_validate(options)


def _only(**options: Any) -> CleaningSpec:
    """A spec that drops nothing except what `options` turn on."""
    return CleaningSpec.model_validate({**_NOTHING, **options})


def _assert_rows_taken_from(cleaned: pd.DataFrame, original: pd.DataFrame) -> None:
    """Every cleaned row equals, value for value, an original row, and the order is kept."""
    assert isinstance(cleaned.index, pd.RangeIndex)
    assert cleaned.index.start == 0
    source = original[cleaned.columns]
    for name in cleaned.columns:
        assert cleaned[name].dtype == source[name].dtype, name
    wanted = [tuple(row) for row in cleaned.astype(str).itertuples(index=False)]
    rows = iter(tuple(row) for row in source.astype(str).itertuples(index=False))
    for row in wanted:
        assert any(candidate == row for candidate in rows), f"row {row} was changed or reordered"


@pytest.fixture
def messy(mixed_frame: pd.DataFrame) -> pd.DataFrame:
    """The mixed frame with a missing target, duplicates, an outlier, a constant and a collinear column."""
    frame = mixed_frame.copy()
    frame["shipment_id"] = range(len(frame))
    frame["country"] = "nl"
    frame["length_mm"] = frame["length"] * 10.0 + 0.001 * np.sin(np.arange(len(frame)))
    frame.loc[[3, 50, 51], "cost"] = np.nan
    frame.loc[[60], "service"] = np.nan
    frame.loc[120, "weight"] = 500.0
    duplicates = frame.iloc[[5, 6, 7, 7]].copy()
    return pd.concat([frame, duplicates], ignore_index=True)


def test_every_drop_reason_is_reported(messy: pd.DataFrame) -> None:
    before = messy.copy()
    spec = _spec(drop_columns=["shipment_id"], required=["service"])
    cleaned, report = clean(messy, spec, target="cost")
    pd.testing.assert_frame_equal(messy, before)  # the input is not modified
    assert report.rows_in == 404
    assert report.row_drops == {
        "missing target": 3,
        "missing service": 1,
        "duplicate": 4,
        "outlier (iqr) in weight": 1,
    }
    assert report.rows_out == len(cleaned) == 404 - 9
    assert report.dropped_columns == {
        "shipment_id": "listed in cleaning.drop_columns",
        "country": "constant",
        "length_mm": "collinear with length (|r|=1.000)",
    }
    assert list(cleaned.columns) == ["length", "weight", "origin", "service", "cost"]
    assert report.lines() == [
        "dropped 3 rows: missing target",
        "dropped 1 row: missing service",
        "dropped 4 rows: duplicate",
        "dropped 1 row: outlier (iqr) in weight",
        "dropped column 'shipment_id': listed in cleaning.drop_columns",
        "dropped column 'country': constant",
        "dropped column 'length_mm': collinear with length (|r|=1.000)",
    ]
    _assert_rows_taken_from(cleaned, messy)
    assert cleaned["cost"].notna().all()
    assert cleaned["length"].isna().sum() == messy["length"].isna().sum()  # missing is not an outlier


def test_cleaning_is_deterministic(messy: pd.DataFrame) -> None:
    first = clean(messy, _spec(), target="cost")
    second = clean(messy, _spec(), target="cost")
    pd.testing.assert_frame_equal(first[0], second[0])
    assert first[1] == second[1]


def test_clean_data_passes_untouched(iris_frame: pd.DataFrame) -> None:
    unique = iris_frame.drop_duplicates(ignore_index=True)
    cleaned, report = clean(unique, _spec(collinearity_threshold=None), target="species")
    assert report == CleaningReport(len(unique), len(unique), {}, {})
    assert report.lines() == []
    pd.testing.assert_frame_equal(cleaned, unique)


def test_switches_turn_steps_off(messy: pd.DataFrame) -> None:
    cleaned, report = clean(messy, _only(), target="cost")
    assert report.row_drops == {"missing target": 3}
    assert report.dropped_columns == {}
    assert cleaned.shape == (len(messy) - 3, messy.shape[1])


def test_duplicates_are_whole_row(mixed_frame: pd.DataFrame) -> None:
    frame = pd.concat([mixed_frame, mixed_frame.iloc[[0]]], ignore_index=True)
    near = frame.iloc[[1]].copy()
    near["weight"] += 0.5  # differs in one column: not a duplicate
    frame = pd.concat([frame, near], ignore_index=True)
    cleaned, report = clean(frame, _only(drop_duplicates=True), target="cost")
    assert report.row_drops == {"duplicate": 1}
    _assert_rows_taken_from(cleaned, frame)


def test_constant_and_empty_columns_but_never_the_target(mixed_frame: pd.DataFrame) -> None:
    frame = mixed_frame.assign(unit="kg", blank=np.nan, half=[1.0, np.nan] * 200, label="same")
    cleaned, report = clean(frame, _only(drop_constant=True), target="label")
    assert report.dropped_columns == {"unit": "constant", "blank": "entirely missing", "half": "constant"}
    assert "label" in cleaned.columns


def test_iqr_outliers(mixed_frame: pd.DataFrame) -> None:
    frame = mixed_frame.copy()
    frame.loc[[10, 20], "weight"] = [400.0, -300.0]
    frame.loc[20, "length"] = 9999.0  # outlying twice: counted once, under the first column
    frame.loc[30, "cost"] = 1e6  # the target is never an outlier column
    frame["bucket"] = np.where(np.arange(len(frame)) < 395, 1, 50)  # IQR 0: skipped
    cleaned, report = clean(frame, _only(outliers={"method": "iqr", "threshold": 3.0}), target="cost")
    assert report.row_drops == {"outlier (iqr) in length": 1, "outlier (iqr) in weight": 1}
    assert 1e6 in cleaned["cost"].to_numpy()
    assert (cleaned["bucket"] == 50).sum() == 5
    _assert_rows_taken_from(cleaned, frame)


def test_zscore_outliers(mixed_frame: pd.DataFrame) -> None:
    frame = mixed_frame.copy()
    frame.loc[7, "weight"] = 300.0
    cleaned, report = clean(frame, _only(outliers={"method": "zscore", "threshold": 4.0}), target="cost")
    assert report.row_drops == {"outlier (zscore) in weight": 1}
    assert 300.0 not in cleaned["weight"].to_numpy()


def test_outliers_do_not_wipe_small_skewed_data() -> None:
    frame = pd.DataFrame({"x": [1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 100.0], "y": [0, 1, 0, 1, 0, 1, 0]})
    rule = {"method": "iqr", "threshold": 1.5, "max_share": 1.0}
    cleaned, report = clean(frame, _only(outliers=rule), target="y")
    assert report.row_drops == {"outlier (iqr) in x": 1}  # once, not repeated until stable
    assert len(cleaned) == 6


def test_collinear_drops_the_later_column_and_ignores_the_target(mixed_frame: pd.DataFrame) -> None:
    frame = mixed_frame.copy()
    frame.insert(0, "double_cost", frame["cost"] * 2)  # collinear with the target: kept
    frame["weight_lb"] = frame["weight"] * 2.20462
    frame["neg_weight"] = -frame["weight"]
    cleaned, report = clean(frame, _only(collinearity_threshold=0.98), target="cost")
    assert report.dropped_columns == {
        "weight_lb": "collinear with weight (|r|=1.000)",
        "neg_weight": "collinear with weight (|r|=1.000)",
    }
    assert {"double_cost", "weight", "cost"} <= set(cleaned.columns)


def test_unknown_names_are_data_errors(mixed_frame: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"cleaning.drop_columns: unknown column\(s\) 'id', 'x'; columns are"):
        clean(mixed_frame, _spec(drop_columns=["id", "x"]), target="cost")
    with pytest.raises(DataError, match=r"cleaning.required: unknown column\(s\) 'size'"):
        clean(mixed_frame, _spec(required=["size"]), target="cost")
    with pytest.raises(DataError, match="'cost' is the target and cannot be dropped"):
        clean(mixed_frame, _spec(drop_columns=["cost"]), target="cost")
    with pytest.raises(DataError, match="target column 'price' not found"):
        clean(mixed_frame, _spec(), target="price")


def test_nothing_left_is_a_training_error(mixed_frame: pd.DataFrame) -> None:
    frame = mixed_frame.copy()
    frame["cost"] = np.nan
    frame.loc[:4, "cost"] = 1.0
    frame.loc[:4, "length"] = np.nan
    with pytest.raises(TrainingError) as info:
        clean(frame, _spec(required=["length"]), target="cost")
    assert (
        str(info.value) == "no rows left after cleaning: 395 missing target, 5 missing length (of 400 rows)"
    )

    features = pd.DataFrame({"a": [1, 1, 1], "b": ["x", "x", "x"], "y": [1.0, 2.0, 3.0]})
    with pytest.raises(TrainingError) as info:
        clean(features, _spec(), target="y")
    assert str(info.value) == "no feature columns left after cleaning: dropped a (constant), b (constant)"


def test_a_rule_that_would_flag_many_rows_sets_no_bound() -> None:
    # digits-like pixels: mostly 0 or 1, so the quartiles sit at 0 and 1 and every bright pixel
    # (a quarter of the rows) looks "far out"
    rng = np.random.default_rng(0)
    pixel = np.concatenate([np.zeros(740), np.ones(20), rng.integers(10, 16, 240).astype(float)])
    rare = rng.normal(size=1000)
    rare[[3, 500]] = [40.0, -40.0]  # two real outliers: 0.2 % of the rows
    frame = pd.DataFrame({"pixel": pixel, "rare": rare, "y": rng.integers(0, 2, 1000)})
    cleaned, report = clean(frame, _only(outliers={"method": "iqr", "threshold": 3.0}), target="y")
    assert report.row_drops == {"outlier (iqr) in rare": 2}
    assert set(report.unbounded) == {"pixel"} and report.unbounded["pixel"] > 0.02
    assert any(line.startswith("no outlier bound on 'pixel'") for line in report.lines())
    assert len(cleaned) == 998
