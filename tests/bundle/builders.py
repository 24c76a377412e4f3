"""Small hand-made bundles for bundle and repository tests (the training layer is not needed)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from layerops.bundle import BundleMetadata, FeatureSchema, Lineage, ModelBundle

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def make_metadata(
    name: str,
    frame: pd.DataFrame,
    target: str,
    *,
    candidate: str,
    classes: list[str] | None,
    categorical: tuple[str, ...] = (),
) -> BundleMetadata:
    """Metadata for a model trained on `frame`, with every non-target column as a feature."""
    features = []
    for column in frame.columns:
        if column == target:
            continue
        if column in categorical:
            cats = sorted(str(value) for value in frame[column].dropna().unique())
            features.append(FeatureSchema(name=column, dtype="category", categories=cats))
        else:
            values = frame[column]
            features.append(
                FeatureSchema(name=column, dtype="float", min=float(values.min()), max=float(values.max()))
            )
    return BundleMetadata(
        name=name,
        task="classification" if classes is not None else "regression",
        target=target,
        classes=classes,
        features=features,
        candidate=candidate,
        metrics={"validation": {"accuracy": 0.95}},
        lineage=Lineage(dataset_sha256="0" * 64, spec_sha256="1" * 64, seed=7),
        created_at="2026-01-01T00:00:00+00:00",
    )


def iris_bundle(iris_frame: pd.DataFrame, *, name: str = "iris", forest: bool = False) -> ModelBundle:
    """A fitted iris pipeline (scaler + logistic regression, or a small forest) as a bundle."""
    features = iris_frame[IRIS_FEATURES]
    estimator: Any = (
        RandomForestClassifier(n_estimators=5, random_state=0) if forest else LogisticRegression(max_iter=500)
    )
    model: Pipeline = make_pipeline(StandardScaler(), estimator)
    model.fit(features, iris_frame["species"])
    classes = [str(label) for label in model.classes_]
    metadata = make_metadata(
        name,
        iris_frame,
        "species",
        candidate="random_forest" if forest else "logistic_regression",
        classes=classes,
    )
    return ModelBundle(model=model, metadata=metadata)
