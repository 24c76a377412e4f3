"""Traffic policies: the file as data, one-line errors naming the key path, and stable assignment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from layerops.errors import LayeropsError, PolicyError
from layerops.releases.policy import (
    ModelPolicy,
    Split,
    bucket,
    choose,
    load_policies,
    parse_model_policy,
    parse_policies,
)

EXAMPLE = """\
models:
  iris:
    sticky: {header: X-User-Id}
    canary:
      alias: candidate
      steps: [5, 25, 50, 100]
      step_seconds: 60
      promote: true
      analysis:
        window_seconds: 60
        min_requests: 100
        max_error_rate_increase: 0.01
        max_p99_ratio: 1.5
        min_p99_increase_ms: 10
        max_metric_drop: 0.05
        min_labelled: 50
        max_prediction_distance: 0.3
    shadow: {alias: shadow, queue_size: 1000}
  shipping:
    ab:
      variants:
        - {name: a, alias: production, weight: 50}
        - {name: b, version: 3, weight: 50}
  plain:
"""


def _file(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "traffic.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_the_example_file_reads_as_data(tmp_path: Path) -> None:
    policies = load_policies(_file(tmp_path, EXAMPLE))
    assert list(policies) == ["iris", "shipping", "plain"]
    iris, shipping, plain = policies["iris"], policies["shipping"], policies["plain"]
    assert (iris.mode, shipping.mode, plain.mode) == ("canary", "ab", "plain")
    assert iris.sticky is not None and iris.sticky.header == "X-User-Id"
    assert iris.canary is not None and iris.canary.steps == (5, 25, 50, 100)
    assert iris.refs() == {"baseline": "production", "canary": "candidate"}
    assert shipping.refs() == {"a": "production", "b": "3"}
    assert plain.refs() == {"production": "production"}
    assert iris.aliases() == {"production", "candidate", "shadow"}
    assert shipping.aliases() == {"production"}
    assert iris.weights() == [("baseline", 100.0), ("canary", 0.0)]  # no share yet: no canary traffic
    assert iris.weights(25) == [("baseline", 75.0), ("canary", 25.0)]
    assert shipping.weights(25) == [("a", 50.0), ("b", 50.0)]
    assert plain.weights() == [("production", 100.0)]
    with pytest.raises(ValueError, match="not a percent"):
        iris.weights(101)


def test_as_dict_round_trips_through_the_parsers(tmp_path: Path) -> None:
    policies = load_policies(_file(tmp_path, EXAMPLE))
    assert parse_policies(policies.as_dict(), "again").as_dict() == policies.as_dict()
    for name, policy in policies.items():
        assert parse_model_policy(name, policy.as_dict(), f"PUT /admin/traffic/{name}") == policy
    assert policies["shipping"].as_dict()["ab"]["variants"][1] == {"name": "b", "version": 3, "weight": 50.0}
    assert policies["iris"].as_dict()["sticky"] == {"header": "X-User-Id"}
    off = parse_model_policy("iris", {"canary": {"analysis": {"max_metric_drop": None}}}, "PUT")
    assert parse_model_policy("iris", off.as_dict(), "PUT") == off  # a check turned off stays off
    updated = policies.with_policy(off)
    assert updated["iris"] == off and policies["iris"] != off and updated.source == policies.source


def _variants(*weights: float) -> dict[str, Any]:
    return {
        "ab": {"variants": [{"name": f"v{i}", "version": i + 1, "weight": w} for i, w in enumerate(weights)]}
    }


BAD: list[tuple[object, str]] = [
    (
        {
            "shipping": {
                "ab": {
                    "variants": [
                        {"name": "a", "alias": "production", "weight": 40},
                        {"name": "b", "version": 3, "weight": 50},
                    ]
                }
            }
        },
        "models.shipping.ab.variants: weights sum to 90, not 100",
    ),
    (
        {"iris": {"shadow": {"alias": "production"}}},
        "models.iris.shadow.alias: the shadow is 'production', the alias that serves callers",
    ),
    (
        {"iris": {"canary": {}, "shadow": {"alias": "candidate"}}},
        "models.iris.shadow.alias: the shadow is 'candidate', the canary's alias",
    ),
    (
        {
            "iris": {
                "ab": {
                    "variants": [
                        {"name": "a", "alias": "x", "weight": 50},
                        {"name": "b", "version": 3, "weight": 50},
                    ]
                },
                "shadow": {"alias": "x"},
            }
        },
        "models.iris.shadow.alias: the shadow is 'x', the alias of variant 'a'",
    ),
    ({"iris": {"canary": {"stepz": [5, 100]}}}, "models.iris.canary.stepz: unknown key"),
    ({"iris": {"canari": {}}}, "models.iris.canari: unknown key"),
    ({"iris": {"name": "iris"}}, "models.iris.name: unknown key"),
    (
        {"iris": {"canary": {"step_seconds": "sixty"}}},
        "models.iris.canary.step_seconds: expected a number, got 'sixty'",
    ),
    (
        {"iris": {"canary": {"promote": "yes"}}},
        "models.iris.canary.promote: expected true or false, got 'yes'",
    ),
    (
        {"iris": {"canary": {"analysis": {"min_requests": 10.5}}}},
        "models.iris.canary.analysis.min_requests: expected a whole number, got 10.5",
    ),
    (
        {"iris": {"canary": {"analysis": {"min_requests": 0}}}},
        "models.iris.canary.analysis.min_requests: should be greater than or equal to 1",
    ),
    (
        {"iris": {"canary": {"analysis": {"max_p99_ratio": float("nan")}}}},
        "models.iris.canary.analysis.max_p99_ratio: expected a finite number, got nan",
    ),
    (
        {"iris": {"canary": {"steps": [5, 5, 100]}}},
        "models.iris.canary.steps: steps must strictly increase: 5 then 5",
    ),
    ({"iris": {"canary": {"steps": [5, 50]}}}, "models.iris.canary.steps: the last step is 50, not 100"),
    ({"iris": {"canary": {"steps": [0, 100]}}}, "models.iris.canary.steps: step 0 is not in (0, 100]"),
    (
        {"iris": {"canary": {"steps": []}}},
        "models.iris.canary.steps: give at least one step (the last is 100)",
    ),
    ({"iris": {"canary": {"steps": 50}}}, "models.iris.canary.steps: expected a list, got 50"),
    (
        {"iris": {"canary": {"alias": "production"}}},
        "models.iris.canary.alias: the canary is 'production', the baseline's alias",
    ),
    ({"iris": {"canary": {"alias": "7"}}}, "models.iris.canary.alias: '7' is a version number, not an alias"),
    ({"iris": {"canary": {}, **_variants(50, 50)}}, "models.iris: give at most one of 'canary' or 'ab'"),
    (
        {
            "iris": {
                "ab": {
                    "variants": [
                        {"name": "a", "alias": "x", "version": 2, "weight": 50},
                        {"name": "b", "version": 3, "weight": 50},
                    ]
                }
            }
        },
        "models.iris.ab.variants[0]: give exactly one of 'alias' or 'version'",
    ),
    (
        {
            "iris": {
                "ab": {"variants": [{"name": "a", "weight": 50}, {"name": "b", "version": 3, "weight": 50}]}
            }
        },
        "models.iris.ab.variants[0]: give exactly one of 'alias' or 'version'",
    ),
    (
        {
            "iris": {
                "ab": {
                    "variants": [
                        {"name": "a", "version": 1, "weight": 50},
                        {"name": "a", "version": 3, "weight": 50},
                    ]
                }
            }
        },
        "models.iris.ab.variants: variant name 'a' appears twice",
    ),
    (
        {
            "iris": {
                "ab": {
                    "variants": [
                        {"name": "shadow", "version": 1, "weight": 50},
                        {"name": "a", "version": 3, "weight": 50},
                    ]
                }
            }
        },
        "models.iris.ab.variants[0].name: 'shadow' is a reserved variant name",
    ),
    (
        {
            "iris": {
                "ab": {
                    "variants": [
                        {"name": "a b", "version": 1, "weight": 50},
                        {"name": "a", "version": 3, "weight": 50},
                    ]
                }
            }
        },
        "models.iris.ab.variants[0].name: the variant name 'a b' is not 1 to 64 letters, digits, '_' or '-'",
    ),
    (
        {
            "iris": {
                "ab": {
                    "variants": [
                        {"name": "a", "alias": "x" * 65, "weight": 50},
                        {"name": "b", "version": 3, "weight": 50},
                    ]
                }
            }
        },
        "models.iris.ab.variants[0].alias: the alias "
        f"'{'x' * 65}' is not 1 to 64 letters, digits, '_' or '-'",
    ),
    (
        {
            "iris": {
                "ab": {
                    "variants": [
                        {"name": "a", "version": 0, "weight": 50},
                        {"name": "b", "version": 3, "weight": 50},
                    ]
                }
            }
        },
        "models.iris.ab.variants[0].version: should be greater than or equal to 1",
    ),
    ({"iris": _variants(100)}, "models.iris.ab.variants: an A/B test needs at least two variants, got 1"),
    (
        {"iris": _variants(120, -20)},
        "models.iris.ab.variants[0].weight: should be less than or equal to 100 (and 1 more)",
    ),
    ({"iris": {"sticky": {}}}, "models.iris.sticky: give exactly one of 'header' or 'field'"),
    (
        {"iris": {"sticky": {"header": "X-User", "field": "user"}}},
        "models.iris.sticky: give exactly one of 'header' or 'field'",
    ),
    (
        {"iris": {"sticky": {"header": "X User"}}},
        "models.iris.sticky.header: 'X User' is not an HTTP header name",
    ),
    ({"iris": {"sticky": "X-User-Id"}}, "models.iris.sticky: expected a mapping of keys, got 'X-User-Id'"),
    (
        {"iris": {"shadow": {"queue_size": 0}}},
        "models.iris.shadow.queue_size: should be greater than or equal to 1",
    ),
    ({"iris": ["canary"]}, "models.iris: a policy is a mapping of keys, got list"),
    ({"ir is": {}}, "models.ir is: the model name 'ir is' is not 1 to 64 letters, digits, '_' or '-'"),
]


@pytest.mark.parametrize(
    ("models", "message"), BAD, ids=[message.split(":")[0] + f"-{i}" for i, (_, message) in enumerate(BAD)]
)
def test_every_mistake_is_one_line_naming_the_file_and_key_path(models: object, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policies({"models": models}, "traffic.yaml")
    assert str(caught.value) == f"traffic.yaml: {message}"
    assert isinstance(caught.value, LayeropsError) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "traffic.yaml: the file is empty (expected a 'models' mapping)"),
        ([1], "traffic.yaml: expected a mapping with a 'models' key, got list"),
        ({"model": {}}, "traffic.yaml: model: unknown key (expected 'models')"),
        ({"models": None}, "traffic.yaml: models: expected a mapping of model name → policy, got nothing"),
        ({"models": [1]}, "traffic.yaml: models: expected a mapping of model name → policy, got list"),
    ],
)
def test_the_file_shape_is_checked(data: object, message: str) -> None:
    with pytest.raises(PolicyError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"):
        parse_policies(data, "traffic.yaml")


def test_a_put_body_names_the_request_and_a_path_inside_the_policy() -> None:
    source = "PUT /admin/traffic/iris"
    with pytest.raises(PolicyError) as caught:
        parse_model_policy("iris", {"canary": {"steps": [5, 50]}}, source)
    assert str(caught.value) == "PUT /admin/traffic/iris: canary.steps: the last step is 50, not 100"
    with pytest.raises(
        PolicyError, match=r"^PUT /admin/traffic/iris: a policy is a mapping of keys, got str$"
    ):
        parse_model_policy("iris", "canary", source)
    with pytest.raises(PolicyError, match=r"^PUT /admin/traffic/a\.b: the model name 'a\.b' is not"):
        parse_model_policy("a.b", {}, "PUT /admin/traffic/a.b")
    assert parse_model_policy("iris", None, source) == ModelPolicy(name="iris")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"^.*traffic\.yaml: the file is empty \(expected a 'models' mapping\)$"),
        ("# nothing here\n", r"^.*traffic\.yaml: the file is empty"),
        ("models:\n  iris: {canary: [}\n", r"^.*traffic\.yaml: not valid YAML at line 2 \("),
        (
            "models:\n  iris: {}\n  iris: {}\n",
            r"^.*traffic\.yaml: not valid YAML at line 3 \(duplicate key 'iris'\)$",
        ),
        (b"models: \xff\xfe\n", r"^.*traffic\.yaml: not a UTF-8 text file$"),
    ],
)
def test_file_errors_are_one_line(tmp_path: Path, text: str | bytes, message: str) -> None:
    with pytest.raises(PolicyError, match=message) as caught:
        load_policies(_file(tmp_path, text))
    assert "\n" not in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"nowhere\.yaml: traffic file not found$"):
        load_policies(tmp_path / "nowhere.yaml")


def test_errors_in_the_file_name_the_file(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "models:\n  shipping:\n    ab: {variants: [{name: a, version: 1, weight: 40},\n"
        "                    {name: b, version: 2, weight: 50}]}\n",
    )
    with pytest.raises(PolicyError) as caught:
        load_policies(path)
    assert str(caught.value) == f"{path}: models.shipping.ab.variants: weights sum to 90, not 100"


# -- assignment --------------------------------------------------------------------------------


def test_bucket_is_stable_across_processes_and_hash_seeds() -> None:
    script = "from layerops.releases.assignment import bucket; print(repr(bucket('iris', 'user-42')))"
    seen = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert seen == {repr(bucket("iris", "user-42"))}
    assert bucket("iris", "user-42") == 89.83199762075887  # pinned: a change reshuffles users
    assert bucket("iris", "user-42") != bucket("shipping", "user-42")
    assert 0 <= bucket("iris", "\udcff lone surrogate") < 100


KEYS = [f"user-{i}" for i in range(100_000)]


@pytest.mark.parametrize("share", [5.0, 25.0, 50.0])
def test_the_canary_split_is_within_half_a_point_of_its_share(share: float) -> None:
    split = ModelPolicy.model_validate({"name": "iris", "canary": {}}).split(share)
    on_canary = sum(split.choose(bucket("iris", key)) == "canary" for key in KEYS)
    assert abs(100 * on_canary / len(KEYS) - share) < 0.5


def test_an_ab_split_is_within_half_a_point_of_each_weight() -> None:
    policy = parse_model_policy("shipping", _variants(20, 30, 50), "test")
    split = policy.split()
    counts = dict.fromkeys(("v0", "v1", "v2"), 0)
    for key in KEYS:
        counts[split.choose(bucket("shipping", key))] += 1
    for name, weight in policy.weights():
        assert abs(100 * counts[name] / len(KEYS) - weight) < 0.5
    assert all(
        split.choose(bucket("shipping", key)) == split.choose(bucket("shipping", key)) for key in KEYS[:1000]
    )


def test_raising_the_canary_share_only_moves_keys_from_baseline_to_canary() -> None:
    policy = ModelPolicy.model_validate({"name": "iris", "canary": {}})
    before, after = policy.split(5), policy.split(25)
    moved = 0
    for key in KEYS:
        point = bucket("iris", key)
        old, new = before.choose(point), after.choose(point)
        assert not (old == "canary" and new == "baseline")
        moved += old != new
    assert abs(100 * moved / len(KEYS) - 20) < 0.5


def test_a_zero_weight_is_never_chosen_and_points_cover_the_range() -> None:
    assert choose([("a", 0.0), ("b", 100.0)], 0.0) == "b"
    assert choose([("a", 100.0), ("b", 0.0)], 99.99999999999999) == "a"
    assert choose([("a", 30.0), ("b", 0.0), ("c", 70.0)], 30.0) == "c"
    assert choose([("a", 30.0), ("b", 70.0)], 29.999) == "a"
    split = ModelPolicy.model_validate({"name": "iris", "canary": {}}).split(None)
    assert {split.choose(p / 10) for p in range(1000)} == {"baseline"}
    assert Split.of([("x", 33.3), ("y", 33.3), ("z", 33.4)]).choose(99.9999) == "z"


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([("a", 50.0), ("b", 40.0)], "sum to 90"),
        ([("a", 150.0), ("b", -50.0)], "not a percent"),
        ([], "sum to 0"),
    ],
)
def test_a_split_refuses_weights_that_are_not_percentages(
    weights: list[tuple[str, float]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Split.of(weights)


def test_choosing_takes_a_few_microseconds() -> None:
    split = parse_model_policy("shipping", _variants(20, 30, 50), "test").split()
    points = [i / 1000 for i in range(100_000)]
    started = time.perf_counter()
    for point in points:
        split.choose(point)
    assert (time.perf_counter() - started) / len(points) < 5e-6
