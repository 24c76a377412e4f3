"""The import contracts cover every package: a new one cannot dodge them by not being listed."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "layerops"


def _top_level_modules() -> set[str]:
    names = {path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    names |= {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    return {f"layerops.{name}" for name in names}


def _contract(fragment: str) -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (found,) = [c for c in config["tool"]["importlinter"]["contracts"] if fragment in c["name"]]
    return dict(found)


def _layered(contract: dict[str, Any]) -> set[str]:
    return {part.strip().strip("()") for layer in contract["layers"] for part in layer.split("|")}


def test_every_module_has_a_place_in_the_layers() -> None:
    missing = _top_level_modules() - _layered(_contract("Layers:"))
    assert not missing, f"add {sorted(missing)} to the layers contract in pyproject.toml"


@pytest.mark.parametrize(
    ("fragment", "field", "exempt"),
    [
        ("Only the repository layer imports mlflow", "source_modules", {"layerops.repository"}),
        (
            "The bundle imports no layer",
            "forbidden_modules",
            {
                "layerops.bundle",
                "layerops.errors",
                "layerops.numbers",
                "layerops.version",
                "layerops.drift_thresholds",
            },
        ),
    ],
)
def test_the_forbidden_contracts_name_every_other_module(fragment: str, field: str, exempt: set[str]) -> None:
    listed = set(_contract(fragment)[field])
    missing = _top_level_modules() - exempt - listed
    assert not missing, f"{fragment!r}: add {sorted(missing)} to {field}"
