"""The spec refuses bad input before any work, naming the key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from layerops.errors import SpecError
from layerops.spec import load_spec, parse_spec


def _spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "demo",
        "data": {"path": "data.csv"},
        "target": "y",
        "candidates": [{"name": "baseline"}, {"name": "random_forest"}],
    }
    base.update(overrides)
    return base


def test_minimal_spec_gets_sane_defaults() -> None:
    spec = parse_spec(_spec())
    assert spec.split.validation == 0.2
    assert spec.tuning.trials == 10
    assert spec.selection_metric("classification") == "f1_macro"
    assert spec.selection_metric("regression") == "rmse"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {
                "candidates": [
                    {"name": "baseline"},
                    {"name": "linear"},
                    {"name": "random_forest", "params": {"max_depth": 0}},
                ]
            },
            "candidates[2].params.max_depth: must be > 0",
        ),
        ({"candidates": [{"name": "svm"}]}, "candidates[0].name: unknown candidate 'svm'"),
        (
            {"candidates": [{"name": "xgboost", "params": {"depth": 3}}]},
            "candidates[0].params.depth: unknown parameter",
        ),
        (
            {"candidates": [{"name": "xgboost", "params": {"learning_rate": {"low": 0.5, "high": 0.1}}}]},
            "candidates[0].params.learning_rate: range 'low' must not exceed 'high'",
        ),
        (
            {"candidates": [{"name": "lightgbm", "params": {"subsample": [0.5, 1.5]}}]},
            "candidates[0].params.subsample: must be in (0, 1]",
        ),
        ({"split": {"test": 1.5}}, "split.test: Input should be less than 1"),
        ({"split": {"validation": 0.5, "test": 0.45}}, "split: Value error, validation + test"),
        ({"candidates": []}, "candidates: List should have at least 1 item"),
        ({"data": {}}, "data: Value error, give exactly one of 'path' or 'sql'"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
        (
            {"selection": {"metric": "rmse"}, "task": "classification"},
            "selection.metric: 'rmse' is not a classification",
        ),
        ({"name": "bad name!"}, "name: String should match pattern"),
        ({"tuning": {"trials": 0}}, "tuning.trials: Input should be greater than 0"),
    ],
)
def test_invalid_spec_names_key_path(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_spec(**overrides))
    assert expected.replace("Value error, ", "") in str(info.value)


def test_every_problem_is_listed_at_once() -> None:
    raw = _spec(candidates=[{"name": "svm"}, {"name": "random_forest", "params": {"n_estimators": -1}}])
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    message = str(info.value)
    assert "candidates[0].name" in message and "candidates[1].params.n_estimators: must be > 0" in message


def test_load_spec_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML at line"):
        load_spec(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(SpecError, match="must be a mapping"):
        load_spec(scalar)


def test_relative_paths_resolve_against_the_spec_folder(tmp_path: Path) -> None:
    file = tmp_path / "sub" / "spec.yaml"
    file.parent.mkdir()
    file.write_text("name: demo\ndata: {path: d.csv}\ntarget: y\ncandidates: [{name: baseline}]\n")
    spec = load_spec(file)
    assert spec.resolve_path("d.csv") == str(tmp_path / "sub" / "d.csv")
    assert spec.resolve_path("https://example.invalid/d.csv") == "https://example.invalid/d.csv"


def test_content_hash_ignores_location_but_not_content(tmp_path: Path) -> None:
    a = parse_spec(_spec(), base_dir=tmp_path / "a")
    b = parse_spec(_spec(), base_dir=tmp_path / "b")
    c = parse_spec(_spec(seed=7))
    assert a.content_hash() == b.content_hash() != c.content_hash()


def test_example_specs_are_valid() -> None:
    root = Path(__file__).resolve().parents[1] / "examples"
    for file in sorted(root.glob("*.yaml")):
        assert load_spec(file).candidates


def test_monitoring_section_sets_thresholds_with_per_feature_overrides() -> None:
    spec = parse_spec(
        _spec(
            monitoring={
                "thresholds": {"p_value": 0.001},
                "features": {"weight": {"ks_statistic": 0.2}},
                "prediction": {"psi": 0.5},
            }
        )
    )
    weight = spec.monitoring.thresholds_for("weight")
    other = spec.monitoring.thresholds_for("height")
    assert (weight.p_value, weight.ks_statistic, weight.psi) == (0.001, 0.2, 0.2)
    assert (other.p_value, other.ks_statistic) == (0.001, 0.1)
    assert spec.monitoring.thresholds_for(None).psi == 0.5
    assert parse_spec(_spec()).monitoring.thresholds_for("x").p_value == 0.01


def test_bad_monitoring_thresholds_name_the_key_path() -> None:
    with pytest.raises(SpecError, match=r"monitoring\.features\.weight\.p_value"):
        parse_spec(_spec(monitoring={"features": {"weight": {"p_value": 2}}}))
