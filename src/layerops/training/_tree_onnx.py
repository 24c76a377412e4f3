"""scikit-learn trees and forests to ONNX tree ensembles, straight from the `tree_` arrays.

skl2onnx's stock converters walk every node in Python (and bisect each float64 threshold one at
a time), then `onnx.helper` checks every element of every attribute list: seconds for a 100-tree
forest. `tree_head` builds the same graph — one `TreeEnsembleClassifier` (float32 features) or
`TreeEnsembleRegressor` (float64 thresholds and leaves, ai.onnx.ml 3, as `DoubleTrees` makes
it) — with numpy over all nodes of all trees at once: the same node order, modes, thresholds
(`skl2onnx.common.tree_ensemble.sklearn_threshold`, vectorised to the bit), leaf weights
(per-tree normalised class counts times 1 / number of trees), input and output names and types.
What it does not cover (one training class, several outputs) it leaves to skl2onnx.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

FEATURES = "features"
"""The head graph's input, as skl2onnx names it."""


def _below(values: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The float32 just below each value."""
    return np.nextafter(values, np.float32(-np.inf))


def _above(values: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The float32 just above each value."""
    return np.nextafter(values, np.float32(np.inf))


def _switch_points(low: npt.NDArray[np.float32], high: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """The largest double that still rounds to float32 `low`, for each pair (`low` < `high`).

    The bisection of skl2onnx's `find_switch_point`, run on every pair at once: a pair whose
    step changes nothing would change nothing again, so stepping all pairs until none moves
    gives each pair's scalar result.
    """
    a, b = low.astype(np.float64), high.astype(np.float64)
    fa = low.astype(np.float32)
    while True:
        middle = (a + b) / 2
        same = middle.astype(np.float32) == fa
        next_a, next_b = np.where(same, middle, a), np.where(same, b, middle)
        if np.array_equal(next_a, a) and np.array_equal(next_b, b):
            return a
        a, b = next_a, next_b


def sklearn_thresholds(thresholds: npt.NDArray[np.float64], dtype: type) -> npt.NDArray[np.float64]:
    """skl2onnx's `sklearn_threshold(t, dtype, "BRANCH_LEQ")` for an array of thresholds.

    scikit-learn compares `(float32)x <= t` with a float64 t. For float32 inputs the result w is
    the float32 with `(float32)x <= t ⇔ (float32)x <= w`; for float64 inputs it is the double w
    with `(float32)x <= t ⇔ x <= w` (a switch point between neighbouring float32 values).
    """
    t = np.asarray(thresholds, dtype=np.float64)
    ft = t.astype(np.float32)
    if dtype == np.float32:
        return np.where(ft.astype(np.float64) > t, _below(ft), ft).astype(np.float64)
    if dtype != np.float64:
        raise TypeError(f"Unexpected dtype {dtype}.")
    ft64 = ft.astype(np.float64)
    out = ft64.copy()
    # t rounded up: w is the switch point below the float32 (if t lies above it), else the float32.
    up = ft64 > t
    below = _switch_points(_below(ft[up]), ft[up])
    out[up] = np.where(t[up] > below, below, ft64[up])
    # t rounded down (or exact): the switch point above the float32 if t lies below it.
    down = ~up
    above = _switch_points(ft[down], _above(ft[down]))
    out[down] = np.where(t[down] <= above, above, ft64[down])
    return out


def ensemble_attributes(
    trees: list[Any], *, classifier: bool, dtype: type, tree_weight: float
) -> dict[str, npt.NDArray[Any]]:
    """The TreeEnsemble attributes of `trees` (scikit-learn `Tree` objects), as skl2onnx builds them.

    Thresholds suit features of `dtype` (see `sklearn_thresholds`). Leaves of a classifier hold
    class counts (or fractions) normalised per leaf, times `tree_weight`; a binary classifier
    keeps the second class only. Leaves of a regressor hold their values times `tree_weight`.
    Float attributes are float64 arrays (the caller narrows them); modes are "BRANCH_LEQ"/"LEAF".
    """
    counts = np.array([tree.node_count for tree in trees], dtype=np.int64)
    tree_ids = np.repeat(np.arange(len(trees), dtype=np.int64), counts)
    node_ids = np.arange(counts.sum(), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    left = np.concatenate([tree.children_left for tree in trees]).astype(np.int64)
    right = np.concatenate([tree.children_right for tree in trees]).astype(np.int64)
    branch = (left > node_ids) | (right > node_ids)
    thresholds = np.zeros(branch.size, dtype=np.float64)
    raw = np.concatenate([tree.threshold for tree in trees])
    thresholds[branch] = sklearn_thresholds(raw[branch], dtype)
    features = np.concatenate([tree.feature for tree in trees]).astype(np.int64)

    leaf = np.flatnonzero(~branch)
    values = np.concatenate(
        [np.asarray(tree.value, dtype=np.float64).reshape(tree.node_count, -1) for tree in trees]
    )
    weights = values[leaf]
    if classifier:
        # Python's sum() adds left to right, as cumsum does (np.sum pairs terms up).
        total = np.cumsum(weights, axis=1)[:, -1]
        weights = weights * (tree_weight / np.where(total != 0.0, total, 1.0))[:, None]
        if weights.shape[1] == 2:
            weights = weights[:, 1:]
    else:
        weights = weights * tree_weight
    width = weights.shape[1]
    prefix = "class" if classifier else "target"
    return {
        "nodes_treeids": tree_ids,
        "nodes_nodeids": node_ids,
        "nodes_featureids": np.where(branch, features, 0),
        "nodes_modes": np.where(branch, "BRANCH_LEQ", "LEAF"),
        "nodes_values": thresholds,
        "nodes_truenodeids": np.where(branch, left, 0),
        "nodes_falsenodeids": np.where(branch, right, 0),
        "nodes_missing_value_tracks_true": np.zeros(branch.size, dtype=np.int64),
        "nodes_hitrates": np.ones(branch.size, dtype=np.float64),
        f"{prefix}_treeids": np.repeat(tree_ids[leaf], width),
        f"{prefix}_nodeids": np.repeat(node_ids[leaf], width),
        f"{prefix}_ids": np.tile(np.arange(width, dtype=np.int64), leaf.size),
        f"{prefix}_weights": weights.ravel(),
    }


def _fill(attribute: AttributeProto, name: str, value: Any) -> None:
    """`helper.make_attribute(name, value)` in place, without its per-element checks on arrays.

    Filling the node's own attribute saves copying hundreds of thousands of elements into it.
    """
    if not isinstance(value, np.ndarray):
        attribute.CopyFrom(helper.make_attribute(name, value))
        return
    attribute.name = name
    if value.dtype.kind == "f":
        attribute.type = AttributeProto.FLOATS
        attribute.floats.extend(value.tolist())
    elif value.dtype.kind in "iu":
        attribute.type = AttributeProto.INTS
        attribute.ints.extend(value.tolist())
    else:  # ASCII strings (the node modes)
        attribute.type = AttributeProto.STRINGS
        attribute.strings.extend(value.astype(np.bytes_).tolist())


def _fill_node(
    node: onnx.NodeProto, op_type: str, inputs: list[str], outputs: list[str], attributes: dict[str, Any]
) -> None:
    """An ai.onnx.ml node named after its type, attributes sorted by name (as `make_node` does)."""
    node.op_type, node.name, node.domain = op_type, op_type, "ai.onnx.ml"
    node.input.extend(inputs)
    node.output.extend(outputs)
    for name in sorted(attributes):
        _fill(node.attribute.add(), name, attributes[name])


def _trees(model: Any) -> tuple[list[Any], float]:
    """The fitted `Tree` objects of a tree or forest and the weight of each tree's leaves."""
    if hasattr(model, "estimators_"):
        return [estimator.tree_ for estimator in model.estimators_], 1.0 / len(model.estimators_)
    return [model.tree_], 1.0


def _class_labels(model: Any) -> dict[str, list[Any]] | None:
    """classlabels_int64s or classlabels_strings as skl2onnx chooses them; None for other labels."""
    classes = np.asarray(model.classes_).ravel()
    if all(isinstance(label, numbers.Real | bool | np.bool_) for label in classes):
        return {"classlabels_int64s": [int(label) for label in classes]}
    if all(isinstance(label, str) for label in classes):
        return {"classlabels_strings": [str(label) for label in classes]}
    return None


def _model(
    width: int, feature_type: int, outputs: list[onnx.ValueInfoProto], opsets: dict[str, int]
) -> onnx.ModelProto:
    """An empty head: the `features` input, `outputs`, and the lowest IR version for `opsets`."""
    graph = helper.make_graph(
        [],
        "layerops_tree_ensemble",
        [helper.make_tensor_value_info(FEATURES, feature_type, [None, width])],
        outputs,
    )
    opset_ids = [helper.make_opsetid(domain, version) for domain, version in opsets.items()]
    model = helper.make_model(graph, opset_imports=opset_ids, producer_name="layerops")
    model.ir_version = helper.find_min_ir_version_for(opset_ids)
    return model


def _classifier(model: Any, width: int, onnx_opset: int) -> onnx.ModelProto | None:
    """float32 features → TreeEnsembleClassifier → label, probabilities (ai.onnx.ml 1)."""
    labels = _class_labels(model)
    if int(model.n_outputs_) != 1 or labels is None or len(model.classes_) < 2:
        return None
    trees, tree_weight = _trees(model)
    attributes: dict[str, Any] = {
        "post_transform": "NONE",
        **labels,
        **ensemble_attributes(trees, classifier=True, dtype=np.float32, tree_weight=tree_weight),
    }
    for key in ("nodes_values", "nodes_hitrates", "class_weights"):
        attributes[key] = attributes[key].astype(np.float32)
    label_type = TensorProto.STRING if "classlabels_strings" in labels else TensorProto.INT64
    outputs = [
        helper.make_tensor_value_info("label", label_type, [None]),
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, len(model.classes_)]),
    ]
    head = _model(width, TensorProto.FLOAT, outputs, {"ai.onnx.ml": 1, "": onnx_opset})
    _fill_node(
        head.graph.node.add(), "TreeEnsembleClassifier", [FEATURES], ["label", "probabilities"], attributes
    )
    return head


def _regressor(model: Any, width: int, onnx_opset: int) -> onnx.ModelProto | None:
    """float64 features → TreeEnsembleRegressor (float64 thresholds and leaves) → Cast → variable."""
    if int(model.n_outputs_) != 1:
        return None
    trees, tree_weight = _trees(model)
    attributes: dict[str, Any] = {
        "post_transform": "NONE",
        "n_targets": 1,
        **ensemble_attributes(trees, classifier=False, dtype=np.float64, tree_weight=tree_weight),
    }
    for key in ("nodes_values", "target_weights"):  # ai.onnx.ml 3 keeps these in float64
        attributes[f"{key}_as_tensor"] = numpy_helper.from_array(attributes.pop(key), "")
    outputs = [helper.make_tensor_value_info("variable", TensorProto.DOUBLE, [None, 1])]
    head = _model(width, TensorProto.DOUBLE, outputs, {"ai.onnx.ml": 3, "": onnx_opset})
    _fill_node(head.graph.node.add(), "TreeEnsembleRegressor", [FEATURES], ["variable_float32"], attributes)
    # ai.onnx.ml 3 outputs float32 whatever its attributes; the float64 type the graph declares
    head.graph.node.append(
        helper.make_node(
            "Cast", ["variable_float32"], ["variable"], name="Cast", domain="", to=TensorProto.DOUBLE
        )
    )
    return head


_CLASSIFIERS = (
    "DecisionTreeClassifier",
    "ExtraTreeClassifier",
    "RandomForestClassifier",
    "ExtraTreesClassifier",
)
_REGRESSORS = ("DecisionTreeRegressor", "ExtraTreeRegressor", "RandomForestRegressor", "ExtraTreesRegressor")


def tree_head(estimator: Any, width: int, target_opset: dict[str, int]) -> tuple[onnx.ModelProto, int] | None:
    """The estimator's graph and its feature type, for scikit-learn trees and forests; else None.

    Classifiers take float32 features (scikit-learn compares float32), regressors float64
    (thresholds w with `(float32)x <= t ⇔ x <= w`, float64 leaf sums, output cast to float64).
    None for other estimators, and for the cases left to skl2onnx (one class, several outputs).
    """
    kind = type(estimator)
    if not kind.__module__.startswith(("sklearn.tree", "sklearn.ensemble._forest")):
        return None
    if kind.__name__ in _CLASSIFIERS:
        head, feature_type = _classifier(estimator, width, target_opset[""]), TensorProto.FLOAT
    elif kind.__name__ in _REGRESSORS:
        head, feature_type = _regressor(estimator, width, target_opset[""]), TensorProto.DOUBLE
    else:
        return None
    return None if head is None else (head, int(feature_type))
