""".github/workflows/ci.yml kept in step with .ci/run and the Makefile: the same lint and type
commands as `make lint`, the test job running .ci/run (so `make test` with CI=true) after the same
Prometheus install, PostgreSQL where the suite looks for it, and an image pushed only from main."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import POSTGRES_SERVER
from tests.deploy.stack import ROOT, yaml_documents

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
CI_RUN = ROOT / ".ci" / "run"
INSTALL = (
    "command -v promtool >/dev/null",
    "apt-get install -y --no-install-recommends prometheus || (apt-get update && "
    "apt-get install -y --no-install-recommends prometheus)",
    "systemctl disable --now prometheus",
)
"""What installing Prometheus takes, in .ci/run and in the workflow: only when promtool is missing,
the package without recommends (with an index update if needed), and its own service stopped."""


def installs_prometheus(script: str) -> bool:
    """Whether `script` runs every part of `INSTALL` (`sudo`, line continuations and the spacing
    they leave aside)."""
    flat = re.sub(r"\s+", " ", script.replace("\\\n", " ").replace("sudo ", ""))
    return all(part in flat for part in INSTALL)


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    (loaded,) = yaml_documents(WORKFLOW)
    return loaded


def steps(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def make_recipe(target: str) -> list[str]:
    """The commands of a Makefile target, with $(RUN) as the workflow spells it."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    block = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert block is not None
    return [line.strip().replace("$(RUN)", "uv run --frozen") for line in block.group(1).splitlines()]


def test_the_jobs_run_in_order(workflow: dict[str, Any]) -> None:
    jobs = workflow["jobs"]
    assert list(jobs) == ["lint", "type-check", "test", "image"]
    assert [jobs[name].get("needs") for name in jobs] == [None, "lint", "type-check", "test"]
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["push"]["branches"] == ["main"] and "pull_request" in triggers
    for job in jobs.values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+", step["uses"]), step["uses"]


def test_lint_and_type_check_run_what_make_lint_runs(workflow: dict[str, Any]) -> None:
    commands = [
        line.strip()
        for name in ("lint", "type-check")
        for run in steps(workflow["jobs"][name])
        for line in run.splitlines()
        if line.strip()
    ]
    assert [c for c in commands if c != "make env"] == make_recipe("lint")


def test_the_test_job_runs_ci_run_after_the_same_prometheus_install(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["test"]
    runs = steps(job)
    assert runs[-1].strip() == ".ci/run"
    script = CI_RUN.read_text(encoding="utf-8")
    assert re.findall(r"^make (\S+)$", script, re.MULTILINE) == ["test"]  # what the test job thus runs
    assert installs_prometheus(script), ".ci/run no longer installs prometheus as the workflow does"
    (install,) = [run for run in runs if "promtool" in run]
    assert installs_prometheus(install), "the workflow no longer installs prometheus as .ci/run does"
    assert not installs_prometheus(install.replace("--no-install-recommends", ""))
    assert runs.index(install) < runs.index(runs[-1])


def test_postgresql_is_where_the_suite_looks_for_it(workflow: dict[str, Any]) -> None:
    service = workflow["jobs"]["test"]["services"]["postgres"]
    port = POSTGRES_SERVER.rsplit(":", 1)[1]
    assert f"{port}:5432" in service["ports"] and POSTGRES_SERVER.startswith(
        "postgresql://postgres@127.0.0.1:"
    )
    assert service["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"  # the suite's URL has no password


def test_the_image_is_built_every_time_and_pushed_to_ghcr_only_from_main(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["image"]
    assert job["permissions"]["packages"] == "write"
    builds = [s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action@")]
    assert [b["with"]["file"] for b in builds] == ["deploy/Dockerfile"] * 2
    assert [b["with"]["push"] for b in builds] == [False, True]
    on_main = "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    login = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/login-action@"))
    assert login["if"] == builds[1]["if"] == on_main and "if" not in builds[0]
    assert (
        login["with"]["registry"] == "ghcr.io" and login["with"]["password"] == "${{ secrets.GITHUB_TOKEN }}"
    )
    meta = next(s for s in job["steps"] if s.get("id") == "meta")
    assert meta["with"]["images"] == "ghcr.io/${{ github.repository }}"
