"""Issue 11: test metrics on the untouched test split, the winner refitted on train + validation,
ties broken on purpose, the library defaults tried first, cross-validation on small data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, log_loss
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.preprocessing import StandardScaler

from layerops.spec import CandidateSpec, parse_spec
from layerops.training.candidates import default_trial, search_space
from layerops.training.pipeline import leaderboard_rows, train
from layerops.training.selection import CandidateOutcome, rank
from layerops.training.transform import encode_target, split_indices
from layerops.training.tuning import DEFAULTS_ATTR, Search, tune


def _cancer() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: str(c).replace(" ", "_"))
    return frame.rename(columns={"target": "diagnosis"})


def _spec(**overrides: Any) -> Any:
    raw: dict[str, Any] = {
        "name": "cancer",
        "target": "diagnosis",
        "task": "classification",
        "candidates": [{"name": "linear", "params": {"C": 1.0}}],
        "cleaning": {"collinearity_threshold": None},
        "tuning": {"cv_folds": 0},
    }
    raw.update(overrides)
    return parse_spec(raw)


def _positions(spec: Any, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, _ = encode_target(frame[spec.target], "classification")
    return split_indices(y, spec.split, task="classification", seed=spec.seed)


def _scaler(model: Any) -> StandardScaler:
    return model.named_steps["preprocess"].named_transformers_["num"].named_steps["scale"]


# ---------------------------------------------------------------- 1: outliers are scored in test


def test_a_planted_outlier_in_the_test_split_is_scored_and_the_metric_is_the_untouched_splits() -> None:
    frame = _cancer()
    spec = _spec()
    train_rows, _, test_rows = _positions(spec, frame)
    planted = int(test_rows[0])
    frame.loc[planted, "mean_radius"] = frame["mean_radius"].max() * 50  # far outside any IQR bound
    in_train = int(train_rows[0])
    frame.loc[in_train, "mean_texture"] = frame["mean_texture"].max() * 50

    result = train(spec, None, data=frame)

    assert result.cleaning.row_drops == {}  # nothing dropped before the split
    assert result.cleaning.scored_outliers >= 1  # the planted test row, and the natural ones
    assert "outlier (iqr) in mean_texture" in result.cleaning.fit_row_drops  # left out of fitting
    pred = result.final.test_outputs[0]
    assert len(pred) == len(test_rows)  # every test row was scored, the planted one too
    # The reported test f1 is the final model's on the untouched test rows, as a user would score it.
    test = frame.iloc[test_rows]
    classes = result.bundle.metadata.classes
    assert classes is not None
    native = result.bundle.model.predict(test.drop(columns=["diagnosis"]))
    truth = test["diagnosis"].map(lambda v: classes.index(str(v)))
    assert result.final.test["f1_macro"] == pytest.approx(f1_score(truth, native, average="macro"), abs=1e-12)
    assert result.bundle.metadata.metrics["test"] == result.final.test


def test_bounds_are_learned_on_the_training_rows_only() -> None:
    frame = _cancer()
    spec = _spec()
    train_rows, _, _ = _positions(spec, frame)
    result = train(spec, None, data=frame)
    plan_rows = frame.iloc[train_rows]
    q1, q3 = np.quantile(plan_rows["mean_area"], [0.25, 0.75])
    high = q3 + 3.0 * (q3 - q1)
    outlying_train = int((plan_rows["mean_area"] > high).sum())
    assert result.cleaning.fit_row_drops.get("outlier (iqr) in mean_area", 0) <= outlying_train
    assert result.final.fit_rows + sum(result.cleaning.fit_row_drops.values()) >= len(train_rows)


# ---------------------------------------------------------------- 2: refit on train + validation


def test_the_final_model_is_fitted_on_train_plus_validation() -> None:
    frame = _cancer()
    spec = _spec(cleaning={"collinearity_threshold": None, "outliers": {"method": "none"}})
    train_rows, val_rows, test_rows = _positions(spec, frame)
    result = train(spec, None, data=frame)

    fitted = np.concatenate([train_rows, val_rows])
    features = frame.drop(columns=["diagnosis"]).iloc[fitted]
    assert result.final.fit_rows == len(fitted) == len(frame) - len(test_rows)
    assert result.final.fit_splits == ["train", "validation"]
    assert result.bundle.metadata.lineage.fit_splits == ["train", "validation"]
    np.testing.assert_allclose(_scaler(result.bundle.model).mean_, features.mean().to_numpy(), rtol=1e-12)
    # the selected candidate was fitted on train only: a different scaler
    winner_scaler = _scaler(result.winner.model)
    np.testing.assert_allclose(
        winner_scaler.mean_, frame.drop(columns=["diagnosis"]).iloc[train_rows].mean().to_numpy(), rtol=1e-12
    )
    # the same configuration refitted by hand on the same rows predicts the same probabilities
    x = StandardScaler().fit_transform(features)
    by_hand = LogisticRegression(C=1.0, max_iter=2000, random_state=spec.seed).fit(
        x, frame["diagnosis"].iloc[fitted]
    )
    test_x = StandardScaler().fit(features).transform(frame.drop(columns=["diagnosis"]).iloc[test_rows])
    np.testing.assert_allclose(result.final.test_outputs[1], by_hand.predict_proba(test_x), atol=1e-9)
    assert result.final.test_scored == "final"
    assert set(result.bundle.metadata.metrics) >= {"validation", "test", "selection_test"}


def test_refit_all_adds_the_test_split_and_says_whose_test_metric_it_is() -> None:
    frame = _cancer()
    spec = _spec(
        cleaning={"collinearity_threshold": None, "outliers": {"method": "none"}},
        selection={"refit_all": True},
    )
    result = train(spec, None, data=frame)
    assert result.final.fit_rows == len(frame)
    assert result.bundle.metadata.lineage.fit_splits == ["train", "validation", "test"]
    np.testing.assert_allclose(
        _scaler(result.bundle.model).mean_, frame.drop(columns=["diagnosis"]).mean().to_numpy(), rtol=1e-12
    )
    assert result.final.test_scored == "selected"
    assert result.final.test == result.winner.test  # the final model saw the test rows: not scored on them


# ---------------------------------------------------------------- 3: ties


def _outcome(name: str, f1: float, loss: float, latency: float = 0.1) -> CandidateOutcome:
    return CandidateOutcome(
        name=name,
        params={},
        validation={"f1_macro": f1, "log_loss": loss},
        test={},
        latency={"single_row_p50_ms": latency},
        resources={},
        trials=[],
        model=None,  # type: ignore[arg-type]
    )


def test_a_tie_on_the_selection_metric_is_broken_by_log_loss_not_by_order() -> None:
    first_listed = _outcome("baseline", 1.0, 0.40)
    better_calibrated = _outcome("random_forest", 1.0, 0.05)
    worse = _outcome("linear", 0.9, 0.01)
    ranked = rank([first_listed, better_calibrated, worse], "f1_macro", "classification")
    assert [o.name for o in ranked] == ["random_forest", "baseline", "linear"]
    assert ranked[0].tie_break == ranked[1].tie_break == "log_loss"
    assert ranked[2].tie_break == ""


def test_then_latency_then_size_then_the_spec_order() -> None:
    slow, fast = _outcome("slow", 1.0, 0.1, latency=0.90), _outcome("fast", 1.0, 0.1, latency=0.20)
    assert [o.name for o in rank([slow, fast], "f1_macro", "classification")] == ["fast", "slow"]
    assert fast.tie_break == "single-row latency"
    big, small = _outcome("big", 1.0, 0.1), _outcome("small", 1.0, 0.1)
    sizes = {id(big): 900, id(small): 100}
    big.model, small.model = big, small  # type: ignore[assignment]
    ranked = rank([big, small], "f1_macro", "classification", size=lambda m: sizes[id(m)])
    assert [o.name for o in ranked] == ["small", "big"] and small.tie_break == "model size"
    twin_a, twin_b = _outcome("a", 1.0, 0.1), _outcome("b", 1.0, 0.1)
    assert [o.name for o in rank([twin_a, twin_b], "f1_macro", "classification")] == ["a", "b"]
    assert twin_a.tie_break == "spec order"


def test_regression_ties_fall_to_mae_under_rmse() -> None:
    a = CandidateOutcome("a", {}, {"rmse": 2.0, "mae": 1.5}, {}, {"single_row_p50_ms": 0.1}, {}, [], None)  # type: ignore[arg-type]
    b = CandidateOutcome("b", {}, {"rmse": 2.0, "mae": 1.2}, {}, {"single_row_p50_ms": 0.1}, {}, [], None)  # type: ignore[arg-type]
    assert [o.name for o in rank([a, b], "rmse", "regression")] == ["b", "a"] and b.tie_break == "mae"


def test_the_pipeline_breaks_the_wine_tie_by_log_loss() -> None:
    # The issue's case: on wine's 36 validation rows four candidates reach f1 1.000; the first
    # listed (linear) used to win although others had a far better log-loss.
    frame = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    names = ("baseline", "linear", "decision_tree", "random_forest", "xgboost", "lightgbm")
    spec = parse_spec(
        {
            "name": "wine",
            "target": "cultivar",
            "task": "classification",
            "candidates": [{"name": n} for n in names],
            "tuning": {"trials": 1, "cv_folds": 0},
        }
    )
    result = train(spec, None, data=frame)
    tied = [o for o in result.leaderboard if o.validation["f1_macro"] == 1.0]
    assert len(tied) >= 2
    assert result.winner.validation["log_loss"] == min(o.validation["log_loss"] for o in tied)
    assert result.winner.name != next(n for n in names if n in {o.name for o in tied})
    assert all(o.tie_break == "log_loss" for o in tied)
    board = leaderboard_rows(result)
    assert board[0]["tie_break"] == "log_loss"


# ---------------------------------------------------------------- 4: defaults first, CV on small data


def test_the_library_defaults_are_the_first_trial_of_the_study() -> None:
    x, y = load_iris(return_X_y=True)
    candidate = CandidateSpec(name="lightgbm")
    space = search_space(candidate, "classification")
    fixed, unset = default_trial(candidate, "classification", space)
    assert fixed == {"n_estimators": 100, "num_leaves": 31, "learning_rate": 0.1, "min_child_samples": 20}
    result = tune(
        "lightgbm",
        "classification",
        space,
        (x[:100], y[:100], x[100:], y[100:]),
        Search(metric="f1_macro", trials=3, seed=1, jobs=1, defaults=(fixed, frozenset(unset))),
    )
    assert result.study is not None
    first = result.study.trials[0]
    assert first.user_attrs[DEFAULTS_ATTR] is True and first.params == fixed
    assert result.trials[0][0] == fixed
    assert not any(t.user_attrs.get(DEFAULTS_ATTR) for t in result.study.trials[1:])


def test_an_unlimited_default_depth_is_left_to_the_library_unless_the_spec_narrows_it() -> None:
    forest = CandidateSpec(name="random_forest")
    fixed, unset = default_trial(forest, "classification", search_space(forest, "classification"))
    assert fixed == {"n_estimators": 100, "min_samples_leaf": 1} and unset == {"max_depth"}
    narrowed = CandidateSpec(name="random_forest", params={"max_depth": {"low": 2, "high": 4}})
    fixed, unset = default_trial(narrowed, "classification", search_space(narrowed, "classification"))
    assert "max_depth" not in fixed and unset == set()  # sampled inside the spec's range
    x, y = load_iris(return_X_y=True)
    result = tune(
        "random_forest",
        "classification",
        search_space(forest, "classification"),
        (x[:100], y[:100], x[100:], y[100:]),
        Search(
            metric="f1_macro",
            trials=1,
            seed=1,
            jobs=1,
            defaults=default_trial(forest, "classification", search_space(forest, "classification")),
        ),  # type: ignore[arg-type]
    )
    assert result.trials[0][0] == {"n_estimators": 100, "min_samples_leaf": 1}
    assert result.model.get_params()["max_depth"] is None


def test_small_training_splits_are_cross_validated_with_mean_and_spread() -> None:
    frame = load_iris(as_frame=True).frame.rename(columns={"target": "species"})
    frame = frame.drop_duplicates().reset_index(drop=True)  # as screening does: positions line up
    raw = {
        "name": "iris",
        "target": "species",
        "task": "classification",
        "candidates": [{"name": "linear", "params": {"C": 0.5}}],
        "cleaning": {"outliers": {"method": "none"}, "collinearity_threshold": None},
    }
    result = train(parse_spec(raw), None, data=frame)
    assert result.folds == 5  # 90 training rows < cv_max_rows (2,000)
    winner = result.winner
    # the CV mean is scikit-learn's own repeated stratified 5-fold score of the same model
    train_rows, val_rows, _ = split_indices(
        encode_target(frame["species"], "classification")[0],
        parse_spec(raw).split,
        task="classification",
        seed=42,
    )
    pool = np.concatenate([train_rows, val_rows])
    x = frame.drop(columns=["species"]).to_numpy()[pool]
    y = frame["species"].to_numpy()[pool]
    x = StandardScaler().fit_transform(x)  # the pipeline scales once, on all the tuning rows
    f1s, losses = [], []
    for fit, held in RepeatedStratifiedKFold(n_splits=5, n_repeats=2, random_state=42).split(x, y):
        model = LogisticRegression(C=0.5, max_iter=2000, random_state=42).fit(x[fit], y[fit])
        f1s.append(f1_score(y[held], model.predict(x[held]), average="macro"))
        losses.append(log_loss(y[held], model.predict_proba(x[held]), labels=[0, 1, 2]))
    assert winner.validation["f1_macro"] == pytest.approx(np.mean(f1s), abs=1e-12)
    assert winner.validation_std["f1_macro"] == pytest.approx(np.std(f1s), abs=1e-12)
    assert winner.validation["log_loss"] == pytest.approx(np.mean(losses), abs=1e-9)
    # under CV the candidates were fitted on train + validation already: that is the final model
    assert result.final.fit_rows == len(pool) and result.final.model is winner.model

    big = parse_spec({**raw, "tuning": {"cv_max_rows": 50}})
    assert train(big, None, data=frame).folds == 0  # 90 rows is not small under a limit of 50
    never = parse_spec({**raw, "tuning": {"cv_folds": 0}})
    assert train(never, None, data=frame).winner.validation_std == {}
