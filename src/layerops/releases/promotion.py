"""Promotion through the gate: score a version against the alias holder, then move the alias.

The one place that composes the repository and the gate: `layerops models promote`, the Python
API (`layerops.api.releases`), `layerops retrain` and the server's canary controller all promote
through `promote` here, so every gated move records the same things:

- passed: the alias moves; the history entry keeps the gate report in its `details`;
- refused: nothing moves; a `gate_failed` release event keeps the report;
- refused but forced (an operator's decision, `reason` required): the alias moves, the entry is
  marked `forced` and keeps the report.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from layerops.errors import DataError, LayeropsError, NotFoundError
from layerops.releases._rows import unseen_rows
from layerops.releases.gate import Contender, GatePolicy, GateReport, evaluate
from layerops.repository.api import AliasChange, ModelRepository


@dataclass(frozen=True)
class Promotion:
    """What `promote` did: the alias move (None: nothing moved) and the gate's report (None:
    promoted without the gate)."""

    change: AliasChange | None
    report: GateReport | None


def gate_against(
    repository: ModelRepository,
    name: str,
    version: int,
    *,
    alias: str = "production",
    data: pd.DataFrame | None = None,
    source: str = "",
    policy: GatePolicy | None = None,
) -> GateReport:
    """The gate's report on `version` of `name` against the version `alias` points to, scored on
    `data` (from `source`), else on the challenger's held-out test rows the incumbent did not fit
    on (`releases._rows.unseen_rows`).

    Raises `NotFoundError` for an unknown model or version and a one-line `LayeropsError` when
    there is an incumbent but no evaluation data (a bundle without a held-out sample).
    """
    challenger = Contender(version, repository.load_bundle(name, version))
    try:
        held = repository.resolve_alias(name, alias).version
    except NotFoundError:  # the model exists (its version just loaded): the alias is unset
        held = None
    incumbent = Contender(held, repository.load_bundle(name, held)) if held is not None else None
    held_out = data is None
    if held_out:
        data, source = unseen_rows(challenger, incumbent)
    if data is None and incumbent is not None:
        raise LayeropsError(
            f"{name} v{version} keeps no held-out test rows (trained with selection.refit_all or before "
            "layerops kept them): pass evaluation data with --eval-data FILE (eval_data=)"
        )
    try:
        return evaluate(challenger, incumbent, data, policy, against=alias, source=source)
    except DataError as exc:
        if not held_out:
            raise
        raise DataError(f"{exc} (in the {source}): pass evaluation data with --eval-data FILE") from exc


def promote(  # noqa: PLR0913 - the model, the version and keyword-only options
    repository: ModelRepository,
    name: str,
    version: int,
    *,
    alias: str,
    force: bool = False,
    reason: str = "",
    data: pd.DataFrame | None = None,
    source: str = "",
    policy: GatePolicy | None = None,
    gate: bool = True,
    against: str | None = None,
) -> Promotion:
    """Point `alias` at `version` if it passes the gate against the holder of `against` (default:
    `alias` itself; `layerops retrain` sets `candidate` against `production`).

    `force=True` moves the alias even when the gate refuses, and needs a `reason` (a one-line
    `LayeropsError` otherwise). `gate=False` moves it without scoring anything (`report` None).
    """
    if force and not reason.strip():
        raise LayeropsError("a forced promotion needs a reason: pass --reason '...' (reason=)")
    if not gate:
        note = reason or "promoted without the gate"
        return Promotion(repository.set_alias(name, alias, version, reason=note), None)
    report = gate_against(
        repository, name, version, alias=against or alias, data=data, source=source, policy=policy
    )
    if report.passed:
        note = reason or f"passed the promotion gate ({report.summary()})"
        change = repository.set_alias(name, alias, version, reason=note, details=report.as_dict())
        return Promotion(change, report)
    if force:
        report = replace(report, forced=True)
        change = repository.set_alias(
            name, alias, version, reason=reason, details=report.as_dict(), forced=True
        )
        return Promotion(change, report)
    message = f"v{version} refused for {alias}: " + "; ".join(report.reasons)
    repository.record_event(name, "gate_failed", message, report.as_dict())
    return Promotion(None, report)
