"""Export a fitted pipeline to ONNX and accept it only if it matches the native model.

The graph has one input per raw feature and named outputs (see `layerops.bundle.onnx_io`).
Preprocessing runs in float64 like the native pipeline; the final estimator computes in its
library's own precision, because parity is about matching the native model, not exact maths:
- linear models and the one-rule baselines: float64;
- scikit-learn trees/forests (regressors) and lightgbm: float64 thresholds and sums, with
  skl2onnx's thresholds that reproduce scikit-learn's float32 comparisons exactly;
- scikit-learn tree classifiers and xgboost: float32, as those libraries compare (xgboost's
  base_score joins the first tree so float32 sums run in xgboost's order).
Tree ensembles output float32 (ai.onnx.ml 3), so regression parity at 1e-5 absolute holds for
targets up to roughly |y| < 100; larger targets need a relative tolerance.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd
from onnx import TensorProto, helper
from pandas.api import types as ptypes
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from layerops.bundle.metadata import FeatureSchema, OnnxInfo
from layerops.bundle.onnx_io import (
    LABEL_OUTPUT,
    PREDICTION_OUTPUT,
    PROBABILITIES_OUTPUT,
    onnx_feeds,
)
from layerops.training._onnx_converters import (
    NotConvertible,
    convert_imputer,
    custom_converter,
    fold_base_score,
)
from layerops.training._tree_onnx import tree_head

TARGET_OPSET: dict[str, int] = {"": 21, "ai.onnx.ml": 3}
"""ONNX opsets of exported graphs: string `Equal` needs ≥ 19; tree ensembles use ai.onnx.ml 3."""

# Estimators that compare float32 features natively (scikit-learn trees cast X to float32).
_FLOAT32_MODULES = (
    "sklearn.tree",
    "sklearn.ensemble._forest",
    "sklearn.ensemble._gb",
    "sklearn.ensemble._hist_gradient_boosting",
    "xgboost",
    "lightgbm",
)


def _one_line(exc: BaseException) -> str:
    """A short single-line description of a converter failure."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if isinstance(exc, NotConvertible):
        return text
    return f"{type(exc).__name__}: {text}"[:300]


def _input_schema(model: Pipeline, sample: pd.DataFrame) -> list[FeatureSchema]:
    """One feature per column the pipeline was fitted on: numbers → float, the rest → category."""
    names = [str(name) for name in getattr(model, "feature_names_in_", sample.columns)]
    missing = [name for name in names if name not in sample.columns]
    if missing:
        raise NotConvertible(f"sample lacks the pipeline's input columns {missing}")
    return [
        FeatureSchema(name=name, dtype="float" if ptypes.is_numeric_dtype(sample[name]) else "category")
        for name in names
    ]


def _drop_passthrough(step: Any) -> Any:
    """`step` without "passthrough" pipeline steps, which skl2onnx cannot parse (mutates a copy)."""
    if isinstance(step, Pipeline):
        step.steps = [(name, part) for name, part in step.steps if part not in (None, "passthrough")]
        for _, part in step.steps:
            _drop_passthrough(part)
        return step if step.steps else "passthrough"
    if isinstance(step, ColumnTransformer):
        step.transformers_ = [
            (name, _drop_passthrough(part), columns) for name, part, columns in step.transformers_
        ]
    return step


