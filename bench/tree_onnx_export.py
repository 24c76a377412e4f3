"""Seconds to convert a 100-tree forest to ONNX: skl2onnx's stock converters beside layerops' vectorised one.

Fits a random-forest classifier and regressor (default 100 trees, max_depth 12) on a generated
20-feature set and converts each estimator the way export does: the classifier on float32
features, the regressor in float64 (`DoubleTrees`). "stock" walks every node in Python (skl2onnx);
"vectorised" builds the same attributes from the `tree_` arrays (`layerops.training._tree_onnx`).
Both graphs are checked to hold identical nodes before the times are printed.

    uv run python bench/tree_onnx_export.py [--rows 50000] [--trees 100] [--depth 12] [--repeats 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import onnx
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
from skl2onnx.operator_converters.random_forest import convert_sklearn_random_forest_regressor_converter
from skl2onnx.shape_calculators.ensemble_shapes import calculate_tree_regressor_output_shapes
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from layerops.datasets import synthetic_classification
from layerops.training._onnx_converters import DoubleTrees
from layerops.training.export import TARGET_OPSET, _convert_head


def stock_head(estimator: Any, width: int, task: str) -> onnx.ModelProto:
    """The estimator's graph from skl2onnx's own tree converters (float64 trees for regressors)."""
    if task == "classification":
        return convert_sklearn(
            estimator,
            initial_types=[("features", FloatTensorType([None, width]))],
            target_opset=TARGET_OPSET,
            options={id(estimator): {"zipmap": False}},
        )

    def double(scope: Any, operator: Any, container: Any) -> None:
        convert_sklearn_random_forest_regressor_converter(scope, operator, DoubleTrees(container))

    return convert_sklearn(
        estimator,
        initial_types=[("features", DoubleTensorType([None, width]))],
        target_opset=TARGET_OPSET,
        custom_conversion_functions={type(estimator): double},
        custom_shape_calculators={type(estimator): calculate_tree_regressor_output_shapes},
    )


def vectorised_head(estimator: Any, width: int, task: str) -> onnx.ModelProto:
    """The estimator's graph as export builds it now (`_tree_onnx.tree_head`)."""
    return _convert_head(estimator, width, task)[0]


def _nodes(model: onnx.ModelProto) -> list[bytes]:
    """The graph's nodes as bytes, names left out (skl2onnx numbers its nodes)."""
    nodes = []
    for node in model.graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = ""
        nodes.append(copy.SerializeToString())
    return nodes


def _seconds(work: Callable[[], onnx.ModelProto], repeats: int) -> tuple[float, float, onnx.ModelProto]:
    """Median wall and CPU seconds of `work` over `repeats` runs, and its last result."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def main() -> None:
    """Fit both forests, time both conversions, print a markdown table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    frame = synthetic_classification(args.rows, features=20, seed=0)
    labels = frame.pop("label").to_numpy()
    x = frame.to_numpy(dtype=np.float64)
    targets = {"classification": labels, "regression": x @ np.linspace(-1.0, 1.0, x.shape[1]) + labels}
    print(f"{args.rows:,} rows × {x.shape[1]} features; {args.trees} trees, max_depth {args.depth}\n")
    print("| forest | nodes | stock s (CPU) | vectorised s (CPU) | ratio |")
    print("|---|---:|---:|---:|---:|")
    for task, forest in (("classification", RandomForestClassifier), ("regression", RandomForestRegressor)):
        model = forest(n_estimators=args.trees, max_depth=args.depth, n_jobs=-1, random_state=0)
        model.fit(x, targets[task])
        nodes = sum(tree.tree_.node_count for tree in model.estimators_)
        stock_wall, stock_cpu, stock = _seconds(partial(stock_head, model, x.shape[1], task), args.repeats)
        ours_wall, ours_cpu, ours = _seconds(partial(vectorised_head, model, x.shape[1], task), args.repeats)
        if _nodes(stock) != _nodes(ours):
            raise SystemExit(f"{task}: the vectorised graph differs from skl2onnx's")
        print(
            f"| {type(model).__name__} | {nodes:,} | {stock_wall:.2f} ({stock_cpu:.2f}) | "
            f"{ours_wall:.2f} ({ours_cpu:.2f}) | {stock_wall / ours_wall:.1f}× |"
        )


if __name__ == "__main__":
    main()
