"""Saving and loading a bundle folder safely: skops (never raw pickle), ONNX, SHA-256 manifest.

Folder layout:
    metadata.json   BundleMetadata
    model.skops     the fitted sklearn Pipeline (raw feature frame -> prediction)
    model.onnx      optional ONNX export of the same pipeline
    reference.parquet  optional: a capped sample of training rows (raw features), for exact drift tests
    holdout.parquet    optional: a capped sample of the test split (raw features + target), which
                       the model never fitted on: the promotion gate's default evaluation data
    manifest.json   {"format_version", "files": {name: sha256}, "trusted_types": [...]}

Trust model: the manifest pins every other file by SHA-256 and lists the skops types the saver
had to trust. The manifest's own SHA-256 (`bundle_digest`) is the one value a registry stores; a
loader that knows it (`expected_digest`) detects any change. Without it, the type policy below
still refuses types outside the libraries a layerops model is built from.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from layerops.bundle.metadata import BundleMetadata
from layerops.errors import BundleError

MANIFEST_FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
MODEL_FILE = "model.skops"
ONNX_FILE = "model.onnx"
REFERENCE_FILE = "reference.parquet"
HOLDOUT_FILE = "holdout.parquet"
MANIFEST_FILE = "manifest.json"
_KNOWN_FILES = frozenset({METADATA_FILE, MODEL_FILE, ONNX_FILE, REFERENCE_FILE, HOLDOUT_FILE})

_TRUSTED_ROOTS = frozenset({"sklearn", "numpy", "scipy", "xgboost", "lightgbm", "collections"})
"""Top-level packages whose types a bundle may ask skops to trust."""
_TRUSTED_PREFIXES = ("layerops.bundle.",)
_SAFE_BUILTINS = frozenset(
    {"bool", "bytes", "complex", "dict", "float", "frozenset", "int", "list", "set", "slice", "str", "tuple"}
)
"""`builtins` names that are plain data types (never functions such as `eval` or `getattr`)."""
_FORBIDDEN_PARTS = frozenset(
    {
        "eval", "exec", "compile", "system", "popen", "spawn", "load", "loads", "fromfile",
        "runstring", "testing", "f2py", "distutils", "ctypeslib", "ctypes", "subprocess",
        "__import__", "getattr", "setattr", "open", "memmap", "DataSource", "NpzFile", "netcdf_file",
    }
)  # fmt: skip
"""Name parts that never belong to a model, even inside an allowed package (e.g. `numpy.load`)."""


@dataclass
class ModelBundle:
    """A fitted pipeline that takes the raw feature frame, plus its metadata and ONNX export."""

    model: Any
    """sklearn-compatible estimator: `predict(frame)` (and `predict_proba` for classifiers)."""
    metadata: BundleMetadata
    onnx_model: bytes | None = None
    reference: pd.DataFrame | None = None
    """A capped sample of the training rows (raw feature columns), the drift tests' reference."""
    holdout: pd.DataFrame | None = None
    """A capped sample of the held-out test split: raw feature columns plus the target column
    (`metadata.target`; class labels as text, regression values as float). None for bundles saved
    before it existed and for models fitted on the test split too (`selection.refit_all`)."""
    file_bytes: dict[str, int] = field(default_factory=dict)
    """Size of each file of the folder it was loaded from, manifest included (empty when built
    in memory): what the bundle costs to store, download and load."""


def save_bundle(bundle: ModelBundle, folder: Path) -> str:
    """Write the bundle into `folder` (created; must be empty); return the manifest's SHA-256."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BundleError(f"cannot save a bundle into {folder}: it is not an empty folder")
    if bundle.model is None:
        raise BundleError(f"cannot save bundle {bundle.metadata.name!r}: it has no native model")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return _write(bundle, folder)
    except BaseException:
        _clean(folder, remove_folder=created)
        raise


def load_bundle(folder: Path, *, expected_digest: str | None = None, native: bool = True) -> ModelBundle:
    """Verify and read a bundle folder; `native=False` skips the skops model."""
    folder = Path(folder)
    manifest_bytes = _read(folder / MANIFEST_FILE)
    if expected_digest is not None and _sha256(manifest_bytes) != expected_digest:
        raise BundleError(
            f"bundle {folder}: manifest.json has SHA-256 {_sha256(manifest_bytes)[:12]}…, "
            f"expected {expected_digest[:12]}… (the bundle was changed after registration)"
        )
    files, trusted = _parse_manifest(manifest_bytes, folder)
    contents = {name: _verified(folder, name, digest) for name, digest in files.items()}
    metadata = _parse_metadata(contents[METADATA_FILE], folder)
    model = _load_native(contents[MODEL_FILE], trusted, folder) if native else None
    frames = {
        name: _read_frame(contents[name], name, folder)
        for name in (REFERENCE_FILE, HOLDOUT_FILE)
        if name in contents
    }
    return ModelBundle(
        model=model,
        metadata=metadata,
        onnx_model=contents.get(ONNX_FILE),
        reference=frames.get(REFERENCE_FILE),
        holdout=frames.get(HOLDOUT_FILE),
        file_bytes={
            MANIFEST_FILE: len(manifest_bytes),
            **{name: len(data) for name, data in contents.items()},
        },
    )


def bundle_digest(folder: Path) -> str:
    """SHA-256 of the folder's manifest.json: one value that pins every file."""
    return _sha256(_read(Path(folder) / MANIFEST_FILE))