def _convert_head(estimator: Any, width: int, task: str) -> tuple[onnx.ModelProto, int]:
    """The estimator's graph and the element type it takes its features in.

    float64 for linear models and the baselines; float64 trees for scikit-learn and lightgbm
    regressors (skl2onnx picks float64 thresholds w with `(float32)x <= t ⇔ x <= w`); float32
    for the other tree models, whose libraries compare float32 (skl2onnx adjusts thresholds so
    decisions are exact); xgboost regressors also get base_score folded into the first tree.
    scikit-learn trees and forests skip skl2onnx: `tree_head` builds the same graph from the
    `tree_` arrays in a fraction of the time.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    vectorised = tree_head(estimator, width, TARGET_OPSET)
    if vectorised is not None:
        return vectorised
    custom = custom_converter(estimator)
    if custom is None:
        float32 = type(estimator).__module__.startswith(_FLOAT32_MODULES)
    else:
        float32 = not custom[2]
    head = convert_sklearn(
        estimator,
        initial_types=[("features", (FloatTensorType if float32 else DoubleTensorType)([None, width]))],
        target_opset=TARGET_OPSET,
        options={id(estimator): {"zipmap": False}} if task == "classification" else None,
        custom_conversion_functions={type(estimator): custom[0]} if custom else None,
        custom_shape_calculators={type(estimator): custom[1]} if custom else None,
    )
    if type(estimator).__module__.startswith("xgboost"):
        for node in head.graph.node:
            if node.op_type == "TreeEnsembleRegressor":
                fold_base_score(node)
    return head, int(TensorProto.FLOAT if float32 else TensorProto.DOUBLE)


def _convert_preprocess(
    model: Pipeline, sample: pd.DataFrame
) -> tuple[onnx.ModelProto, list[FeatureSchema], int]:
    """The preprocessing graph (float64), the input features, and the width of its output."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
    from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes

    if not isinstance(model, Pipeline) or len(model.steps) < 2:
        raise NotConvertible("expected a Pipeline of preprocessing steps and a final estimator")
    features = _input_schema(model, sample)
    inputs = [
        (f.name, (StringTensorType if f.dtype == "category" else DoubleTensorType)([None, 1]))
        for f in features
    ]
    preprocess = model[:-1]
    pre = convert_sklearn(
        _drop_passthrough(copy.deepcopy(preprocess)),
        initial_types=inputs,
        target_opset=TARGET_OPSET,
        custom_conversion_functions={SimpleImputer: convert_imputer},
        custom_shape_calculators={SimpleImputer: calculate_sklearn_imputer_output_shapes},
    )
    width = int(np.asarray(preprocess.transform(sample.iloc[:1])).shape[1])
    return pre, features, width


def _convert(model: Pipeline, sample: pd.DataFrame, task: str) -> onnx.ModelProto:
    """Convert preprocessing (float64) and estimator (native precision) and chain the graphs."""
    pre, features, width = _convert_preprocess(model, sample)
    head, feature_type = _convert_head(model.steps[-1][1], width, task)
    names = [LABEL_OUTPUT, PROBABILITIES_OUTPUT] if task == "classification" else [PREDICTION_OUTPUT]
    if len(head.graph.output) != len(names):
        raise NotConvertible(f"estimator graph has {len(head.graph.output)} outputs, expected {len(names)}")
    return _chain(pre, head, features, feature_type, names)


def _chain(
    pre: onnx.ModelProto,
    head: onnx.ModelProto,
    features: list[FeatureSchema],
    feature_type: int,
    output_names: list[str],
) -> onnx.ModelProto:
    """One graph: inputs named after the features → preprocessing → Cast → estimator → outputs."""
    pre = onnx.compose.add_prefix(pre, "pre_")
    head = onnx.compose.add_prefix(head, "model_")
    if len(pre.graph.input) != len(features):
        raise NotConvertible(
            f"preprocessing graph has {len(pre.graph.input)} inputs for {len(features)} columns"
        )
    renamed = {source.name: feature.name for source, feature in zip(pre.graph.input, features, strict=True)}
    nodes = list(pre.graph.node)
    for node in nodes:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    source, target = pre.graph.output[0].name, head.graph.input[0].name
    nodes.append(helper.make_node("Cast", [source], [target], to=feature_type, name="layerops_features"))
    nodes.extend(head.graph.node)
    outputs = []
    for source, name in zip(head.graph.output, output_names, strict=True):
        nodes.append(helper.make_node("Identity", [source.name], [name], name=f"layerops_{name}"))
        outputs.append(onnx.ValueInfoProto(name=name, type=source.type))
    clashes = set(renamed.values()) & {name for node in nodes for name in node.output}
    if clashes:
        raise NotConvertible(f"feature names {sorted(clashes)} clash with ONNX output names")
    inputs = []
    for source in pre.graph.input:
        inputs.append(onnx.ValueInfoProto(name=renamed[source.name], type=source.type))
    graph = helper.make_graph(
        nodes, "layerops", inputs, outputs, initializer=[*pre.graph.initializer, *head.graph.initializer]
    )
    opsets = dict(TARGET_OPSET)
    for opset in [*pre.opset_import, *head.opset_import]:
        opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
    chained = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(domain, version) for domain, version in opsets.items()],
        ir_version=max(pre.ir_version, head.ir_version),
        producer_name="layerops",
    )
    onnx.checker.check_model(chained)
    return chained


