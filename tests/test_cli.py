"""The command line: every user mistake is one clear line and a non-zero exit, nothing registered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from layerops.cli.main import run
from layerops.repository.factory import open_repository
from layerops.settings import Settings

GOOD_SPEC = """
name: {name}
data: {{path: {data}}}
target: {target}
cleaning: {{collinearity_threshold: null}}
candidates:
  - name: {candidate}
  - name: decision_tree
    params: {{max_depth: 3}}
tuning: {{trials: 2}}
"""


def invoke(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["layerops", *args])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as info:
        run()
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def _write(
    folder: Path,
    frame: pd.DataFrame,
    *,
    target: str = "species",
    candidate: str = "baseline",
    data: str = "data.csv",
    name: str = "iris",
    extra: str = "",
) -> Path:
    frame.to_csv(folder / "data.csv", index=False)
    spec = folder / "spec.yaml"
    spec.write_text(GOOD_SPEC.format(name=name, data=data, target=target, candidate=candidate) + extra)
    return spec


def _cases(folder: Path, iris: pd.DataFrame) -> dict[str, tuple[Path, str]]:
    cases: dict[str, tuple[Path, str]] = {}
    for name, frame, kwargs, expected in [
        ("missing_data", iris, {"data": "nowhere.csv"}, "nowhere.csv"),
        ("target_missing", iris, {"target": "colour"}, "colour"),
        ("single_class", iris.assign(species="setosa"), {}, "single class"),
        ("unknown_candidate", iris, {"candidate": "svm"}, "unknown candidate 'svm'"),
        ("all_missing_column", iris.assign(empty=np.nan), {}, "column 'empty' is entirely missing"),
        (
            "empty_after_cleaning",
            iris.assign(species=np.nan),
            {"extra": "validation: {max_missing_share: 1.0}\n"},
            "no rows left after cleaning",
        ),
        ("unreadable", iris, {"data": "binary.csv"}, "binary.csv"),
    ]:
        sub = folder / name
        sub.mkdir()
        spec = _write(sub, frame, **kwargs)
        (sub / "binary.csv").write_bytes(b"\x00\xff\xfe\x00" * 64)
        cases[name] = (spec, expected)
    return cases


def test_bad_input_is_one_clear_line(
    tmp_path: Path,
    iris_frame: pd.DataFrame,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    for case, (spec, expected) in _cases(tmp_path, iris_frame).items():
        code, _, err = invoke(capsys, monkeypatch, "--home", str(home), "train", str(spec), "--quiet")
        assert code == 1, case
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert len(lines) == 1, (case, err)
        assert lines[0].startswith("error:") and expected in lines[0], (case, err)
        assert "Traceback" not in err
    assert open_repository(Settings(home=home)).list_models() == []


def test_missing_spec_and_unreachable_tracking_uri(
    tmp_path: Path,
    iris_frame: pd.DataFrame,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, _, err = invoke(capsys, monkeypatch, "train", str(tmp_path / "absent.yaml"))
    assert code == 1 and "absent.yaml: spec file not found" in err
    spec = _write(tmp_path, iris_frame)
    code, _, err = invoke(
        capsys, monkeypatch, "--tracking-uri", "http://127.0.0.1:9", "train", str(spec), "-q"
    )
    assert code == 1 and "127.0.0.1:9" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_train_promote_rollback_through_the_cli(
    tmp_path: Path,
    iris_frame: pd.DataFrame,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = ["--home", str(tmp_path / "home")]
    spec = _write(tmp_path, iris_frame)
    assert invoke(capsys, monkeypatch, *home, "train", str(spec), "--alias", "production")[0] == 0
    code, out, _ = invoke(capsys, monkeypatch, *home, "train", str(spec), "-q")
    assert code == 0 and "registered iris version 2" in out and "decision_tree" in out
    assert invoke(capsys, monkeypatch, *home, "models", "promote", "iris", "--version", "2")[0] == 0
    code, out, _ = invoke(capsys, monkeypatch, *home, "models", "list")
    assert "production→v2" in out
    code, out, _ = invoke(capsys, monkeypatch, *home, "models", "rollback", "iris", "--reason", "bad canary")
    assert code == 0 and "production v2 → v1" in out
    code, out, _ = invoke(capsys, monkeypatch, *home, "models", "history", "iris")
    assert code == 0 and "bad canary" in out
    code, out, _ = invoke(capsys, monkeypatch, *home, "models", "show", "iris", "--alias", "production")
    assert code == 0 and "iris version 1" in out and "data sha256" in out and "validation" in out
    code, _, err = invoke(capsys, monkeypatch, *home, "models", "show", "nosuch")
    assert code == 1 and "nosuch" in err and "Traceback" not in err
    assert (tmp_path / "home" / "leaderboards" / "iris.csv").is_file()


def test_help_is_fast_and_does_not_import_mlflow() -> None:
    code = (
        "import sys; from layerops.cli.main import app; import typer.testing as t;"
        "r = t.CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output;"
        "assert 'train' in r.output and 'models' in r.output and 'LAYEROPS_HOME' in r.output;"
        "assert 'mlflow' not in sys.modules and 'sklearn' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
