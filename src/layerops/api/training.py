"""`layerops.train`: run a pipeline spec (a file, a dict or a `PipelineSpec`), optionally on a DataFrame.

>>> import layerops
>>> from sklearn.datasets import load_iris
>>> frame = load_iris(as_frame=True).frame.rename(columns={"target": "species"})
>>> result = layerops.train(
...     {"name": "iris_notebook", "target": "species", "task": "classification",
...      "candidates": [{"name": "baseline"}, {"name": "decision_tree"}], "tuning": {"trials": 2}},
...     data=frame, alias="staging",
... )
>>> result.version, result.winner
(1, 'decision_tree')
>>> result.leaderboard["candidate"].tolist()
['decision_tree', 'baseline']
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from layerops.api import _context
from layerops.bundle import ModelBundle
from layerops.errors import SpecError
from layerops.repository.api import ModelVersion
from layerops.spec import PipelineSpec, load_spec, parse_spec
from layerops.training.pipeline import Reporter, TrainingResult, leaderboard_rows

if TYPE_CHECKING:
    from distributed import Client

SpecLike = str | Path | dict[str, Any] | PipelineSpec
"""A spec file path, the spec as a dict (as its YAML would parse), or a `PipelineSpec`."""


@dataclass(frozen=True)
class TrainResult:
    """What `layerops.train` produced."""

    name: str
    """The registered model name (the spec's `name`)."""
    winner: str
    """The winning candidate."""
    metric: str
    """The selection metric (on the validation split, or the mean over CV folds)."""
    leaderboard: pd.DataFrame = field(repr=False)
    """One row per candidate, best first: validation (and `cv_std_*`) and test metrics, latency,
    training time, and `tie_break` (what ranked it when its selection metric tied)."""
    bundle: ModelBundle = field(repr=False)
    """The final model's bundle: the winner refitted on train + validation (model, ONNX, metadata)."""
    registered: ModelVersion | None = None
    """The registered version (None for `register=False`)."""
    details: TrainingResult | None = field(default=None, repr=False)
    """The training layer's full result (every candidate's model and outputs)."""

    @property
    def version(self) -> int | None:
        """The registered version number (None when nothing was registered)."""
        return None if self.registered is None else self.registered.version


def as_spec(spec: SpecLike) -> PipelineSpec:
    """A validated `PipelineSpec` from a path, a dict or a spec (raises `SpecError`)."""
    if isinstance(spec, PipelineSpec):
        return spec
    if isinstance(spec, dict):
        return parse_spec(spec, base_dir=Path.cwd(), source="spec")
    if isinstance(spec, str | Path):
        return load_spec(spec)
    raise SpecError(f"a spec is a file path, a dict or a PipelineSpec, not {type(spec).__name__}")


def train(  # noqa: PLR0913 - keyword-only options of a public function
    spec: SpecLike,
    *,
    data: pd.DataFrame | None = None,
    alias: str | None = None,
    register: bool = True,
    home: str | Path | None = None,
    tracking_uri: str | None = None,
    reporter: Reporter | None = None,
    jobs: int | None = None,
    refit_all: bool | None = None,
    tags: dict[str, str] | None = None,
    dask: str | Client | None = None,
) -> TrainResult:
    """Train every candidate of `spec`, rank them, register the winner as a new version.

    `data` replaces the spec's data source (the spec may then omit `data:`; the lineage records
    the DataFrame's content hash). `alias` points an alias (e.g. `"production"`) at the new
    version; `register=False` is a dry run that registers nothing. `jobs` bounds the threads
    every model trains on (default: the cores this process may run on). `refit_all=True` refits
    the winner on the test split too (default: the spec's `selection.refit_all`, else train +
    validation only). `tags` are added to the new version's (and its run's) lineage tags.
    `dask` runs each candidate's tuning and fit as a task on a Dask cluster: `"local:N"` (N worker
    processes on this machine, stopped after the fits), a scheduler address such as
    `"tcp://scheduler:8786"`, or a `distributed.Client` you keep open; models then train on their
    worker's threads (or `jobs`). The leaderboard is the one a run in this process gives.
    """
    from layerops.repository.factory import OpenInBackground
    from layerops.training.pipeline import train as run_training

    pipeline = as_spec(spec)
    if refit_all is not None:
        selection = pipeline.selection.model_copy(update={"refit_all": refit_all})
        pipeline = pipeline.model_copy(update={"selection": selection})
    if data is not None and pipeline.data is not None:
        pipeline = pipeline.model_copy(update={"data": None})
    # Opened in the background while the models fit (see OpenInBackground).
    opener = (
        OpenInBackground(functools.partial(_context.repository, home, tracking_uri)) if register else None
    )
    result = run_training(pipeline, opener, reporter=reporter, data=data, jobs=jobs, tags=tags, dask=dask)
    repository = opener() if opener is not None else None
    if alias is not None and repository is not None and result.version is not None:
        repository.set_alias(pipeline.name, alias, result.version.version, reason="set by layerops.train")
        result.version = repository.get_version(pipeline.name, result.version.version)
    return result_of(pipeline, result)


def result_of(spec: PipelineSpec, result: TrainingResult) -> TrainResult:
    """The API's view of the training layer's result."""
    return TrainResult(
        name=spec.name,
        winner=result.winner.name,
        metric=result.metric,
        leaderboard=pd.DataFrame(leaderboard_rows(result)),
        bundle=result.bundle,
        registered=result.version,
        details=result,
    )
