"""DriftDetector on a synthetic model: no drift, a shifted feature and category, too few rows, slices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from layerops.bundle import BundleMetadata, Lineage
from layerops.bundle.profile import build_profile, infer_schema, reference_sample
from layerops.drift_thresholds import DriftThresholds, MonitoringConfig
from layerops.errors import DataError
from layerops.monitoring.drift import DriftDetector
from layerops.monitoring.records import input_column, proba_column

COLORS = ["red", "green", "blue"]
TRAIN_SHARES = [0.5, 0.3, 0.2]
CLASSES = ["no", "yes"]
START = pd.Timestamp("2026-12-02T00:00", tz="UTC")


def features(rows: int, seed: int, *, shift: float = 0.0, shares: list[float] = TRAIN_SHARES) -> pd.DataFrame:
    """Two numeric features (a ~ N(shift, 1), b ~ N(10, 2)) and one categorical (color)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.normal(shift, 1.0, rows),
            "b": rng.normal(10.0, 2.0, rows),
            "color": rng.choice(np.array(COLORS, dtype=object), rows, p=shares),
        }
    )


def classify(frame: pd.DataFrame) -> np.ndarray:
    """The fake model: class index 1 (`yes`) when a > 0."""
    return (frame["a"].to_numpy() > 0).astype(int)


def metadata_for(
    train: pd.DataFrame, *, task: str = "classification", profile: bool = True
) -> BundleMetadata:
    schema = infer_schema(train)
    classes = CLASSES if task == "classification" else None
    predictions = classify(train) if classes else train["a"].to_numpy() * 2 + 1
    return BundleMetadata(
        name="toy",
        task="classification" if classes else "regression",
        target="y",
        classes=classes,
        features=schema,
        candidate="fake",
        lineage=Lineage(dataset_sha256="0", spec_sha256="0", seed=0),
        reference_profile=build_profile(train, schema, predictions, task=task, classes=classes)
        if profile
        else {},
        created_at="2026-12-01T00:00:00+00:00",
    )


def log_of(frame: pd.DataFrame, *, task: str = "classification", hours: float = 4.0) -> pd.DataFrame:
    """A log frame of `frame`'s rows, evenly spread over `hours` from START, as records.py lays it out."""
    log = frame.rename(columns=input_column).reset_index(drop=True)
    if task == "classification":
        labels = classify(frame)
        log["prediction"] = np.array(CLASSES, dtype=object)[labels]
        log[proba_column("no")] = np.where(labels == 1, 0.2, 0.8)
        log[proba_column("yes")] = 1 - log[proba_column("no")]
    else:
        log["prediction"] = frame["a"].to_numpy() * 2 + 1
    log["time"] = START + pd.to_timedelta(np.linspace(0, hours * 3600, len(frame)), unit="s")
    log["version"] = np.int32(3)
    return log


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return features(4000, seed=1)


@pytest.fixture(scope="module")
def detector(train: pd.DataFrame) -> DriftDetector:
    schema = infer_schema(train)
    return DriftDetector().fit(metadata_for(train), reference_sample(train, schema), version=3)


def test_a_window_from_the_training_distribution_does_not_drift(detector: DriftDetector) -> None:
    current = log_of(features(3000, seed=2))
    report = detector.score(current, window="last 3000 rows")
    assert (report.model, report.version, report.task, report.window) == (
        "toy",
        3,
        "classification",
        "last 3000 rows",
    )
    assert report.rows == 3000
    assert report.start == START.to_pydatetime()
    assert report.end == (START + pd.Timedelta(hours=4)).to_pydatetime()
    assert not report.drifted and report.drifted_features() == []
    assert {f.feature for f in report.features} == {"a", "b", "color"}
    p_values = [f.p_value for f in report.features if f.p_value is not None]
    assert len(p_values) == 3 and all(p > 0.01 for p in p_values)
    assert p_values == sorted(p_values)  # nothing drifted: by p-value ascending
    assert report.prediction is not None and report.prediction.kind == "categorical"
    assert not report.prediction.drifted and report.prediction.current_rows == 3000
    assert report.timeline == [] and report.performance is None and report.notes == []


