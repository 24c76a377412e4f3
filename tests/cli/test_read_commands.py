"""Read commands: fast, never create a registry, and the sqlite reader agrees with MLflow."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from layerops.errors import NotFoundError
from layerops.repository._registry_tables import SCHEMA_REVISION, RegistryTables, open_tables
from layerops.repository.factory import open_reader, open_repository
from layerops.settings import Settings
from tests.cli.conftest import layerops


def test_the_sqlite_reader_answers_as_mlflow_does(registry: Path) -> None:
    settings = Settings(home=registry / "home")
    reader = open_reader(settings)
    assert isinstance(reader, RegistryTables)  # the embedded registry is read without MLflow
    mlflow = open_repository(settings, create=False)
    assert reader.list_models() == mlflow.list_models()
    assert reader.list_versions("iris") == mlflow.list_versions("iris")
    assert reader.get_version("iris", 2) == mlflow.get_version("iris", 2)
    assert reader.resolve_alias("iris", "production") == mlflow.resolve_alias("iris", "production")
    assert reader.history("iris") == mlflow.history("iris")
    assert reader.version_details("iris", 1) == mlflow.version_details("iris", 1)
    for ask in (lambda r: r.list_versions("nosuch"), lambda r: r.resolve_alias("iris", "nosuch")):
        with pytest.raises(NotFoundError) as from_reader:
            ask(reader)
        with pytest.raises(NotFoundError) as from_mlflow:
            ask(mlflow)
        assert str(from_reader.value) == str(from_mlflow.value)


def test_another_schema_revision_falls_back_to_mlflow(registry: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(registry / "home", home)
    with sqlite3.connect(home / "mlflow.db") as db:
        db.execute("UPDATE alembic_version SET version_num = 'an0ther0ne'")
    assert open_tables(home / "mlflow.db") is None
    assert open_tables(registry / "home" / "mlflow.db") is not None
    assert SCHEMA_REVISION != "an0ther0ne"


def test_read_commands_never_create_a_registry_and_say_where_they_looked(tmp_path: Path) -> None:
    for args in (["models", "list"], ["models", "show", "iris"], ["models", "history", "iris"]):
        result = layerops(*args, cwd=tmp_path)
        assert result.returncode == 1, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert str(tmp_path / ".layerops") in lines[0]
        assert "--home" in lines[0] and "LAYEROPS_HOME" in lines[0] and "LAYEROPS_TRACKING_URI" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no .layerops/mlflow.db appeared
    result = layerops("models", "promote", "iris", cwd=tmp_path)
    assert result.returncode == 1 and "no layerops repository" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_models_list_imports_neither_mlflow_nor_pandas(registry: Path) -> None:
    code = (
        "import sys; from layerops.cli.main import run; sys.argv = ['layerops', 'models', 'list'];\n"
        "try: run()\nexcept SystemExit as exc: assert not exc.code, exc.code\n"
        "heavy = ('mlflow', 'pandas', 'sklearn', 'numpy', 'sqlalchemy')\n"
        "heavy = sorted(m for m in heavy if m in sys.modules)\n"
        "print('heavy:', heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=registry,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "LAYEROPS_HOME": "home"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "iris" in result.stdout and "production→v1" in result.stdout
    assert "heavy: []" in result.stdout


def test_models_show_prints_lineage_metrics_latency_and_environment_uncut(registry: Path) -> None:
    result = layerops(
        "--home", "home", "models", "show", "iris", "--version", "2", cwd=registry, COLUMNS="80"
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    mlflow = open_repository(Settings(home=registry / "home"), create=False)
    tags = mlflow.get_version("iris", 2).tags
    lines = out.splitlines()
    for label, tag in [
        ("spec", "layerops.spec_path"),
        ("spec sha256", "layerops.spec_sha256"),
        ("data", "layerops.data_source"),
        ("data sha256", "layerops.dataset_sha256"),
        ("seed", "layerops.seed"),
        ("python", "layerops.python"),
        ("platform", "layerops.platform"),
    ]:
        assert any(line.split() == [*label.split(), tags[tag]] for line in lines), (label, out)
    assert tags["layerops.spec_path"] == str(registry / "spec.yaml")
    head = subprocess.run(["git", "-C", str(registry), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert ["git", "commit", head.stdout.strip()] in [line.split() for line in lines]
    assert ["git", "dirty", "false"] in [line.split() for line in lines]
    details = mlflow.version_details("iris", 2)
    assert details.metrics["validation"] and details.metrics["test"] and details.latency
    # the columns: validation (mean over CV folds), its spread, the final model's test, the selected one's
    columns = ("validation", "validation std", "test", "selected test")
    assert all(details.metrics[split] for split in columns)
    assert ["validation", "validation", "std", "test", "selected", "test"] in [line.split() for line in lines]
    for metric in details.metrics["test"]:
        row = next(line for line in lines if line.split()[:1] == [metric])
        assert row.split()[1:] == [f"{details.metrics[split][metric]:.4g}" for split in columns]
    assert any(line.split()[:1] == ["single_row_p50_ms"] for line in lines)
    assert any(line.split() == ["scikit-learn", details.libraries["scikit-learn"]] for line in lines)
    for heading in ("lineage", "metrics", "latency", "environment"):
        assert heading in lines