def _write(bundle: ModelBundle, folder: Path) -> str:
    import skops.io as sio  # imports scikit-learn: seconds, so only when a bundle is written

    model_path = folder / MODEL_FILE
    try:
        sio.dump(bundle.model, model_path)
    except Exception as exc:
        raise BundleError(
            f"cannot save the model of bundle {bundle.metadata.name!r} with skops: {exc}"
        ) from exc
    trusted = sorted(sio.get_untrusted_types(file=model_path))
    refused = _refused_types(trusted)
    if refused:
        raise BundleError(
            f"bundle {bundle.metadata.name!r} needs types outside the trusted libraries: {', '.join(refused)}"
        )
    (folder / METADATA_FILE).write_text(bundle.metadata.model_dump_json(indent=2), encoding="utf-8")
    if bundle.onnx_model is not None:
        (folder / ONNX_FILE).write_bytes(bundle.onnx_model)
    if bundle.reference is not None:
        # Written once with fixed options, so the same sample gives the same bytes (and digest).
        bundle.reference.to_parquet(folder / REFERENCE_FILE, index=False, compression="zstd")
    if bundle.holdout is not None:
        bundle.holdout.to_parquet(folder / HOLDOUT_FILE, index=False, compression="zstd")
    files = {path.name: _sha256(path.read_bytes()) for path in sorted(folder.iterdir())}
    manifest = {"format_version": MANIFEST_FORMAT_VERSION, "files": files, "trusted_types": trusted}
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    (folder / MANIFEST_FILE).write_bytes(data)
    return _sha256(data)


def _clean(folder: Path, *, remove_folder: bool) -> None:
    if remove_folder:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for path in folder.iterdir():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise BundleError(f"bundle {path.parent}: {path.name} is missing") from exc
    except OSError as exc:
        raise BundleError(f"bundle {path.parent}: cannot read {path.name}: {exc.strerror}") from exc


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parse_manifest(data: bytes, folder: Path) -> tuple[dict[str, str], list[str]]:
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"bundle {folder}: manifest.json is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"bundle {folder}: manifest.json is not a JSON object")
    version = manifest.get("format_version")
    if version != MANIFEST_FORMAT_VERSION:
        raise BundleError(
            f"bundle {folder}: manifest format_version {version!r} is not supported "
            f"(this layerops reads {MANIFEST_FORMAT_VERSION})"
        )
    files = manifest.get("files")
    trusted = manifest.get("trusted_types")
    if not isinstance(files, dict) or not all(
        isinstance(name, str) and isinstance(digest, str) for name, digest in files.items()
    ):
        raise BundleError(f"bundle {folder}: manifest.json 'files' must map file names to SHA-256 strings")
    if not isinstance(trusted, list) or not all(isinstance(name, str) for name in trusted):
        raise BundleError(f"bundle {folder}: manifest.json 'trusted_types' must be a list of strings")
    unknown = sorted(set(files) - _KNOWN_FILES)
    if unknown:
        raise BundleError(f"bundle {folder}: manifest.json lists unexpected files: {', '.join(unknown)}")
    for required in (METADATA_FILE, MODEL_FILE):
        if required not in files:
            raise BundleError(f"bundle {folder}: manifest.json does not list {required}")
    return dict(files), list(trusted)


def _verified(folder: Path, name: str, digest: str) -> bytes:
    data = _read(folder / name)
    if _sha256(data) != digest:
        raise BundleError(f"bundle {folder}: {name} does not match its SHA-256 in manifest.json (tampered?)")
    return data


def _parse_metadata(data: bytes, folder: Path) -> BundleMetadata:
    try:
        return BundleMetadata.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise BundleError(
            f"bundle {folder}: metadata.json is invalid at {where}: {first['msg']}"
            + (f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else "")
        ) from exc


def _load_native(data: bytes, trusted: list[str], folder: Path) -> Any:
    import skops.io as sio  # imports scikit-learn: seconds, so only when a model is loaded

    refused = _refused_types(trusted)
    if refused:
        raise BundleError(
            f"bundle {folder}: manifest.json trusts types outside the allowed libraries: {', '.join(refused)}"
        )
    try:
        needed = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise BundleError(f"bundle {folder}: {MODEL_FILE} is not a readable skops file: {exc}") from exc
    missing = sorted(set(needed) - set(trusted))
    if missing:
        raise BundleError(
            f"bundle {folder}: {MODEL_FILE} needs types manifest.json does not trust: {', '.join(missing)}"
        )
    try:
        return sio.load(io.BytesIO(data), trusted=trusted)
    except Exception as exc:
        raise BundleError(f"bundle {folder}: cannot load {MODEL_FILE}: {exc}") from exc


def _read_frame(data: bytes, name: str, folder: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise BundleError(f"bundle {folder}: {name} is not a readable Parquet file: {exc}") from exc


def _refused_types(types: list[str]) -> list[str]:
    return [name for name in types if not _allowed_type(name)]


def _allowed_type(name: str) -> bool:
    parts = name.split(".")
    if any(part in _FORBIDDEN_PARTS or not part.isidentifier() for part in parts):
        return False
    if parts[0] == "builtins":
        return len(parts) == 2 and parts[1] in _SAFE_BUILTINS
    if len(parts) < 2:
        return False
    if not (parts[0] in _TRUSTED_ROOTS or name.startswith(_TRUSTED_PREFIXES)):
        return False
    return _is_class(parts)


def _is_class(parts: list[str]) -> bool:
    """Whether the dotted name is a class of an allowed library (never a function).

    skops calls what a file names with the file's arguments; a function of an allowed library may
    write files (`numpy.savetxt`, `scipy.io.savemat`), while every type a model needs is a class
    (an estimator, `numpy.dtype`, `sklearn.tree._tree.Tree`, a booster).
    """
    for cut in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attribute in parts[cut:]:
                found = getattr(found, attribute)
        except AttributeError:
            return False
        return isinstance(found, type)
    return False
