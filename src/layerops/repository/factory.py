"""Build the configured model repository from settings (the one place that picks the backend)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from layerops.errors import BundleError, NotFoundError, RepositoryError
from layerops.repository._layout import DIGEST_TAG
from layerops.repository._registry_tables import open_tables, sqlite_file
from layerops.repository.api import ModelRepository, RegistryReader
from layerops.settings import Settings

if TYPE_CHECKING:
    from layerops.bundle import ModelBundle
    from layerops.repository.mlflow_repo import MlflowRepository

_ELSEWHERE = "point elsewhere with --home or LAYEROPS_HOME (or --tracking-uri / LAYEROPS_TRACKING_URI)"


def open_repository(settings: Settings, *, create: bool = True) -> ModelRepository:
    """The `MlflowRepository` for the settings' tracking URI, registry URI and artifact root.

    `create=False` (read commands) refuses, with `NotFoundError` naming where it looked, an
    embedded repository that does not exist yet instead of creating an empty one there.
    """
    return _mlflow_repository(settings, create=create)


def _mlflow_repository(settings: Settings, *, create: bool) -> MlflowRepository:
    tracking_uri = settings.resolved_tracking_uri()
    if not create:
        _require_database(settings, tracking_uri)
    prepare_folders(settings)
    from layerops.repository.mlflow_repo import MlflowRepository  # mlflow takes seconds to import

    return MlflowRepository(
        tracking_uri,
        registry_uri=settings.registry_uri,
        artifact_root=settings.resolved_artifact_root(),
        cache_dir=_cache_dir(settings),
    )


def load_bundle_quickly(settings: Settings, name: str, version: int, *, native: bool = False) -> ModelBundle:
    """A registered version's bundle, from the local bundle cache when a verified copy is there.

    On the embedded sqlite registry the version's pinned digest is read with `sqlite3` and the
    cached folder is checked against it, so no MLflow import (2-4 s) is needed; anything else
    (another backend, a version never downloaded here) goes through the repository.
    """
    from layerops.bundle import load_bundle  # numpy and pandas: not for the read commands

    reader = open_reader(settings)
    digest = reader.get_version(name, version).tags.get(DIGEST_TAG)
    cached = _cache_dir(settings) / digest if digest else None
    if digest and cached is not None and cached.is_dir():
        try:
            return load_bundle(cached, expected_digest=digest, native=native)
        except BundleError:  # damaged: the repository fetches a fresh copy
            pass
    # On any other backend the reader already is the repository: connecting again would probe a
    # tracking server (or database) a second time for nothing.
    repository = reader if isinstance(reader, ModelRepository) else open_repository(settings, create=False)
    return repository.load_bundle(name, version, native=native)


def _cache_dir(settings: Settings) -> Path:
    return settings.home.resolve() / "cache" / "bundles"


def prepare_folders(settings: Settings) -> None:
    """Create the home and sqlite folders a repository needs (milliseconds, no MLflow import);
    a `RepositoryError` says what is wrong, e.g. a parent that is a file, or no permission."""
    tracking_uri = settings.resolved_tracking_uri()
    database = sqlite_file(tracking_uri)
    try:
        if not settings.tracking_uri:
            settings.home.mkdir(parents=True, exist_ok=True)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RepositoryError(
            f"cannot open the MLflow repository at {tracking_uri}: {type(exc).__name__}: {exc.strerror}"
        ) from None


class OpenInBackground:
    """A repository opened in a background thread: importing MLflow and opening (or creating) a
    store take seconds that training can overlap. `start()` begins (at a lower priority than the
    training's threads, on Linux); calling the object waits for the repository or raises its error.

    The training runner starts it when the models start fitting: their threads release the GIL,
    while the data preparation before is Python that a concurrent import of MLflow slowed by
    seconds.
    """

    def __init__(self, opener: Callable[[], ModelRepository]) -> None:
        self._opener = opener
        self._future: Future[ModelRepository] = Future()
        self._thread = threading.Thread(target=self._open, name="layerops-open-repository")
        self._lock = threading.Lock()

    def start(self) -> None:
        """Begin opening (once; later calls do nothing)."""
        with self._lock:
            if self._thread.ident is None:
                self._thread.start()

    def check(self, seconds: float) -> None:
        """Start, and raise the opening's error if it fails within `seconds`."""
        self.start()
        self._thread.join(seconds)
        if self._future.done():
            self._future.result()

    def __call__(self) -> ModelRepository:
        self.start()
        return self._future.result()

    def _open(self) -> None:
        with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        try:
            self._future.set_result(self._opener())
        except BaseException as exc:  # handed to the caller, raised where it waits
            self._future.set_exception(exc)


def open_reader(settings: Settings) -> RegistryReader:
    """The read side of an existing repository, without importing MLflow when it can be avoided.

    An embedded sqlite registry with the schema revision `_registry_tables` knows is read with
    `sqlite3` (milliseconds); any other backend or revision goes through `open_repository`.
    Never creates a repository: a missing one is a `NotFoundError` naming where it looked.
    """
    tracking_uri = settings.resolved_tracking_uri()
    _require_database(settings, tracking_uri)
    database = sqlite_file(tracking_uri)
    registry_uri = settings.registry_uri or tracking_uri
    if database is not None and registry_uri == tracking_uri:
        tables = open_tables(database)
        if tables is not None:
            return tables
    return _mlflow_repository(settings, create=False)


def _require_database(settings: Settings, tracking_uri: str) -> None:
    database = sqlite_file(tracking_uri)
    if database is None or database.is_file():
        return
    where = (
        f"no layerops repository in {settings.home.resolve()} (no {database.name} there)"
        if not settings.tracking_uri
        else f"no MLflow database at {database}"
    )
    raise NotFoundError(f"{where}: train a model first (layerops train SPEC), or {_ELSEWHERE}")
