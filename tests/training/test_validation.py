"""Validation: every kind of violation is found at once, counted and shown with examples."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from layerops.errors import DataError, DataValidationError
from layerops.spec import ValidationSpec
from layerops.training.validation import validate_frame


def _rules(columns: dict[str, Any] | None = None, **options: Any) -> ValidationSpec:
    return ValidationSpec.model_validate({"columns": columns or {}, **options})


def _problems(frame: pd.DataFrame, rules: ValidationSpec, target: str) -> list[str]:
    with pytest.raises(DataValidationError) as info:
        validate_frame(frame, rules, target=target)
    head, *lines = str(info.value).splitlines()
    if not lines:  # a single problem is reported on the one line
        assert head.startswith("data violates the spec: ")
        return [head.removeprefix("data violates the spec: ")]
    assert head == f"data violates the spec: {len(lines)} problems"
    return [line.strip() for line in lines]


def test_valid_iris_passes(iris_frame: pd.DataFrame) -> None:
    rules = _rules(
        {
            "sepal_length": {"dtype": "float", "min": 0, "max": 10},
            "petal_width": {"dtype": "float", "min": 0},
            "species": {"dtype": "category", "categories": ["setosa", "versicolor", "virginica"]},
        },
        max_missing_share=0.0,
    )
    validate_frame(iris_frame, rules, target="species")


def test_missing_target_lists_the_columns() -> None:
    frame = pd.DataFrame({"a": [1], "b": [2], "c": [3]})
    with pytest.raises(DataError) as info:
        validate_frame(frame, _rules(), target="x")
    assert str(info.value) == "target column 'x' not found; columns are: a, b, c"


def test_rule_for_an_absent_column(iris_frame: pd.DataFrame) -> None:
    problems = _problems(iris_frame, _rules({"colour": {"dtype": "str"}}), "species")
    assert len(problems) == 1
    assert problems[0].startswith("column 'colour' (named in validation.columns) not found; columns are:")


def test_dtype_violations_are_counted_with_examples() -> None:
    frame = pd.DataFrame(
        {
            "price": ["1.5", "2", "abc", "n/a", None, "3"],
            "count": [1.0, 2.5, 3.0, np.nan, 4.0, 7.25],
            "flag": [True, False, "yes", 1, "false", None],
            "name": ["a", "b", 3, "d", None, 4.5],
            "y": [0, 1, 0, 1, 0, 1],
        }
    )
    rules = _rules(
        {
            "price": {"dtype": "float"},
            "count": {"dtype": "int"},
            "flag": {"dtype": "bool"},
            "name": {"dtype": "str"},
            "y": {"dtype": "int"},
        },
        max_missing_share=1.0,
    )
    problems = _problems(frame, rules, "y")
    assert problems == [
        "column 'price': 2 rows not a number (dtype float), e.g. 'abc', 'n/a'",
        "column 'count': 2 rows not an integer (dtype int), e.g. 2.5, 7.25",
        "column 'flag': 1 row not a boolean (dtype bool), e.g. 'yes'",
        "column 'name': 2 rows not text (dtype str), e.g. 3, 4.5",
    ]


def test_whole_columns_of_the_wrong_type(iris_frame: pd.DataFrame) -> None:
    rules = _rules({"species": {"dtype": "float"}, "sepal_width": {"dtype": "category"}})
    problems = _problems(iris_frame, rules, "species")
    assert problems[0].startswith(
        "column 'sepal_width': 150 rows not text (dtype category), e.g. 3.5, 3, 3.2"
    )
    assert problems[1].startswith("column 'species': 150 rows not a number (dtype float), e.g. 'setosa'")


def test_range_and_category_violations(mixed_frame: pd.DataFrame) -> None:
    rules = _rules(
        {
            "weight": {"min": 1.0, "max": 29.0},
            "origin": {"categories": ["north", "south"]},
            "length": {"dtype": "float", "min": 0},
        }
    )
    problems = _problems(mixed_frame, rules, "cost")
    below = int((mixed_frame["weight"] < 1.0).sum())
    above = int((mixed_frame["weight"] > 29.0).sum())
    east = int((mixed_frame["origin"] == "east").sum())
    assert below and above and east
    assert len(problems) == 3
    assert problems[0].startswith(f"column 'weight': {below} rows below min 1, e.g. ")
    assert problems[1].startswith(f"column 'weight': {above} rows above max 29, e.g. ")
    assert problems[2] == (
        f"column 'origin': {east} rows not one of the allowed categories (north, south), e.g. 'east'"
    )
    examples = problems[0].split("e.g. ")[1].split(", ")
    assert 1 <= len(examples) <= 3
    assert all(float(value) < 1.0 for value in examples)


def test_missing_shares_cover_every_column(mixed_frame: pd.DataFrame) -> None:
    frame = mixed_frame.copy()
    frame.loc[: len(frame) // 2 - 1, "weight"] = np.nan  # 50% missing
    frame["empty"] = np.nan
    problems = _problems(
        frame, _rules({"length": {"max_missing_share": 0.01}}, max_missing_share=0.3), "cost"
    )
    assert problems == [
        "column 'length': 10 of 400 values missing (2.5%), more than max_missing_share 0.01",
        "column 'weight': 200 of 400 values missing (50.0%), more than max_missing_share 0.3",
        "column 'empty' is entirely missing (400 rows)",
    ]
    # a column's own limit wins over the global one
    validate_frame(frame.drop(columns="empty"), _rules({"weight": {"max_missing_share": 0.5}}), target="cost")


def test_all_problems_are_reported_together(mixed_frame: pd.DataFrame) -> None:
    frame = mixed_frame.assign(blank=None)
    rules = _rules(
        {
            "weight": {"max": 5},
            "service": {"categories": ["standard"]},
            "ghost": {"dtype": "int"},
        }
    )
    problems = _problems(frame, rules, "cost")
    assert len(problems) == 4
    assert {p.split(" ")[1] for p in problems} == {"'weight':", "'service':", "'ghost'", "'blank'"}


def test_large_frame_is_fast() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(8)})
    frame["k"] = rng.integers(0, 10, n)
    frame["c"] = rng.choice(["a", "b", "z"], n)
    frame["flag"] = rng.random(n) > 0.5
    frame["y"] = rng.normal(size=n)
    rules = _rules(
        {
            "x0": {"dtype": "float", "min": 0, "max": 1},
            "x1": {"dtype": "int"},
            "k": {"dtype": "int", "min": 0, "max": 9},
            "c": {"dtype": "category", "categories": ["a", "b"]},
            "flag": {"dtype": "bool"},
        }
    )
    validate_frame(frame.head(100), _rules(), target="y")  # warm up imports
    start = time.perf_counter()
    problems = _problems(frame, rules, "y")
    elapsed = time.perf_counter() - start
    assert len(problems) == 4
    assert elapsed < 1.0, f"validation took {elapsed:.2f} s"
