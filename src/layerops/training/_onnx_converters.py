"""skl2onnx converters layerops needs beyond the stock ones, and float64 tree ensembles.

- SimpleImputer: skl2onnx refuses string columns whose missing marker is NaN and rounds numeric
  fill values to float32; `convert_imputer` replaces NaN (numbers) or "" (`MISSING_CATEGORY`,
  strings) by the fitted statistics in full precision.
- The one-rule baselines: Gather → LessOrEqual → Where.
- xgboost and lightgbm through onnxmltools (registered once per process, only when used).
- `DoubleTrees`: tree ensembles with float64 thresholds and leaves (ai.onnx.ml 3 `*_as_tensor`),
  for libraries that compare and sum in float64.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from layerops.bundle.estimators import OneRuleClassifier, OneRuleRegressor
from layerops.bundle.onnx_io import MISSING_CATEGORY

_DOUBLE_TREE_ATTRIBUTES = frozenset({"nodes_values", "target_weights", "class_weights", "base_values"})


class NotConvertible(Exception):
    """The model is outside what the exporter handles; the message is the reason."""


def convert_imputer(scope: Any, operator: Any, container: Any) -> None:
    """SimpleImputer in full precision: NaN (numbers) or "" (strings) → the fitted statistics."""
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer

    imputer = operator.raw_operator
    kind = operator.inputs[0].type
    nan_marker = isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values)
    if not (isinstance(kind, StringTensorType | DoubleTensorType) and nan_marker):
        convert_sklearn_imputer(scope, operator, container)
        return
    if imputer.add_indicator:
        raise NotConvertible("SimpleImputer(add_indicator=True) has no ONNX export here")
    statistics = np.asarray(imputer.statistics_).ravel()
    names = [variable.full_name for variable in operator.inputs]
    features = names[0]
    if len(names) > 1:
        features = scope.get_unique_variable_name("imputer_input")
        container.add_node("Concat", names, [features], axis=1)
    mask = scope.get_unique_variable_name("imputer_mask")
    fill = scope.get_unique_variable_name("imputer_fill")
    if isinstance(kind, StringTensorType):
        marker = scope.get_unique_variable_name("imputer_marker")
        container.add_initializer(marker, TensorProto.STRING, [], [MISSING_CATEGORY.encode()])
        container.add_node("Equal", [features, marker], [mask])
        values = [str(value).encode() for value in statistics]
        container.add_initializer(fill, TensorProto.STRING, [1, statistics.size], values)
    else:
        numbers = statistics.astype(np.float64)
        if np.isnan(numbers).any():
            raise NotConvertible("SimpleImputer has an all-missing column; its ONNX export is not exact")
        container.add_node("IsNaN", [features], [mask])
        container.add_initializer(fill, TensorProto.DOUBLE, [1, numbers.size], numbers.tolist())
    container.add_node("Where", [mask, fill, features], [operator.outputs[0].full_name])


def convert_one_rule(scope: Any, operator: Any, container: Any) -> None:
    """A one-feature threshold rule: Gather → LessOrEqual → Where between the two leaves."""
    from skl2onnx.common.data_types import guess_proto_type

    rule, fresh = operator.raw_operator, scope.get_unique_variable_name
    value_type = guess_proto_type(operator.outputs[-1].type)
    value_dtype = np.float64 if value_type == TensorProto.DOUBLE else np.float32
    index, column, threshold, condition = fresh("rule_i"), fresh("rule_x"), fresh("rule_t"), fresh("rule_c")
    container.add_initializer(index, TensorProto.INT64, [1], [max(int(rule.feature_), 0)])
    container.add_node("Gather", [operator.inputs[0].full_name, index], [column], axis=1)
    input_type = guess_proto_type(operator.inputs[0].type)
    container.add_initializer(threshold, input_type, [], [float(rule.threshold_)])
    container.add_node("LessOrEqual", [column, threshold], [condition])
    leaves = []
    for value in (rule.left_value_, rule.right_value_):
        leaf = np.asarray(value, dtype=value_dtype).ravel()
        leaves.append(fresh("rule_leaf"))
        container.add_initializer(leaves[-1], value_type, [1, leaf.size], leaf.tolist())
    container.add_node("Where", [condition, *leaves], [operator.outputs[-1].full_name])
    if len(operator.outputs) == 1:  # a regressor has no label output
        return
    best, classes = fresh("rule_best"), fresh("rule_classes")
    container.add_node("ArgMax", [operator.outputs[1].full_name], [best], axis=1, keepdims=0)
    if rule.classes_.dtype.kind in "iub":
        container.add_initializer(classes, TensorProto.INT64, [rule.classes_.size], rule.classes_.tolist())
    else:
        labels = [str(label).encode() for label in rule.classes_]
        container.add_initializer(classes, TensorProto.STRING, [rule.classes_.size], labels)
    container.add_node("Gather", [classes, best], [operator.outputs[0].full_name], axis=0)


def _library(estimator: Any) -> str:
    """The top-level package an estimator's class comes from ("sklearn", "xgboost", ...)."""
    return type(estimator).__module__.partition(".")[0]


