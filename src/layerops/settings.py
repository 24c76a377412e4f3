"""Typed settings, read from `LAYEROPS_*` environment variables and built at the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from layerops.errors import LayeropsError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ENV_PREFIX = "LAYEROPS_"
TRACKING_SERVER_SCHEMES = ("http://", "https://")
"""Tracking URIs of an MLflow tracking server, which chooses where new experiments keep artifacts."""


class Settings(BaseSettings):
    """Where layerops keeps its state and how it talks; never instantiated at import time."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    home: Path = Path(".layerops")
    """Folder for the embedded repository (sqlite database and artifacts)."""

    tracking_uri: str | None = None
    """MLflow tracking URI; default `sqlite:///<home>/mlflow.db`."""

    registry_uri: str | None = None
    """MLflow registry URI; default: the tracking URI."""

    artifact_root: str | None = None
    """Where new experiments store artifacts (a folder, `file://`, `s3://bucket/prefix`...); default
    `<home>/artifacts`, except on an MLflow tracking server (`http(s)://`), whose own default
    applies (with `--serve-artifacts`, its proxy: clients then need no storage credentials)."""

    prediction_log: str = Field(default="", repr=False)
    """Where served predictions are logged and `layerops drift` reads them: empty for Parquet files
    under `<home>/predictions`, a folder for Parquet files there, `postgresql://...` for a
    PostgreSQL table, `off` for none (the server only)."""

    log_level: str = "WARNING"
    """Python logging level for the `layerops` loggers."""

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"allowed values: {', '.join(LOG_LEVELS)} (any case)")
        return level

    def resolved_tracking_uri(self) -> str:
        """The tracking URI in force: the configured one or the embedded sqlite default."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{self.home.resolve() / 'mlflow.db'}"

    def resolved_artifact_root(self) -> str | None:
        """The artifact location for new experiments; None leaves it to the tracking server.

        A folder under the home would be wrong there: every client would write artifacts to its
        own disk, which the server, other clients and the serving replicas never see.
        """
        if self.artifact_root:
            return self.artifact_root
        if self.resolved_tracking_uri().lower().startswith(TRACKING_SERVER_SCHEMES):
            return None
        return (self.home.resolve() / "artifacts").as_uri()


def load_settings(**overrides: Any) -> Settings:
    """`Settings` from `LAYEROPS_*` variables overridden by `overrides` (a bad value: `LayeropsError`)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise LayeropsError(describe_invalid(exc)) from None


def describe_invalid(exc: ValidationError) -> str:
    """One line naming each bad setting (and its variable), the value given and what is allowed.

    pydantic's own text spans several lines and ends with a documentation URL; a user wants to
    know which setting, which value and what would do.
    """
    parts = []
    for error in exc.errors(include_url=False):
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        given = error.get("input")
        shown = f" = {given!r}" if isinstance(given, str | int | float | bool) else ""
        parts.append(f"{name} ({ENV_PREFIX}{name.upper()}){shown}: {message}")
    return "invalid setting " + "; ".join(parts)