def test_numeric_features_are_tested_with_ks_on_the_reference_sample(
    detector: DriftDetector, train: pd.DataFrame
) -> None:
    current = features(3000, seed=2)
    report = detector.score(log_of(current))
    a = next(f for f in report.features if f.feature == "a")
    expected = scipy_stats.ks_2samp(train["a"], current["a"])
    assert (a.kind, a.test, a.threshold) == ("numeric", "ks", "p < 0.01 and D >= 0.1")
    assert a.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert a.p_value == pytest.approx(expected.pvalue, abs=1e-12)
    assert a.statistics["wasserstein"] == pytest.approx(
        scipy_stats.wasserstein_distance(train["a"], current["a"])
    )
    assert set(a.statistics) == {"ks", "ks_p_value", "wasserstein", "psi", "missing_share"}
    assert (a.reference_rows, a.current_rows) == (4000, 3000)
    assert a.distribution is not None and len(a.distribution.bins) == 10
    edges = a.distribution.edges
    assert edges[0] == min(train["a"].min(), current["a"].min())
    assert edges[-1] == max(train["a"].max(), current["a"].max())
    assert sum(a.distribution.reference) == pytest.approx(1.0)
    assert sum(a.distribution.current) == pytest.approx(1.0)


def test_a_shifted_feature_and_swapped_categories_are_flagged_first(detector: DriftDetector) -> None:
    current = features(3000, seed=3, shift=0.5, shares=[0.2, 0.3, 0.5])  # red and blue swapped
    report = detector.score(log_of(current))
    assert report.drifted
    assert [f.drifted for f in report.features] == [True, True, False]  # drifted first
    assert report.features[2].feature == "b"
    drifted_p = [f.p_value for f in report.features[:2] if f.p_value is not None]
    assert drifted_p == sorted(drifted_p)  # then by p-value
    assert sorted(report.drifted_features()) == ["a", "color"]
    color = next(f for f in report.features if f.feature == "color")
    assert (color.kind, color.test, color.threshold) == ("categorical", "chi2", "p < 0.01 and PSI >= 0.2")
    assert color.statistics["psi"] >= 0.2 and color.p_value is not None and color.p_value < 0.01
    assert color.distribution is not None and color.distribution.bins == COLORS
    assert color.distribution.current == pytest.approx([0.2, 0.3, 0.5], abs=0.03)
    a = report.features[report.drifted_features().index("a")]
    assert a.statistic is not None and a.statistic >= 0.1


def test_unseen_categories_are_bins_of_their_own(detector: DriftDetector) -> None:
    current = features(1000, seed=4)
    current.loc[:299, "color"] = "purple"
    color = next(f for f in detector.score(log_of(current)).features if f.feature == "color")
    assert color.drifted
    assert color.distribution is not None and color.distribution.bins == [*COLORS, "purple"]
    assert color.distribution.reference[-1] == 0.0 and color.distribution.current[-1] == pytest.approx(0.3)
    assert color.statistics["chi2_dof"] == 3


def test_missing_values_are_left_out_and_reported(detector: DriftDetector) -> None:
    current = features(1000, seed=5)
    current.loc[:249, "b"] = np.nan
    current.loc[:99, "color"] = None
    report = detector.score(log_of(current))
    b, color = (next(f for f in report.features if f.feature == name) for name in ("b", "color"))
    assert (b.current_rows, b.statistics["missing_share"]) == (750, 0.25)
    assert (color.current_rows, color.statistics["missing_share"]) == (900, 0.1)
    assert not b.drifted and not color.drifted


def test_too_few_rows_are_not_tested(detector: DriftDetector) -> None:
    current = features(150, seed=6)
    current.loc[:137, "a"] = np.nan  # 12 values left
    report = detector.score(log_of(current))
    a = next(f for f in report.features if f.feature == "a")
    assert (a.statistic, a.p_value, a.drifted) == (None, None, False)
    assert a.note == "too few rows (12 < 100)"
    assert report.features[-1].feature == "a"  # untested ones last
    assert next(f for f in report.features if f.feature == "b").statistic is not None


def test_per_feature_thresholds_override_the_defaults(train: pd.DataFrame) -> None:
    config = MonitoringConfig(features={"a": DriftThresholds(ks_statistic=0.5)})
    detector = DriftDetector(config).fit(metadata_for(train), reference_sample(train, infer_schema(train)))
    report = detector.score(log_of(features(3000, seed=3, shift=0.5)))
    a = next(f for f in report.features if f.feature == "a")
    assert a.threshold == "p < 0.01 and D >= 0.5" and not a.drifted
    assert report.version == 3  # taken from the log when fit was not told


