"""Typed settings, read from `LAYEROPS_*` environment variables and built at the entry point."""

from __future__ import annotations

from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where layerops keeps its state and how it talks; never instantiated at import time."""

    model_config = SettingsConfigDict(env_prefix="LAYEROPS_", extra="ignore")

    home: Path = Path(".layerops")
    """Folder for the embedded repository (sqlite database and artifacts)."""

    tracking_uri: str | None = None
    """MLflow tracking URI; default `sqlite:///<home>/mlflow.db`."""

    registry_uri: str | None = None
    """MLflow registry URI; default: the tracking URI."""

    artifact_root: str | None = None
    """Where new experiments store artifacts; default `<home>/artifacts`."""

    log_level: str = "WARNING"
    """Python logging level for the `layerops` loggers."""

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    def resolved_tracking_uri(self) -> str:
        """The tracking URI in force: the configured one or the embedded sqlite default."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{self.home.resolve() / 'mlflow.db'}"

    def resolved_artifact_root(self) -> str:
        """The artifact location for new experiments."""
        if self.artifact_root:
            return self.artifact_root
        return (self.home.resolve() / "artifacts").as_uri()