@functools.cache
def register_converters(library: str = "layerops") -> None:
    """Teach skl2onnx the baselines, and xgboost's or lightgbm's models (once per library and process).

    Only the library of the model at hand is imported: a forest's export never loads xgboost.
    """
    from skl2onnx import update_registered_converter
    from skl2onnx.common import shape_calculator as shapes

    classify = shapes.calculate_linear_classifier_output_shapes
    regress = shapes.calculate_linear_regressor_output_shapes
    options = {"zipmap": [True, False, "columns"], "nocl": [True, False]}
    converters: list[tuple[type, str, Any, Any, dict[str, Any] | None]] = []
    if library == "layerops":
        converters = [
            (OneRuleClassifier, "LayeropsOneRuleClassifier", classify, convert_one_rule, options),
            (OneRuleRegressor, "LayeropsOneRuleRegressor", regress, convert_one_rule, None),
        ]
    elif library == "xgboost":
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBClassifier, XGBRegressor

        converters = [
            (XGBClassifier, "XGBoostXGBClassifier", classify, convert_xgboost, options),
            (XGBRegressor, "XGBoostXGBRegressor", regress, convert_xgboost, None),
        ]
    elif library == "lightgbm":
        from lightgbm import LGBMClassifier, LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        converters = [
            (LGBMClassifier, "LightGbmLGBMClassifier", classify, convert_lightgbm, options),
            (LGBMRegressor, "LightGbmLGBMRegressor", regress, convert_lightgbm, {"split": None}),
        ]
    for model, alias, shape_calculator, converter, model_options in converters:
        update_registered_converter(model, alias, shape_calculator, converter, options=model_options)


def fold_base_score(node: onnx.NodeProto) -> None:
    """Move a single-target base value into the first tree's leaves (float32 adds, as xgboost)."""
    attributes = {attribute.name: attribute for attribute in node.attribute}
    if len(attributes.get("base_values", onnx.AttributeProto()).floats) != 1:
        return
    base = np.float32(attributes["base_values"].floats[0])
    trees = np.asarray(attributes["target_treeids"].ints)
    weights = np.asarray(attributes["target_weights"].floats, dtype=np.float32)
    weights[trees == trees.min()] += base
    attributes["target_weights"].ClearField("floats")
    attributes["target_weights"].floats.extend(weights.tolist())
    attributes["base_values"].ClearField("floats")
    attributes["base_values"].floats.extend([0.0])


class DoubleTrees:
    """Container proxy: TreeEnsembleRegressor keeps float64 thresholds and leaves (`*_as_tensor`).

    ai.onnx.ml 3 then compares float64 features and sums in float64; its output is float32 by
    the spec, so a Cast restores the float64 type the converters declared.
    """

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, op_type: str, inputs: Any, outputs: Any, **attrs: Any) -> None:
        """Add a node; rewrite a tree ensemble into its float64 form."""
        if op_type not in ("TreeEnsembleRegressor", "TreeEnsembleClassifier"):
            self._container.add_node(op_type, inputs, outputs, **attrs)
            return
        for key in _DOUBLE_TREE_ATTRIBUTES & attrs.keys():
            values = np.asarray(attrs.pop(key), dtype=np.float64).ravel()
            attrs[f"{key}_as_tensor"] = numpy_helper.from_array(values, "")
        final = [outputs] if isinstance(outputs, str) else list(outputs)
        narrow = [*final[:-1], f"{final[-1]}_float32"]  # values are the last output
        attrs["op_version"] = 3
        self._container.add_node(op_type, inputs, narrow, **attrs)
        self._container.add_node("Cast", narrow[-1:], final[-1:], to=TensorProto.DOUBLE)


def custom_converter(estimator: Any) -> tuple[Any, Any, bool] | None:
    """(converter, shape calculator, whether it takes float64 features) for the estimators whose
    skl2onnx conversion layerops replaces; None for the others.

    Regressors of scikit-learn (those `_tree_onnx.tree_head` leaves to skl2onnx) and lightgbm
    models get float64 trees. Registers the estimator's library with skl2onnx first.
    """
    library = _library(estimator)
    register_converters("layerops")
    if library in ("xgboost", "lightgbm"):
        register_converters(library)

    def double(convert: Any) -> Any:
        return lambda scope, operator, container: convert(scope, operator, DoubleTrees(container))

    if library == "lightgbm":
        from lightgbm import LGBMClassifier, LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
        from skl2onnx.common import shape_calculator as shapes

        lightgbm = {
            LGBMRegressor: shapes.calculate_linear_regressor_output_shapes,
            LGBMClassifier: shapes.calculate_linear_classifier_output_shapes,
        }
        shape = lightgbm.get(type(estimator))
        return None if shape is None else (double(convert_lightgbm), shape, True)
    if library != "sklearn":
        return None
    from skl2onnx.operator_converters.decision_tree import convert_sklearn_decision_tree_regressor
    from skl2onnx.operator_converters.random_forest import (
        convert_sklearn_random_forest_regressor_converter as convert_forest,
    )
    from skl2onnx.shape_calculators.ensemble_shapes import calculate_tree_regressor_output_shapes
    from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
    from sklearn.tree import DecisionTreeRegressor, ExtraTreeRegressor

    sklearn = {
        DecisionTreeRegressor: convert_sklearn_decision_tree_regressor,
        ExtraTreeRegressor: convert_sklearn_decision_tree_regressor,
        RandomForestRegressor: convert_forest,
        ExtraTreesRegressor: convert_forest,
    }
    convert = sklearn.get(type(estimator))
    return None if convert is None else (double(convert), calculate_tree_regressor_output_shapes, True)
