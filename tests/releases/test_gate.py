"""The promotion gate against a real embedded repository: worse versions are refused with their
reasons and nothing moves, better ones pass with the report kept in the alias history, forced
promotions are marked, and seed noise does not pass a strict gate. Then the checks one by one on
hand-made bundles."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from layerops.api import releases
from layerops.api._context import repository as open_repository
from layerops.bundle import ModelBundle, OnnxInfo
from layerops.errors import DataError, LayeropsError
from layerops.releases.gate import Contender, GatePolicy, evaluate
from layerops.repository import ModelRepository
from tests.bundle.builders import IRIS_FEATURES, iris_bundle, make_metadata
from tests.releases.gate_models import NAME, TARGET, VERSIONS, synthetic_frame, train_gate_models

BASELINE, LINEAR = VERSIONS["baseline"], VERSIONS["linear"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`VERSIONS` registered, no alias set (each test uses its own alias)."""
    folder = tmp_path_factory.mktemp("gate") / "home"
    train_gate_models(folder)
    return folder


@pytest.fixture(scope="module")
def repo(home: Path) -> ModelRepository:
    return open_repository(home)


@pytest.mark.slow
def test_without_an_incumbent_the_gate_passes(home: Path) -> None:
    report = releases.gate(NAME, version=BASELINE, alias="nothing", home=home)
    assert report.passed and report.incumbent is None
    assert report.summary() == "no current nothing version: passed"
    assert report.challenger.metrics["f1_macro"] > 0 and report.rows == 300  # its held-out rows


@pytest.mark.slow
def test_a_worse_challenger_is_refused_and_nothing_changes(home: Path, repo: ModelRepository) -> None:
    repo.set_alias(NAME, "prod_a", LINEAR)
    history = repo.history(NAME)

    promotion = releases.promote(NAME, version=BASELINE, alias="prod_a", home=home)

    assert promotion.change is None and promotion.report is not None
    report = promotion.report
    assert not report.passed and not report.forced
    assert report.difference is not None and report.ci_high is not None and report.ci_high < 0
    assert any("significantly worse" in reason for reason in report.reasons)
    assert repo.resolve_alias(NAME, "prod_a").version == LINEAR
    assert repo.history(NAME) == history
    event = repo.events(NAME)[-1]
    assert event.kind == "gate_failed" and f"v{BASELINE} refused for prod_a" in event.message
    assert event.details["metric"] == "f1_macro" and event.details["passed"] is False
    assert event.details["challenger"]["version"] == BASELINE


@pytest.mark.slow
def test_a_better_challenger_passes_and_the_report_is_kept(home: Path, repo: ModelRepository) -> None:
    repo.set_alias(NAME, "prod_b", BASELINE)
    strict = GatePolicy(margin=0.0)

    promotion = releases.promote(NAME, version=LINEAR, alias="prod_b", policy=strict, home=home)

    assert promotion.change is not None and promotion.report is not None and promotion.report.passed
    assert (promotion.change.previous, promotion.change.version) == (BASELINE, LINEAR)
    assert repo.resolve_alias(NAME, "prod_b").version == LINEAR
    recorded = repo.history(NAME)[-1]
    assert recorded.alias == "prod_b" and not recorded.forced
    assert recorded.reason.startswith("passed the promotion gate (f1_macro Δ +")
    assert recorded.details == promotion.report.as_dict()
    assert recorded.details["ci_low"] > 0 and recorded.details["margin"] == 0.0
    assert [c["name"] for c in recorded.details["checks"]] == ["metric", "latency", "size", "onnx"]


