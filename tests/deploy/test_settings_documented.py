"""Every variable the server and the CLI read is in the README's Production table, with its real
default; every `LAYEROPS_*` name in deploy/, the workflow and that section is a real setting."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from layerops.delivery.settings import ServeSettings
from layerops.settings import ENV_PREFIX, Settings
from tests.deploy.stack import DEPLOY, ROOT

README = ROOT / "README.md"
_ROW = re.compile(r"^\| `(?P<name>LAYEROPS_\w+)` \| (?P<default>[^|]*) \|", re.MULTILINE)
_NAME = re.compile(r"\bLAYEROPS_[A-Z0-9_]*[A-Z0-9]\b")


def production_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Production\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def settings() -> dict[str, Any]:
    """Every setting's variable and its default: `Settings` (every command) and `ServeSettings`
    (`layerops serve`, a subclass: it reads the same environment with the same prefix)."""
    assert issubclass(ServeSettings, Settings)
    assert ServeSettings.model_config.get("env_prefix") == ENV_PREFIX == "LAYEROPS_"
    found = {}
    for name, field in ServeSettings.model_fields.items():
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        found[f"{ENV_PREFIX}{name.upper()}"] = default
    return found


def documented() -> dict[str, str]:
    return {m["name"]: m["default"].strip() for m in _ROW.finditer(production_section())}


def test_every_setting_is_in_the_table_and_nothing_else() -> None:
    assert set(documented()) == set(settings())


def test_the_documented_defaults_are_the_real_ones() -> None:
    table = documented()
    checked = 0
    for name, default in settings().items():
        shown = re.findall(r"`([^`]*)`", table[name])
        if isinstance(default, bool):
            assert shown[:1] == [str(default).lower()], name
        elif isinstance(default, int | float):
            assert shown and float(shown[0]) == default, name
        elif isinstance(default, str | Path) and str(default):
            assert shown[:1] == [str(default)], name
        else:  # None, empty, a list or a map: said in words
            continue
        checked += 1
    assert checked >= 30  # most defaults are numbers, flags or words: the loop skips few


def deploy_files() -> list[Path]:
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    return [*files, ROOT / ".github" / "workflows" / "ci.yml"]


@pytest.mark.parametrize("path", deploy_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_layerops_variable_in_deploy_is_a_real_setting(path: Path) -> None:
    names = set(_NAME.findall(path.read_text(encoding="utf-8")))
    assert names <= set(settings()), f"not settings of layerops: {names - set(settings())}"


def test_every_layerops_variable_in_the_section_is_a_real_setting() -> None:
    names = set(_NAME.findall(production_section()))
    assert names <= set(settings()), names - set(settings())


def test_a_misspelt_variable_would_be_caught() -> None:
    assert "LAYEROPS_PREDICTIONS_LOG" not in settings() and "LAYEROPS_PREDICTION_LOG" in settings()
    assert _NAME.findall("env: LAYEROPS_PREDICTIONS_LOG=x") == ["LAYEROPS_PREDICTIONS_LOG"]
