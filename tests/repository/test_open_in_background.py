"""A repository opened in a background thread: started when the models start fitting, its
errors raised where the caller waits."""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import pytest

from layerops.errors import RepositoryError
from layerops.repository.api import ModelRepository
from layerops.repository.factory import OpenInBackground, open_repository
from layerops.settings import Settings
from layerops.spec import parse_spec
from layerops.training.pipeline import SilentReporter, train


def test_the_repository_or_its_error_arrives_where_the_caller_waits(tmp_path: Path) -> None:
    opener = OpenInBackground(functools.partial(open_repository, Settings(home=tmp_path / "home")))
    assert not (tmp_path / "home").exists()  # nothing happens before start()
    opener.start()
    opener.start()  # once only
    assert opener().list_models() == [] and opener() is opener()

    (tmp_path / "a-file").write_text("")
    failing = OpenInBackground(functools.partial(open_repository, Settings(home=tmp_path / "a-file" / "h")))
    with pytest.raises(RepositoryError, match="cannot open the MLflow repository"):
        failing.check(30.0)


def test_training_starts_the_open_when_the_models_start_fitting(
    tmp_path: Path, iris_frame: pd.DataFrame
) -> None:
    events: list[str] = []

    class Recorder(SilentReporter):
        def stage(self, message: str) -> None:
            events.append(message.split(":")[0])

    def opening() -> ModelRepository:
        events.append("open")
        return open_repository(Settings(home=tmp_path / "home"))

    spec = parse_spec({"name": "iris", "target": "species", "candidates": [{"name": "baseline"}]})
    result = train(spec, OpenInBackground(opening), reporter=Recorder(), data=iris_frame)
    assert result.version is not None and result.version.version == 1
    assert events.index("open") > events.index("classification")  # after the data preparation
