"""Start-up: each command imports only what it needs, and checks its input before the ML stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import environment

HEAVY = ("mlflow", "sklearn", "pandas", "numpy", "sqlalchemy", "optuna", "layerops.training.pipeline")

PROBE = """
import sys
from layerops.cli.main import run
sys.argv = ["layerops", *sys.argv[1:]]
try:
    run()
except SystemExit as exc:
    code = exc.code
print("exit", code, "heavy", sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def imports_after(cwd: Path, *args: str) -> tuple[str, str]:
    """Run the CLI in a fresh interpreter; its stderr, and which heavy modules it had imported."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    *shown, last = result.stderr.strip().splitlines()
    return "\n".join(shown), last


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["train", "--help"],
        ["models", "show", "--help"],
        ["trian"],
        ["train", "absent.yaml"],
        ["train", "bad.yaml"],
        ["train", "unreadable.yaml"],
        ["--log-level", "LOUD", "train", "bad.yaml"],
        ["models", "list"],
    ],
)
def test_errors_and_help_import_no_ml_stack(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "bad.yaml").write_text("name: x\ntarget: y\ndata: {path: d.csv}\ncandidates: [{name: svm}]\n")
    (tmp_path / "unreadable.yaml").write_text("name: [unclosed\n")
    shown, last = imports_after(tmp_path, *args)
    assert last.endswith("heavy []"), (args, shown, last)
    assert "Traceback" not in shown


def test_read_commands_on_the_embedded_registry_import_no_ml_stack(registry: Path) -> None:
    for args in (["models", "list"], ["models", "show", "iris"], ["models", "history", "iris"]):
        shown, last = imports_after(registry, "--home", "home", *args)
        assert last == "exit None heavy []" or last == "exit 0 heavy []", (args, shown, last)


def test_the_lazy_api_gives_functions_even_after_their_modules_were_imported() -> None:
    code = (
        "import layerops, layerops.api.reproduce, layerops.api.training, inspect;"
        "assert inspect.isfunction(layerops.reproduce) and inspect.isfunction(layerops.train);"
        "assert inspect.ismodule(layerops.models) and callable(layerops.models.summaries)"
    )
    subprocess.run([sys.executable, "-c", code], env=environment(), check=True, timeout=120)
