"""examples/quickstart.ipynb runs top to bottom in a fresh kernel (so it can never rot)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_the_quickstart_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("LAYEROPS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("LAYEROPS_HOME", str(tmp_path / "home"))  # the kernel inherits it
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [cell.outputs for cell in notebook.cells if cell.cell_type == "code"]
    assert not [o for cell in outputs for o in cell if o.output_type == "error"]
    printed = "".join(o.get("text", "") for cell in outputs for o in cell if o.output_type == "stream")
    assert "registered iris_quickstart version 1" in printed
    assert outputs[-1][-1]["data"]["text/plain"] == "True"  # the server answered what the model predicts
    assert (tmp_path / "home" / "mlflow.db").exists()
