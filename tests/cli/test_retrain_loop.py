"""`layerops retrain NAME --spec SPEC ...`: the retraining loop from the command line.

Exit 0 for no drift (nothing trained), a candidate set or a promotion; 4 when the gate refused
(nothing moved); 1 with one line for what cannot run; 2 with the usage for mixed modes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import layerops
from layerops.api.retrain import TRIGGER_TAG
from layerops.datasets import shipping
from layerops.repository.factory import open_repository
from layerops.settings import Settings
from tests.retraining import give_feedback, log_predictions, registered_home, shifted
from tests.test_cli import invoke

Cli = tuple[pytest.CaptureFixture[str], pytest.MonkeyPatch]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return capsys, monkeypatch


def _retrain(cli: Cli, folder: Path, *args: str) -> tuple[int, str, str]:
    home = str(folder / "home")
    return invoke(*cli, "--home", home, "retrain", "shipping", "--spec", str(folder / "spec.yaml"), *args)


def _aliases(home: Path) -> dict[str, int]:
    return layerops.models.summaries(home=home)[0].aliases


def _kinds(home: Path) -> list[str]:
    return [event.kind for event in open_repository(Settings(home=home)).events("shipping")]


@pytest.mark.slow
def test_if_drift_without_drift_trains_nothing_and_with_drift_sets_a_candidate(
    tmp_path: Path, cli: Cli
) -> None:
    home = registered_home(tmp_path)
    log_predictions(home, shipping(500, seed=21))

    code, out, err = _retrain(cli, tmp_path, "--if-drift", "-q")
    assert code == 0, err
    assert "shipping v1: 500 logged rows (since " in out and ": no drift" in out
    assert "nothing trained" in out
    assert [v.version for v in layerops.models.versions("shipping", home=home)] == [1]
    assert _kinds(home) == ["retrain_skipped"]

    log_predictions(home, shifted(shipping(1000, seed=22)), prefix="s")
    code, out, err = _retrain(cli, tmp_path, "--if-drift")  # with the progress bars
    assert code == 0, err
    assert "1,500 logged rows" in out and "drift in " in out and "weight" in out
    assert "registered shipping version 2 (trigger: drift: " in out
    assert "promotion gate: shipping v2 against production" in out and "verdict: PASSED" in out
    assert "shipping: candidate – → v2" in out
    assert _aliases(home) == {"production": 1, "candidate": 2}
    trigger = layerops.models.show("shipping", version=2, home=home).tags[TRIGGER_TAG]
    assert trigger.startswith("drift: ") and "weight" in trigger
    assert _kinds(home) == ["retrain_skipped", "retrain_started", "retrain_trained"]


@pytest.mark.slow
def test_from_log_with_promote_moves_production(tmp_path: Path, cli: Cli) -> None:
    home = registered_home(tmp_path)
    fresh = shipping(240, seed=6)
    ids = log_predictions(home, fresh)
    give_feedback(home, ids[:180], fresh["cost"][:180])

    code, out, err = _retrain(cli, tmp_path, "--from-log", "--since", "2h", "--promote", "-q")

    assert code == 0, out + err
    assert "trained on prediction log of shipping since " in out
    assert "(180 labelled of 240 logged rows)" in out
    assert "registered shipping version 2 (trigger: manual)" in out
    assert "shipping: production v1 → v2" in out
    assert _aliases(home) == {"production": 2}


@pytest.mark.slow
def test_a_refusing_gate_exits_4_and_moves_nothing(tmp_path: Path, cli: Cli) -> None:
    home = registered_home(tmp_path)
    shipping(600, seed=8).to_csv(tmp_path / "newer.csv", index=False)

    code, out, err = _retrain(cli, tmp_path, "--data", str(tmp_path / "newer.csv"), "--margin", "1.0", "-q")

    assert code == 4, err
    assert f"trained on {(tmp_path / 'newer.csv').resolve()}" in out
    assert "verdict: REFUSED" in out and "the gate refused v2: nothing moved" in out
    assert _aliases(home) == {"production": 1}
    assert _kinds(home)[-1] == "gate_failed"


@pytest.mark.slow
def test_too_few_logged_rows_is_one_line_and_exit_1(tmp_path: Path, cli: Cli) -> None:
    home = registered_home(tmp_path)
    log_predictions(home, shipping(60, seed=4))
    for extra in (["--if-drift"], ["--from-log"]):
        code, _, err = _retrain(cli, tmp_path, *extra, "-q")
        assert code == 1 and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith("error: only ")
    assert [v.version for v in layerops.models.versions("shipping", home=home)] == [1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--spec", "s.yaml", "--reproduce", "--version", "1"], "--spec retrain from a spec"),
        (["--alias", "production", "--if-drift", "--reproduce"], "--if-drift retrain from a spec"),
        (["--version", "1"], "add --reproduce"),
        (["--from-log"], "give --spec SPEC to retrain"),
        (["--spec", "s.yaml", "--data", "d.csv", "--from-log"], "--data FILE or --from-log, not both"),
        (["--spec", "s.yaml", "--since", "2h"], "--since sets the log window"),
        (["--spec", "s.yaml", "--margin", "-1"], "'--margin': Input should be greater than or equal to 0"),
    ],
)
def test_mixed_modes_are_usage_errors(tmp_path: Path, cli: Cli, args: list[str], message: str) -> None:
    (tmp_path / "s.yaml").write_text("name: shipping\ntarget: cost\ncandidates: [{name: linear}]\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        code, _, err = invoke(*cli, "--home", "home", "retrain", "shipping", *args)
    assert code == 2, err
    assert "Usage: layerops retrain" in err
    assert message in " ".join(err.split()).replace("│", "").replace("  ", " ")
    assert not (tmp_path / "home").exists()
