"""Training runs in MLflow: a pipeline run, one nested run per candidate, the MLflow model with the
bundle inside it."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from layerops.bundle import BundleMetadata, bundle_digest, load_bundle
from layerops.errors import LayeropsError, RepositoryError
from layerops.repository._boundary import translated
from layerops.repository._layout import (
    BUNDLE_PATH,
    DIGEST_TAG,
    KIND_TAG,
    LAYOUT_TAG,
    MLFLOW_MODEL_LAYOUT,
    MLFLOW_MODEL_TAG,
    MODEL_PATH,
    PARENT_TAG,
    bundle_path,
)
from layerops.repository._mlflow_model import save_mlflow_model
from layerops.repository.api import CandidateRun, RunInfo, TrainingRun

_MAX_PARAM_CHARS = 6000
_log = logging.getLogger(__name__)


class RunLog:
    """Logs layerops training runs into MLflow experiments through one `MlflowClient`."""

    def __init__(self, client: MlflowClient, uri: str, *, artifact_root: str | None) -> None:
        """Log through `client` (talking to `uri`); new experiments keep artifacts under `artifact_root`."""
        self._client = client
        self._uri = uri
        self._artifact_root = artifact_root

    def log_training(self, run: TrainingRun, bundle_dir: Path) -> RunInfo:
        """Log a pipeline run with one nested run per candidate and the winner's bundle."""
        winner = next((c for c in run.candidates if c.name == run.winner), None)
        if winner is None:
            raise RepositoryError(f"training run {run.pipeline!r}: winner {run.winner!r} is not a candidate")
        digest = bundle_digest(bundle_dir)
        bundle = load_bundle(bundle_dir, expected_digest=digest, native=False)  # never upload a broken bundle
        experiment_id = self._experiment(run.pipeline)
        action = f"logging training run {run.pipeline!r}"
        started: list[str] = []
        try:
            with translated(self._uri, action):
                tags = {**run.tags, KIND_TAG: "pipeline", "layerops.winner": run.winner, DIGEST_TAG: digest}
                parent = self._client.create_run(experiment_id, tags=tags, run_name=run.pipeline)
                parent_id = parent.info.run_id
                started.append(parent_id)
                self._client.log_batch(parent_id, params=_params(run.params))
                for candidate in run.candidates:
                    child_tags = {
                        PARENT_TAG: parent_id,
                        KIND_TAG: "candidate",
                        "layerops.candidate": candidate.name,
                    }
                    child = self._client.create_run(experiment_id, tags=child_tags, run_name=candidate.name)
                    started.append(child.info.run_id)
                    self._log_candidate(child.info.run_id, candidate)
                self._client.log_batch(parent_id, metrics=_metrics(run.metrics or winner.metrics))
                self._client.log_text(parent_id, run.leaderboard_csv, "leaderboard.csv")
                layout = self._log_model(parent_id, bundle.metadata, bundle_dir)
                if layout is not None:
                    model_uri = f"{parent.info.artifact_uri.rstrip('/')}/{MODEL_PATH}"
                    self._client.set_tag(parent_id, LAYOUT_TAG, layout)
                    self._client.set_tag(parent_id, MLFLOW_MODEL_TAG, model_uri)
                self._client.set_terminated(parent_id, "FINISHED")
        except BaseException as exc:
            self._mark_failed(started)
            if isinstance(exc, LayeropsError) or not isinstance(exc, Exception):
                raise
            raise RepositoryError(f"{action} failed: {exc}") from exc
        bundle_uri = f"{parent.info.artifact_uri.rstrip('/')}/{bundle_path(layout)}"
        return RunInfo(run_id=parent_id, experiment_id=experiment_id, bundle_uri=bundle_uri)

    def _log_model(self, run_id: str, metadata: BundleMetadata, bundle_dir: Path) -> str | None:
        """Log the MLflow model folder with the bundle inside it and return its layout; if that
        folder cannot be written, log the bundle alone (the older layout, None) with a warning.

        The layerops bundle is the contract; the MLmodel around it only lets MLflow's own tools
        load and serve the registered version, so a failure there does not fail the training run.
        """
        with tempfile.TemporaryDirectory(prefix="layerops-mlflow-model-") as tmp:
            folder = Path(tmp) / MODEL_PATH
            try:
                save_mlflow_model(bundle_dir, metadata, folder)
            except Exception as exc:
                _log.warning("not logging %s as an MLflow model (only its bundle): %s", metadata.name, exc)
            else:
                self._client.log_artifacts(run_id, str(folder), MODEL_PATH)
                return MLFLOW_MODEL_LAYOUT
        self._client.log_artifacts(run_id, str(bundle_dir), BUNDLE_PATH)
        return None

    def _log_candidate(self, run_id: str, candidate: CandidateRun) -> None:
        system = {
            key if key.startswith("system/") else f"system/{key}": value
            for key, value in candidate.system_metrics.items()
        }
        metrics = _metrics({**candidate.metrics, **system})
        self._client.log_batch(run_id, metrics=metrics, params=_params(candidate.params))
        trials = [{"params": params, "score": score} for params, score in candidate.trials]
        self._client.log_text(run_id, json.dumps(trials, indent=2, default=str), "trials.json")
        self._client.set_terminated(run_id, "FINISHED")

    def _experiment(self, name: str) -> str:
        with translated(self._uri, f"opening experiment {name!r}"):
            experiment = self._client.get_experiment_by_name(name)
            if experiment is None:
                location = f"{self._artifact_root.rstrip('/')}/{name}" if self._artifact_root else None
                try:
                    return self._client.create_experiment(name, artifact_location=location)
                except MlflowException as exc:  # another process created it meanwhile
                    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    experiment = self._client.get_experiment_by_name(name)
                    assert experiment is not None
            if experiment.lifecycle_stage == "deleted":
                self._client.restore_experiment(experiment.experiment_id)
            return str(experiment.experiment_id)

    def _mark_failed(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            try:
                self._client.set_terminated(run_id, "FAILED")
            except Exception:  # noqa: S112 - best effort: the original error is what matters
                continue


def _params(params: dict[str, Any]) -> list[Param]:
    return [Param(str(key), str(value)[:_MAX_PARAM_CHARS]) for key, value in sorted(params.items())]


def _metrics(values: dict[str, float]) -> list[Metric]:
    now = int(time.time() * 1000)
    return [Metric(key, float(value), now, 0) for key, value in sorted(values.items())]