@pytest.mark.slow
def test_a_forced_promotion_needs_a_reason_and_is_marked(home: Path, repo: ModelRepository) -> None:
    repo.set_alias(NAME, "prod_c", LINEAR)
    with pytest.raises(LayeropsError, match="a forced promotion needs a reason"):
        releases.promote(NAME, version=BASELINE, alias="prod_c", force=True, home=home)

    reason = "incident 42: the linear model leaks a feature"
    promotion = releases.promote(NAME, version=BASELINE, alias="prod_c", force=True, reason=reason, home=home)

    assert promotion.change is not None and promotion.change.forced
    assert promotion.report is not None and promotion.report.forced and not promotion.report.passed
    recorded = repo.history(NAME)[-1]
    assert (recorded.alias, recorded.version, recorded.forced, recorded.reason) == (
        "prod_c",
        BASELINE,
        True,
        reason,
    )
    assert recorded.details["forced"] is True and recorded.details["passed"] is False


@pytest.mark.slow
def test_seed_noise_does_not_pass_a_strict_gate(home: Path, repo: ModelRepository) -> None:
    """Two forests of one spec that differ only in their seed (so in their splits too): scored on
    the rows both held out, the difference is noise — not worse, and not significantly better."""
    repo.set_alias(NAME, "prod_d", VERSIONS["forest_seed_1"])
    challenger = VERSIONS["forest_seed_2"]

    strict = releases.gate(NAME, version=challenger, alias="prod_d", policy=GatePolicy(margin=0), home=home)
    lenient = releases.gate(NAME, version=challenger, alias="prod_d", home=home)

    assert not strict.passed and [c.name for c in strict.checks if not c.passed] == ["metric"]
    assert "not significantly better" in strict.reasons[0]
    assert lenient.passed
    assert strict.ci_low is not None and strict.ci_high is not None and strict.ci_low < 0 < strict.ci_high
    assert "also held out by v3" in strict.source and 0 < strict.rows < 300


@pytest.mark.slow
def test_evaluation_data_from_a_file_and_its_mistakes(
    home: Path, repo: ModelRepository, tmp_path: Path
) -> None:
    repo.set_alias(NAME, "prod_e", BASELINE)
    fresh = synthetic_frame(400, seed=9)
    fresh.to_csv(tmp_path / "fresh.csv", index=False)
    fresh.to_parquet(tmp_path / "fresh.parquet")
    events = len(repo.events(NAME))

    for name in ("fresh.csv", "fresh.parquet"):
        report = releases.gate(NAME, version=LINEAR, alias="prod_e", eval_data=tmp_path / name, home=home)
        assert report.passed and report.rows == 400 and report.source == str(tmp_path / name)
    from_frame = releases.gate(NAME, version=LINEAR, alias="prod_e", eval_data=fresh, home=home)
    assert from_frame.difference == pytest.approx(report.difference)
    assert len(repo.events(NAME)) == events and repo.resolve_alias(NAME, "prod_e").version == BASELINE

    fresh.drop(columns=[TARGET]).to_csv(tmp_path / "unlabelled.csv", index=False)
    fresh.drop(columns=["f2", "f5"]).to_csv(tmp_path / "narrow.csv", index=False)
    (tmp_path / "data.json").write_text("{}")
    for name, message in [
        ("unlabelled.csv", f"no target column '{TARGET}'"),
        ("narrow.csv", f"lacks columns f2, f5 that {NAME} v{LINEAR} needs"),
        ("absent.csv", "evaluation data file not found"),
        ("data.json", "must be a .csv or .parquet file"),
    ]:
        with pytest.raises(DataError, match=message) as info:
            releases.gate(NAME, version=LINEAR, alias="prod_e", eval_data=tmp_path / name, home=home)
        assert "\n" not in str(info.value)


@pytest.mark.slow
def test_the_newest_version_is_gated_by_default(home: Path) -> None:
    assert releases.gate(NAME, alias="nothing", home=home).challenger.version == max(VERSIONS.values())


# -- the checks on hand-made bundles -------------------------------------------------------------


def _with(bundle: ModelBundle, **metadata: object) -> ModelBundle:
    return replace(bundle, metadata=bundle.metadata.model_copy(update=metadata))


