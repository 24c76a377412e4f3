"""Nightly retraining with Prefect 3: for each model, check drift and retrain behind the gate.

Each model is one Prefect task calling `layerops.retrain(..., if_drift=True)`: no drift → nothing
trained; drift → a new version trained on the spec's data (or, with `from_log`, on the logged
rows that got feedback labels), gated against production and, on a pass, pointed to by
`candidate` (the server's canary takes it further) or, with `promote`, by `production`.

    uv sync --group orchestration
    # one run now (a local Prefect API starts for it unless PREFECT_API_URL names a server):
    uv run --group orchestration python examples/orchestration/prefect_flow.py iris=examples/iris.yaml
    # or serve it on a schedule (03:00 every night) from a long-running process:
    uv run --group orchestration python examples/orchestration/prefect_flow.py --serve iris=examples/iris.yaml

The repository and the prediction log come from `LAYEROPS_TRACKING_URI`, `LAYEROPS_HOME` and
`LAYEROPS_PREDICTION_LOG`, as for the `layerops` command.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.context import FlowRunContext

import layerops
from layerops.errors import LayeropsError

NIGHTLY = "0 3 * * *"
"""When `--serve` runs the flow: 03:00 every night (the CronJob's schedule too)."""


# No retries: a retry after the new version was registered would train (and register) it twice.
@task(name="retrain-if-drifted", log_prints=True)
def retrain_model(
    name: str,
    spec: str,
    *,
    since: str = "7d",
    from_log: bool = False,
    promote: bool = False,
    home: str | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Check `name`'s production version for drift since `since`; on drift retrain it with `spec`
    and gate the new version. Returns the outcome as plain data (status, version, trigger)."""
    result = layerops.retrain(
        name,
        spec,
        from_log=from_log,
        since=since,
        if_drift=True,
        promote=promote,
        home=home,
        tracking_uri=tracking_uri,
    )
    gate = [] if result.report is None else result.report.lines()
    print(f"{name}: {result.status} (version {result.version}, trigger {result.trigger or 'none'})")
    for line in gate:
        print(f"  {line}")
    return {
        "name": name,
        "status": result.status,
        "version": result.version,
        "trigger": result.trigger,
        "data": result.source,
        "gate": gate,
    }


def _call(step: Any, *args: Any, **kwargs: Any) -> Any:
    """Run `step` as a Prefect task inside a flow run; outside one (`retrain_flow.fn(...)`, as the
    tests call it) as the plain function, so that no Prefect API is needed."""
    fn: Callable[..., Any] = step if FlowRunContext.get() is not None else step.fn
    return fn(*args, **kwargs)


@flow(name="layerops-retrain", log_prints=True)
def retrain_flow(
    models: dict[str, str],
    since: str = "7d",
    from_log: bool = False,
    promote: bool = False,
    home: str | None = None,
    tracking_uri: str | None = None,
) -> list[dict[str, Any]]:
    """Retrain each model (name → spec path) that drifted, one after another (a training uses
    every core). A model that cannot be checked or trained (too few logged rows, an unreachable
    repository) does not stop the others; the flow fails at the end, naming them."""
    outcomes: list[dict[str, Any]] = []
    failed: list[str] = []
    for name, spec in models.items():
        try:
            outcome = _call(
                retrain_model,
                name,
                spec,
                since=since,
                from_log=from_log,
                promote=promote,
                home=home,
                tracking_uri=tracking_uri,
            )
        except LayeropsError as exc:
            print(f"{name}: {exc}")
            failed.append(name)
            continue
        outcomes.append(outcome)
    if failed:
        raise RuntimeError(f"retraining could not run for {', '.join(failed)} (see the log above)")
    return outcomes


def main(argv: list[str]) -> None:
    """`[--serve] NAME=SPEC ...`: run the flow once, or serve it on the nightly schedule."""
    serve = "--serve" in argv
    pairs = [arg for arg in argv if arg != "--serve"]
    if not pairs or any("=" not in pair for pair in pairs):
        sys.exit("usage: prefect_flow.py [--serve] NAME=SPEC [NAME=SPEC ...]")
    models = {name: str(Path(spec).resolve()) for name, spec in (pair.split("=", 1) for pair in pairs)}
    if serve:
        retrain_flow.serve(name="layerops-nightly-retrain", cron=NIGHTLY, parameters={"models": models})
    else:
        for outcome in retrain_flow(models):
            print(outcome)


if __name__ == "__main__":
    main(sys.argv[1:])
