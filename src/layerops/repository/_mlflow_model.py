"""The winner's pipeline as an MLflow sklearn-flavor model, so MLflow's own tools can serve it.

`mlflow models serve -m <uri> --env-manager local` and `mlflow.pyfunc.load_model(<uri>)` read
this folder; layerops itself never does (it loads the bundle, whose manifest pins every file).

The folder is what `mlflow.sklearn.save_model(pipeline, serialization_format="skops",
skops_trusted_types=...)` writes, except that its `model.skops` is a byte-for-byte copy of the
bundle's verified `model.skops` rather than a fresh dump: the same fitted pipeline by SHA-256,
and no skops load + dump at training time (seconds for a large forest). MLflow trusts exactly the
types the bundle's manifest trusts, so it never unpickles anything. A test checks that the
flavor configuration matches what `mlflow.sklearn.save_model` itself writes.

A classifier predicts class indices, as the bundle's pipeline does; the labels are in the MLmodel
metadata (`layerops_classes`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from importlib import metadata as importlib_metadata
from pathlib import Path

import yaml

from layerops.bundle import BundleMetadata
from layerops.errors import BundleError

MLFLOW_MODEL_PATH = "mlflow_model"
"""Run artifact path of the MLflow model, beside (never inside) the manifest-checked bundle."""
MODEL_FILE = "model.skops"
"""MLflow's name for a skops-serialised sklearn model, and the bundle's."""
_MANIFEST = "manifest.json"
_REQUIREMENTS = ("scikit-learn", "skops", "numpy", "scipy", "pandas")
_OPTIONAL_REQUIREMENTS = ("xgboost", "lightgbm")


def save_mlflow_model(bundle_dir: Path, meta: BundleMetadata, folder: Path) -> None:
    """Write the bundle's native pipeline as an MLflow sklearn model into `folder` (created).

    `bundle_dir` must already be verified (manifest digest and file hashes).
    """
    from mlflow import pyfunc
    from mlflow.models import Model

    manifest = json.loads((bundle_dir / _MANIFEST).read_text(encoding="utf-8"))
    trusted = [str(name) for name in manifest["trusted_types"]]
    libraries = meta.lineage.libraries
    folder.mkdir(parents=True)
    shutil.copyfile(bundle_dir / MODEL_FILE, folder / MODEL_FILE)
    digest = hashlib.sha256((folder / MODEL_FILE).read_bytes()).hexdigest()
    if digest != manifest["files"][MODEL_FILE]:
        raise BundleError(f"bundle {bundle_dir}: {MODEL_FILE} changed while it was being copied")
    model = Model(
        signature=_signature(meta),
        metadata={
            "layerops_model": meta.name,
            "layerops_task": meta.task,
            "layerops_classes": meta.classes,
            "layerops_candidate": meta.candidate,
            "layerops_model_sha256": digest,
        },
    )
    pyfunc.add_to_model(
        model,
        loader_module="mlflow.sklearn",
        model_path=MODEL_FILE,
        conda_env="conda.yaml",
        python_env="python_env.yaml",
        code=None,
        predict_fn="predict",
    )
    model.add_flavor(
        "sklearn",
        pickled_model=MODEL_FILE,
        sklearn_version=libraries.get("scikit-learn") or importlib_metadata.version("scikit-learn"),
        serialization_format="skops",
        code=None,
        skops_trusted_types=trusted,
    )
    model.model_size_bytes = (folder / MODEL_FILE).stat().st_size
    model.save(str(folder / "MLmodel"))
    _write_environment(folder, _requirements(trusted, libraries), libraries.get("python"))


def _signature(meta: BundleMetadata) -> object:
    """Inputs as the pipeline was fitted on them: numbers and booleans as double, text as string."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    columns = [
        ColSpec("string" if f.dtype == "category" else "double", f.name, required=f.required)
        for f in meta.features
    ]
    output = ColSpec("long" if meta.task == "classification" else "double")
    return ModelSignature(inputs=Schema(columns), outputs=Schema([output]))  # type: ignore[arg-type]


def _requirements(trusted: list[str], libraries: dict[str, str]) -> list[str]:
    """Pinned pip requirements: the versions that trained the model where the lineage has them."""
    roots = {name.split(".", 1)[0] for name in trusted}
    names = ["mlflow", *_REQUIREMENTS, *(name for name in _OPTIONAL_REQUIREMENTS if name in roots)]
    pins = []
    for name in names:
        version = libraries.get(name)
        if version is None:
            try:
                version = importlib_metadata.version(name)
            except importlib_metadata.PackageNotFoundError:
                pins.append(name)
                continue
        pins.append(f"{name}=={version}")
    return pins


def _write_environment(folder: Path, requirements: list[str], python: str | None) -> None:
    """requirements.txt, python_env.yaml and conda.yaml as MLflow writes them (for non-local envs)."""
    (folder / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
    python_env = {
        "python": python or "3",
        "build_dependencies": ["pip", "setuptools", "wheel"],
        "dependencies": ["-r requirements.txt"],
    }
    conda = {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [f"python={python}" if python else "python", "pip", {"pip": requirements}],
    }
    for name, content in (("python_env.yaml", python_env), ("conda.yaml", conda)):
        (folder / name).write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