def test_models_that_know_different_classes_are_compared_by_label(iris_frame: pd.DataFrame) -> None:
    two_classes = iris_bundle(iris_frame[iris_frame["species"] != "virginica"].reset_index(drop=True))
    three_classes = iris_bundle(iris_frame)
    assert two_classes.metadata.classes == ["setosa", "versicolor"]

    report = evaluate(
        Contender(2, three_classes), Contender(1, two_classes), iris_frame, GatePolicy(margin=0)
    )

    assert report.passed, report.lines()
    assert report.incumbent is not None and report.incumbent.metrics["accuracy"] == pytest.approx(
        2 / 3, abs=0.02
    )
    assert report.challenger.metrics["accuracy"] > 0.9
    worse = evaluate(Contender(1, two_classes), Contender(2, three_classes), iris_frame)
    assert not worse.passed and worse.ci_high is not None and worse.ci_high < 0


def test_latency_size_and_onnx_parity_checks(iris_frame: pd.DataFrame) -> None:
    base = iris_bundle(iris_frame)
    onnx = OnnxInfo(converted=True, max_abs_error=1e-7, rows_checked=30)
    incumbent = replace(
        _with(base, latency={"single_row_p99_ms": 10.0}, onnx=onnx),
        onnx_model=b"graph",
        file_bytes={"m": 100},
    )
    slow_big_native = replace(_with(base, latency={"single_row_p99_ms": 30.0}), file_bytes={"m": 1000})

    recorded = GatePolicy(latency_calls=0)  # these checks on the latencies training recorded
    report = evaluate(Contender(2, slow_big_native), Contender(1, incumbent), iris_frame, recorded)

    failed = {c.name: c.detail for c in report.checks if not c.passed}
    assert set(failed) == {"latency", "size", "onnx"} and not report.passed
    assert "30 ms vs 10 ms (3.00×)" in failed["latency"] and "(10.00×)" in failed["size"]
    assert "slower native engine" in failed["onnx"]
    relaxed = GatePolicy(max_latency_ratio=4, max_size_ratio=20, require_onnx_parity=False, latency_calls=0)
    assert evaluate(Contender(2, slow_big_native), Contender(1, incumbent), iris_frame, relaxed).passed
    capped = replace(relaxed, max_latency_ms=20.0, max_size_bytes=500)
    capped_report = evaluate(Contender(2, slow_big_native), Contender(1, incumbent), iris_frame, capped)
    assert {c.name for c in capped_report.checks if not c.passed} == {"latency", "size"}
    # a stall while training timed the challenger lifts its p99 but not its median
    stalled = replace(
        _with(base, latency={"single_row_p99_ms": 30.0, "single_row_p50_ms": 1.1}), file_bytes={"m": 100}
    )
    calm = replace(_with(incumbent, latency={"single_row_p99_ms": 10.0, "single_row_p50_ms": 1.0}))
    (latency,) = [
        c
        for c in evaluate(Contender(2, stalled), Contender(1, calm), iris_frame, recorded).checks
        if c.name == "latency"
    ]
    assert latency.passed and "a stall" in latency.detail
    # a small slowdown in milliseconds is not a regression, whatever the ratio
    quick = _with(base, latency={"single_row_p99_ms": 0.9})
    slightly_slower = replace(_with(base, latency={"single_row_p99_ms": 2.0}), file_bytes={"m": 100})
    assert evaluate(
        Contender(2, slightly_slower),
        Contender(1, replace(quick, file_bytes={"m": 100})),
        iris_frame,
        recorded,
    ).passed