def test_timeline_slices_show_when_the_drift_started(detector: DriftDetector) -> None:
    before, after = features(1200, seed=7), features(1200, seed=8, shift=0.8)
    report = detector.score(log_of(pd.concat([before, after], ignore_index=True), hours=8), slices=4)
    assert len(report.timeline) == 4
    assert [point.rows for point in report.timeline] == [600, 600, 600, 600]
    assert report.timeline[0].start == START.to_pydatetime()
    assert report.timeline[-1].end == (START + pd.Timedelta(hours=8)).to_pydatetime()
    assert [("a" in point.drifted) for point in report.timeline] == [False, False, True, True]
    assert all(set(point.statistics) == {"a", "b", "color", "prediction"} for point in report.timeline)
    assert all(point.statistics["b"] is not None for point in report.timeline)


def test_slices_with_too_few_rows_have_no_statistic(detector: DriftDetector) -> None:
    current = log_of(features(500, seed=9))
    current.loc[current.index[-10:], "time"] = START + pd.Timedelta(hours=40)  # a late trickle
    report = detector.score(current, slices=4)
    assert [point.rows for point in report.timeline] == [490, 0, 0, 10]
    assert report.timeline[0].statistics["a"] is not None
    assert report.timeline[3].statistics == {"a": None, "b": None, "color": None, "prediction": None}
    assert report.timeline[3].drifted == []


def test_a_regressor_s_predictions_are_tested_against_the_prediction_sample() -> None:
    train = features(3000, seed=10)
    metadata = metadata_for(train, task="regression")
    detector = DriftDetector().fit(metadata, reference_sample(train, metadata.features))
    shifted = features(2000, seed=11, shift=0.5)
    report = detector.score(log_of(shifted, task="regression"))
    assert report.prediction is not None
    assert (report.prediction.kind, report.prediction.test) == ("numeric", "ks")
    assert report.prediction.drifted
    expected = scipy_stats.ks_2samp(train["a"] * 2 + 1, shifted["a"] * 2 + 1)
    assert report.prediction.statistic == pytest.approx(expected.statistic, abs=1e-12)


def test_a_regression_profile_without_a_prediction_sample_skips_the_predictions() -> None:
    train = features(500, seed=12)
    metadata = metadata_for(train, task="regression")
    profile = dict(metadata.reference_profile)
    profile["predictions"] = {k: v for k, v in profile["predictions"].items() if k != "sample"}
    old = metadata.model_copy(update={"reference_profile": profile})
    report = (
        DriftDetector()
        .fit(old, reference_sample(train, old.features))
        .score(log_of(train, task="regression"))
    )
    assert report.prediction is None
    assert any("predictions not tested" in note for note in report.notes)


def test_a_bundle_without_a_reference_profile_cannot_be_monitored(train: pd.DataFrame) -> None:
    with pytest.raises(
        DataError, match=r"^model toy v2 has no reference profile: retrain it with layerops >= 0\.3"
    ):
        DriftDetector().fit(metadata_for(train, profile=False), None, version=2)


def test_a_numeric_feature_without_a_reference_sample_cannot_be_monitored(train: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"^model toy v1 has no reference sample of feature 'a'"):
        DriftDetector().fit(metadata_for(train), None, version=1)
    with pytest.raises(DataError, match="no reference sample of feature 'b'"):
        DriftDetector().fit(metadata_for(train), train[["a", "color"]], version=1)


def test_a_log_without_a_feature_column_is_refused(detector: DriftDetector) -> None:
    current = log_of(features(200, seed=13)).drop(columns=[input_column("b")])
    with pytest.raises(DataError, match=r"has no column 'input\.b'"):
        detector.score(current)


def test_the_report_is_json_ready(detector: DriftDetector) -> None:
    body = detector.score(log_of(features(300, seed=14)), slices=2).as_dict()
    assert body["drifted"] is False and len(body["timeline"]) == 2
    assert body["start"] == "2026-12-02T00:00:00+00:00"
