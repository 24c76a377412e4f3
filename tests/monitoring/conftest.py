"""Fixtures for the monitoring tests: a home with the delivery tests' demo models."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.delivery.conftest import train_demo_models


@pytest.fixture(scope="session")
def served_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A layerops home with iris v1 and shipping v1 promoted to production (its own copy)."""
    home = tmp_path_factory.mktemp("monitored-demo")
    train_demo_models(home)
    return home