def test_a_regressor_is_gated_on_rmse_lower_being_better(mixed_frame: pd.DataFrame) -> None:
    frame = mixed_frame[["length", "weight", "cost"]].dropna().reset_index(drop=True)
    metadata = make_metadata("cost", frame, "cost", candidate="linear", classes=None)
    good = make_pipeline(StandardScaler(), LinearRegression()).fit(frame[["length", "weight"]], frame["cost"])
    weak = make_pipeline(StandardScaler(), LinearRegression()).fit(
        frame[["length"]].assign(weight=0.0), frame["cost"]
    )

    report = evaluate(
        Contender(2, ModelBundle(good, metadata)), Contender(1, ModelBundle(weak, metadata)), frame
    )

    assert report.metric == "rmse" and not report.higher_is_better and report.passed
    assert report.incumbent is not None
    assert report.challenger.metrics["rmse"] < report.incumbent.metrics["rmse"]
    assert report.difference == pytest.approx(
        report.incumbent.metrics["rmse"] - report.challenger.metrics["rmse"]
    )
    assert report.ci_low is not None and report.ci_low > 0


def test_the_report_is_json_and_prints_both_models(iris_frame: pd.DataFrame) -> None:
    import json

    weak = make_pipeline(StandardScaler(), LogisticRegression(C=1e-4)).fit(
        iris_frame[IRIS_FEATURES], iris_frame["species"]
    )
    good = iris_bundle(iris_frame)
    report = evaluate(Contender(3, good), Contender(2, replace(good, model=weak)), iris_frame)

    assert json.loads(json.dumps(report.as_dict(), allow_nan=False)) == report.as_dict()
    text = "\n".join(report.lines())
    assert "challenger v3" in text and "production v2" in text and "f1_macro *" in text
    assert "verdict: PASSED" in text and report.summary().endswith(": passed")


def test_a_policy_refuses_settings_that_make_no_sense() -> None:
    for settings, message in [
        ({"margin": -0.1}, "margin must be ≥ 0"),
        ({"confidence": 1.0}, "confidence must be between 0 and 1"),
        ({"resamples": 10}, "resamples must be at least 100"),
    ]:
        with pytest.raises(LayeropsError, match=message):
            GatePolicy(**settings)  # type: ignore[arg-type]


def test_evaluation_data_must_have_the_target_and_numbers(iris_frame: pd.DataFrame) -> None:
    bundle = iris_bundle(iris_frame)
    with pytest.raises(DataError, match="no target column 'species'"):
        evaluate(Contender(2, bundle), Contender(1, bundle), iris_frame.drop(columns=["species"]))
    text = iris_frame.astype({"sepal_width": object})
    text.loc[3, "sepal_width"] = "wide"
    with pytest.raises(DataError, match="'sepal_width' of the evaluation data has 1 non-numeric values"):
        evaluate(Contender(2, bundle), Contender(1, bundle), text)
    unlabelled = iris_frame.assign(species=np.nan)
    with pytest.raises(DataError, match="no rows with a value in 'species'"):
        evaluate(Contender(2, bundle), Contender(1, bundle), unlabelled)


def test_latency_is_timed_side_by_side_at_gate_time(iris_frame: pd.DataFrame) -> None:
    quick = iris_bundle(iris_frame)  # a logistic regression: well under a millisecond a row
    features = iris_frame[IRIS_FEATURES]
    forest = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=400, random_state=0))
    forest.fit(features, iris_frame["species"])
    slow = replace(quick, model=forest)
    # training recorded the opposite: the gate trusts what it measures now, not those figures
    slow = _with(slow, latency={"single_row_p99_ms": 0.1, "single_row_p50_ms": 0.1})

    report = evaluate(Contender(2, slow), Contender(1, quick), iris_frame, GatePolicy(latency_calls=40))
    same = evaluate(Contender(2, quick), Contender(1, quick), iris_frame, GatePolicy(latency_calls=40))

    (latency,) = [c for c in report.checks if c.name == "latency"]
    assert not latency.passed, latency.detail
    assert report.challenger.p50_ms is not None and report.incumbent is not None
    assert report.incumbent.p50_ms is not None and report.challenger.p50_ms > 5 * report.incumbent.p50_ms
    assert [c.passed for c in same.checks if c.name == "latency"] == [True]
