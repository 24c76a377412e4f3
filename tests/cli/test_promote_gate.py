"""`layerops models promote` through the gate: exit 4 and nothing changed for a worse version, the
report printed and kept in the history for a better one, `--force` only with `--reason`; and
`models history` shows forced moves, gate verdicts and release events without importing MLflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import layerops
from layerops.cli.main import run
from layerops.repository.factory import open_reader
from layerops.settings import Settings
from tests.cli.conftest import environment
from tests.releases.gate_models import NAME, spec, synthetic_frame

BASELINE, LINEAR = 1, 2

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """synth v1 (one rule on one feature) and v2 (logistic regression, far better); no alias."""
    folder = tmp_path_factory.mktemp("promote-gate") / "home"
    frame = synthetic_frame()
    for candidate in ({"name": "baseline"}, {"name": "linear"}):
        layerops.train(spec(candidate), data=frame, home=folder, jobs=1)
    return folder


def invoke(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, home: Path, *args: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["layerops", "--home", str(home), *args])
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit) as info:
        run()
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def _alias(home: Path, alias: str) -> int:
    return open_reader(Settings(home=home)).resolve_alias(NAME, alias).version


def test_a_worse_version_is_refused_with_exit_4_and_nothing_changes(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    layerops.models.promote(NAME, version=LINEAR, alias="prod_a", home=home)
    changes = len(layerops.models.changes(NAME, home=home))

    code, out, err = invoke(
        capsys, monkeypatch, home, "models", "promote", NAME, "--version", "1", "--alias", "prod_a"
    )

    assert code == 4, (out, err)
    assert "challenger v1" in out and "prod_a v2" in out and "verdict: REFUSED" in out
    assert "significantly worse than the incumbent" in out and "prod_a unchanged" in out
    assert _alias(home, "prod_a") == LINEAR and len(layerops.models.changes(NAME, home=home)) == changes
    code, out, _ = invoke(capsys, monkeypatch, home, "models", "history", NAME)
    assert code == 0 and "gate_failed" in out and "v1 refused for prod_a" in out


def test_a_better_version_passes_and_history_shows_the_gate(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    layerops.models.promote(NAME, version=BASELINE, alias="prod_b", home=home)

    code, out, err = invoke(
        capsys,
        monkeypatch,
        home,
        "models",
        "promote",
        NAME,
        "--version",
        "2",
        "--alias",
        "prod_b",
        "--margin",
        "0",
    )

    assert code == 0, (out, err)
    assert "verdict: PASSED" in out and "significantly better" in out and "prod_b v1 → v2" in out
    assert _alias(home, "prod_b") == LINEAR
    recorded = layerops.models.changes(NAME, home=home)[-1]
    assert recorded.details["passed"] is True and recorded.details["ci_low"] > 0
    code, out, _ = invoke(capsys, monkeypatch, home, "models", "history", NAME)
    row = next(line for line in out.splitlines() if "prod_b" in line and "v2" in line)
    assert "f1_macro Δ +" in row and "passed" in row and "forced" not in row


def test_force_needs_a_reason_and_is_recorded_as_forced(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    layerops.models.promote(NAME, version=LINEAR, alias="prod_c", home=home)
    promote = ["models", "promote", NAME, "--version", "1", "--alias", "prod_c"]

    code, _, err = invoke(capsys, monkeypatch, home, *promote, "--force")
    assert code == 2 and "--force needs --reason" in err and _alias(home, "prod_c") == LINEAR
    code, _, err = invoke(capsys, monkeypatch, home, *promote, "--no-gate", "--margin", "0.1")
    assert code == 2 and "--no-gate scores nothing" in err

    code, out, err = invoke(
        capsys, monkeypatch, home, *promote, "--force", "--reason", "incident 7: roll forward"
    )

    assert code == 0, (out, err)
    assert "REFUSED, promoted anyway (forced)" in out and "prod_c v2 → v1 (forced past the gate)" in out
    assert _alias(home, "prod_c") == BASELINE
    recorded = layerops.models.changes(NAME, home=home)[-1]
    assert recorded.forced and recorded.reason == "incident 7: roll forward"
    code, out, _ = invoke(capsys, monkeypatch, home, "models", "history", NAME)
    row = next(line for line in out.splitlines() if "incident 7" in line)
    assert "forced" in row and "prod_c" in row and "f1_macro Δ -" in row


def test_no_gate_and_a_first_promotion_move_the_alias(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = invoke(
        capsys, monkeypatch, home, "models", "promote", NAME, "--version", "1", "--alias", "prod_d"
    )
    assert code == 0 and "no current prod_d version" in out and "prod_d – → v1" in out
    code, out, _ = invoke(
        capsys,
        monkeypatch,
        home,
        "models",
        "promote",
        NAME,
        "--version",
        "2",
        "--alias",
        "prod_d",
        "--no-gate",
    )
    assert code == 0 and "verdict" not in out and "prod_d v1 → v2" in out


def test_help_documents_the_exit_codes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["layerops", "models", "promote", "--help"])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        run()
    out = capsys.readouterr().out
    assert "4 the gate" in out and "--eval-data" in out and "--force" in out and "--no-gate" in out


def test_history_imports_neither_mlflow_nor_pandas(home: Path) -> None:
    code = (
        "import sys; from layerops.cli.main import run\n"
        f"sys.argv = ['layerops', '--home', {str(home)!r}, 'models', 'history', {NAME!r}]\n"
        "try: run()\nexcept SystemExit as exc: assert not exc.code, exc.code\n"
        "heavy = ('mlflow', 'pandas', 'sklearn', 'numpy')\n"
        "print('heavy:', sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "heavy: []" in result.stdout and "release events" in result.stdout
