"""Loaded models: how a version is loaded, warmed and checked, and the registry that serves them.

The registry maps a model name to its `ServedModel`, an immutable object. A reload builds a new
one aside and swaps the dict entry (atomic under the GIL): a request that already holds the old
object finishes on it, and the old one is released when the last such request ends.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from layerops.bundle import BundleMetadata, ModelBundle
from layerops.delivery.engines import Engine, build_engine, parity_error, reference_feeds
from layerops.delivery.feeds import Columns, Feeds
from layerops.delivery.inputs import InputValidator
from layerops.delivery.settings import ModelRef, ServeSettings
from layerops.errors import BundleError, InputError, LayeropsError, ModelNotReadyError, NotFoundError
from layerops.numbers import is_natural, parse_natural
from layerops.repository.api import ModelRepository

FAILED_LOAD_SECONDS = 10.0
"""How long a failed on-demand load is remembered (answered again without a new download)."""
NATIVE_CHECK_TOLERANCE = 1e-9
INLINE_TIMING_CALLS = 5


@dataclass(frozen=True, eq=False)
class ServedModel:
    """One loaded model version with its engine and request validator (compared by identity)."""

    name: str
    version: int
    ref: str
    """The reference it was loaded by: an alias or a version number."""
    aliases: tuple[str, ...]
    metadata: BundleMetadata
    engine: Engine = field(repr=False)
    validator: InputValidator = field(repr=False)
    engine_note: str | None = None
    """Why ONNX Runtime is not used, when it is not."""
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    load_seconds: float = 0.0
    inline_rows: int = 0
    """Engine calls of at most this many rows run on the event loop (measured cheap at load)."""
    reference: pd.DataFrame | None = field(default=None, repr=False)
    """The bundle's sample of training rows: the reference of the server's drift checks."""

    def summary(self) -> dict[str, Any]:
        """Name, version, aliases, task and engine (for `GET /models`)."""
        return {
            "name": self.name,
            "version": self.version,
            "alias": None if is_natural(self.ref) else self.ref,
            "aliases": list(self.aliases),
            "task": self.metadata.task,
            "engine": self.engine.name,
        }


class ModelLoader:
    """Loads a version from the repository: bundle → engine → warm-up → reference check."""

    def __init__(self, repository: ModelRepository, settings: ServeSettings) -> None:
        self._repository = repository
        self._settings = settings

    def resolve(self, name: str, ref: str) -> int:
        """The version number `ref` (alias or number) names now."""
        number = parse_natural(ref)
        if number is not None:
            return self._repository.get_version(name, number).version
        return self._repository.resolve_alias(name, ref).version

    def load(self, name: str, ref: str, *, version: int | None = None) -> ServedModel:
        """Load, warm and check the version `ref` names (or `version`, already resolved from it).

        Raises a `LayeropsError` naming the model and the reason.
        """
        start = time.perf_counter()
        if version is None:
            version = parse_natural(ref)
        entry = (
            self._repository.get_version(name, version)
            if version is not None
            else self._repository.resolve_alias(name, ref)
        )
        # The native model is deserialised only if the native engine serves: ONNX Runtime needs
        # just the export, and a scikit-learn forest costs seconds and 100+ MiB to load.
        preference = self._settings.engine
        bundle = self._repository.load_bundle(name, entry.version, native=preference == "native")
        engine, note = build_engine(
            bundle,
            preference,
            native=lambda: self._repository.load_bundle(name, entry.version),
            onnx_threads=self._settings.onnx_threads,
        )
        if engine.name == "native" and bundle.metadata.reference_rows:
            # The native model must still answer its own reference rows as it did at training.
            error = parity_error(engine, bundle)
            if error > NATIVE_CHECK_TOLERANCE:
                raise BundleError(
                    f"{name} v{entry.version}: reference rows differ from training by {error:.2e}"
                )
        inline_rows = 0
        if bundle.metadata.reference_rows:
            reference = reference_feeds(bundle, engine).columns
            first = {key: values[:1] for key, values in reference.items()}
            warm = self._settings.warm_rows
            if warm:
                columns = {key: values[:warm] for key, values in reference.items()}
                for _ in range(3):
                    engine.predict_columns(first)
                    engine.predict_columns(columns)
            inline_rows = self._inline_rows(name, engine, bundle, first)
        validator = InputValidator(
            bundle.metadata,
            extra=self._settings.extra_fields,
            max_rows=self._settings.max_batch_rows,
            max_fields=self._settings.max_fields,
            layout=engine.layout,
        )
        return ServedModel(
            name=name,
            version=entry.version,
            ref=ref,
            aliases=entry.aliases,
            metadata=bundle.metadata,
            engine=engine,
            validator=validator,
            engine_note=note,
            load_seconds=time.perf_counter() - start,
            inline_rows=inline_rows,
            reference=bundle.reference,
        )

    def _inline_rows(self, name: str, engine: Engine, bundle: ModelBundle, one: Columns) -> int:
        """How many rows one engine call may take and still fit the event loop's budget.

        Times calls on one reference row (`one`) and on a full batch (`max_batch_size` distinct
        rows from `timing_feeds`) and interpolates: a scikit-learn forest costs milliseconds for
        one row and little more per extra row, ONNX Runtime microseconds for one row and a few per
        extra row. 0 when the budget is off or one row is over budget.
        """
        budget = self._settings.inline_budget_ms / 1000.0
        if budget <= 0:
            return 0
        size = self._settings.batching_for(name).max_batch_size
        single = _median_call_seconds(engine, one)
        if single > budget:
            return 0
        if size == 1:
            return 1
        full = timing_feeds(bundle, engine, size).columns
        per_extra_row = max(_median_call_seconds(engine, full) - single, 0.0) / (size - 1)
        if per_extra_row == 0:
            return size
        return min(size, 1 + int((budget - single) / per_extra_row))

    def allows_on_demand(self, name: str, version: int) -> bool:
        """Whether version `version` of `name` may be loaded because a request asked for it."""
        return self._settings.allows_on_demand(name, version)

    def discover(self) -> list[ModelRef]:
        """Every registered model that has a `production` alias."""
        return [
            ModelRef(s.name, "production")
            for s in self._repository.list_models()
            if "production" in s.aliases
        ]


class ModelRegistry:
    """The models a server answers with: one current version per name, plus pinned versions."""

    def __init__(self, refs: list[ModelRef], *, pinned_cache: int = 4) -> None:
        self.refs = {ref.name: ref for ref in refs}
        self._current: dict[str, ServedModel] = {}
        self._pinned: OrderedDict[tuple[str, int], ServedModel] = OrderedDict()
        self._pinned_cache = pinned_cache
        self._failed_loads: dict[tuple[str, int], tuple[float, type[LayeropsError], str]] = {}
        self._loading: dict[tuple[str, int], threading.Lock] = {}
        self._lock = threading.Lock()
        self.failures: dict[str, str] = {}
        """Model name → why its last load or check failed (cleared by the next one that succeeds)."""

    def get(self, name: str) -> ServedModel:
        """The current version of `name`."""
        model = self._current.get(name)
        if model is not None:
            return model
        if name in self.refs:
            reason = self.failures.get(name, "still loading")
            raise ModelNotReadyError(f"model '{name}' is not loaded: {reason}")
        raise NotFoundError(
            f"model '{name}' is not served here; served: {', '.join(sorted(self.refs)) or 'none'}"
        )

    def get_version(self, name: str, version: int, loader: ModelLoader) -> ServedModel:
        """A specific version: the current one, a cached pinned one, or loaded now if allowed.

        Only versions the loader allows on demand are loaded (others are a `NotFoundError`); one
        load per version at a time; a failed load is remembered for `FAILED_LOAD_SECONDS`, so a
        broken version is not downloaded again on every request.
        """
        current = self.get(name)
        cached = self.cached(name, version)
        if cached is not None:
            return cached
        if not loader.allows_on_demand(name, version):
            raise NotFoundError(
                f"model '{name}' version {version} is not served here (serving version {current.version}); "
                "other versions load on demand only where LAYEROPS_ON_DEMAND_VERSIONS allows them"
            )
        key = (name, version)
        with self._lock:
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # concurrent requests for one new version: one load, the others wait for it
            cached = self.cached(name, version)
            if cached is not None:
                return cached
            failed = self._failed_loads.get(key)
            if failed is not None and time.monotonic() - failed[0] < FAILED_LOAD_SECONDS:
                raise failed[1](failed[2])
            try:
                model = loader.load(name, str(version))
            except LayeropsError as exc:
                now = time.monotonic()
                with self._lock:
                    self._loading.pop(key, None)
                    for stale in [
                        k for k, f in self._failed_loads.items() if now - f[0] >= FAILED_LOAD_SECONDS
                    ]:
                        del self._failed_loads[stale]  # unknown versions asked for must not pile up
                    self._failed_loads[key] = (now, type(exc), str(exc))
                raise
            with self._lock:
                self._failed_loads.pop(key, None)
                self._loading.pop(key, None)
                self._pinned[key] = model
                while len(self._pinned) > self._pinned_cache:
                    self._pinned.popitem(last=False)
        return model

    def cached(self, name: str, version: int) -> ServedModel | None:
        """The current or an already-loaded pinned version, without loading anything."""
        current = self.get(name)
        if current.version == version:
            return current
        with self._lock:
            return self._pinned.get((name, version))

    def serves(self, model: ServedModel) -> bool:
        """True while `model` (this very object) is current or cached as a pinned version."""
        if self._current.get(model.name) is model:
            return True
        with self._lock:
            return self._pinned.get((model.name, model.version)) is model

    def swap(self, model: ServedModel) -> ServedModel | None:
        """Make `model` the current version of its name; return the one it replaced."""
        old = self._current.get(model.name)
        self._current[model.name] = model
        self.failures.pop(model.name, None)
        return old

    def fail(self, name: str, reason: str) -> None:
        """Record a failed load of `name` (the current version, if any, keeps serving)."""
        self.failures[name] = reason

    def recovered(self, name: str) -> None:
        """A check of `name` succeeded again: forget its last failure."""
        self.failures.pop(name, None)

    def models_by_name(self) -> dict[str, ServedModel]:
        """A snapshot of the current models."""
        return dict(self._current)

    def models(self) -> list[ServedModel]:
        """Every current model, by name."""
        return [self._current[name] for name in sorted(self._current)]

    def ready(self) -> bool:
        """True when every configured model has a loaded version."""
        return all(name in self._current for name in self.refs)


def timing_feeds(bundle: ModelBundle, engine: Engine, rows: int) -> Feeds:
    """`rows` distinct valid rows to time an engine on, generated from the input schema.

    Repeating the few reference rows would time a tree ensemble with its paths in cache (measured
    9x too cheap), so each row takes a reference row and redraws every feature with a known
    range or category set (seeded: the same rows every load).
    """
    rng = np.random.default_rng(0)
    references = [row["features"] for row in bundle.metadata.reference_rows]
    generated = []
    for i in range(rows):
        row = dict(references[i % len(references)])
        for feature in bundle.metadata.features:
            if feature.dtype == "category" and feature.categories:
                row[feature.name] = feature.categories[int(rng.integers(len(feature.categories)))]
            elif feature.dtype in ("float", "int") and feature.min is not None and feature.max is not None:
                value = float(rng.uniform(feature.min, feature.max))
                row[feature.name] = round(value) if feature.dtype == "int" else value
        generated.append(row)
    validator = InputValidator(bundle.metadata, extra="ignore", max_rows=rows, layout=engine.layout)
    try:
        return validator.row_feeds(generated)
    except InputError:  # a schema the draws do not fit: time the reference rows repeated instead
        columns = reference_feeds(bundle, engine).columns
        return Feeds(
            {key: np.resize(values, (rows, *values.shape[1:])) for key, values in columns.items()}, rows
        )


def _median_call_seconds(engine: Engine, columns: dict[str, np.ndarray]) -> float:
    """Median wall time of `INLINE_TIMING_CALLS` engine calls on `columns` (after one untimed call)."""
    engine.predict_columns(columns)
    timings = []
    for _ in range(INLINE_TIMING_CALLS):
        started = time.perf_counter()
        engine.predict_columns(columns)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def probabilities_by_class(probabilities: np.ndarray, classes: list[str]) -> list[dict[str, float]]:
    """Rows of class probabilities as `{label: p}` mappings."""
    if probabilities.shape[1:] != (len(classes),):
        raise ValueError(f"expected {len(classes)} probability columns, got shape {probabilities.shape}")
    return [dict(zip(classes, row, strict=True)) for row in probabilities.tolist()]
