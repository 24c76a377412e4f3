"""Demo and benchmark data, made locally and deterministically (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

_REGIONS = ("north", "south", "east", "west", "central")
_SERVICE = {"economy": 0.8, "standard": 1.0, "express": 1.6}
_IRIS_COLUMNS = {
    "sepal length (cm)": "sepal_length",
    "sepal width (cm)": "sepal_width",
    "petal length (cm)": "petal_length",
    "petal width (cm)": "petal_width",
}


def iris() -> pd.DataFrame:
    """scikit-learn's bundled iris set with snake_case columns and a text `species` target."""
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True)
    frame: pd.DataFrame = data.frame.rename(columns=_IRIS_COLUMNS)
    frame["species"] = [str(data.target_names[i]) for i in frame.pop("target")]
    return frame


def shipping(rows: int = 5000, *, seed: int = 0) -> pd.DataFrame:
    """A parcel shipping-cost regression set: sizes, weight, route and service level → cost."""
    rng = np.random.default_rng(seed)
    length = rng.uniform(10, 120, rows).round(1)
    width = rng.uniform(10, 80, rows).round(1)
    height = rng.uniform(2, 60, rows).round(1)
    weight = rng.gamma(2.0, 4.0, rows).round(2) + 0.1
    origin = rng.choice(_REGIONS, rows)
    destination = rng.choice(_REGIONS, rows)
    service = rng.choice(list(_SERVICE), rows, p=[0.3, 0.5, 0.2])
    volumetric = length * width * height / 5000.0
    billable = np.maximum(weight, volumetric)
    zones = np.abs(
        np.array([_REGIONS.index(o) for o in origin]) - np.array([_REGIONS.index(d) for d in destination])
    )
    multiplier = np.array([_SERVICE[s] for s in service])
    cost = (4.0 + 1.1 * billable + 2.5 * zones) * multiplier + rng.normal(0, 1.0, rows)
    frame = pd.DataFrame(
        {
            "length": length,
            "width": width,
            "height": height,
            "weight": weight,
            "origin": origin,
            "destination": destination,
            "service_level": service,
            "cost": cost.round(2),
        }
    )
    # A little realism: some parcels were never weighed.
    frame.loc[rng.choice(rows, rows // 100, replace=False), "weight"] = np.nan
    return frame


def synthetic_classification(rows: int, *, features: int = 20, seed: int = 0) -> pd.DataFrame:
    """A numeric binary classification set (scikit-learn's make_classification) with a `label`."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=rows,
        n_features=features,
        n_informative=max(2, features // 2),
        n_redundant=0,
        random_state=seed,
    )
    frame = pd.DataFrame(x, columns=[f"f{i:02d}" for i in range(features)])
    frame["label"] = y
    return frame


def write_examples(folder: Path) -> list[Path]:
    """Write the demo data sets (iris.csv, shipping.csv) into `folder`; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "iris.csv", folder / "shipping.csv"]
    iris().to_csv(paths[0], index=False)
    shipping().to_csv(paths[1], index=False)
    return paths
