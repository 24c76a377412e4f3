"""The model repository layer: the contract here; MLflow behind `factory.open_repository`.

Importing this package stays cheap: `mlflow` is imported only when a repository is opened.
"""

from layerops.repository.api import (
    AliasChange,
    CandidateRun,
    ModelRepository,
    ModelSummary,
    ModelVersion,
    RegistryReader,
    ReleaseEvent,
    RunInfo,
    TrainingRun,
    VersionDetails,
)

__all__ = [
    "AliasChange",
    "CandidateRun",
    "ModelRepository",
    "ModelSummary",
    "ModelVersion",
    "RegistryReader",
    "ReleaseEvent",
    "RunInfo",
    "TrainingRun",
    "VersionDetails",
]
