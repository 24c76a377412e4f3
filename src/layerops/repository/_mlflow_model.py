"""The registered version's folder: a standard MLflow model with the layerops bundle inside it.

    MLmodel              python_function: loader_module layerops.repository.mlflow_pyfunc, data
                         bundle (labels for a classifier, values for a regressor, as `/invocations`
                         answers); sklearn: the bundle's own model.skops with its trusted types
    requirements.txt     layerops and the library versions that trained the model
    python_env.yaml, conda.yaml
    bundle/              the bundle, byte for byte (its manifest pins every file in it)

`mlflow.pyfunc.load_model("models:/NAME@ALIAS")` and `mlflow models serve -m models:/NAME@ALIAS`
read the MLmodel; layerops itself reads only `bundle/`, checked against the version's digest tag.
`mlflow.sklearn.load_model` gives the fitted pipeline (which predicts class indices) through skops
with exactly the types the bundle's manifest trusts, so nothing is ever unpickled. A test checks
the sklearn flavour configuration against what `mlflow.sklearn.save_model` itself writes.
"""

from __future__ import annotations

import json
import shutil
from importlib import metadata as importlib_metadata
from pathlib import Path

import yaml

from layerops.bundle import BundleMetadata, bundle_digest, load_bundle
from layerops.repository._layout import BUNDLE_PATH, MLFLOW_MODEL_LAYOUT
from layerops.repository.mlflow_pyfunc import DIGEST_KEY
from layerops.version import __version__

LOADER_MODULE = "layerops.repository.mlflow_pyfunc"
"""The `python_function` loader every layerops MLmodel names (see that module)."""
MODEL_FILE = "model.skops"
"""The bundle's skops-serialised pipeline, which the sklearn flavour points to."""
_MANIFEST = "manifest.json"
_REQUIREMENTS = ("mlflow", "scikit-learn", "skops", "onnxruntime", "numpy", "scipy", "pandas")
_OPTIONAL_REQUIREMENTS = ("xgboost", "lightgbm")


def save_mlflow_model(bundle_dir: Path, meta: BundleMetadata, folder: Path) -> None:
    """Write the MLflow model folder of the bundle in `bundle_dir` into `folder` (created).

    `bundle_dir` must already be verified (manifest digest and file hashes); the copy in
    `folder/bundle` is verified again against the same digest.
    """
    from mlflow import pyfunc
    from mlflow.models import Model

    digest = bundle_digest(bundle_dir)
    manifest = json.loads((bundle_dir / _MANIFEST).read_text(encoding="utf-8"))
    trusted = [str(name) for name in manifest["trusted_types"]]
    libraries = meta.lineage.libraries
    folder.mkdir(parents=True)
    shutil.copytree(bundle_dir, folder / BUNDLE_PATH)
    load_bundle(folder / BUNDLE_PATH, expected_digest=digest, native=False)  # the copy is exact
    model = Model(
        signature=_signature(meta),
        metadata={
            "layerops_model": meta.name,
            "layerops_task": meta.task,
            "layerops_classes": meta.classes,
            "layerops_candidate": meta.candidate,
            "layerops_layout": MLFLOW_MODEL_LAYOUT,
            DIGEST_KEY: digest,
        },
    )
    pyfunc.add_to_model(
        model,
        loader_module=LOADER_MODULE,
        data=BUNDLE_PATH,
        conda_env="conda.yaml",
        python_env="python_env.yaml",
        code=None,
    )
    model.add_flavor(
        "sklearn",
        pickled_model=f"{BUNDLE_PATH}/{MODEL_FILE}",
        sklearn_version=libraries.get("scikit-learn") or importlib_metadata.version("scikit-learn"),
        serialization_format="skops",
        code=None,
        skops_trusted_types=trusted,
    )
    model.model_size_bytes = sum(p.stat().st_size for p in (folder / BUNDLE_PATH).iterdir())
    model.save(str(folder / "MLmodel"))
    _write_environment(folder, _requirements(trusted, libraries), libraries.get("python"))


def _signature(meta: BundleMetadata) -> object:
    """Inputs as `/invocations` takes them (numbers as double, booleans as boolean, categories as
    string); the output is the label (string) or the value (double)."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    kinds = {"category": "string", "bool": "boolean"}
    columns = [ColSpec(kinds.get(f.dtype, "double"), f.name, required=f.required) for f in meta.features]
    output = ColSpec("string" if meta.task == "classification" else "double")
    return ModelSignature(inputs=Schema(columns), outputs=Schema([output]))  # type: ignore[arg-type]


def _requirements(trusted: list[str], libraries: dict[str, str]) -> list[str]:
    """Pinned pip requirements: this layerops (the loader), then the versions that trained the
    model where the lineage has them."""
    roots = {name.split(".", 1)[0] for name in trusted}
    names = [*_REQUIREMENTS, *(name for name in _OPTIONAL_REQUIREMENTS if name in roots)]
    pins = [f"layerops=={__version__}"]
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