def _max_abs_error(onnx_values: npt.NDArray[Any], native: npt.NDArray[Any]) -> float:
    """Largest |onnx - native|; inf when shapes differ or only one side is NaN."""
    left = np.asarray(onnx_values, dtype=np.float64)
    right = np.asarray(native, dtype=np.float64)
    if left.size != right.size:
        return float("inf")
    left, right = left.reshape(right.shape), right
    both_nan = np.isnan(left) & np.isnan(right)
    diff = np.where(both_nan, 0.0, np.abs(left - right))
    return float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0))


def _parity(
    model_bytes: bytes,
    model: Pipeline,
    sample: pd.DataFrame,
    features: list[FeatureSchema],
    task: str,
    expected: np.ndarray | None = None,
) -> float:
    """Max abs error between onnxruntime and the native pipeline's outputs on `sample`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One thread sums tree outputs in tree order, as xgboost does; parallel partial sums differ
    # from it by a few float32 ulps, which is runtime noise, not a property of the graph.
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    names = [PROBABILITIES_OUTPUT] if task == "classification" else [PREDICTION_OUTPUT]
    (values,) = session.run(names, onnx_feeds(sample, features, session))
    if task == "classification":
        return _max_abs_error(values, model.predict_proba(sample) if expected is None else expected)
    native = model.predict(sample) if expected is None else expected
    return _max_abs_error(np.asarray(values).ravel(), np.asarray(native).ravel())


def export_onnx(
    model: Pipeline,
    sample: pd.DataFrame,
    *,
    task: str,
    tolerance: float = 1e-5,
    expected: np.ndarray | None = None,
) -> tuple[bytes | None, OnnxInfo]:
    """ONNX bytes and their parity report, or (None, why not); never raises for a model it can't convert.

    Parity compares `predict_proba` (classification) or `predict` (regression) with onnxruntime
    on `sample`, the raw test features; the export is kept only if max |error| ≤ tolerance.
    `expected` passes those native outputs when the caller already has them.
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be classification or regression, not {task!r}")
    if sample.empty:
        return None, OnnxInfo(converted=False, reason="no rows to check parity on", tolerance=tolerance)
    try:
        features = _input_schema(model, sample) if isinstance(model, Pipeline) else []
        model_bytes = _convert(model, sample, task).SerializeToString()
    except Exception as exc:  # converters raise anything from RuntimeError to AttributeError
        return None, OnnxInfo(converted=False, reason=_one_line(exc), tolerance=tolerance)
    try:
        error = _parity(model_bytes, model, sample, features, task, expected)
    except Exception as exc:  # an invalid graph fails only when onnxruntime loads or runs it
        reason = f"onnxruntime failed: {_one_line(exc)}"
        return None, OnnxInfo(converted=False, reason=reason, tolerance=tolerance)
    rows = len(sample)
    if not error <= tolerance:
        reason = f"parity failed: max error {error:.1e} > {tolerance:.0e}"
        info = OnnxInfo(
            converted=False,
            reason=reason,
            max_abs_error=error if np.isfinite(error) else None,
            tolerance=tolerance,
            rows_checked=rows,
        )
        return None, info
    info = OnnxInfo(converted=True, max_abs_error=error, tolerance=tolerance, rows_checked=rows)
    return model_bytes, info
